// Robust process-shared mutexes: mutual exclusion across processes, and a
// holder that dies (SIGKILL) turns into an ERROR for every later locker —
// never a hang — until the data is recovered.
#include <gtest/gtest.h>

#include <csignal>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "grove/base/error.h"
#include "grove/dsa/shared_mutex.h"

namespace grove {
namespace {

struct Shared {
  SharedMutex mutex;
  std::uint64_t counter;
};

class SharedMutexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Anonymous shared memory: inherited by forked children, no names.
    void* p = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(p, MAP_FAILED);
    shared_ = static_cast<Shared*>(p);
    SharedMutexInit(&shared_->mutex);
    shared_->counter = 0;
  }
  void TearDown() override {
    for (pid_t pid : children_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    munmap(shared_, sizeof(Shared));
  }
  // Forks a child that runs `body` and _exits with its result; never returns in the child.
  template <typename F>
  pid_t Fork(F body) {
    const pid_t pid = fork();
    if (pid == 0) _exit(body());
    children_.push_back(pid);
    return pid;
  }
  int Reap(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    std::erase(children_, pid);
    return status;
  }
  Shared* shared_ = nullptr;
  std::vector<pid_t> children_;
};

// Two processes and this one increment a counter under the lock: no update is lost.
TEST_F(SharedMutexTest, ExcludesAcrossProcesses) {
  constexpr int kIncrements = 100000;
  auto work = [this] {
    for (int i = 0; i < kIncrements; ++i) {
      SharedMutexLock(&shared_->mutex, "counter");
      ++shared_->counter;
      SharedMutexUnlock(&shared_->mutex);
    }
    return 0;
  };
  const pid_t a = Fork(work);
  const pid_t b = Fork(work);
  work();
  EXPECT_EQ(WEXITSTATUS(Reap(a)), 0);
  EXPECT_EQ(WEXITSTATUS(Reap(b)), 0);
  EXPECT_EQ(shared_->counter, 3u * kIncrements);
}

// A holder killed by SIGKILL: the next locker gets an ERROR (not a hang),
// and so does every later one, until the data is recovered.
TEST_F(SharedMutexTest, DeadHolderIsAnErrorNotAHang) {
  const pid_t child = Fork([this] {
    SharedMutexLock(&shared_->mutex, "area");
    raise(SIGKILL);  // dies holding the lock
    return 1;
  });
  const int status = Reap(child);
  ASSERT_TRUE(WIFSIGNALED(status));
  try {
    SharedMutexLock(&shared_->mutex, "area");
    FAIL() << "locking after the holder died must be an ERROR";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.message()).find("may be inconsistent"), std::string::npos) << e.message();
  }
  EXPECT_TRUE(SharedMutexIsPoisoned(&shared_->mutex));
  EXPECT_THROW(SharedMutexLock(&shared_->mutex, "area"), Error) << "still poisoned";
  EXPECT_THROW(SharedMutexTryLock(&shared_->mutex, "area"), Error) << "try-lock reports it too";
  SharedMutexRecover(&shared_->mutex);
  SharedMutexLock(&shared_->mutex, "area");  // usable again, and not left held by the errors
  SharedMutexUnlock(&shared_->mutex);
}

// TryLock returns false while another process holds the lock, true after.
TEST_F(SharedMutexTest, TryLockWhileHeldElsewhere) {
  int to_child[2], to_parent[2];
  ASSERT_EQ(pipe(to_child), 0);
  ASSERT_EQ(pipe(to_parent), 0);
  const pid_t child = Fork([&] {
    SharedMutexLock(&shared_->mutex, "area");
    char c = 'l';
    if (write(to_parent[1], &c, 1) != 1) return 2;
    if (read(to_child[0], &c, 1) != 1) return 3;
    SharedMutexUnlock(&shared_->mutex);
    return 0;
  });
  char c;
  ASSERT_EQ(read(to_parent[0], &c, 1), 1);
  EXPECT_FALSE(SharedMutexTryLock(&shared_->mutex, "area"));
  ASSERT_EQ(write(to_child[1], &c, 1), 1);
  EXPECT_EQ(WEXITSTATUS(Reap(child)), 0);
  EXPECT_TRUE(SharedMutexTryLock(&shared_->mutex, "area"));
  SharedMutexUnlock(&shared_->mutex);
  for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]}) close(fd);
}

// The guard unlocks when an ERROR unwinds through it.
TEST_F(SharedMutexTest, GuardUnlocksOnError) {
  try {
    SharedMutexGuard guard(&shared_->mutex, "area");
    elog(ERROR, "failure while holding the lock");
  } catch (const Error&) {
  }
  EXPECT_TRUE(SharedMutexTryLock(&shared_->mutex, "area"));
  SharedMutexUnlock(&shared_->mutex);
}

}  // namespace
}  // namespace grove
