// The allocation API (palloc.h): CurrentMemoryContext, palloc and friends,
// argument validation, and the per-thread contexts.
#include <atomic>
#include <thread>

#include "allocator_checks.h"

namespace grove::test {
namespace {

// After initialization, CurrentMemoryContext is TopMemoryContext and palloc
// allocates there.
TEST_F(ContextTest, CurrentStartsAtTop) {
  EXPECT_EQ(CurrentMemoryContext, TopMemoryContext);
  void* p = palloc(32);
  EXPECT_EQ(GetMemoryChunkContext(p), TopMemoryContext);
  pfree(p);
}

// palloc and friends allocate in CurrentMemoryContext, whatever it is.
TEST_F(ContextTest, PallocFamilyUsesCurrent) {
  MemoryContext c = GenerationContextCreate(TopMemoryContext, "current", ALLOCSET_DEFAULT_SIZES);
  MemoryContext old = MemoryContextSwitchTo(c);
  void* ps[] = {palloc(10), palloc0(10), palloc_extended(10, 0), palloc_extended(10, MCXT_ALLOC_ZERO),
                palloc_aligned(10, 128, 0), pstrdup("x"), pnstrdup("xyz", 2), psprintf("%d", 5)};
  MemoryContextSwitchTo(old);
  for (void* p : ps) EXPECT_EQ(GetMemoryChunkContext(p), c);
  MemoryContextDelete(c);
}

// The MemoryContextAlloc* family allocates in the named context, not the current one.
TEST_F(ContextTest, MemoryContextAllocFamilyUsesNamedContext) {
  MemoryContext c = AllocSetContextCreate(TopMemoryContext, "named", ALLOCSET_SMALL_SIZES);
  void* ps[] = {MemoryContextAlloc(c, 10), MemoryContextAllocZero(c, 10), MemoryContextAllocExtended(c, 10, 0),
                MemoryContextAllocHuge(c, 10), MemoryContextAllocAligned(c, 10, 64, 0), MemoryContextStrdup(c, "s")};
  for (void* p : ps) EXPECT_EQ(GetMemoryChunkContext(p), c);
  EXPECT_EQ(CurrentMemoryContext, TopMemoryContext);
  MemoryContextDelete(c);
}

// palloc through CurrentMemoryContext marks the context as used, so that a
// reset really frees (every allocator; retention 0 so that the reset returns
// to the allocation right after creation).
TEST_F(ContextTest, PallocThenResetFrees) {
  for (Kind k : AllKinds()) {
    SCOPED_TRACE(KindName(k));
    MemoryContext c = CreateContext(k, TopMemoryContext, "palloc then reset", 48);
    MemoryContextSetRetention(c, 0);
    const std::size_t initial = MemoryContextMemAllocated(c, false);
    EXPECT_TRUE(MemoryContextIsEmpty(c));
    MemoryContext old = MemoryContextSwitchTo(c);
    for (int i = 0; i < 2000; ++i) palloc(48);
    if (KindAnySize(k)) palloc(200000);
    MemoryContextSwitchTo(old);
    EXPECT_FALSE(MemoryContextIsEmpty(c));
    EXPECT_GT(MemoryContextMemAllocated(c, false), initial);
    MemoryContextReset(c);
    EXPECT_TRUE(MemoryContextIsEmpty(c));
    EXPECT_EQ(MemoryContextMemAllocated(c, false), initial);
    MemoryContextDelete(c);
  }
}

// An alignment that is not a power of two, zero, or above 1 GiB is an ERROR.
TEST_F(ContextTest, InvalidAlignmentIsAnError) {
  MemoryContext c = AllocSetContextCreate(TopMemoryContext, "align", ALLOCSET_SMALL_SIZES);
  for (std::size_t bad : {std::size_t{0}, std::size_t{3}, std::size_t{24}, std::size_t{100},
                          std::size_t{1} << 31}) {
    EXPECT_TRUE(CatchError([&] { (void)MemoryContextAllocAligned(c, 10, bad, 0); }).has_value()) << bad;
  }
  void* p = MemoryContextAllocAligned(c, 10, std::size_t{1} << 20, 0);  // 1 MiB alignment is fine
  EXPECT_TRUE(IsAligned(p, std::size_t{1} << 20));
  MemoryContextDelete(c);
}

// Block sizes that make no sense are an ERROR at creation, not a crash.
TEST_F(ContextTest, InvalidBlockSizesAreAnError) {
  const std::size_t held = MemoryContextMemAllocated(TopMemoryContext, true);
  EXPECT_TRUE(CatchError([] { (void)AllocSetContextCreate(TopMemoryContext, "bad", 0, 100, 8192); }).has_value());
  EXPECT_TRUE(CatchError([] { (void)AllocSetContextCreate(TopMemoryContext, "bad", 0, 8192, 4096); }).has_value());
  EXPECT_TRUE(CatchError([] { (void)AllocSetContextCreate(TopMemoryContext, "bad", 0, 8193, 16384); }).has_value());
  EXPECT_TRUE(CatchError([] { (void)GenerationContextCreate(TopMemoryContext, "bad", 0, 8192, 1024); }).has_value());
  EXPECT_TRUE(CatchError([] { (void)BumpContextCreate(TopMemoryContext, "bad", 0, 0, 0); }).has_value());
  EXPECT_EQ(MemoryContextMemAllocated(TopMemoryContext, true), held) << "nothing was created";
}

// A null context name is tolerated.
TEST_F(ContextTest, NullNameIsTolerated) {
  MemoryContext c = AllocSetContextCreate(TopMemoryContext, nullptr, ALLOCSET_SMALL_SIZES);
  ASSERT_NE(MemoryContextGetName(c), nullptr);
  MemoryContextDelete(c);
}

// GetMemoryChunkSpace covers the request plus the 8-byte header, for every
// allocator that has headers.
TEST_F(ContextTest, ChunkSpaceCoversRequest) {
  for (Kind k : AllKinds()) {
    if (!KindFrees(k)) continue;
    MemoryContext c = CreateContext(k, TopMemoryContext, "space", 100);
    for (std::size_t size : {std::size_t{1}, std::size_t{100}, std::size_t{5000}, std::size_t{70000}}) {
      if (!KindAnySize(k) && size != 100) continue;
      void* p = MemoryContextAlloc(c, size);
      EXPECT_GE(GetMemoryChunkSpace(p), size + 8) << KindName(k) << " " << size;
      pfree(p);
    }
    MemoryContextDelete(c);
  }
}

// pfree of a chunk of one context while another is current works (pfree
// does not need the context).
TEST_F(ContextTest, PfreeNeedsNoContext) {
  MemoryContext a = AllocSetContextCreate(TopMemoryContext, "a", ALLOCSET_SMALL_SIZES);
  MemoryContext b = GenerationContextCreate(TopMemoryContext, "b", ALLOCSET_SMALL_SIZES);
  void* pa = MemoryContextAlloc(a, 100);
  void* pb = MemoryContextAlloc(b, 100);
  MemoryContext old = MemoryContextSwitchTo(b);
  pfree(pa);
  MemoryContextSwitchTo(a);
  pfree(pb);
  MemoryContextSwitchTo(old);
  MessageCapture capture;
  MemoryContextCheck(a);
  MemoryContextCheck(b);
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  MemoryContextDelete(a);
  MemoryContextDelete(b);
}

// repalloc keeps a chunk in its own context even when another is current.
TEST_F(ContextTest, RepallocStaysInChunkContext) {
  MemoryContext a = AllocSetContextCreate(TopMemoryContext, "a", ALLOCSET_SMALL_SIZES);
  void* p = MemoryContextAlloc(a, 100);
  Fill(p, 100, 1);
  p = repalloc(p, 100000);
  EXPECT_EQ(GetMemoryChunkContext(p), a);
  EXPECT_TRUE(Intact(p, 100, 1));
  MemoryContextDelete(a);
}

// --- threads ---------------------------------------------------------------------------

// A new thread gets its own TopMemoryContext, ErrorContext and
// CurrentMemoryContext on first use; palloc works there without any setup.
TEST_F(ContextTest, ThreadGetsItsOwnContexts) {
  MemoryContext main_top = TopMemoryContext;
  MemoryContext main_error = ErrorContext;
  MemoryContext t_top = nullptr, t_error = nullptr, t_current = nullptr, t_chunk = nullptr;
  std::thread t([&] {
    void* p = palloc(64);  // first use on this thread
    t_chunk = GetMemoryChunkContext(p);
    t_top = TopMemoryContext;
    t_error = ErrorContext;
    t_current = CurrentMemoryContext;
    pfree(p);
  });
  t.join();
  ASSERT_NE(t_top, nullptr);
  EXPECT_NE(t_top, main_top);
  EXPECT_NE(t_error, nullptr);
  EXPECT_NE(t_error, main_error);
  EXPECT_EQ(t_current, t_top);
  EXPECT_EQ(t_chunk, t_top);
  // The main thread's contexts are unchanged.
  EXPECT_EQ(TopMemoryContext, main_top);
  EXPECT_EQ(ErrorContext, main_error);
}

// Switching contexts in one thread does not change another thread's current context.
TEST_F(ContextTest, CurrentContextIsPerThread) {
  MemoryContext mine = AllocSetContextCreate(TopMemoryContext, "mine", ALLOCSET_SMALL_SIZES);
  MemoryContext old = MemoryContextSwitchTo(mine);
  bool other_is_own_top = false;
  std::thread t([&] {
    MemoryContextInit();
    other_is_own_top = CurrentMemoryContext == TopMemoryContext && CurrentMemoryContext != mine;
  });
  t.join();
  EXPECT_TRUE(other_is_own_top);
  EXPECT_EQ(CurrentMemoryContext, mine);
  MemoryContextSwitchTo(old);
  MemoryContextDelete(mine);
}

// Block hooks are per thread: refusing blocks on this thread does not affect
// another thread, and an out-of-memory ERROR in a thread is formatted in
// that thread's ErrorContext.
TEST_F(ContextTest, HooksAndErrorsArePerThread) {
  ScopedRefuseBlocks refuse;
  bool other_ok = false;
  std::string other_detail;
  std::thread t([&] {
    MemoryContext c = AllocSetContextCreate(nullptr, "thread ctx", ALLOCSET_DEFAULT_SIZES);
    void* p = MemoryContextAlloc(c, 200000);
    other_ok = p != nullptr;
    ScopedRefuseBlocks refuse_here;
    mcxt::SetDumpStatsOnOutOfMemory(false);
    auto e = CatchError([&] { MemoryContextAlloc(c, 300000); });
    if (e) other_detail = e->detail();
    MemoryContextDelete(c);
  });
  t.join();
  EXPECT_TRUE(other_ok);
  EXPECT_EQ(other_detail, "Failed on request of size 300000 in memory context \"thread ctx\".");
  EXPECT_EQ(refuse.refused, 0u) << "the other thread's blocks never went through this thread's hooks";
}

// A thread's tree is freed when the thread exits: every block it acquired
// is released (observed through hooks installed on that thread).
TEST_F(ContextTest, ThreadExitFreesItsTree) {
  static BlockCounter counter;
  counter = BlockCounter{};
  std::thread t([] {
    mcxt::BlockHooks hooks;
    hooks.on_acquire = [](std::size_t bytes, void*) {
      counter.acquired += bytes;
      return true;
    };
    hooks.on_release = [](std::size_t bytes, void*) { counter.released += bytes; };
    mcxt::SetBlockHooks(hooks);
    MemoryContextInit();  // this thread's TopMemoryContext, under the hooks
    MemoryContext c = AllocSetContextCreate(TopMemoryContext, "left behind", ALLOCSET_DEFAULT_SIZES);
    for (int i = 0; i < 1000; ++i) MemoryContextAlloc(c, 1000);
    MemoryContextAlloc(GenerationContextCreate(c, "gen", ALLOCSET_DEFAULT_SIZES), 100000);
    palloc(5000);  // in TopMemoryContext
    // The thread exits without deleting anything.
  });
  t.join();
  EXPECT_GT(counter.acquired, 1000u * 1000);
  EXPECT_EQ(counter.acquired, counter.released);
}

// A thread_local object that owns a context deletes it in its destructor.
// The thread's tree is freed after every thread_local destructor has run, so
// the context is still there to delete (no double free; ASan would see one).
struct ContextOwner {
  MemoryContext context = nullptr;
  ~ContextOwner() {
    if (context != nullptr) MemoryContextDelete(context);
  }
};

TEST_F(ContextTest, ThreadLocalOwnerDeletesItsContextAtThreadExit) {
  static BlockCounter counter;
  counter = BlockCounter{};
  std::thread t([] {
    mcxt::BlockHooks hooks;
    hooks.on_acquire = [](std::size_t bytes, void*) {
      counter.acquired += bytes;
      return true;
    };
    hooks.on_release = [](std::size_t bytes, void*) { counter.released += bytes; };
    mcxt::SetBlockHooks(hooks);
    static thread_local ContextOwner owner;  // constructed before the tree
    MemoryContextInit();
    owner.context = AllocSetContextCreate(TopMemoryContext, "owned", ALLOCSET_START_SMALL_SIZES);
    MemoryContextAlloc(owner.context, 100000);
  });
  t.join();
  EXPECT_GT(counter.acquired, 100000u);
  EXPECT_EQ(counter.acquired, counter.released);
}

// Several threads allocate, free and reset in their own contexts at the same
// time; each sees only its own memory intact.
TEST_F(ContextTest, ConcurrentThreads) {
  constexpr int kThreads = 4;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &failures] {
      MemoryContext c = CreateContext(AllKinds()[static_cast<std::size_t>(t) % 4], TopMemoryContext, "concurrent");
      std::vector<std::pair<void*, std::size_t>> live;
      uint64_t x = static_cast<uint64_t>(t) + 1;
      for (int i = 0; i < 20000; ++i) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        const std::size_t size = 1 + (x >> 40) % 2000;
        void* p = MemoryContextAlloc(c, size);
        Fill(p, size, reinterpret_cast<uintptr_t>(p));
        live.emplace_back(p, size);
        if (live.size() > 500) {
          auto [q, n] = live.front();
          if (FirstMismatch(q, n, reinterpret_cast<uintptr_t>(q))) ++failures;
          pfree(q);
          live.erase(live.begin());
        }
        if (i % 5000 == 4999) {
          MemoryContextReset(c);
          live.clear();
        }
      }
      MemoryContextDelete(c);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace grove::test
