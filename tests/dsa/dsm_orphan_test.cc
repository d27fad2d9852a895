// Nothing stays in /dev/shm when a process goes:
// * a process killed (SIGKILL) leaves its segments and registry, which
//   dsm_cleanup_orphans() in another process removes — and counts;
// * a process's first DSM call does that cleanup by itself;
// * the cleanup spares the segments of processes that are alive;
// * a process that exits normally removes its segments' names itself, while
//   the processes still attached keep their mappings.
//
// This binary runs serially (RUN_SERIAL in CMakeLists.txt): any grove
// process starting meanwhile would clean up after the children these cases
// kill before the cases look. Killed children are kept as zombies (waitid
// WNOWAIT) while the case looks at names carrying their pids, so that a pid
// cannot be reused meanwhile; the library counts a zombie as dead.
#include <string>
#include <vector>

#include "dsa_test_support.h"

namespace grove::test {
namespace {

using DsmOrphanTest = DsmTest;

/// What a child that makes orphans reports: how many segments it created.
struct Made {
  int segments = 0;
  int pinned = 0;
};

/// Child body: creates `n` segments with data, pins every other one and
/// detaches it (so that it exists with no attachment), keeps the rest
/// attached, and reports what it made. Then, if `die` is set, raises SIGKILL
/// itself; otherwise waits on `hold` until killed (or until the parent goes).
int MakeOrphansAndDie(int n, Pipe& report, Pipe& hold, bool die) {
  report.CloseRead();
  hold.CloseWrite();
  Made made;
  const std::size_t had = dsm_created_segment_count();
  for (int i = 0; i < n; ++i) {
    dsm_segment* seg = dsm_create(64 * 1024);
    FillPattern(dsm_segment_address(seg), 64 * 1024, static_cast<unsigned>(i));
    if (i % 2 == 0) {
      dsm_pin_segment(seg);
      dsm_detach(seg);
      ++made.pinned;
    }
    ++made.segments;
  }
  CHILD_REQUIRE(dsm_created_segment_count() == had + static_cast<std::size_t>(n));
  CHILD_REQUIRE(report.Send(made));
  if (die) raise(SIGKILL);
  char c;
  hold.Receive(&c);  // only EOF ends this (the parent kills us first)
  return 1;
}

// A child creates five segments (three pinned and detached, two attached)
// and is killed with SIGKILL: its five segments and its registry are still
// in /dev/shm. dsm_cleanup_orphans() in the parent returns at least five and
// afterwards no name of the child's remains, registry included.
TEST_F(DsmOrphanTest, KilledChildsSegmentsAreRemovedByCleanup) {
  InitializeDsm();  // the parent's own first-call cleanup is over
  Pipe report, hold;
  const pid_t child = RunChild([&] { return MakeOrphansAndDie(5, report, hold, /*die=*/false); });
  report.CloseWrite();
  hold.CloseRead();
  Made made;
  ASSERT_TRUE(report.Receive(&made)) << "the child did not report";
  ASSERT_EQ(made.segments, 5);
  ASSERT_EQ(made.pinned, 3);
  ASSERT_EQ(kill(child, SIGKILL), 0);
  const int status = WaitZombie(child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << DescribeStatus(status);

  const std::vector<std::string> left = SegmentNamesOf(child);
  EXPECT_EQ(left.size(), 5u) << "a killed process cannot clean up: " << Join(left);
  EXPECT_TRUE(ShmNameExists(ControlNameOf(child))) << "the killed child's registry should be there";
  const std::size_t removed = dsm_cleanup_orphans();
  EXPECT_GE(removed, left.size());
  EXPECT_TRUE(GroveNamesOf(child).empty()) << "left after cleanup: " << Join(GroveNamesOf(child));
  Reap(child);
}

// The same when the child kills itself (raise(SIGKILL)) right after saying
// it is ready.
TEST_F(DsmOrphanTest, SelfKilledChildsSegmentsAreRemovedByCleanup) {
  InitializeDsm();
  Pipe report, hold;
  const pid_t child = RunChild([&] { return MakeOrphansAndDie(4, report, hold, /*die=*/true); });
  report.CloseWrite();
  hold.CloseRead();
  Made made;
  ASSERT_TRUE(report.Receive(&made));
  const int status = WaitZombie(child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << DescribeStatus(status);
  const std::vector<std::string> left = SegmentNamesOf(child);
  EXPECT_EQ(left.size(), 4u) << Join(left);
  EXPECT_GE(dsm_cleanup_orphans(), left.size());
  EXPECT_TRUE(GroveNamesOf(child).empty()) << Join(GroveNamesOf(child));
  Reap(child);
}

// A second cleanup finds nothing more of the child's to remove.
TEST_F(DsmOrphanTest, CleanupIsIdempotent) {
  InitializeDsm();
  Pipe report, hold;
  const pid_t child = RunChild([&] { return MakeOrphansAndDie(2, report, hold, /*die=*/true); });
  report.CloseWrite();
  hold.CloseRead();
  Made made;
  ASSERT_TRUE(report.Receive(&made));
  WaitZombie(child);
  EXPECT_GE(dsm_cleanup_orphans(), 2u);
  EXPECT_TRUE(GroveNamesOf(child).empty());
  EXPECT_EQ(dsm_cleanup_orphans(), 0u) << "nothing of any dead process should be left to remove";
  Reap(child);
}

// The cleanup spares living processes: while a child that created segments
// is alive, dsm_cleanup_orphans() in the parent leaves every name of the
// child's, and the child still uses them. Then the child detaches and ends
// (_exit: its registry stays), and the cleanup removes the registry.
TEST_F(DsmOrphanTest, CleanupSparesLiveProcesses) {
  InitializeDsm();
  Pipe ready, go, result;
  const pid_t child = RunChild([&] {
    ready.CloseRead();
    go.CloseWrite();
    result.CloseRead();
    dsm_segment* a = dsm_create(4096);
    dsm_segment* b = dsm_create(4096);
    FillPattern(dsm_segment_address(a), 4096, 20);
    dsm_pin_segment(b);
    const dsm_handle hb = dsm_segment_handle(b);
    dsm_detach(b);
    CHILD_REQUIRE(ready.Send('r'));
    char c;
    CHILD_REQUIRE(go.Receive(&c));
    // After the parent's cleanup: both still there and usable.
    const char ok = HasPattern(dsm_segment_address(a), 4096, 20) && dsm_created_segment_count() == 2 ? 1 : 0;
    dsm_segment* b2 = dsm_attach(hb);
    dsm_unpin_segment(hb);
    dsm_detach(b2);
    dsm_detach(a);
    CHILD_REQUIRE(result.Send(ok));
    CHILD_REQUIRE(dsm_created_segment_count() == 0);
    return 0;
  });
  ready.CloseWrite();
  go.CloseRead();
  result.CloseWrite();
  char c = 0;
  ASSERT_TRUE(ready.Receive(&c));
  const std::vector<std::string> before = GroveNamesOf(child);
  EXPECT_EQ(before.size(), 3u) << "two segments and the registry: " << Join(before);
  dsm_cleanup_orphans();
  EXPECT_EQ(GroveNamesOf(child), before) << "the cleanup must not touch a living process's segments";
  ASSERT_TRUE(go.Send('g'));
  char ok = 0;
  EXPECT_TRUE(result.Receive(&ok));
  EXPECT_EQ(ok, 1);
  ExpectChildSucceeded(child);
  EXPECT_TRUE(SegmentNamesOf(child).empty()) << "the child detached and unpinned everything";
  dsm_cleanup_orphans();  // the _exit()ed child's registry
  EXPECT_TRUE(GroveNamesOf(child).empty()) << Join(GroveNamesOf(child));
}

// A process's first DSM call cleans up by itself: a child killed leaves
// segments; a second child (a new process: its first DSM call is a
// dsm_create) finds none of them left after that call.
TEST_F(DsmOrphanTest, FirstDsmCallOfAProcessCleansUp) {
  InitializeDsm();
  Pipe report, hold;
  const pid_t victim = RunChild([&] { return MakeOrphansAndDie(3, report, hold, /*die=*/true); });
  report.CloseWrite();
  hold.CloseRead();
  Made made;
  ASSERT_TRUE(report.Receive(&made));
  WaitZombie(victim);
  ASSERT_EQ(SegmentNamesOf(victim).size(), 3u);

  const pid_t cleaner = RunChild([victim] {
    dsm_segment* seg = dsm_create(64);  // this process's first DSM call
    const bool clean = GroveNamesOf(victim).empty();
    dsm_detach(seg);
    CHILD_REQUIRE(clean);
    return 0;
  });
  ExpectChildSucceeded(cleaner);
  EXPECT_TRUE(GroveNamesOf(victim).empty()) << Join(GroveNamesOf(victim));
  dsm_cleanup_orphans();  // the _exit()ed cleaner's registry
  Reap(victim);
}

// A worker-like child initializes without the first-call cleanup: a dead
// process's segments are left to others (its leader cleaned up at start),
// and an explicit dsm_cleanup_orphans() still removes them.
TEST_F(DsmOrphanTest, InitializeWithoutCleanupLeavesOrphansForAnExplicitCleanup) {
  InitializeDsm();
  Pipe report, hold;
  const pid_t victim = RunChild([&] { return MakeOrphansAndDie(2, report, hold, /*die=*/true); });
  report.CloseWrite();
  hold.CloseRead();
  Made made;
  ASSERT_TRUE(report.Receive(&made));
  WaitZombie(victim);
  ASSERT_EQ(SegmentNamesOf(victim).size(), 2u);

  const pid_t worker = RunChild([victim] {
    dsm_initialize_without_cleanup();
    dsm_segment* seg = dsm_create(64);  // initialized already: no cleanup now either
    const bool left = SegmentNamesOf(victim).size() == 2u;
    dsm_detach(seg);
    CHILD_REQUIRE(left);
    CHILD_REQUIRE(dsm_cleanup_orphans() >= 2u);
    CHILD_REQUIRE(GroveNamesOf(victim).empty());
    return 0;
  });
  ExpectChildSucceeded(worker);
  dsm_cleanup_orphans();  // the _exit()ed worker's registry
  Reap(victim);
}

// dsm_cleanup_orphans() as a process's very first DSM call returns how many
// segments it removed, like any other call: the automatic cleanup of the
// first call must not swallow the count. (A new process, the child
// "counter", asks; a killed child left three segments.)
TEST_F(DsmOrphanTest, CleanupAsFirstDsmCallReportsWhatItRemoved) {
  InitializeDsm();
  Pipe report, hold;
  const pid_t victim = RunChild([&] { return MakeOrphansAndDie(3, report, hold, /*die=*/true); });
  report.CloseWrite();
  hold.CloseRead();
  Made made;
  ASSERT_TRUE(report.Receive(&made));
  WaitZombie(victim);
  ASSERT_EQ(SegmentNamesOf(victim).size(), 3u);

  Pipe count;
  const pid_t counter = RunChild([&] {
    count.CloseRead();
    const std::size_t removed = dsm_cleanup_orphans();  // this process's first DSM call
    CHILD_REQUIRE(count.Send(removed));
    return 0;
  });
  count.CloseWrite();
  std::size_t removed = 0;
  EXPECT_TRUE(count.Receive(&removed));
  ExpectChildSucceeded(counter);
  EXPECT_TRUE(GroveNamesOf(victim).empty()) << Join(GroveNamesOf(victim));
  EXPECT_GE(removed, 3u) << "the first call removed the victim's three segments but reported " << removed;
  Reap(victim);
}

// A stray "grove.<pid>.*" name of a dead pid with no registry (a process
// killed before it wrote one) is removed too.
TEST_F(DsmOrphanTest, StrayNameOfADeadPidIsRemoved) {
  InitializeDsm();
  const pid_t child = RunChild([] { return 0; });
  WaitZombie(child);
  const std::string stray = PidPrefix(child) + "5eed";
  const int fd = shm_open(("/" + stray).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  close(fd);
  ASSERT_TRUE(ShmNameExists(stray));
  EXPECT_GE(dsm_cleanup_orphans(), 1u);
  EXPECT_FALSE(ShmNameExists(stray));
  Reap(child);
}

// A process that exits normally (std::exit) removes the names of the
// segments it created — attached, detached-but-pinned alike — and its
// registry: nothing of the child's is left, without any cleanup by another
// process.
//
// The child calls std::exit(0) on purpose, the one child that does: the
// header promises cleanup at normal exit, and that runs in atexit handlers.
// It is safe here: stdio was flushed before the fork, gtest has no atexit
// handler or static destructor that writes results, and the exit-time sweep
// of this suite does nothing in a child.
TEST_F(DsmOrphanTest, NormalExitRemovesEverything) {
  InitializeDsm();
  const pid_t child = RunChild([] {
    dsm_segment* a = dsm_create(4096);
    dsm_segment* b = dsm_create(1 << 20);
    dsm_pin_segment(b);
    dsm_detach(b);
    dsm_segment* c = dsm_create(100);
    dsm_pin_segment(c);  // pinned and still attached
    (void)a;
    CHILD_REQUIRE(dsm_created_segment_count() == 3);
    std::fflush(nullptr);
    std::exit(0);
    return 1;
  });
  const int status = WaitZombie(child);
  EXPECT_TRUE(ExitedZero(status)) << DescribeStatus(status);
  EXPECT_TRUE(GroveNamesOf(child).empty()) << "a normal exit must remove them: " << Join(GroveNamesOf(child));
  Reap(child);
}

// A normal exit removes the names, but a process still attached keeps its
// mapping: the parent attached a child's segment, the child exits normally,
// the parent still reads and writes it, and its detach leaves nothing.
TEST_F(DsmOrphanTest, NormalExitKeepsOtherProcessesMappings) {
  InitializeDsm();
  Pipe handle_pipe, go;
  const pid_t child = RunChild([&] {
    handle_pipe.CloseRead();
    go.CloseWrite();
    dsm_segment* seg = dsm_create(16384);
    FillPattern(dsm_segment_address(seg), 16384, 21);
    CHILD_REQUIRE(handle_pipe.Send(dsm_segment_handle(seg)));
    char c;
    CHILD_REQUIRE(go.Receive(&c));
    std::fflush(nullptr);
    std::exit(0);  // see NormalExitRemovesEverything
    return 1;
  });
  handle_pipe.CloseWrite();
  go.CloseRead();
  dsm_handle h = DSM_HANDLE_INVALID;
  ASSERT_TRUE(handle_pipe.Receive(&h));
  dsm_segment* seg = Attach(h);
  ASSERT_TRUE(go.Send('x'));
  const int status = WaitZombie(child);
  EXPECT_TRUE(ExitedZero(status)) << DescribeStatus(status);
  EXPECT_TRUE(GroveNamesOf(child).empty()) << "a normal exit removes the names: " << Join(GroveNamesOf(child));
  EXPECT_TRUE(HasPattern(dsm_segment_address(seg), 16384, 21)) << "the parent's mapping must survive";
  FillPattern(dsm_segment_address(seg), 16384, 22);
  EXPECT_TRUE(HasPattern(dsm_segment_address(seg), 16384, 22));
  dsm_detach(seg);
  EXPECT_TRUE(GroveNamesOf(child).empty());
  Reap(child);
}

// A child that ends with _exit() runs no atexit handler: for the library it
// died without exiting. Whatever it left is removed by dsm_cleanup_orphans
// once it is gone, pinned segments included.
TEST_F(DsmOrphanTest, UnderscoreExitIsCleanedUpByCleanup) {
  InitializeDsm();
  const pid_t child = RunChild([] {
    dsm_segment* a = dsm_create(4096);
    dsm_pin_segment(a);
    dsm_detach(a);
    dsm_create(4096);
    return 0;  // RunChild _exit()s
  });
  const int status = WaitZombie(child);
  EXPECT_TRUE(ExitedZero(status)) << DescribeStatus(status);
  dsm_cleanup_orphans();
  EXPECT_TRUE(GroveNamesOf(child).empty()) << Join(GroveNamesOf(child));
  Reap(child);
}

// Segments of a killed process that the parent has attached: the cleanup
// removes their names, the parent's mapping stays valid, and the parent's
// detach is harmless.
TEST_F(DsmOrphanTest, CleanupWhileAttachedKeepsTheMapping) {
  InitializeDsm();
  Pipe report, hold;
  Pipe handle_pipe;
  const pid_t child = RunChild([&] {
    handle_pipe.CloseRead();
    dsm_segment* seg = dsm_create(8192);
    FillPattern(dsm_segment_address(seg), 8192, 23);
    CHILD_REQUIRE(handle_pipe.Send(dsm_segment_handle(seg)));
    return MakeOrphansAndDie(0, report, hold, /*die=*/false);
  });
  handle_pipe.CloseWrite();
  report.CloseWrite();
  hold.CloseRead();
  dsm_handle h = DSM_HANDLE_INVALID;
  ASSERT_TRUE(handle_pipe.Receive(&h));
  Made made;
  ASSERT_TRUE(report.Receive(&made));
  dsm_segment* seg = Attach(h);
  ASSERT_EQ(kill(child, SIGKILL), 0);
  WaitZombie(child);
  EXPECT_GE(dsm_cleanup_orphans(), 1u);
  EXPECT_TRUE(GroveNamesOf(child).empty()) << Join(GroveNamesOf(child));
  EXPECT_TRUE(HasPattern(dsm_segment_address(seg), 8192, 23)) << "the mapping outlives the name";
  dsm_detach(seg);
  Reap(child);
}

}  // namespace
}  // namespace grove::test
