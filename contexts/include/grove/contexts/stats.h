// A structured snapshot of a context tree, for the CLI, SQL and tests.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "grove/contexts/memutils.h"

namespace grove::mcxt {

struct ContextStats {
  std::string name;
  std::string ident;         ///< empty when none was set
  const char* type = "";     ///< "AllocSet", "Slab", "Generation", "Bump"
  int level = 0;             ///< depth below the snapshot's root (root = 0)
  int parent = -1;           ///< index of the parent in the snapshot; -1 for the root
  MemoryContextCounters self;       ///< this context alone
  std::size_t subtree_allocated = 0;  ///< MemoryContextMemAllocated(context, true)
  std::size_t limit = 0;     ///< 0: none
};

/// Depth-first (pre-order) snapshot of the tree below `root`.
std::vector<ContextStats> SnapshotStats(MemoryContext root);

/// Sum of the counters of a whole snapshot.
MemoryContextCounters TotalCounters(const std::vector<ContextStats>& snapshot);

}  // namespace grove::mcxt
