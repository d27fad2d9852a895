// grove: command-line tool for the grove libraries.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "commands.h"
#include "grove/base/error.h"

#ifndef GROVE_VERSION
#error "GROVE_VERSION must be defined by the build (cli/CMakeLists.txt)"
#endif

int main(int argc, char** argv) {
  CLI::App app{"grove: a shared-memory parallel runtime (memory contexts, DSA, resource owners, workers).", "grove"};
  app.set_version_flag("--version", "grove " GROVE_VERSION, "Print the version and exit");
  app.require_subcommand(1);
  app.fallthrough(false);

  grove::cli::CommandAction action;
  grove::cli::AddBenchCommands(app, action);
  grove::cli::AddJobCommands(app, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::RequiredError& e) {
    // CLI11 reports a misspelt subcommand as "A subcommand is required";
    // name the word it did not recognize instead.
    CLI::App* deepest = &app;
    std::string command = "grove";
    while (!deepest->get_subcommands().empty()) {
      deepest = deepest->get_subcommands().front();
      command += " " + deepest->get_name();
    }
    const std::vector<std::string> unknown = deepest->remaining();
    if (!unknown.empty() && !unknown.front().empty() && unknown.front()[0] != '-') {
      std::fprintf(stderr, "%s: unknown subcommand '%s'\nRun with --help for more information.\n",
                   command.c_str(), unknown.front().c_str());
      return static_cast<int>(CLI::ExitCodes::ExtrasError);
    }
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!action) {
    // A group was named without one of its subcommands; CLI11 enforces this,
    // so reaching here means a group forgot to set `action`.
    std::fputs("grove: nothing to do\n", stderr);
    return 2;
  }
  try {
    return action();
  } catch (const grove::Error& e) {
    std::fprintf(stderr, "grove: %s\n", e.Format().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "grove: %s\n", e.what());
    return 1;
  }
}
