// A small operator written the way PostgreSQL executor nodes are: one
// long-lived context for the operator's state, one per-row context that is
// reset for every input row, and a memory cap on the whole operator.
//
// It reads "key,value" rows from stdin (or generates them), groups values
// by key in a hash table living in the operator's context, and prints the
// per-key sums. Per-row parsing garbage goes away with each reset.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory_resource>
#include <string>
#include <unordered_map>

#include "grove/contexts/context_switch.h"
#include "grove/contexts/memory_resource.h"
#include "grove/contexts/memutils.h"

namespace {

struct Row {
  char* key;
  long value;
};

// Parses one line in the per-row context; anything it allocates is freed by
// the next reset, so the operator never frees parser memory by hand.
bool ParseRow(const char* line, Row* row) {
  const char* comma = std::strchr(line, ',');
  if (comma == nullptr) return false;
  row->key = grove::pnstrdup(line, static_cast<std::size_t>(comma - line));
  char* end = nullptr;
  row->value = std::strtol(comma + 1, &end, 10);
  return end != comma + 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace grove;
  const bool generate = argc > 1 && std::strcmp(argv[1], "--generate") == 0;
  const long nrows = generate && argc > 2 ? std::atol(argv[2]) : 100000;

  MemoryContextInit();
  MemoryContext operator_cxt = AllocSetContextCreate(TopMemoryContext, "RowOperator", ALLOCSET_DEFAULT_SIZES);
  MemoryContextSetLimit(operator_cxt, 64 * 1024 * 1024);  // the whole operator: at most 64 MiB
  MemoryContext row_cxt = AllocSetContextCreate(operator_cxt, "PerRow", ALLOCSET_SMALL_SIZES);

  {
  // The aggregation state lives in the operator's context through pmr. It
  // must be destroyed before the context is: the scope ends first.
  ContextMemoryResource resource(operator_cxt);
  std::pmr::unordered_map<std::pmr::string, long> sums(&resource);

  long rows = 0, rejected = 0;
  std::string line;
  for (long i = 0;; ++i) {
    if (generate) {
      if (i >= nrows) break;
      line = "k" + std::to_string(i % 10) + "," + std::to_string(i);
    } else if (!std::getline(std::cin, line)) {
      break;
    }
    MemoryContextReset(row_cxt);
    ContextSwitch in_row(row_cxt);
    Row row;
    if (!ParseRow(line.c_str(), &row)) {
      ++rejected;
      continue;
    }
    sums[std::pmr::string(row.key, &resource)] += row.value;
    ++rows;
  }

  for (int k = 0; k < 10; ++k) {
    auto it = sums.find(std::pmr::string("k" + std::to_string(k), &resource));
    if (it != sums.end()) std::printf("%s %ld\n", it->first.c_str(), it->second);
  }
  std::printf("rows %ld rejected %ld keys %zu operator bytes %zu\n", rows, rejected, sums.size(),
              MemoryContextMemAllocated(operator_cxt, true));
  }
  MemoryContextDelete(operator_cxt);
  return 0;
}
