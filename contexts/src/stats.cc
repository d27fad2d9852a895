// Statistics: PostgreSQL-style tree dumps and a structured snapshot.
#include <cinttypes>
#include <cstdio>

#include "grove/contexts/stats.h"
#include "memory_context_internal.h"

namespace grove {

using namespace mcxt;

namespace {

void PrintLine(std::FILE* out, int level, const char* name, const char* ident, const MemoryContextCounters& c) {
  std::fprintf(out, "%*s%s: ", level * 2, "", name);
  if (ident != nullptr) {
    // Identifiers can be long (query text); keep the line readable.
    std::fprintf(out, "%.100s: ", ident);
  }
  std::fprintf(out, "%zu total in %zu blocks; %zu free (%zu chunks); %zu used\n", c.totalspace, c.nblocks,
               c.freespace, c.freechunks, c.totalspace - c.freespace);
}

void Add(MemoryContextCounters* total, const MemoryContextCounters& c) {
  total->nblocks += c.nblocks;
  total->freechunks += c.freechunks;
  total->totalspace += c.totalspace;
  total->freespace += c.freespace;
}

// `root` and then its descendants, pre-order.
template <typename F>
void ForEachInSubtree(MemoryContext root, F f) {
  f(root);
  ForEachDescendant(root, [&](MemoryContext n) {
    f(n);
    return true;
  });
}

void AddSubtree(MemoryContext context, MemoryContextCounters* total) {
  ForEachInSubtree(context, [&](MemoryContext c) { Add(total, MemoryContextGetCounters(c)); });
}

void StatsInternal(MemoryContext context, int level, int max_level, int max_children, std::FILE* out,
                   MemoryContextCounters* grand) {
  const MemoryContextCounters self = MemoryContextGetCounters(context);
  Add(grand, self);
  PrintLine(out, level, context->name, context->ident, self);

  int shown = 0;
  MemoryContextCounters rest;
  int nrest = 0;
  for (MemoryContext child = context->firstchild; child != nullptr; child = child->nextchild) {
    if (level + 1 < max_level && shown < max_children) {
      StatsInternal(child, level + 1, max_level, max_children, out, grand);
      ++shown;
    } else {
      MemoryContextCounters sub;
      AddSubtree(child, &sub);
      Add(&rest, sub);
      ++nrest;
    }
  }
  if (nrest > 0) {
    Add(grand, rest);
    std::fprintf(out, "%*s%d more child contexts containing %zu total in %zu blocks; %zu free (%zu chunks); %zu used\n",
                 (level + 1) * 2, "", nrest, rest.totalspace, rest.nblocks, rest.freespace, rest.freechunks,
                 rest.totalspace - rest.freespace);
  }
}

}  // namespace

MemoryContextCounters MemoryContextGetCounters(MemoryContext context) {
  MemoryContextCounters c;
  context->methods->stats(context, &c);
  return c;
}

void MemoryContextStatsDetail(MemoryContext context, int max_level, int max_children, std::FILE* out) {
  MemoryContextCounters grand;
  StatsInternal(context, 0, max_level, max_children, out, &grand);
  std::fprintf(out, "Grand total: %zu bytes in %zu blocks; %zu free (%zu chunks); %zu used\n", grand.totalspace,
               grand.nblocks, grand.freespace, grand.freechunks, grand.totalspace - grand.freespace);
  std::fflush(out);
}

void MemoryContextStats(MemoryContext context) { MemoryContextStatsDetail(context, 100, 100, stderr); }

void MemoryContextCheck([[maybe_unused]] MemoryContext context) {
#ifdef GROVE_MEMORY_CHECKING
  ForEachInSubtree(context, [](MemoryContext c) {
    if (c->methods->check != nullptr) c->methods->check(c);
  });
#endif
}

namespace mcxt {

std::vector<ContextStats> SnapshotStats(MemoryContext root) {
  std::vector<ContextStats> out;
  struct Frame {
    MemoryContext context;
    int level;
    int parent;
  };
  std::vector<Frame> stack{{root, 0, -1}};
  while (!stack.empty()) {
    Frame f = stack.back();
    stack.pop_back();
    ContextStats s;
    s.name = f.context->name;
    if (f.context->ident != nullptr) s.ident = f.context->ident;
    s.type = f.context->methods->name;
    s.level = f.level;
    s.parent = f.parent;
    s.self = MemoryContextGetCounters(f.context);
    s.subtree_allocated = MemoryContextMemAllocated(f.context, true);
    s.limit = f.context->limit;
    const int index = static_cast<int>(out.size());
    out.push_back(std::move(s));
    // Push children in reverse so they come out in list order.
    std::vector<MemoryContext> children;
    for (MemoryContext c = f.context->firstchild; c != nullptr; c = c->nextchild) children.push_back(c);
    for (auto it = children.rbegin(); it != children.rend(); ++it) stack.push_back({*it, f.level + 1, index});
  }
  return out;
}

MemoryContextCounters TotalCounters(const std::vector<ContextStats>& snapshot) {
  MemoryContextCounters total;
  for (const ContextStats& s : snapshot) Add(&total, s.self);
  return total;
}

}  // namespace mcxt
}  // namespace grove
