// Statistics: MemoryContextStatsDetail prints PostgreSQL-style lines
// ("NAME: N total in B blocks; F free (C chunks); U used", then "Grand
// total: ..."), and SnapshotStats gives the same numbers as a structure.
#include <pthread.h>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <sstream>

#include "allocator_checks.h"
#include "grove/contexts/stats.h"

namespace grove::test {
namespace {

struct StatsLine {
  std::size_t indent;
  std::string name;
  std::size_t total, blocks, free, chunks, used;
};

struct Parsed {
  std::vector<StatsLine> contexts;
  std::vector<std::string> summaries;  // "N more child contexts containing ..."
  bool has_grand_total = false;
  std::size_t grand_total = 0, grand_blocks = 0, grand_free = 0, grand_chunks = 0, grand_used = 0;
  std::vector<std::string> unparsed;
};

// Runs MemoryContextStatsDetail into memory (no file is left behind).
std::string StatsText(MemoryContext ctx, int max_level, int max_children) {
  char* buf = nullptr;
  std::size_t len = 0;
  std::FILE* f = open_memstream(&buf, &len);
  EXPECT_NE(f, nullptr);
  MemoryContextStatsDetail(ctx, max_level, max_children, f);
  std::fclose(f);
  std::string out(buf, len);
  std::free(buf);
  return out;
}

Parsed Parse(const std::string& text) {
  static const std::regex context_re(
      R"(^( *)(.+?): (\d+) total in (\d+) blocks; (\d+) free \((\d+) chunks\); (\d+) used(.*)$)");
  static const std::regex grand_re(
      R"(^Grand total: (\d+)(?: bytes)? in (\d+) blocks; (\d+) free \((\d+) chunks\); (\d+) used$)");
  Parsed p;
  std::istringstream in(text);
  std::string line;
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, grand_re)) {
      p.has_grand_total = true;
      p.grand_total = std::stoull(m[1]);
      p.grand_blocks = std::stoull(m[2]);
      p.grand_free = std::stoull(m[3]);
      p.grand_chunks = std::stoull(m[4]);
      p.grand_used = std::stoull(m[5]);
    } else if (line.find("more child contexts containing") != std::string::npos) {
      p.summaries.push_back(line);
    } else if (std::regex_match(line, m, context_re)) {
      p.contexts.push_back({static_cast<std::size_t>(m[1].length()), m[2], std::stoull(m[3]), std::stoull(m[4]), std::stoull(m[5]),
                            std::stoull(m[6]), std::stoull(m[7])});
    } else {
      p.unparsed.push_back(line);
    }
  }
  return p;
}

const StatsLine* Find(const Parsed& p, const std::string& name) {
  for (const StatsLine& l : p.contexts)
    if (l.name == name) return &l;
  return nullptr;
}

class StatsTest : public ContextTest {
 protected:
  void SetUp() override {
    ContextTest::SetUp();
    root_ = AllocSetContextCreate(TopMemoryContext, "stats root", ALLOCSET_DEFAULT_SIZES);
  }
  void TearDown() override {
    MemoryContextDelete(root_);
    ContextTest::TearDown();
  }
  /// A small tree of every kind with some allocations and some frees.
  void BuildTree() {
    static const char* const kNames[] = {"aset default", "aset small", "aset start small",
                                         "generation",   "slab",       "bump"};
    for (std::size_t i = 0; i < AllKinds().size(); ++i) {
      Kind k = AllKinds()[i];
      MemoryContext c = CreateContext(k, root_, kNames[i]);
      std::vector<void*> ps;
      for (int j = 0; j < 500; ++j) ps.push_back(MemoryContextAlloc(c, KindAnySize(k) ? 1 + j * 7 % 900 : kDefaultSlabChunk));
      if (KindFrees(k))
        for (std::size_t j = 0; j < ps.size(); j += 3) pfree(ps[j]);
      if (KindAnySize(k)) MemoryContextAlloc(c, 40000);
      kids_.push_back(c);
    }
    for (int j = 0; j < 100; ++j) MemoryContextAlloc(root_, 100);
  }
  MemoryContext root_ = nullptr;
  std::vector<MemoryContext> kids_;
};

// Each context gets one line whose numbers are its own counters, with
// used = total - free; nothing else is printed but the grand total.
TEST_F(StatsTest, LinesMatchCounters) {
  BuildTree();
  Parsed p = Parse(StatsText(root_, 100, 100));
  EXPECT_TRUE(p.unparsed.empty()) << "unexpected line: " << p.unparsed.front();
  ASSERT_EQ(p.contexts.size(), 1 + kids_.size());
  EXPECT_TRUE(p.summaries.empty());
  for (MemoryContext c : [&] {
         std::vector<MemoryContext> all{root_};
         all.insert(all.end(), kids_.begin(), kids_.end());
         return all;
       }()) {
    const StatsLine* l = Find(p, MemoryContextGetName(c));
    ASSERT_NE(l, nullptr) << MemoryContextGetName(c);
    MemoryContextCounters counters = MemoryContextGetCounters(c);
    EXPECT_EQ(l->total, counters.totalspace) << l->name;
    EXPECT_EQ(l->total, MemoryContextMemAllocated(c, false)) << l->name;
    EXPECT_EQ(l->blocks, counters.nblocks) << l->name;
    EXPECT_EQ(l->free, counters.freespace) << l->name;
    EXPECT_EQ(l->chunks, counters.freechunks) << l->name;
    EXPECT_EQ(l->used, l->total - l->free) << l->name;
  }
}

// The grand total sums every context of the subtree, and equals
// TotalCounters of the snapshot.
TEST_F(StatsTest, GrandTotalSumsSubtree) {
  BuildTree();
  Parsed p = Parse(StatsText(root_, 100, 100));
  ASSERT_TRUE(p.has_grand_total);
  MemoryContextCounters total = mcxt::TotalCounters(mcxt::SnapshotStats(root_));
  EXPECT_EQ(p.grand_total, MemoryContextMemAllocated(root_, true));
  EXPECT_EQ(p.grand_total, total.totalspace);
  EXPECT_EQ(p.grand_blocks, total.nblocks);
  EXPECT_EQ(p.grand_free, total.freespace);
  EXPECT_EQ(p.grand_chunks, total.freechunks);
  EXPECT_EQ(p.grand_used, total.totalspace - total.freespace);
}

// Children are indented below their parent, one step per level.
TEST_F(StatsTest, IndentationFollowsDepth) {
  static const char* const kNames[] = {"depth1", "depth2", "depth3", "depth4"};
  MemoryContext parent = root_;
  for (const char* n : kNames) parent = AllocSetContextCreate(parent, n, ALLOCSET_SMALL_SIZES);
  Parsed p = Parse(StatsText(root_, 100, 100));
  ASSERT_EQ(p.contexts.size(), 5u);
  EXPECT_EQ(p.contexts[0].name, "stats root");
  EXPECT_EQ(p.contexts[0].indent, 0u);
  for (std::size_t i = 1; i < 5; ++i) {
    EXPECT_EQ(p.contexts[i].name, kNames[i - 1]);
    EXPECT_GT(p.contexts[i].indent, p.contexts[i - 1].indent);
    EXPECT_EQ(p.contexts[i].indent - p.contexts[i - 1].indent, p.contexts[1].indent - p.contexts[0].indent)
        << "the same indentation step at every level";
  }
}

// More children than max_children: that many are printed and the rest are
// summarized in one "N more child contexts containing ..." line; the grand
// total still covers all of them.
TEST_F(StatsTest, ChildrenBeyondLimitAreSummarized) {
  for (int i = 0; i < 150; ++i) MemoryContextAlloc(AllocSetContextCreate(root_, "many", ALLOCSET_SMALL_SIZES), 100);
  Parsed p = Parse(StatsText(root_, 100, 100));
  ASSERT_EQ(p.contexts.size(), 101u);
  ASSERT_EQ(p.summaries.size(), 1u);
  EXPECT_TRUE(Contains(p.summaries[0], "50 more child contexts containing")) << p.summaries[0];
  ASSERT_TRUE(p.has_grand_total);
  EXPECT_EQ(p.grand_total, MemoryContextMemAllocated(root_, true));
  // A smaller max_children summarizes more.
  Parsed q = Parse(StatsText(root_, 100, 10));
  EXPECT_EQ(q.contexts.size(), 11u);
  ASSERT_EQ(q.summaries.size(), 1u);
  EXPECT_TRUE(Contains(q.summaries[0], "140 more child contexts containing")) << q.summaries[0];
  EXPECT_EQ(q.grand_total, p.grand_total);
}

// A lower max_level prints fewer levels; the grand total is unchanged.
TEST_F(StatsTest, MaxLevelLimitsDepth) {
  MemoryContext parent = root_;
  for (int d = 0; d < 10; ++d) {
    parent = AllocSetContextCreate(parent, "deep", ALLOCSET_SMALL_SIZES);
    MemoryContextAlloc(parent, 500);
  }
  Parsed all = Parse(StatsText(root_, 100, 100));
  Parsed few = Parse(StatsText(root_, 3, 100));
  EXPECT_EQ(all.contexts.size(), 11u);
  EXPECT_LT(few.contexts.size(), all.contexts.size());
  EXPECT_GE(few.contexts.size(), 1u);
  EXPECT_FALSE(few.summaries.empty()) << "the deeper levels are summarized";
  EXPECT_EQ(few.grand_total, all.grand_total);
  EXPECT_EQ(few.grand_blocks, all.grand_blocks);
}

// MemoryContextStats prints the same report to stderr.
TEST_F(StatsTest, StatsToStderr) {
  BuildTree();
  testing::internal::CaptureStderr();
  MemoryContextStats(root_);
  std::string out = testing::internal::GetCapturedStderr();
  Parsed p = Parse(out);
  EXPECT_NE(Find(p, "stats root"), nullptr) << out;
  EXPECT_NE(Find(p, "generation"), nullptr) << out;
  EXPECT_TRUE(p.has_grand_total) << out;
}

// The statistics of the whole thread tree include TopMemoryContext and ErrorContext.
TEST_F(StatsTest, TopMemoryContextReport) {
  Parsed p = Parse(StatsText(TopMemoryContext, 100, 100));
  EXPECT_NE(Find(p, "TopMemoryContext"), nullptr);
  EXPECT_NE(Find(p, "ErrorContext"), nullptr);
  EXPECT_NE(Find(p, "stats root"), nullptr);
  EXPECT_TRUE(p.has_grand_total);
}

// An identifier is shown on its context's line.
TEST_F(StatsTest, IdentifierShown) {
  MemoryContext c = AllocSetContextCreate(root_, "CachedPlanSource", ALLOCSET_SMALL_SIZES);
  MemoryContextSetIdentifier(c, MemoryContextStrdup(c, "SELECT 42"));
  std::string text = StatsText(root_, 100, 100);
  std::istringstream in(text);
  std::string line;
  bool found = false;
  while (std::getline(in, line))
    if (Contains(line, "CachedPlanSource") && Contains(line, "SELECT 42")) found = true;
  EXPECT_TRUE(found) << text;
}

// SnapshotStats: pre-order, root at level 0 with parent -1, each entry's
// parent index and level consistent, names, types, identifiers, limits and
// counters as the tree reports them.
TEST_F(StatsTest, SnapshotMatchesTree) {
  BuildTree();
  MemoryContext grandchild = GenerationContextCreate(kids_[0], "grandchild", ALLOCSET_SMALL_SIZES);
  MemoryContextAlloc(grandchild, 1000);
  MemoryContextSetIdentifier(kids_[1], "ident of aset small");
  MemoryContextSetLimit(kids_[2], 1 << 20);
  std::vector<mcxt::ContextStats> snap = mcxt::SnapshotStats(root_);
  ASSERT_EQ(snap.size(), 1 + kids_.size() + 1);
  EXPECT_EQ(snap[0].name, "stats root");
  EXPECT_EQ(snap[0].level, 0);
  EXPECT_EQ(snap[0].parent, -1);
  EXPECT_STREQ(snap[0].type, "AllocSet");
  EXPECT_EQ(snap[0].subtree_allocated, MemoryContextMemAllocated(root_, true));
  for (std::size_t i = 1; i < snap.size(); ++i) {
    ASSERT_GE(snap[i].parent, 0);
    ASSERT_LT(static_cast<std::size_t>(snap[i].parent), i) << "pre-order: parents come first";
    EXPECT_EQ(snap[i].level, snap[snap[i].parent].level + 1);
  }
  // The grandchild directly follows its parent "aset default" (pre-order).
  std::size_t gi = 0, pi = 0;
  for (std::size_t i = 0; i < snap.size(); ++i) {
    if (snap[i].name == "grandchild") gi = i;
    if (snap[i].name == "aset default") pi = i;
  }
  ASSERT_NE(gi, 0u);
  EXPECT_EQ(snap[gi].parent, static_cast<int>(pi));
  EXPECT_EQ(snap[gi].level, 2);
  EXPECT_EQ(gi, pi + 1);
  EXPECT_STREQ(snap[gi].type, "Generation");
  for (std::size_t i = 0; i < snap.size(); ++i) {
    const bool ident_expected = snap[i].name == "aset small";
    EXPECT_EQ(snap[i].ident, ident_expected ? "ident of aset small" : "") << snap[i].name;
    const bool limit_expected = snap[i].name == "aset start small";
    EXPECT_EQ(snap[i].limit, limit_expected ? std::size_t{1} << 20 : 0u) << snap[i].name;
  }
  for (std::size_t k = 0; k < kids_.size(); ++k) {
    const mcxt::ContextStats* s = nullptr;
    for (const auto& e : snap)
      if (e.name == MemoryContextGetName(kids_[k])) s = &e;
    ASSERT_NE(s, nullptr);
    EXPECT_STREQ(s->type, MemoryContextGetTypeName(kids_[k]));
    MemoryContextCounters c = MemoryContextGetCounters(kids_[k]);
    EXPECT_EQ(s->self.totalspace, c.totalspace) << s->name;
    EXPECT_EQ(s->self.nblocks, c.nblocks) << s->name;
    EXPECT_EQ(s->self.freespace, c.freespace) << s->name;
    EXPECT_EQ(s->self.freechunks, c.freechunks) << s->name;
    EXPECT_EQ(s->subtree_allocated, MemoryContextMemAllocated(kids_[k], true)) << s->name;
  }
}

// TotalCounters sums the snapshot's own counters.
TEST_F(StatsTest, TotalCountersSums) {
  BuildTree();
  std::vector<mcxt::ContextStats> snap = mcxt::SnapshotStats(root_);
  MemoryContextCounters sum;
  for (const auto& s : snap) {
    sum.nblocks += s.self.nblocks;
    sum.freechunks += s.self.freechunks;
    sum.totalspace += s.self.totalspace;
    sum.freespace += s.self.freespace;
  }
  MemoryContextCounters t = mcxt::TotalCounters(snap);
  EXPECT_EQ(t.nblocks, sum.nblocks);
  EXPECT_EQ(t.freechunks, sum.freechunks);
  EXPECT_EQ(t.totalspace, sum.totalspace);
  EXPECT_EQ(t.freespace, sum.freespace);
  EXPECT_EQ(t.totalspace, MemoryContextMemAllocated(root_, true));
}

// A snapshot of a leaf is one entry; of an empty vector's sum, zeros.
TEST_F(StatsTest, SnapshotOfLeafAndEmptyTotals) {
  std::vector<mcxt::ContextStats> snap = mcxt::SnapshotStats(root_);
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].parent, -1);
  MemoryContextCounters zero = mcxt::TotalCounters({});
  EXPECT_EQ(zero.nblocks, 0u);
  EXPECT_EQ(zero.totalspace, 0u);
}

}  // namespace
}  // namespace grove::test

namespace grove::test {
namespace {

// Statistics walk a deep tree without recursion: a chain deeper than a small
// stack could recurse through is summarized on a thread with a 256 KiB stack.
TEST(StatsDepthTest, DeepChainOnASmallStack) {
  static MemoryContext root;
  root = AllocSetContextCreate(TopMemoryContext, "deep root", ALLOCSET_SMALL_SIZES);
  MemoryContext c = root;
  for (int i = 0; i < 20000; ++i) c = GenerationContextCreate(c, "link", 1024, 1024, 1024);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t thread;
  static std::size_t blocks;
  auto body = [](void*) -> void* {
    char* text = nullptr;
    std::size_t len = 0;
    std::FILE* out = open_memstream(&text, &len);
    MemoryContextStatsDetail(root, 2, 100, out);  // the rest summarized by a walk of 20,000 levels
    std::fclose(out);
    std::free(text);
    blocks = mcxt::TotalCounters(mcxt::SnapshotStats(root)).nblocks;
    return nullptr;
  };
  ASSERT_EQ(pthread_create(&thread, &attr, body, nullptr), 0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
  EXPECT_GE(blocks, 20001u);
  MemoryContextDelete(root);
}

}  // namespace
}  // namespace grove::test
