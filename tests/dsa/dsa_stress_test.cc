// Several processes on one area at once: P forked children (2, 4, 8) each
// run a seeded random mix of allocations (small, medium and some large
// objects), frees and verifications, every object carrying a header (its
// owner's id, serial and size) and a pattern derived from them. Children
// also swap objects through a mailbox of atomic slots in the area, so that
// each frees objects other children allocated. At a few checkpoints all
// children stop (each tells the parent through a pipe and waits for its
// go-ahead), and the parent checks the area's invariants
// (dsa_testing::Check) in the middle of the run — caches full, objects live,
// segments grown by others. At the end the parent frees what is left in the
// mailbox; a trim must bring the area back to its initial size with nothing
// allocated, and the invariants must hold.
//
// The parent waits at a checkpoint on the pipe and on a pidfd per child, so
// that a child that fails or crashes instead of arriving ends the run (the
// others see the go pipe close and stop) rather than hanging it.
//
// The amount of work is fixed (operations per child), not a duration; the
// total is the same for every P, about two seconds in a Debug build.
#include <poll.h>
#include <sys/syscall.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dsa_area_test_support.h"
#include "grove/dsa/dsa.h"
#include "grove/dsa/dsa_testing.h"

namespace grove::test {
namespace {

constexpr int kSlots = 64;
constexpr int kTotalOperations = 800000;  // shared among the children
constexpr std::size_t kMaxLivePerChild = 400;
constexpr int kCheckpoints = 6;  // per run, at the same operation counts in every child

struct ObjectHeader {
  std::uint32_t owner;  // child id, 1…P
  std::uint32_t serial;
  std::uint64_t size;   // bytes of the whole object, header included
};
static_assert(sizeof(ObjectHeader) == 16);

std::uint64_t Word(std::uint64_t seed, std::size_t i) {
  return (seed * 0x9E3779B97F4A7C15ull) ^ (i * 0xD6E8FEB86659FD93ull);
}
std::uint64_t SeedOf(const ObjectHeader& h) { return (std::uint64_t{h.owner} << 32) | h.serial; }

void Fill(void* p, std::uint32_t owner, std::uint32_t serial, std::size_t size) {
  auto* b = static_cast<unsigned char*>(p);
  const ObjectHeader h{owner, serial, size};
  std::memcpy(b, &h, sizeof h);
  const std::uint64_t seed = SeedOf(h);
  std::size_t i = sizeof h;
  for (; i + 8 <= size; i += 8) {
    const std::uint64_t w = Word(seed, i);
    std::memcpy(b + i, &w, 8);
  }
  for (; i < size; ++i) b[i] = static_cast<unsigned char>(Word(seed, i));
}

/// Whether the object is intact; its header tells whose it is and its size.
bool Intact(const void* p, std::uint32_t max_owner, std::size_t expected_size = 0) {
  const auto* b = static_cast<const unsigned char*>(p);
  ObjectHeader h;
  std::memcpy(&h, b, sizeof h);
  if (h.owner == 0 || h.owner > max_owner || h.size < sizeof h) return false;
  if (expected_size != 0 && h.size != expected_size) return false;
  const std::uint64_t seed = SeedOf(h);
  std::size_t i = sizeof h;
  for (; i + 8 <= h.size; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, b + i, 8);
    if (w != Word(seed, i)) return false;
  }
  for (; i < h.size; ++i)
    if (b[i] != static_cast<unsigned char>(Word(seed, i))) return false;
  return true;
}

struct Tally {
  std::uint64_t allocations = 0;
  std::uint64_t foreign_frees = 0;  // objects of another child freed by this one
};

/// The checkpoint pipes: children write one byte to `arrive` and read one
/// from their own `go` pipe. Raw descriptors, because the parent polls
/// them. One go pipe per child: with a shared one, a fast child could read
/// a second byte of the same round (meant for a slower one), run past the
/// next checkpoint unchecked, and end while the parent still waits.
struct Checkpoints {
  int arrive[2] = {-1, -1};
  std::vector<std::array<int, 2>> go;
  explicit Checkpoints(int children) : go(static_cast<std::size_t>(children), std::array<int, 2>{-1, -1}) {
    if (pipe(arrive) != 0) ADD_FAILURE() << "pipe: " << std::strerror(errno);
    for (std::array<int, 2>& g : go)
      if (pipe(g.data()) != 0) ADD_FAILURE() << "pipe: " << std::strerror(errno);
  }
  ~Checkpoints() {
    Close(arrive[0]);
    Close(arrive[1]);
    for (std::array<int, 2>& g : go) {
      Close(g[0]);
      Close(g[1]);
    }
  }
  static void Close(int& fd) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
  /// In child `c` (0-based), right after fork: keeps its own go read end.
  void KeepChildEnds(int c) {
    Close(arrive[0]);
    for (std::size_t k = 0; k < go.size(); ++k) {
      Close(go[k][1]);
      if (static_cast<int>(k) != c) Close(go[k][0]);
    }
  }
  /// In the parent, once every child is forked.
  void KeepParentEnds() {
    Close(arrive[1]);
    for (std::array<int, 2>& g : go) Close(g[0]);
  }
  /// In the parent: lets every child past the checkpoint. False on error.
  bool GoAll() {
    const char g = 'g';
    for (std::array<int, 2>& p : go)
      if (write(p[1], &g, 1) != 1) return false;
    return true;
  }
  /// In the parent, after a failure: children waiting see EOF and stop.
  void CloseGo() {
    for (std::array<int, 2>& p : go) Close(p[1]);
  }
  /// In child `c`: arrive, wait for the go-ahead. False if the parent gave up.
  bool Arrive(int c) {
    const char a = 'a';
    if (write(arrive[1], &a, 1) != 1) return false;
    char g;
    ssize_t n;
    while ((n = read(go[static_cast<std::size_t>(c)][0], &g, 1)) < 0 && errno == EINTR) {
    }
    return n == 1;
  }
};

class DsaStressTest : public DsaAreaTest {
 protected:
  /// In the parent: waits until all `n` children arrived (true), or one of
  /// them ended first (false).
  static bool WaitForArrivals(Checkpoints& cp, const std::vector<int>& pidfds, int n) {
    std::vector<pollfd> fds;
    fds.push_back({cp.arrive[0], POLLIN, 0});
    for (int fd : pidfds) fds.push_back({fd, POLLIN, 0});
    int arrived = 0;
    while (arrived < n) {
      if (poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        ADD_FAILURE() << "poll: " << std::strerror(errno);
        return false;
      }
      if (fds[0].revents & POLLIN) {
        char buf[64];
        const ssize_t got = read(cp.arrive[0], buf, std::min<std::size_t>(sizeof buf, n - arrived));
        if (got > 0) arrived += static_cast<int>(got);
        continue;  // arrivals first: a child that arrived has not ended
      }
      for (std::size_t i = 1; i < fds.size(); ++i)
        if (fds[i].revents != 0) {
          ADD_FAILURE() << "a child ended before reaching the checkpoint (see its message above)";
          return false;
        }
    }
    return true;
  }

  void Run(int processes) {
    const std::vector<std::string> before = SegmentNamesOf(self_);
    area_ = dsa_create();
    const dsa_handle h = dsa_get_handle(area_);
    const std::size_t initial = dsa_get_total_size(area_);
    const dsa_pointer mailbox_dp = dsa_allocate0(area_, kSlots * sizeof(std::atomic<dsa_pointer>));
    static_assert(std::atomic<dsa_pointer>::is_always_lock_free);
    auto* mailbox = static_cast<std::atomic<dsa_pointer>*>(dsa_get_address(area_, mailbox_dp));
    for (int i = 0; i < kSlots; ++i) new (&mailbox[i]) std::atomic<dsa_pointer>(InvalidDsaPointer);
    const int ops = kTotalOperations / processes;
    const int check_every = ops / (kCheckpoints + 1);
    const auto max_owner = static_cast<std::uint32_t>(processes);

    Pipe start;   // parent -> children: closing it starts everyone
    Pipe report;  // children -> parent: their tallies
    Checkpoints cp(processes);
    std::vector<pid_t> children;
    std::vector<int> pidfds;
    for (int c = 1; c <= processes; ++c) {
      children.push_back(RunChild([&, c]() -> int {
        start.CloseWrite();
        report.CloseRead();
        cp.KeepChildEnds(c - 1);
        dsa_area* a = dsa_attach(h);
        auto* box = static_cast<std::atomic<dsa_pointer>*>(dsa_get_address(a, mailbox_dp));
        char go;
        start.Receive(&go);  // EOF: the parent has closed its end
        const auto me = static_cast<std::uint32_t>(c);
        std::mt19937_64 rng(1000 + c * 7919 + processes);
        std::vector<dsa_pointer> live;
        Tally tally;
        std::uint32_t serial = 0;
        auto random_size = [&]() -> std::size_t {
          const unsigned k = rng() % 100;
          if (k < 70) return 16 + rng() % 497;
          if (k < 96) return 513 + rng() % (8 * kKiB - 512);
          return 8 * kKiB + 1 + rng() % (120 * kKiB);
        };
        auto verify_and_free = [&](dsa_pointer dp, bool must_be_mine) -> bool {
          const auto* hdr = static_cast<const ObjectHeader*>(dsa_get_address(a, dp));
          if (!Intact(hdr, max_owner)) return false;
          if (must_be_mine && hdr->owner != me) return false;
          if (hdr->owner != me) ++tally.foreign_frees;
          dsa_free(a, dp);
          return true;
        };
        for (int op = 0; op < ops; ++op) {
          const unsigned r = rng() % 100;
          if (r < 48 && live.size() < kMaxLivePerChild) {
            const std::size_t size = random_size();
            const dsa_pointer dp = dsa_allocate(a, size);
            Fill(dsa_get_address(a, dp), me, ++serial, size);
            live.push_back(dp);
            ++tally.allocations;
          } else if (r < 85 && !live.empty()) {
            const std::size_t i = rng() % live.size();
            CHILD_REQUIRE(verify_and_free(live[i], true));
            live[i] = live.back();
            live.pop_back();
          } else if (r < 95 && !live.empty()) {
            // Post one of ours, take whatever was in the slot.
            const std::size_t i = rng() % live.size();
            const dsa_pointer mine = live[i];
            live[i] = live.back();
            live.pop_back();
            const dsa_pointer got = box[rng() % kSlots].exchange(mine, std::memory_order_acq_rel);
            if (DsaPointerIsValid(got)) CHILD_REQUIRE(verify_and_free(got, false));
          } else if (!live.empty()) {
            const dsa_pointer dp = live[rng() % live.size()];
            const auto* hdr = static_cast<const ObjectHeader*>(dsa_get_address(a, dp));
            CHILD_REQUIRE(Intact(hdr, max_owner) && hdr->owner == me);
          }
          if (op % check_every == check_every - 1 && op / check_every < kCheckpoints) {
            if (!cp.Arrive(c - 1)) {  // the parent gave up: stop quietly, it reports why
              dsa_detach(a);
              return 0;
            }
          }
        }
        for (dsa_pointer dp : live) CHILD_REQUIRE(verify_and_free(dp, true));
        dsa_detach(a);
        CHILD_REQUIRE(report.Send(tally));
        return 0;
      }));
      pidfds.push_back(static_cast<int>(syscall(SYS_pidfd_open, children.back(), 0)));
      ASSERT_GE(pidfds.back(), 0) << "pidfd_open: " << std::strerror(errno);
    }
    start.CloseWrite();
    report.CloseWrite();
    cp.KeepParentEnds();

    for (int k = 0; k < kCheckpoints; ++k) {
      if (!WaitForArrivals(cp, pidfds, processes)) break;
      // Every child is waiting: the area is quiescent.
      std::string why;
      EXPECT_TRUE(dsa_testing::Check(area_, &why)) << "checkpoint " << k << ": " << why;
      if (HasFailure()) break;
      ASSERT_TRUE(cp.GoAll()) << "write: " << std::strerror(errno);
    }
    cp.CloseGo();  // after a failure: the children waiting see EOF and stop
    Tally total;
    for (int c = 0; c < processes; ++c) {
      Tally t;
      if (!report.Receive(&t)) break;
      total.allocations += t.allocations;
      total.foreign_frees += t.foreign_frees;
    }
    for (pid_t pid : children) ExpectChildSucceeded(pid);
    for (int fd : pidfds) close(fd);
    dsm_cleanup_orphans();  // registries of children that grew the area
    ASSERT_FALSE(HasFailure());
    EXPECT_GT(total.allocations, static_cast<std::uint64_t>(kTotalOperations) / 4);
    EXPECT_GT(total.foreign_frees, 0u) << "children were meant to free each other's objects";

    std::string why;
    EXPECT_TRUE(dsa_testing::Check(area_, &why)) << why;
    for (int i = 0; i < kSlots; ++i) {
      const dsa_pointer dp = mailbox[i].exchange(InvalidDsaPointer);
      if (!DsaPointerIsValid(dp)) continue;
      ASSERT_TRUE(Intact(dsa_get_address(area_, dp), max_owner)) << "mailbox slot " << i;
      dsa_free(area_, dp);
    }
    dsa_free(area_, mailbox_dp);
    EXPECT_TRUE(dsa_testing::Check(area_, &why)) << why;
    dsa_trim(area_);
    EXPECT_EQ(dsa_get_total_size(area_), initial) << "everything freed and trimmed: the initial size again";
    const DsaStats stats = dsa_get_stats(area_);
    EXPECT_EQ(stats.segments, 1u);
    EXPECT_EQ(stats.large_objects, 0u);
    for (const DsaSizeClassStats& c : stats.classes)
      EXPECT_EQ(c.allocated, 0u) << "class of " << c.object_size << " bytes: objects lost";
    EXPECT_TRUE(dsa_testing::Check(area_, &why)) << why;
    dsa_detach(area_);
    area_ = nullptr;
    EXPECT_EQ(SegmentNamesOf(self_), before);
  }
};

TEST_F(DsaStressTest, TwoProcesses) { Run(2); }
TEST_F(DsaStressTest, FourProcesses) { Run(4); }
TEST_F(DsaStressTest, EightProcesses) { Run(8); }

}  // namespace
}  // namespace grove::test
