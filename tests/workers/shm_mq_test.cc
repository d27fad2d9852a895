// shm_mq: messages of every size between two processes (0 bytes to four
// times the ring, checked byte for byte), the ring wrapping many times, a
// million messages, nowait sends and receives, sendv, detach in the middle
// of a message, a peer killed while the other side blocks, a peer that never
// attaches, two threads of one process, a cancel, the segment or the memory
// context going away, and every misuse that must be an ERROR.
//
// Queues live in anonymous shared memory (inherited by forked children at
// the same address) unless a case is about DSM segments. Children send or
// receive and report through their exit status (CHILD_REQUIRE); pipes order
// the steps of the cases that need an order — never sleeps.
#include <signal.h>
#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "dsa_test_support.h"
#include "grove/base/interrupts.h"
#include "grove/contexts/context_switch.h"
#include "grove/workers/shm_mq.h"

namespace grove::test {
namespace {

constexpr std::size_t kQueueBytes = 4096;
constexpr std::size_t kRing = kQueueBytes - kShmMqHeaderSize;  // 3712, not a power of two

class ShmMqTest : public DsmTest {
 protected:
  void TearDown() override {
    DsmTest::TearDown();  // children are gone first: then the memory can go
    for (auto [p, n] : maps_) munmap(p, n);
    maps_.clear();
  }

  /// A queue of `size` bytes in shared memory that forked children see at
  /// the same address.
  shm_mq* MakeQueue(std::size_t size = kQueueBytes) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      ADD_FAILURE() << "mmap: " << std::strerror(errno);
      return nullptr;
    }
    maps_.emplace_back(p, size);
    return shm_mq_create(p, size);
  }

  static char* RingOf(shm_mq* mq) { return reinterpret_cast<char*>(mq) + kShmMqHeaderSize; }

 private:
  std::vector<std::pair<void*, std::size_t>> maps_;
};

/// Receives one message and checks its size and bytes (pattern `seed`).
::testing::AssertionResult ReceiveChecked(shm_mq_handle* h, std::size_t size, unsigned seed) {
  std::size_t n = 0;
  void* data = nullptr;
  const shm_mq_result r = shm_mq_receive(h, &n, &data, false);
  if (r != SHM_MQ_SUCCESS) return ::testing::AssertionFailure() << "result " << r << " for message " << seed;
  if (n != size) return ::testing::AssertionFailure() << "message " << seed << ": " << n << " bytes, expected " << size;
  if (!HasPattern(data, n, seed)) return ::testing::AssertionFailure() << "message " << seed << ": wrong bytes";
  return ::testing::AssertionSuccess();
}

/// In a child: names itself the sender, attaches, sends message i of
/// sizes[i % sizes.size()] bytes with pattern i, for i < count; detaches.
int SendSeries(shm_mq* mq, const std::vector<std::size_t>& sizes, std::size_t count, bool alternate_flush = false) {
  shm_mq_set_sender(mq);
  shm_mq_handle* h = shm_mq_attach(mq, nullptr);
  std::vector<char> buf;
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t n = sizes[i % sizes.size()];
    buf.resize(std::max<std::size_t>(n, 1));
    FillPattern(buf.data(), n, static_cast<unsigned>(i));
    CHILD_REQUIRE(shm_mq_send(h, n, buf.data(), false, !alternate_flush || i % 2 == 0) == SHM_MQ_SUCCESS);
  }
  shm_mq_detach(h);
  return 0;
}

// --- misuse ---------------------------------------------------------------------------------------------

// A null or misaligned address and a size below the minimum are ERRORs, as
// is attaching to memory that holds no queue. The minimum itself works.
TEST_F(ShmMqTest, CreateRejectsBadArguments) {
  alignas(16) static char space[1024];
  auto null_err = CatchError([] { shm_mq_create(nullptr, 1024); });
  ASSERT_TRUE(null_err.has_value());
  auto misaligned = CatchError([] { shm_mq_create(space + 4, 1000); });
  ASSERT_TRUE(misaligned.has_value());
  EXPECT_TRUE(Contains(misaligned->message(), "aligned")) << misaligned->Format();
  auto small = CatchError([] { shm_mq_create(space, shm_mq_minimum_size - 1); });
  ASSERT_TRUE(small.has_value());
  EXPECT_TRUE(Contains(small->message(), "too small")) << small->Format();
  shm_mq* mq = shm_mq_create(space, shm_mq_minimum_size + 7);  // the odd bytes are dropped
  EXPECT_EQ(shm_mq_get_ring_size(mq), 8u);
  alignas(8) static char zeros[1024];
  auto not_a_queue = CatchError([] { shm_mq_attach(reinterpret_cast<shm_mq*>(zeros), nullptr); });
  ASSERT_TRUE(not_a_queue.has_value());
  EXPECT_TRUE(Contains(not_a_queue->message(), "not a shared memory queue")) << not_a_queue->Format();
}

// A second sender or receiver; attaching from a thread that is neither side,
// from one that is both, or twice as the same side: all ERRORs.
TEST_F(ShmMqTest, SidesAreNamedOnceAndAttachedOnce) {
  shm_mq* mq = MakeQueue();
  EXPECT_EQ(shm_mq_get_sender(mq), 0);
  auto neither = CatchError([&] { shm_mq_attach(mq, nullptr); });
  ASSERT_TRUE(neither.has_value());
  EXPECT_TRUE(Contains(neither->message(), "neither the sender nor the receiver")) << neither->Format();

  shm_mq_set_sender(mq);
  EXPECT_EQ(shm_mq_get_sender(mq), getpid());
  auto second = CatchError([&] { shm_mq_set_sender(mq, 12345); });
  ASSERT_TRUE(second.has_value());
  EXPECT_TRUE(Contains(second->message(), "already has a sender")) << second->Format();

  shm_mq_set_receiver(mq);  // the same thread: attach cannot tell which end it wants
  auto both = CatchError([&] { shm_mq_attach(mq, nullptr); });
  ASSERT_TRUE(both.has_value());
  EXPECT_TRUE(Contains(both->message(), "both the sender and the receiver")) << both->Format();
  EXPECT_TRUE(CatchError([&] { shm_mq_set_receiver(mq); }).has_value()) << "a second receiver";

  // Sides named per thread: another thread of this process is neither.
  shm_mq* mq2 = MakeQueue();
  shm_mq_set_receiver(mq2);
  std::optional<Error> other_thread;
  std::thread([&] { other_thread = CatchError([&] { shm_mq_attach(mq2, nullptr); }); }).join();
  EXPECT_TRUE(other_thread.has_value()) << "a thread that was not named attached";
  shm_mq_handle* r = shm_mq_attach(mq2, nullptr);
  auto twice = CatchError([&] { shm_mq_attach(mq2, nullptr); });
  ASSERT_TRUE(twice.has_value());
  EXPECT_TRUE(Contains(twice->message(), "already has an attached receiver")) << twice->Format();
  shm_mq_detach(r);
}

// The wrong end, any use after shm_mq_detach, a second detach, a handle
// inherited through fork(), a resumed send with another message: ERRORs,
// never a crash.
TEST_F(ShmMqTest, MisuseOfHandlesIsAnError) {
  shm_mq* mq = MakeQueue();
  shm_mq_set_receiver(mq);
  shm_mq_handle* r = shm_mq_attach(mq, nullptr);
  auto wrong_end = CatchError([&] { shm_mq_send(r, 3, "abc", true); });
  ASSERT_TRUE(wrong_end.has_value());
  EXPECT_TRUE(Contains(wrong_end->message(), "not its sender")) << wrong_end->Format();

  const pid_t child = RunChild([&] {
    auto err = CatchError([&] { shm_mq_wait_for_attach(r); });
    CHILD_REQUIRE(err.has_value() && Contains(err->message(), "fork"));
    return 0;
  });
  ExpectChildSucceeded(child);

  shm_mq_detach(r);
  std::size_t n;
  void* d;
  auto after = CatchError([&] { shm_mq_receive(r, &n, &d, true); });
  ASSERT_TRUE(after.has_value());
  EXPECT_TRUE(Contains(after->message(), "after shm_mq_detach")) << after->Format();
  auto again = CatchError([&] { shm_mq_detach(r); });
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(Contains(again->message(), "already detached")) << again->Format();
  EXPECT_TRUE(CatchError([&] { shm_mq_detach(nullptr); }).has_value());

  // A send cut short by WOULD_BLOCK must be resumed with the same message.
  shm_mq* mq2 = MakeQueue();
  shm_mq_set_sender(mq2);
  shm_mq_handle* s = shm_mq_attach(mq2, nullptr);
  std::vector<char> big(2 * kRing, 'x');
  ASSERT_EQ(shm_mq_send(s, big.size(), big.data(), true), SHM_MQ_WOULD_BLOCK);
  auto other = CatchError([&] { shm_mq_send(s, 10, big.data(), true); });
  ASSERT_TRUE(other.has_value());
  EXPECT_TRUE(Contains(other->message(), "partly sent")) << other->Format();
  shm_mq_detach(s);
}

// --- data -------------------------------------------------------------------------------------------------

// Every size around the interesting boundaries — 0, the 8-byte word, the
// ring size, up to four rings — from a child, twice over (so that each
// starts at another ring offset), byte for byte; then DETACHED.
TEST_F(ShmMqTest, MessagesFromZeroBytesToFourRings) {
  const std::vector<std::size_t> sizes = {0,         1,         2,         7,        8,        9,     15,
                                          16,        17,        100,       1000,     kRing - 16, kRing - 9,
                                          kRing - 8, kRing - 1, kRing,     kRing + 1, 2 * kRing, 3 * kRing + 5,
                                          4 * kRing};
  shm_mq* mq = MakeQueue();
  shm_mq_set_receiver(mq);
  shm_mq_handle* r = shm_mq_attach(mq, nullptr);
  const pid_t child = RunChild([&] { return SendSeries(mq, sizes, 2 * sizes.size()); });
  for (std::size_t i = 0; i < 2 * sizes.size(); ++i)
    ASSERT_TRUE(ReceiveChecked(r, sizes[i % sizes.size()], static_cast<unsigned>(i)));
  std::size_t n;
  void* d;
  EXPECT_EQ(shm_mq_receive(r, &n, &d, false), SHM_MQ_DETACHED);
  EXPECT_EQ(shm_mq_receive(r, &n, &d, true), SHM_MQ_DETACHED) << "detached stays detached";
  shm_mq_detach(r);
  ExpectChildSucceeded(child);
}

// 200,000 messages of 0 to 300 bytes through a 1000-byte ring (not a power
// of two): the ring wraps tens of thousands of times, at every offset.
TEST_F(ShmMqTest, RingWrapsManyTimes) {
  std::vector<std::size_t> sizes;
  for (std::size_t i = 0; i < 301; i += 13) sizes.push_back(i);
  constexpr std::size_t kCount = 200000;
  shm_mq* mq = MakeQueue(kShmMqHeaderSize + 1000);
  shm_mq_set_receiver(mq);
  shm_mq_handle* r = shm_mq_attach(mq, nullptr);
  const pid_t child = RunChild([&] { return SendSeries(mq, sizes, kCount, /*alternate_flush=*/true); });
  for (std::size_t i = 0; i < kCount; ++i)
    ASSERT_TRUE(ReceiveChecked(r, sizes[i % sizes.size()], static_cast<unsigned>(i)));
  std::size_t n;
  void* d;
  EXPECT_EQ(shm_mq_receive(r, &n, &d, false), SHM_MQ_DETACHED);
  shm_mq_detach(r);
  ExpectChildSucceeded(child);
}

// A million small messages between two processes, each carrying its
// sequence number and a checksum of the rest; the other direction too
// (parent sends, child checks).
TEST_F(ShmMqTest, AMillionMessagesWithChecksums) {
  constexpr std::uint64_t kCount = 1000000;
  auto make = [](std::uint64_t i, char* out) -> std::size_t {  // 24 to 63 bytes: seq, body, checksum
    const std::size_t n = 24 + i % 40;
    std::memcpy(out, &i, 8);
    std::uint64_t sum = i;
    for (std::size_t k = 8; k < n - 8; ++k) {
      out[k] = static_cast<char>(i * 31 + k);
      sum = sum * 131 + static_cast<unsigned char>(out[k]);
    }
    std::memcpy(out + n - 8, &sum, 8);
    return n;
  };
  auto check = [&](std::uint64_t i, const void* data, std::size_t n) {
    char expect[64];
    const std::size_t m = make(i, expect);
    return n == m && std::memcmp(data, expect, n) == 0;
  };
  for (bool parent_sends : {false, true}) {
    SCOPED_TRACE(parent_sends ? "parent sends" : "child sends");
    shm_mq* mq = MakeQueue(64 * 1024);
    const pid_t child = RunChild([&] {
      if (parent_sends) {
        shm_mq_set_receiver(mq);
        shm_mq_handle* h = shm_mq_attach(mq, nullptr);
        for (std::uint64_t i = 0; i < kCount; ++i) {
          std::size_t n;
          void* d;
          CHILD_REQUIRE(shm_mq_receive(h, &n, &d, false) == SHM_MQ_SUCCESS);
          CHILD_REQUIRE(check(i, d, n));
        }
        std::size_t n;
        void* d;
        CHILD_REQUIRE(shm_mq_receive(h, &n, &d, false) == SHM_MQ_DETACHED);
        shm_mq_detach(h);
      } else {
        shm_mq_set_sender(mq);
        shm_mq_handle* h = shm_mq_attach(mq, nullptr);
        char buf[64];
        for (std::uint64_t i = 0; i < kCount; ++i) CHILD_REQUIRE(shm_mq_send(h, make(i, buf), buf, false) == SHM_MQ_SUCCESS);
        shm_mq_detach(h);
      }
      return 0;
    });
    if (parent_sends) {
      shm_mq_set_sender(mq);
      shm_mq_handle* h = shm_mq_attach(mq, nullptr);
      char buf[64];
      for (std::uint64_t i = 0; i < kCount; ++i) ASSERT_EQ(shm_mq_send(h, make(i, buf), buf, false, i % 3 == 0), SHM_MQ_SUCCESS);
      shm_mq_detach(h);
    } else {
      shm_mq_set_receiver(mq);
      shm_mq_handle* h = shm_mq_attach(mq, nullptr);
      for (std::uint64_t i = 0; i < kCount; ++i) {
        std::size_t n;
        void* d;
        ASSERT_EQ(shm_mq_receive(h, &n, &d, false), SHM_MQ_SUCCESS) << "message " << i;
        ASSERT_TRUE(check(i, d, n)) << "message " << i;
      }
      std::size_t n;
      void* d;
      EXPECT_EQ(shm_mq_receive(h, &n, &d, false), SHM_MQ_DETACHED);
      shm_mq_detach(h);
    }
    ExpectChildSucceeded(child);
  }
}

// A message that lies in the ring in one piece is returned in place (no
// copy); one that wraps or is longer than the ring, from the handle's buffer.
TEST_F(ShmMqTest, ContiguousMessagesAreNotCopied) {
  shm_mq* mq = MakeQueue();
  shm_mq_set_receiver(mq);
  shm_mq_handle* r = shm_mq_attach(mq, nullptr);
  const std::vector<std::size_t> sizes = {100, kRing - 100, 4 * kRing};  // the second wraps
  const pid_t child = RunChild([&] { return SendSeries(mq, sizes, 3); });
  const char* ring = RingOf(mq);
  for (std::size_t i = 0; i < 3; ++i) {
    std::size_t n;
    void* d;
    ASSERT_EQ(shm_mq_receive(r, &n, &d, false), SHM_MQ_SUCCESS);
    ASSERT_EQ(n, sizes[i]);
    EXPECT_TRUE(HasPattern(d, n, static_cast<unsigned>(i)));
    const bool in_ring = static_cast<char*>(d) >= ring && static_cast<char*>(d) < ring + kRing;
    EXPECT_EQ(in_ring, i == 0) << "message " << i;
  }
  shm_mq_detach(r);
  ExpectChildSucceeded(child);
}

// sendv: pieces of any length (empty, odd, across the ring's end) arrive as
// one message, equal to their concatenation; a nowait sendv resumes inside
// a piece.
TEST_F(ShmMqTest, SendvConcatenatesPieces) {
  shm_mq* mq = MakeQueue();
  shm_mq_set_receiver(mq);
  shm_mq_handle* r = shm_mq_attach(mq, nullptr);
  std::vector<char> all(3 * kRing);
  FillPattern(all.data(), all.size(), 7);
  const std::vector<std::vector<std::size_t>> cuts = {{}, {0}, {1, 0, 2}, {3, 5, 7, 11, 13}, {kRing - 1, 3, 0, kRing + 5}, {3 * kRing}};
  Pipe go;  // parent -> child: the ring is being drained now
  const pid_t child = RunChild([&] {
    go.CloseWrite();
    shm_mq_set_sender(mq);
    shm_mq_handle* h = shm_mq_attach(mq, nullptr);
    for (std::size_t c = 0; c < cuts.size(); ++c) {
      std::vector<shm_mq_iovec> iov;
      std::size_t off = 0;
      for (std::size_t len : cuts[c]) {
        iov.push_back({all.data() + off, len});
        off += len;
      }
      const bool last = c + 1 == cuts.size();
      shm_mq_result res = shm_mq_sendv(h, iov.data(), static_cast<int>(iov.size()), /*nowait=*/last);
      if (last) {  // longer than the ring: stops part-way inside the only piece
        CHILD_REQUIRE(res == SHM_MQ_WOULD_BLOCK);
        char c2;
        CHILD_REQUIRE(go.Receive(&c2));
        res = shm_mq_sendv(h, iov.data(), static_cast<int>(iov.size()), false);
      }
      CHILD_REQUIRE(res == SHM_MQ_SUCCESS);
    }
    shm_mq_detach(h);
    return 0;
  });
  go.CloseRead();
  for (std::size_t c = 0; c < cuts.size(); ++c) {
    std::size_t total = 0;
    for (std::size_t len : cuts[c]) total += len;
    if (c + 1 == cuts.size()) {
      ASSERT_TRUE(go.Send('g'));
    }
    std::size_t n;
    void* d;
    ASSERT_EQ(shm_mq_receive(r, &n, &d, false), SHM_MQ_SUCCESS) << "message " << c;
    ASSERT_EQ(n, total) << "message " << c;
    EXPECT_EQ(std::memcmp(d, all.data(), n), 0) << "message " << c;
  }
  shm_mq_detach(r);
  ExpectChildSucceeded(child);
}

// nowait: a receive with nothing there (the sender not even attached) is
// WOULD_BLOCK; a sender fills the ring with nowait sends until WOULD_BLOCK,
// the receiver takes what is complete with nowait receives and gets
// WOULD_BLOCK for the part-sent one, the sender resumes it and it arrives whole.
TEST_F(ShmMqTest, NowaitSendAndReceive) {
  shm_mq* mq = MakeQueue();
  shm_mq_set_receiver(mq);
  shm_mq_handle* r = shm_mq_attach(mq, nullptr);
  std::size_t n;
  void* d;
  EXPECT_EQ(shm_mq_receive(r, &n, &d, true), SHM_MQ_WOULD_BLOCK);

  constexpr std::size_t kSize = 100;
  Pipe filled, go;
  const pid_t child = RunChild([&] {
    filled.CloseRead();
    go.CloseWrite();
    shm_mq_set_sender(mq);
    shm_mq_handle* h = shm_mq_attach(mq, nullptr);
    char buf[kSize];
    std::uint32_t sent = 0;
    for (;;) {
      FillPattern(buf, kSize, sent);
      const shm_mq_result res = shm_mq_send(h, kSize, buf, true);
      if (res == SHM_MQ_WOULD_BLOCK) break;
      CHILD_REQUIRE(res == SHM_MQ_SUCCESS);
      ++sent;
    }
    CHILD_REQUIRE(filled.Send(sent));
    char c;
    CHILD_REQUIRE(go.Receive(&c));
    CHILD_REQUIRE(shm_mq_send(h, kSize, buf, false) == SHM_MQ_SUCCESS);  // the same message, resumed
    FillPattern(buf, kSize, sent + 1);
    CHILD_REQUIRE(shm_mq_send(h, kSize, buf, false) == SHM_MQ_SUCCESS);
    shm_mq_detach(h);
    return 0;
  });
  filled.CloseWrite();
  go.CloseRead();
  std::uint32_t sent = 0;
  ASSERT_TRUE(filled.Receive(&sent));
  EXPECT_EQ(sent, kRing / (8 + 104)) << "whole messages that fit in the ring";
  for (std::uint32_t i = 0; i < sent; ++i) {
    ASSERT_EQ(shm_mq_receive(r, &n, &d, true), SHM_MQ_SUCCESS) << "message " << i;
    ASSERT_EQ(n, kSize);
    EXPECT_TRUE(HasPattern(d, n, i));
  }
  EXPECT_EQ(shm_mq_receive(r, &n, &d, true), SHM_MQ_WOULD_BLOCK) << "the part-sent message";
  ASSERT_TRUE(go.Send('g'));
  for (std::uint32_t i = sent; i < sent + 2; ++i) ASSERT_TRUE(ReceiveChecked(r, kSize, i));
  EXPECT_EQ(shm_mq_receive(r, &n, &d, false), SHM_MQ_DETACHED);
  shm_mq_detach(r);
  ExpectChildSucceeded(child);
}

// --- a peer that leaves ------------------------------------------------------------------------------

// The sender detaches in the middle of a long message: the receiver gets
// the complete message before it, then DETACHED — not a hang, not a torn
// message. (The receiver reads nothing while the sender fills the ring, so
// that the nowait send surely stops part-way.)
TEST_F(ShmMqTest, DetachInTheMiddleOfAMessage) {
  shm_mq* mq = MakeQueue();
  shm_mq_set_receiver(mq);
  shm_mq_handle* r = shm_mq_attach(mq, nullptr);
  Pipe cut;  // child -> parent: the long message is part-sent
  const pid_t child = RunChild([&] {
    cut.CloseRead();
    shm_mq_set_sender(mq);
    shm_mq_handle* h = shm_mq_attach(mq, nullptr);
    std::vector<char> buf(3 * kRing);
    FillPattern(buf.data(), 100, 1);
    CHILD_REQUIRE(shm_mq_send(h, 100, buf.data(), false) == SHM_MQ_SUCCESS);
    CHILD_REQUIRE(shm_mq_send(h, buf.size(), buf.data(), true) == SHM_MQ_WOULD_BLOCK);
    CHILD_REQUIRE(cut.Send('w'));
    shm_mq_detach(h);
    return 0;
  });
  cut.CloseWrite();
  ASSERT_TRUE(ReceiveChecked(r, 100, 1));
  char c;
  ASSERT_TRUE(cut.Receive(&c));
  std::size_t n;
  void* d;
  EXPECT_EQ(shm_mq_receive(r, &n, &d, false), SHM_MQ_DETACHED);
  shm_mq_detach(r);
  ExpectChildSucceeded(child);
}

// A sender killed (SIGKILL) in the middle of a message while the receiver
// waits for the rest: DETACHED once the receiver sees the process is dead
// (a zombie: this test has not reaped it), with the message before intact.
// The child dies when told the receiver is about to block (in the rare
// order where it dies first, the receive must say DETACHED all the same).
TEST_F(ShmMqTest, SenderKilledWhileReceiverBlocks) {
  shm_mq* mq = MakeQueue();
  shm_mq_set_receiver(mq);
  shm_mq_handle* r = shm_mq_attach(mq, nullptr);
  Pipe cut, receiving;
  const pid_t child = RunChild([&] {
    cut.CloseRead();
    receiving.CloseWrite();
    shm_mq_set_sender(mq);
    shm_mq_handle* h = shm_mq_attach(mq, nullptr);
    std::vector<char> buf(3 * kRing);
    FillPattern(buf.data(), 100, 1);
    CHILD_REQUIRE(shm_mq_send(h, 100, buf.data(), false) == SHM_MQ_SUCCESS);
    CHILD_REQUIRE(shm_mq_send(h, buf.size(), buf.data(), true) == SHM_MQ_WOULD_BLOCK);
    CHILD_REQUIRE(cut.Send('w'));
    char c;
    CHILD_REQUIRE(receiving.Receive(&c));
    raise(SIGKILL);
    return 2;
  });
  cut.CloseWrite();
  receiving.CloseRead();
  ASSERT_TRUE(ReceiveChecked(r, 100, 1));
  char c;
  ASSERT_TRUE(cut.Receive(&c));
  ASSERT_TRUE(receiving.Send('r'));
  std::size_t n;
  void* d;
  EXPECT_EQ(shm_mq_receive(r, &n, &d, false), SHM_MQ_DETACHED);
  shm_mq_detach(r);
  const int status = Reap(child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << DescribeStatus(status);
}

// A receiver killed while the sender blocks on a full ring: DETACHED, and
// every later send too. The sender learns of the receiver with
// shm_mq_wait_for_attach.
TEST_F(ShmMqTest, ReceiverKilledWhileSenderBlocks) {
  shm_mq* mq = MakeQueue();
  shm_mq_set_sender(mq);
  shm_mq_handle* s = shm_mq_attach(mq, nullptr);
  const pid_t child = RunChild([&] {
    shm_mq_set_receiver(mq);
    shm_mq_handle* h = shm_mq_attach(mq, nullptr);
    std::size_t n;
    void* d;
    CHILD_REQUIRE(shm_mq_receive(h, &n, &d, false) == SHM_MQ_SUCCESS);
    raise(SIGKILL);
    return 2;
  });
  ASSERT_EQ(shm_mq_wait_for_attach(s), SHM_MQ_SUCCESS);
  EXPECT_EQ(shm_mq_get_receiver(mq), child);
  ASSERT_EQ(shm_mq_send(s, 5, "hello", false), SHM_MQ_SUCCESS);
  std::vector<char> big(4 * kRing, 'b');
  EXPECT_EQ(shm_mq_send(s, big.size(), big.data(), false), SHM_MQ_DETACHED);
  EXPECT_EQ(shm_mq_send(s, 5, "again", false), SHM_MQ_DETACHED);
  shm_mq_detach(s);
  const int status = Reap(child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << DescribeStatus(status);
}

// A peer that never attaches: with a peer check that says it is gone (on
// the third look), waiting for it, receiving and sending on a full ring all
// end with DETACHED. The check given to shm_mq_attach or installed later.
TEST_F(ShmMqTest, PeerThatNeverAttachesIsGivenUpOnByThePeerCheck) {
  auto gone_on_third_look = [](void* arg) { return ++*static_cast<int*>(arg) < 3; };
  int looks = 0;
  shm_mq* mq = MakeQueue();
  shm_mq_set_receiver(mq);
  shm_mq_handle* r = shm_mq_attach(mq, nullptr, gone_on_third_look, &looks);
  EXPECT_EQ(shm_mq_wait_for_attach(r), SHM_MQ_DETACHED);
  EXPECT_EQ(looks, 3);
  shm_mq_detach(r);

  looks = 0;
  mq = MakeQueue();
  shm_mq_set_receiver(mq);
  r = shm_mq_attach(mq, nullptr);
  shm_mq_set_peer_check(r, gone_on_third_look, &looks);
  std::size_t n;
  void* d;
  EXPECT_EQ(shm_mq_receive(r, &n, &d, false), SHM_MQ_DETACHED);
  EXPECT_EQ(looks, 3);
  shm_mq_detach(r);

  looks = 0;
  mq = MakeQueue();
  shm_mq_set_sender(mq);
  shm_mq_handle* s = shm_mq_attach(mq, nullptr, gone_on_third_look, &looks);
  ASSERT_EQ(shm_mq_send(s, 10, "early bird", false), SHM_MQ_SUCCESS) << "the ring takes it before the receiver comes";
  std::vector<char> big(2 * kRing, 'b');
  EXPECT_EQ(shm_mq_send(s, big.size(), big.data(), false), SHM_MQ_DETACHED);
  EXPECT_EQ(looks, 3);
  shm_mq_detach(s);
}

// --- threads --------------------------------------------------------------------------------------------

// The same queue between two threads of one process (equal pids: liveness
// by peer check), 100,000 messages of 0 to 2000 bytes, byte for byte.
TEST_F(ShmMqTest, TwoThreadsOfOneProcess) {
  constexpr std::size_t kCount = 100000;
  auto size_of = [](std::size_t i) { return (i * 97) % 2001; };
  shm_mq* mq = MakeQueue();
  std::atomic<bool> receiver_alive{true}, sender_alive{true};
  auto alive = [](void* arg) { return static_cast<std::atomic<bool>*>(arg)->load(); };
  bool sender_ok = true;
  std::thread sender([&] {
    shm_mq_set_sender(mq);
    shm_mq_handle* h = shm_mq_attach(mq, nullptr, alive, &receiver_alive);
    std::vector<char> buf(2001);
    for (std::size_t i = 0; i < kCount && sender_ok; ++i) {
      FillPattern(buf.data(), size_of(i), static_cast<unsigned>(i));
      sender_ok = shm_mq_send(h, size_of(i), buf.data(), false, i % 5 == 0) == SHM_MQ_SUCCESS;
    }
    shm_mq_detach(h);
    sender_alive = false;
  });
  shm_mq_set_receiver(mq);
  shm_mq_handle* r = shm_mq_attach(mq, nullptr, alive, &sender_alive);
  std::size_t i = 0;
  for (; i < kCount; ++i)
    if (!ReceiveChecked(r, size_of(i), static_cast<unsigned>(i))) break;
  EXPECT_EQ(i, kCount);
  std::size_t n;
  void* d;
  EXPECT_EQ(shm_mq_receive(r, &n, &d, false), SHM_MQ_DETACHED);
  receiver_alive = false;
  shm_mq_detach(r);
  sender.join();
  EXPECT_TRUE(sender_ok);
}

// A sender thread that stops without detaching (and lives on): its messages
// are all received, then the peer check ends the stream. A thread that
// exits without detaching detaches at its exit (its memory contexts go).
TEST_F(ShmMqTest, ThreadThatStopsWithoutDetaching) {
  for (bool exits : {false, true}) {
    SCOPED_TRACE(exits ? "the thread exits" : "the thread lives on");
    shm_mq* mq = MakeQueue();
    std::atomic<bool> gone{false}, release{false};
    std::thread sender([&] {
      shm_mq_set_sender(mq);
      shm_mq_handle* h = shm_mq_attach(mq, nullptr);
      char buf[64];
      for (unsigned i = 0; i < 10; ++i) {
        FillPattern(buf, sizeof buf, i);
        if (shm_mq_send(h, sizeof buf, buf, false) != SHM_MQ_SUCCESS) return;
      }
      if (exits) return;  // no detach: the thread's contexts go, and the handle with them
      gone = true;        // what a parallel context knows when its worker is done
      release.wait(false);
      shm_mq_detach(h);
    });
    shm_mq_set_receiver(mq);
    shm_mq_handle* r = shm_mq_attach(mq, nullptr, [](void* arg) { return !static_cast<std::atomic<bool>*>(arg)->load(); }, &gone);
    for (unsigned i = 0; i < 10; ++i) ASSERT_TRUE(ReceiveChecked(r, 64, i));
    std::size_t n;
    void* d;
    EXPECT_EQ(shm_mq_receive(r, &n, &d, false), SHM_MQ_DETACHED);
    shm_mq_detach(r);
    release = true;
    release.notify_one();
    sender.join();
  }
}

// A cancel from another thread interrupts a blocked receive with ERROR
// 57014; the handle stays usable and the next message arrives.
TEST_F(ShmMqTest, CancelInterruptsABlockedReceive) {
  shm_mq* mq = MakeQueue();
  shm_mq_set_sender(mq);
  shm_mq_handle* s = shm_mq_attach(mq, nullptr);
  std::optional<Error> err;
  std::atomic<bool> interrupted{false};
  bool got_next = false;
  std::thread receiver([&] {
    shm_mq_set_receiver(mq);
    shm_mq_handle* r = shm_mq_attach(mq, nullptr);
    err = CatchError([&] {
      std::size_t n;
      void* d;
      shm_mq_receive(r, &n, &d, false);
    });
    interrupted = true;
    interrupted.notify_one();
    std::size_t n;
    void* d;
    got_next = shm_mq_receive(r, &n, &d, false) == SHM_MQ_SUCCESS && n == 5 && std::memcmp(d, "after", 5) == 0;
    shm_mq_detach(r);
  });
  ASSERT_EQ(shm_mq_wait_for_attach(s), SHM_MQ_SUCCESS);
  RequestCancel();
  interrupted.wait(false);
  ASSERT_TRUE(err.has_value()) << "the blocked receive was not interrupted";
  EXPECT_EQ(err->sqlstate(), ERRCODE_QUERY_CANCELED) << err->Format();
  EXPECT_EQ(shm_mq_send(s, 5, "after", false), SHM_MQ_SUCCESS);
  receiver.join();
  EXPECT_TRUE(got_next);
  shm_mq_detach(s);
  EXPECT_FALSE(InterruptPending.load()) << "the cancel was consumed";
}

// --- lifetimes ------------------------------------------------------------------------------------------

// A queue in a DSM segment, attached with the segment: detaching the
// segment detaches the queue (the child's blocked send returns DETACHED);
// the handle is then an ERROR to use, and shm_mq_detach still works. The
// child does the same on its side.
TEST_F(ShmMqTest, DetachingTheSegmentDetachesTheQueue) {
  dsm_segment* seg = Create(kQueueBytes);
  const dsm_handle handle = dsm_segment_handle(seg);
  shm_mq* mq = shm_mq_create(dsm_segment_address(seg), kQueueBytes);
  shm_mq_set_receiver(mq);
  shm_mq_handle* r = shm_mq_attach(mq, seg);
  const pid_t child = RunChild([&] {
    dsm_segment* s = dsm_attach(handle);
    auto* cmq = static_cast<shm_mq*>(dsm_segment_address(s));
    shm_mq_set_sender(cmq);
    shm_mq_handle* h = shm_mq_attach(cmq, s);
    CHILD_REQUIRE(shm_mq_send(h, 5, "hello", false) == SHM_MQ_SUCCESS);
    std::vector<char> big(4 * kRing, 'b');
    CHILD_REQUIRE(shm_mq_send(h, big.size(), big.data(), false) == SHM_MQ_DETACHED);
    dsm_detach(s);
    CHILD_REQUIRE(CatchError([&] { shm_mq_send(h, 1, "x", true); }).has_value());
    shm_mq_detach(h);
    return 0;
  });
  std::size_t n;
  void* d;
  ASSERT_EQ(shm_mq_receive(r, &n, &d, false), SHM_MQ_SUCCESS);
  dsm_detach(seg);
  auto err = CatchError([&] { shm_mq_receive(r, &n, &d, false); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(Contains(err->message(), "segment")) << err->Format();
  EXPECT_FALSE(CatchError([&] { shm_mq_detach(r); }).has_value());
  ExpectChildSucceeded(child);
}

// Deleting the memory context that holds a handle detaches the queue.
TEST_F(ShmMqTest, DeletingTheHandlesContextDetachesTheQueue) {
  shm_mq* mq = MakeQueue();
  shm_mq_set_receiver(mq);
  MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "queue handle", ALLOCSET_SMALL_SIZES);
  {
    ContextSwitch in(cxt);
    shm_mq_attach(mq, nullptr);
  }
  const pid_t child = RunChild([&] {
    shm_mq_set_sender(mq);
    shm_mq_handle* h = shm_mq_attach(mq, nullptr);
    std::vector<char> big(4 * kRing, 'b');
    CHILD_REQUIRE(shm_mq_send(h, big.size(), big.data(), false) == SHM_MQ_DETACHED);
    shm_mq_detach(h);
    return 0;
  });
  MemoryContextDelete(cxt);
  ExpectChildSucceeded(child);
}

}  // namespace
}  // namespace grove::test
