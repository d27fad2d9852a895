// How subcommand groups plug into the grove CLI. Each group adds its
// subcommands to the app; the one the user picked sets `action`, which main()
// runs after parsing (so parse errors never start any work).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace grove::cli {

/// What the chosen subcommand does; returns the process exit status.
using CommandAction = std::function<int()>;

/// `grove bench ...` (bench_command.cc).
void AddBenchCommands(CLI::App& app, CommandAction& action);
/// `grove job ...` (job_command.cc).
void AddJobCommands(CLI::App& app, CommandAction& action);

}  // namespace grove::cli
