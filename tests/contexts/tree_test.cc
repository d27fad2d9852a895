// The context tree: reset, reset-only, reset-children, delete, reset
// callbacks and their order, SetParent, deleting the current context.
#include <algorithm>
#include <memory>
#include <thread>

#include "grove/contexts/stats.h"
#include "test_support.h"

namespace grove::test {
namespace {

// Records the order in which callbacks run. Each Recorder entry is one
// registered callback with a label.
class Recorder {
 public:
  /// Registers a callback labelled `label` on `ctx`.
  void Register(MemoryContext ctx, int label) {
    auto entry = std::make_unique<Entry>();
    entry->recorder = this;
    entry->label = label;
    entry->cb.func = [](void* arg) {
      auto* e = static_cast<Entry*>(arg);
      e->recorder->order.push_back(e->label);
    };
    entry->cb.arg = entry.get();
    MemoryContextRegisterResetCallback(ctx, &entry->cb);
    entries_.push_back(std::move(entry));
  }
  std::vector<int> order;

 private:
  struct Entry {
    MemoryContextCallback cb{};
    Recorder* recorder = nullptr;
    int label = 0;
  };
  std::vector<std::unique_ptr<Entry>> entries_;
};

std::size_t Position(const std::vector<int>& order, int label) {
  return static_cast<std::size_t>(std::find(order.begin(), order.end(), label) - order.begin());
}

class TreeTest : public ContextTest {
 protected:
  void SetUp() override {
    ContextTest::SetUp();
    root_ = AllocSetContextCreate(TopMemoryContext, "tree test root", ALLOCSET_DEFAULT_SIZES);
  }
  void TearDown() override {
    if (root_ != nullptr) MemoryContextDelete(root_);
    ContextTest::TearDown();
  }
  MemoryContext root_ = nullptr;
};

// A new context hangs under its parent; names and parents are reported.
TEST_F(TreeTest, CreateLinksUnderParent) {
  MemoryContext a = AllocSetContextCreate(root_, "a", ALLOCSET_SMALL_SIZES);
  MemoryContext b = GenerationContextCreate(a, "b", ALLOCSET_DEFAULT_SIZES);
  EXPECT_EQ(MemoryContextGetParent(a), root_);
  EXPECT_EQ(MemoryContextGetParent(b), a);
  EXPECT_EQ(MemoryContextGetParent(TopMemoryContext), nullptr);
  EXPECT_TRUE(MemoryContextIsDescendant(b, root_));
  EXPECT_TRUE(MemoryContextIsDescendant(b, b));
  EXPECT_TRUE(MemoryContextIsDescendant(root_, TopMemoryContext));
  EXPECT_FALSE(MemoryContextIsDescendant(root_, b));
}

// The thread's well-known contexts.
TEST_F(TreeTest, WellKnownContexts) {
  ASSERT_NE(TopMemoryContext, nullptr);
  ASSERT_NE(ErrorContext, nullptr);
  EXPECT_STREQ(MemoryContextGetName(TopMemoryContext), "TopMemoryContext");
  EXPECT_STREQ(MemoryContextGetName(ErrorContext), "ErrorContext");
  EXPECT_EQ(MemoryContextGetParent(ErrorContext), TopMemoryContext);
  EXPECT_GE(MemoryContextMemAllocated(ErrorContext, false), 8u * 1024) << "8 KiB reserved";
  MemoryContext top = TopMemoryContext;
  MemoryContextInit();  // a second call does nothing
  EXPECT_EQ(TopMemoryContext, top);
}

// Every allocator can parent every other and reports its type name.
TEST_F(TreeTest, MixedKindsInOneTree) {
  MemoryContext parent = root_;
  for (Kind k : AllKinds()) {
    MemoryContext c = CreateContext(k, parent, "mixed");
    EXPECT_STREQ(MemoryContextGetTypeName(c), KindTypeName(k));
    EXPECT_EQ(MemoryContextGetParent(c), parent);
    parent = c;
  }
  EXPECT_TRUE(MemoryContextIsDescendant(parent, root_));
}

// A context with a child is not empty; an empty context becomes non-empty
// with an allocation and empty again after a reset.
TEST_F(TreeTest, IsEmpty) {
  EXPECT_TRUE(MemoryContextIsEmpty(root_));
  MemoryContextAlloc(root_, 10);
  EXPECT_FALSE(MemoryContextIsEmpty(root_));
  MemoryContextReset(root_);
  EXPECT_TRUE(MemoryContextIsEmpty(root_));
  AllocSetContextCreate(root_, "child", ALLOCSET_SMALL_SIZES);
  EXPECT_FALSE(MemoryContextIsEmpty(root_));
}

// Callbacks on one context run last-registered first, once.
TEST_F(TreeTest, CallbacksRunLastRegisteredFirst) {
  Recorder rec;
  for (int i = 1; i <= 5; ++i) rec.Register(root_, i);
  MemoryContextReset(root_);
  EXPECT_EQ(rec.order, (std::vector<int>{5, 4, 3, 2, 1}));
  MemoryContextReset(root_);
  EXPECT_EQ(rec.order.size(), 5u) << "callbacks run once: they are gone after the reset";
}

// A callback registered on a context with nothing allocated still runs at
// the next reset.
TEST_F(TreeTest, CallbackRunsOnResetOfEmptyContext) {
  Recorder rec;
  rec.Register(root_, 1);
  MemoryContextReset(root_);
  EXPECT_EQ(rec.order, (std::vector<int>{1}));
}

// A callback runs before the context's memory goes: it may read chunks of
// the context it is registered with, and may itself live in that context.
TEST_F(TreeTest, CallbackSeesContextMemory) {
  struct State {
    MemoryContextCallback cb;
    char* text;
    bool seen;
  };
  static bool seen_ok = false;
  seen_ok = false;
  auto* st = static_cast<State*>(MemoryContextAlloc(root_, sizeof(State)));
  st->text = MemoryContextStrdup(root_, "still here");
  st->cb.func = [](void* arg) { seen_ok = std::strcmp(static_cast<State*>(arg)->text, "still here") == 0; };
  st->cb.arg = st;
  MemoryContextRegisterResetCallback(root_, &st->cb);
  MemoryContextReset(root_);
  EXPECT_TRUE(seen_ok);
}

// The same for every allocator, on reset and on delete: the callback (kept
// in the context's own memory) reads a chunk of the context intact.
TEST_F(TreeTest, CallbackSeesContextMemoryAllKinds) {
  struct State {
    MemoryContextCallback cb;
    unsigned char* data;
    int* hits;
  };
  for (Kind k : AllKinds()) {
    SCOPED_TRACE(KindName(k));
    // Slab chunks must all have one size: make it fit State.
    MemoryContext c = CreateContext(k, root_, "callback memory", sizeof(State));
    for (int round = 0; round < 2; ++round) {
      int hits = 0;
      auto* st = static_cast<State*>(MemoryContextAlloc(c, sizeof(State)));
      st->data = static_cast<unsigned char*>(MemoryContextAlloc(c, sizeof(State)));
      Fill(st->data, sizeof(State), 42);
      st->hits = &hits;
      st->cb.func = [](void* arg) {
        auto* s = static_cast<State*>(arg);
        if (!FirstMismatch(s->data, sizeof(State), 42)) ++*s->hits;
      };
      st->cb.arg = st;
      MemoryContextRegisterResetCallback(c, &st->cb);
      if (round == 0)
        MemoryContextReset(c);
      else
        MemoryContextDelete(c);
      EXPECT_EQ(hits, 1) << (round == 0 ? "reset" : "delete");
    }
  }
}

// On delete, the context's callbacks run (it is deleted after them).
TEST_F(TreeTest, DeleteRunsCallbacks) {
  Recorder rec;
  MemoryContext c = AllocSetContextCreate(root_, "c", ALLOCSET_SMALL_SIZES);
  rec.Register(c, 1);
  rec.Register(c, 2);
  MemoryContextDelete(c);
  EXPECT_EQ(rec.order, (std::vector<int>{2, 1}));
}

// Unregistering a callback that has not run keeps it from running; an
// unknown callback is reported as not found.
TEST_F(TreeTest, UnregisterCallback) {
  Recorder rec;
  rec.Register(root_, 1);
  static bool ran = false;
  ran = false;
  MemoryContextCallback cb{[](void*) { ran = true; }, nullptr, nullptr};
  MemoryContextRegisterResetCallback(root_, &cb);
  rec.Register(root_, 3);
  EXPECT_TRUE(MemoryContextUnregisterResetCallback(root_, &cb));
  EXPECT_FALSE(MemoryContextUnregisterResetCallback(root_, &cb));
  MemoryContextCallback other{[](void*) {}, nullptr, nullptr};
  EXPECT_FALSE(MemoryContextUnregisterResetCallback(root_, &other));
  MemoryContextReset(root_);
  EXPECT_FALSE(ran);
  EXPECT_EQ(rec.order, (std::vector<int>{3, 1}));
}

// Deleting a chain of depth 100: the deepest context first, each context's
// callbacks last-registered first, the chain's root last.
TEST_F(TreeTest, DeleteDeepChainOrder) {
  Recorder rec;
  constexpr int kDepth = 100;
  std::vector<MemoryContext> chain;
  MemoryContext parent = root_;
  for (int d = 0; d < kDepth; ++d) {
    MemoryContext c = CreateContext(AllKinds()[d % AllKinds().size()], parent, "chain");
    MemoryContextAlloc(c, KindAnySize(AllKinds()[d % AllKinds().size()]) ? 100 : kDefaultSlabChunk);
    rec.Register(c, d * 10 + 1);
    rec.Register(c, d * 10 + 2);
    chain.push_back(c);
    parent = c;
  }
  MemoryContextDelete(chain[0]);
  std::vector<int> expected;
  for (int d = kDepth - 1; d >= 0; --d) {
    expected.push_back(d * 10 + 2);
    expected.push_back(d * 10 + 1);
  }
  EXPECT_EQ(rec.order, expected);
  EXPECT_TRUE(MemoryContextIsEmpty(root_));
}

// Resetting the root of a depth-100 chain deletes the whole chain (deepest
// first) and then runs the root's own callbacks; the root survives.
TEST_F(TreeTest, ResetDeepChainDeletesChildrenThenOwnCallbacks) {
  Recorder rec;
  MemoryContext parent = root_;
  for (int d = 1; d <= 100; ++d) {
    parent = AllocSetContextCreate(parent, "chain", ALLOCSET_SMALL_SIZES);
    rec.Register(parent, d);
  }
  rec.Register(root_, 0);
  MemoryContextAlloc(root_, 50);
  MemoryContextReset(root_);
  std::vector<int> expected;
  for (int d = 100; d >= 0; --d) expected.push_back(d);
  EXPECT_EQ(rec.order, expected);
  EXPECT_TRUE(MemoryContextIsEmpty(root_));
  void* p = MemoryContextAlloc(root_, 10);  // the root is still usable
  EXPECT_EQ(GetMemoryChunkContext(p), root_);
}

// A wide tree (100 children with 5 grandchildren each): every callback runs
// exactly once, each grandchild's before its parent's, every child's before
// the root's.
TEST_F(TreeTest, DeleteWideTreeOrder) {
  Recorder rec;
  MemoryContext wide = AllocSetContextCreate(root_, "wide", ALLOCSET_DEFAULT_SIZES);
  rec.Register(wide, 0);
  for (int c = 1; c <= 100; ++c) {
    MemoryContext child = CreateContext(AllKinds()[c % AllKinds().size()], wide, "child");
    rec.Register(child, c * 100);
    for (int g = 1; g <= 5; ++g) {
      MemoryContext grandchild = AllocSetContextCreate(child, "grandchild", ALLOCSET_SMALL_SIZES);
      MemoryContextAlloc(grandchild, 64);
      rec.Register(grandchild, c * 100 + g);
    }
  }
  MemoryContextDelete(wide);
  ASSERT_EQ(rec.order.size(), 1u + 100 + 500);
  std::vector<int> sorted = rec.order;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "a callback ran twice";
  EXPECT_EQ(rec.order.back(), 0) << "the deleted context's own callback runs last";
  for (int c = 1; c <= 100; ++c)
    for (int g = 1; g <= 5; ++g)
      EXPECT_LT(Position(rec.order, c * 100 + g), Position(rec.order, c * 100)) << c << "/" << g;
}

// ResetOnly frees the context's own memory and runs its callbacks, but
// leaves children (and their memory and callbacks) alone.
TEST_F(TreeTest, ResetOnlyLeavesChildren) {
  Recorder rec;
  MemoryContext child = AllocSetContextCreate(root_, "child", ALLOCSET_SMALL_SIZES);
  void* in_child = MemoryContextAlloc(child, 100);
  Fill(in_child, 100, 1);
  rec.Register(child, 1);
  rec.Register(root_, 2);
  MemoryContextAlloc(root_, 100);
  MemoryContextResetOnly(root_);
  EXPECT_EQ(rec.order, (std::vector<int>{2}));
  EXPECT_EQ(MemoryContextGetParent(child), root_);
  EXPECT_TRUE(Intact(in_child, 100, 1));
  EXPECT_FALSE(MemoryContextIsEmpty(root_)) << "it still has a child";
  MemoryContextDelete(child);
  EXPECT_EQ(rec.order, (std::vector<int>{2, 1}));
}

// Reset deletes the children: their callbacks run, they are gone.
TEST_F(TreeTest, ResetDeletesChildren) {
  Recorder rec;
  MemoryContext child = AllocSetContextCreate(root_, "child", ALLOCSET_SMALL_SIZES);
  AllocSetContextCreate(child, "grandchild", ALLOCSET_SMALL_SIZES);
  rec.Register(child, 1);
  rec.Register(root_, 2);
  MemoryContextReset(root_);
  EXPECT_EQ(rec.order, (std::vector<int>{1, 2}));
  EXPECT_TRUE(MemoryContextIsEmpty(root_)) << "no children left";
}

// ResetChildren resets every descendant (children and grandchildren: their
// callbacks run, their memory goes) but deletes none and leaves the context
// itself alone.
TEST_F(TreeTest, ResetChildrenResetsDescendantsOnly) {
  Recorder rec;
  MemoryContext child = AllocSetContextCreate(root_, "child", ALLOCSET_SMALL_SIZES);
  MemoryContext grandchild = GenerationContextCreate(child, "grandchild", ALLOCSET_SMALL_SIZES);
  MemoryContextAlloc(child, 100);
  MemoryContextAlloc(grandchild, 100);
  void* in_root = MemoryContextAlloc(root_, 100);
  Fill(in_root, 100, 5);
  rec.Register(root_, 0);
  rec.Register(child, 1);
  rec.Register(grandchild, 2);
  MemoryContextResetChildren(root_);
  std::vector<int> sorted = rec.order;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int>{1, 2}));
  EXPECT_TRUE(Intact(in_root, 100, 5));
  // Nothing was deleted: the tree is intact and usable.
  EXPECT_EQ(MemoryContextGetParent(grandchild), child);
  EXPECT_EQ(MemoryContextGetParent(child), root_);
  EXPECT_TRUE(MemoryContextIsEmpty(grandchild));
  void* p = MemoryContextAlloc(grandchild, 10);
  EXPECT_EQ(GetMemoryChunkContext(p), grandchild);
  // The root's own callback is still pending; it runs at the root's reset.
  rec.order.clear();
  MemoryContextReset(root_);
  EXPECT_EQ(rec.order, (std::vector<int>{0}));
}

// DeleteChildren deletes all children and keeps the context and its memory.
TEST_F(TreeTest, DeleteChildren) {
  Recorder rec;
  void* in_root = MemoryContextAlloc(root_, 100);
  Fill(in_root, 100, 5);
  for (int i = 0; i < 10; ++i) rec.Register(AllocSetContextCreate(root_, "child", ALLOCSET_SMALL_SIZES), i);
  rec.Register(root_, 99);
  MemoryContextDeleteChildren(root_);
  EXPECT_EQ(rec.order.size(), 10u);
  EXPECT_EQ(std::find(rec.order.begin(), rec.order.end(), 99), rec.order.end());
  EXPECT_TRUE(Intact(in_root, 100, 5));
  MemoryContextReset(root_);  // runs the root's pending callback while `rec` lives
  EXPECT_EQ(rec.order.back(), 99);
}

// Deleting the current context is an ERROR; nothing changes.
TEST_F(TreeTest, DeleteCurrentContextIsAnError) {
  MemoryContext c = AllocSetContextCreate(root_, "current", ALLOCSET_SMALL_SIZES);
  void* p = MemoryContextAlloc(c, 64);
  Fill(p, 64, 1);
  MemoryContext old = MemoryContextSwitchTo(c);
  auto e = CatchError([&] { MemoryContextDelete(c); });
  EXPECT_TRUE(e.has_value());
  EXPECT_EQ(CurrentMemoryContext, c);
  EXPECT_TRUE(Intact(p, 64, 1));
  EXPECT_EQ(MemoryContextGetParent(c), root_);
  MemoryContextSwitchTo(old);
  MemoryContextDelete(c);  // fine once it is not current
}

// Deleting an ancestor of the current context is an ERROR too.
TEST_F(TreeTest, DeleteAncestorOfCurrentIsAnError) {
  MemoryContext mid = AllocSetContextCreate(root_, "mid", ALLOCSET_SMALL_SIZES);
  MemoryContext leaf = AllocSetContextCreate(mid, "leaf", ALLOCSET_SMALL_SIZES);
  MemoryContext old = MemoryContextSwitchTo(leaf);
  EXPECT_TRUE(CatchError([&] { MemoryContextDelete(mid); }).has_value());
  EXPECT_TRUE(CatchError([&] { MemoryContextDelete(root_); }).has_value());
  EXPECT_EQ(MemoryContextGetParent(leaf), mid);
  MemoryContextSwitchTo(old);
}

// Resetting (or deleting the children of) an ancestor of the current
// context would delete the current context: an ERROR, and nothing changes.
TEST_F(TreeTest, ResetOfAncestorOfCurrentIsAnError) {
  Recorder rec;
  MemoryContext child = AllocSetContextCreate(root_, "child", ALLOCSET_SMALL_SIZES);
  MemoryContext leaf = AllocSetContextCreate(child, "leaf", ALLOCSET_SMALL_SIZES);
  void* p = MemoryContextAlloc(leaf, 64);
  Fill(p, 64, 3);
  rec.Register(leaf, 1);
  MemoryContext old = MemoryContextSwitchTo(leaf);
  EXPECT_TRUE(CatchError([&] { MemoryContextReset(root_); }).has_value());
  EXPECT_TRUE(CatchError([&] { MemoryContextDeleteChildren(child); }).has_value());
  EXPECT_EQ(CurrentMemoryContext, leaf);
  EXPECT_EQ(MemoryContextGetParent(leaf), child);
  EXPECT_TRUE(Intact(p, 64, 3));
  EXPECT_TRUE(rec.order.empty()) << "no callback ran";
  MemoryContextSwitchTo(old);
  MemoryContextReset(root_);
  EXPECT_EQ(rec.order, (std::vector<int>{1}));
}

// TopMemoryContext cannot be deleted.
TEST_F(TreeTest, DeleteTopMemoryContextIsAnError) {
  EXPECT_TRUE(CatchError([] { MemoryContextDelete(TopMemoryContext); }).has_value());
  EXPECT_NE(TopMemoryContext, nullptr);
  MemoryContextAlloc(TopMemoryContext, 8);  // still works
}

// Resetting the current context is allowed (only deleting it is not).
TEST_F(TreeTest, ResetCurrentContextIsAllowed) {
  MemoryContext old = MemoryContextSwitchTo(root_);
  palloc(100);
  MemoryContextReset(root_);
  EXPECT_EQ(CurrentMemoryContext, root_);
  void* p = palloc(10);
  EXPECT_EQ(GetMemoryChunkContext(p), root_);
  MemoryContextSwitchTo(old);
}

// SetParent moves a subtree: it is deleted with its new parent, not its old one.
TEST_F(TreeTest, SetParentMovesSubtree) {
  Recorder rec;
  MemoryContext a = AllocSetContextCreate(root_, "a", ALLOCSET_SMALL_SIZES);
  MemoryContext b = AllocSetContextCreate(root_, "b", ALLOCSET_SMALL_SIZES);
  MemoryContext moved = AllocSetContextCreate(a, "moved", ALLOCSET_SMALL_SIZES);
  MemoryContext below = AllocSetContextCreate(moved, "below", ALLOCSET_SMALL_SIZES);
  rec.Register(moved, 1);
  rec.Register(below, 2);
  MemoryContextSetParent(moved, b);
  EXPECT_EQ(MemoryContextGetParent(moved), b);
  EXPECT_EQ(MemoryContextGetParent(below), moved);
  EXPECT_TRUE(MemoryContextIsDescendant(below, b));
  EXPECT_FALSE(MemoryContextIsDescendant(below, a));
  MemoryContextDelete(a);
  EXPECT_TRUE(rec.order.empty()) << "the moved subtree survives its old parent";
  MemoryContextDelete(b);
  EXPECT_EQ(rec.order, (std::vector<int>{2, 1}));
}

// SetParent to the current parent changes nothing.
TEST_F(TreeTest, SetParentToSameParent) {
  MemoryContext a = AllocSetContextCreate(root_, "a", ALLOCSET_SMALL_SIZES);
  MemoryContextSetParent(a, root_);
  EXPECT_EQ(MemoryContextGetParent(a), root_);
}

// Making a context its own child or a child of its descendant is an ERROR;
// the tree is unchanged.
TEST_F(TreeTest, SetParentCycleIsAnError) {
  MemoryContext a = AllocSetContextCreate(root_, "a", ALLOCSET_SMALL_SIZES);
  MemoryContext b = AllocSetContextCreate(a, "b", ALLOCSET_SMALL_SIZES);
  MemoryContext c = AllocSetContextCreate(b, "c", ALLOCSET_SMALL_SIZES);
  EXPECT_TRUE(CatchError([&] { MemoryContextSetParent(a, a); }).has_value());
  EXPECT_TRUE(CatchError([&] { MemoryContextSetParent(a, c); }).has_value());
  EXPECT_TRUE(CatchError([&] { MemoryContextSetParent(root_, b); }).has_value());
  EXPECT_EQ(MemoryContextGetParent(a), root_);
  EXPECT_EQ(MemoryContextGetParent(b), a);
  EXPECT_EQ(MemoryContextGetParent(c), b);
  EXPECT_EQ(MemoryContextGetParent(root_), TopMemoryContext);
}

// SetParent(nullptr) makes a context a root of its own; it then has to be
// deleted explicitly and is not deleted with its former parent.
TEST_F(TreeTest, SetParentNullMakesARoot) {
  Recorder rec;
  MemoryContext a = AllocSetContextCreate(root_, "a", ALLOCSET_SMALL_SIZES);
  rec.Register(a, 1);
  MemoryContextSetParent(a, nullptr);
  EXPECT_EQ(MemoryContextGetParent(a), nullptr);
  EXPECT_FALSE(MemoryContextIsDescendant(a, TopMemoryContext));
  MemoryContextReset(root_);
  EXPECT_TRUE(rec.order.empty());
  MemoryContextDelete(a);
  EXPECT_EQ(rec.order, (std::vector<int>{1}));
}

// Reparenting moves accounting: the old parent's subtree total drops and the
// new one's grows by exactly the moved subtree's bytes.
TEST_F(TreeTest, SetParentMovesAccounting) {
  MemoryContext a = AllocSetContextCreate(root_, "a", ALLOCSET_DEFAULT_SIZES);
  MemoryContext b = AllocSetContextCreate(root_, "b", ALLOCSET_DEFAULT_SIZES);
  MemoryContext moved = GenerationContextCreate(a, "moved", ALLOCSET_DEFAULT_SIZES);
  MemoryContext below = AllocSetContextCreate(moved, "below", ALLOCSET_DEFAULT_SIZES);
  for (int i = 0; i < 100; ++i) MemoryContextAlloc(moved, 1000);
  MemoryContextAlloc(below, 300000);
  const std::size_t subtree = MemoryContextMemAllocated(moved, true);
  const std::size_t a_before = MemoryContextMemAllocated(a, true);
  const std::size_t b_before = MemoryContextMemAllocated(b, true);
  const std::size_t root_before = MemoryContextMemAllocated(root_, true);
  EXPECT_GT(subtree, 400000u);
  MemoryContextSetParent(moved, b);
  EXPECT_EQ(MemoryContextMemAllocated(a, true), a_before - subtree);
  EXPECT_EQ(MemoryContextMemAllocated(b, true), b_before + subtree);
  EXPECT_EQ(MemoryContextMemAllocated(root_, true), root_before);
  MemoryContextSetParent(moved, nullptr);
  EXPECT_EQ(MemoryContextMemAllocated(b, true), b_before);
  EXPECT_EQ(MemoryContextMemAllocated(root_, true), root_before - subtree);
  MemoryContextDelete(moved);
}

// An identifier is attached to the context (shown in statistics).
TEST_F(TreeTest, SetIdentifier) {
  MemoryContext a = AllocSetContextCreate(root_, "CachedPlan", ALLOCSET_SMALL_SIZES);
  const char* id = MemoryContextStrdup(a, "SELECT 1");
  MemoryContextSetIdentifier(a, id);
  EXPECT_STREQ(MemoryContextGetName(a), "CachedPlan");
}

// A context created with no parent is a root; it can hold children and is
// deleted with them.
TEST_F(TreeTest, RootContextWithoutParent) {
  Recorder rec;
  MemoryContext r = AllocSetContextCreate(nullptr, "standalone", ALLOCSET_DEFAULT_SIZES);
  EXPECT_EQ(MemoryContextGetParent(r), nullptr);
  MemoryContext c = SlabContextCreate(r, "slab under root", SLAB_DEFAULT_BLOCK_SIZE, 32);
  MemoryContextAlloc(c, 32);
  rec.Register(c, 1);
  rec.Register(r, 2);
  MemoryContextDelete(r);
  EXPECT_EQ(rec.order, (std::vector<int>{1, 2}));
}

// Allocations made inside one context survive resets and deletes of unrelated
// contexts of the tree.
TEST_F(TreeTest, SiblingsAreIndependent) {
  MemoryContext a = AllocSetContextCreate(root_, "a", ALLOCSET_DEFAULT_SIZES);
  MemoryContext b = AllocSetContextCreate(root_, "b", ALLOCSET_DEFAULT_SIZES);
  std::vector<void*> ps;
  for (int i = 0; i < 100; ++i) {
    ps.push_back(MemoryContextAlloc(a, 100 + i * 50));
    Fill(ps.back(), 100 + i * 50, i);
    MemoryContextAlloc(b, 100 + i * 50);
  }
  MemoryContextReset(b);
  MemoryContextDelete(b);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(Intact(ps[i], 100 + i * 50, i));
}

}  // namespace
}  // namespace grove::test

namespace grove::test {
namespace {

// Runs `body` on a fresh thread, which has a tree of its own, so that a test
// may delete everything under TopMemoryContext without touching the main
// thread's contexts. Rethrows nothing: failures are recorded by gtest.
template <typename F>
void OnFreshThread(F body) {
  std::thread t(body);
  t.join();
}

// Deleting TopMemoryContext's children leaves ErrorContext: it lives as long
// as its thread, and reporting still works afterwards.
TEST(ErrorContextLifetimeTest, DeleteChildrenOfTopKeepsErrorContext) {
  OnFreshThread([] {
    MemoryContextInit();
    MemoryContext doomed = AllocSetContextCreate(TopMemoryContext, "doomed", ALLOCSET_SMALL_SIZES);
    (void)doomed;
    MemoryContextDeleteChildren(TopMemoryContext);
    ASSERT_NE(ErrorContext, nullptr);
    EXPECT_EQ(MemoryContextGetParent(ErrorContext), TopMemoryContext);
    const auto snapshot = mcxt::SnapshotStats(TopMemoryContext);
    ASSERT_EQ(snapshot.size(), 2u) << "TopMemoryContext and ErrorContext only";
    EXPECT_EQ(snapshot[1].name, "ErrorContext");
    MessageCapture capture;
    elog(WARNING, "still reporting");
    EXPECT_EQ(capture.CountContaining("still reporting"), 1u);
  });
}

// Resetting TopMemoryContext likewise keeps ErrorContext.
TEST(ErrorContextLifetimeTest, ResetOfTopKeepsErrorContext) {
  OnFreshThread([] {
    MemoryContextInit();
    AllocSetContextCreate(TopMemoryContext, "doomed", ALLOCSET_SMALL_SIZES);
    MemoryContextReset(TopMemoryContext);
    EXPECT_EQ(MemoryContextGetParent(ErrorContext), TopMemoryContext);
    EXPECT_THROW(ereport(ERROR, errmsg("after reset")), Error);
  });
}

// TopMemoryContext and ErrorContext cannot be moved: a move would let them
// be deleted with another subtree.
TEST(ErrorContextLifetimeTest, TopAndErrorContextCannotMove) {
  OnFreshThread([] {
    MemoryContextInit();
    MemoryContext other = AllocSetContextCreate(TopMemoryContext, "other", ALLOCSET_SMALL_SIZES);
    EXPECT_THROW(MemoryContextSetParent(ErrorContext, other), Error);
    EXPECT_THROW(MemoryContextSetParent(TopMemoryContext, other), Error);
    MemoryContextDelete(other);
  });
}

}  // namespace
}  // namespace grove::test
