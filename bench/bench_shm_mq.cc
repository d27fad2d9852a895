// bench_shm_mq: message throughput from one process to another through a
// shm_mq beside the kernel's pipe and Unix socketpair — the same message
// sizes (64 B, 1 KiB, 64 KiB), the same binary, the same run — so that
// shm_mq's figures are read as ratios to the peers a user would pick instead.
//
// Placement matters: a pipe's reader that runs on the writer's CPU copies
// out of a warm cache, a shm_mq's two sides work in parallel only on two
// CPUs. By default the scheduler decides (as for users); GROVE_BENCH_PIN=1
// puts the sender and the receiver on two different CPUs, =same on one.
//
// Names: MQ_throughput/<transport>/bytes:<message size>, transports
// shm_mq (force_flush on: each message published as it is sent),
// shm_mq_batched (force_flush off, as tuple queues send), pipe, socketpair.
// Each run forks a receiver; the parent sends one message per iteration.
// Real time is measured (two processes work); bytes_per_second and
// items_per_second (messages) come from SetBytesProcessed/SetItemsProcessed.
//
// Fairness: the queue is kTupleQueueSize (64 KiB, header included), a pipe
// has its default 64 KiB, a socketpair its default (larger) socket buffers.
// Senders send each message with one call (shm_mq_send, or write looping
// on short writes). The pipe and socket
// receivers read as much as is available into a 256 KiB buffer and split it
// into messages (the best a byte stream allows); the shm_mq receiver takes
// each message from shm_mq_receive (in place when contiguous, else
// reassembled in its handle's buffer). Every receiver reads the first and
// last byte of every message.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "grove/base/error.h"
#include "grove/contexts/memutils.h"
#include "grove/workers/shm_mq.h"
#include "grove/workers/tuple_queue.h"

namespace {

using namespace grove;

enum class Transport { kShmMq, kShmMqBatched, kPipe, kSocketpair };

// GROVE_BENCH_PIN=1: the sender runs on the first CPU the process may use,
// the receiver on the second; GROVE_BENCH_PIN=same: both on the first. By
// default the scheduler places them.
bool g_pin = false;
int g_cpus[2] = {0, 0};

void PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

void SetUpPinning() {
  const char* env = std::getenv("GROVE_BENCH_PIN");
  if (env == nullptr) return;
  const bool same = std::strcmp(env, "same") == 0;
  if (!same && std::strcmp(env, "1") != 0) return;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return;
  int n = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE && n < 2; ++cpu)
    if (CPU_ISSET(cpu, &set)) g_cpus[n++] = cpu;
  if (same && n >= 1) g_cpus[1] = g_cpus[0], n = 2;
  g_pin = n == 2;
  if (!g_pin) std::fprintf(stderr, "bench_shm_mq: GROVE_BENCH_PIN needs two CPUs; not pinning\n");
}

bool WriteAll(int fd, const void* p, std::size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t k = write(fd, c, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    c += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

bool ReadAll(int fd, void* p, std::size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t k = read(fd, c, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    c += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

// The receiving child of one run. Counts messages until the sender ends the
// stream, then reports the count (and a checksum of the bytes it read) on
// `ack`. Never returns.
[[noreturn]] void Receiver(Transport t, shm_mq* mq, int in_fd, int ack, std::size_t size) {
  std::uint64_t count = 0, sum = 0;
  try {
    if (t == Transport::kShmMq || t == Transport::kShmMqBatched) {
      shm_mq_set_receiver(mq);
      shm_mq_handle* h = shm_mq_attach(mq, nullptr);
      std::size_t n;
      void* data;
      while (shm_mq_receive(h, &n, &data, false) == SHM_MQ_SUCCESS) {
        const auto* b = static_cast<const unsigned char*>(data);
        sum += b[0] + b[n - 1];
        ++count;
      }
      shm_mq_detach(h);
    } else {
      // A byte stream: read what is there, split it into messages.
      std::vector<unsigned char> buf(256 * 1024);
      std::size_t have = 0;  // bytes in buf of the message being completed
      for (;;) {
        const ssize_t k = read(in_fd, buf.data() + have, buf.size() - have);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        have += static_cast<std::size_t>(k);
        std::size_t off = 0;
        for (; have - off >= size; off += size, ++count) sum += buf[off] + buf[off + size - 1];
        std::memmove(buf.data(), buf.data() + off, have - off);
        have -= off;
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_shm_mq receiver: %s\n", e.Format().c_str());
    _exit(2);
  }
  const std::uint64_t report[2] = {count, sum};
  _exit(WriteAll(ack, report, sizeof report) ? 0 : 3);
}

void Throughput(benchmark::State& state, Transport t) {
  const std::size_t size = static_cast<std::size_t>(state.range(0));
  std::vector<unsigned char> msg(size);
  for (std::size_t i = 0; i < size; ++i) msg[i] = static_cast<unsigned char>(i * 131 + 7);

  void* area = nullptr;
  shm_mq* mq = nullptr;
  int fds[2] = {-1, -1};
  int ack[2] = {-1, -1};
  if (pipe2(ack, O_CLOEXEC) != 0) return state.SkipWithError("pipe2 failed");
  if (t == Transport::kShmMq || t == Transport::kShmMqBatched) {
    area = mmap(nullptr, kTupleQueueSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) return state.SkipWithError("mmap failed");
    mq = shm_mq_create(area, kTupleQueueSize);
  } else if (t == Transport::kPipe) {
    if (pipe2(fds, O_CLOEXEC) != 0) return state.SkipWithError("pipe2 failed");
    std::swap(fds[0], fds[1]);  // fds[0]: the sender's end, fds[1]: the receiver's
  } else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return state.SkipWithError("socketpair failed");
  }

  cpu_set_t saved;
  if (g_pin) {
    sched_getaffinity(0, sizeof saved, &saved);
    PinTo(g_cpus[0]);
  }
  std::fflush(nullptr);
  const pid_t parent = getpid();
  const pid_t child = fork();
  if (child < 0) return state.SkipWithError("fork failed");
  if (child == 0) {
    if (g_pin) PinTo(g_cpus[1]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(4);
    close(ack[0]);
    if (fds[0] >= 0) close(fds[0]);
    Receiver(t, mq, fds[1], ack[1], size);
  }
  close(ack[1]);
  if (fds[1] >= 0) close(fds[1]);

  shm_mq_handle* h = nullptr;
  if (mq != nullptr) {
    shm_mq_set_sender(mq);
    h = shm_mq_attach(mq, nullptr);
  }
  const bool flush = t != Transport::kShmMqBatched;
  bool ok = true;
  std::uint64_t sent = 0;
  for (auto _ : state) {
    if (h != nullptr)
      ok = shm_mq_send(h, size, msg.data(), false, flush) == SHM_MQ_SUCCESS;
    else
      ok = WriteAll(fds[0], msg.data(), size);
    if (!ok) break;
    ++sent;
  }
  // End the stream (the last ring's worth is delivered outside the timing:
  // at most one queue or pipe buffer, against hundreds of megabytes timed).
  if (h != nullptr) shm_mq_detach(h);
  if (fds[0] >= 0) close(fds[0]);
  std::uint64_t report[2] = {0, 0};
  const bool got = ReadAll(ack[0], report, sizeof report);
  close(ack[0]);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (area != nullptr) munmap(area, kTupleQueueSize);
  if (g_pin) sched_setaffinity(0, sizeof saved, &saved);
  if (!ok) return state.SkipWithError("send failed");
  if (!got || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return state.SkipWithError("the receiver failed");
  if (report[0] != sent) return state.SkipWithError(("the receiver got " + std::to_string(report[0]) + " of " +
                                                     std::to_string(sent) + " messages").c_str());
  const std::uint64_t per_message = msg[0] + msg[size - 1];
  if (report[1] != per_message * sent) return state.SkipWithError("the receiver read wrong bytes");
  state.SetItemsProcessed(static_cast<std::int64_t>(sent));
  state.SetBytesProcessed(static_cast<std::int64_t>(sent * size));
}

void Register(const char* name, Transport t) {
  benchmark::RegisterBenchmark(name, [t](benchmark::State& s) { Throughput(s, t); })
      ->ArgName("bytes")
      ->Arg(64)
      ->Arg(1024)
      ->Arg(64 * 1024)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) {
  MemoryContextInit();
  SetUpPinning();
  signal(SIGPIPE, SIG_IGN);  // a receiver that died makes write fail, not kill the suite
  benchmark::AddCustomContext("pinned", !g_pin                     ? "no (the scheduler's placement)"
                                        : g_cpus[0] == g_cpus[1] ? "sender and receiver on one CPU"
                                                                 : "sender and receiver on two CPUs");
  Register("MQ_throughput/shm_mq", Transport::kShmMq);
  Register("MQ_throughput/shm_mq_batched", Transport::kShmMqBatched);
  Register("MQ_throughput/pipe", Transport::kPipe);
  Register("MQ_throughput/socketpair", Transport::kSocketpair);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
