// The registry of DSM segments a process created: a small control segment
// "grove.<pid>.control" listing their handles, with the process's start time
// so that a reused pid is recognized. It exists so that nothing stays in
// /dev/shm:
// * on normal exit, an atexit handler removes every segment still listed,
//   then the control segment;
// * after a crash (SIGKILL, abort), the next grove process to use DSM finds
//   the control segment of a dead process and removes what it lists, and any
//   other "grove.<dead pid>.*" name.
// The owning process writes its control segment under a mutex. Another
// process may add and remove entries too — it creates segments on the
// owner's behalf (dsm_create_owned_by: a DSA grown by a worker belongs to
// the area's creator) — so every slot is claimed and cleared with atomic
// compare-and-swap. Cleanup reads a control segment only once its owner is dead.
#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <mutex>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "dsm_internal.h"
#include "grove/base/error.h"

namespace grove::dsm_internal {

namespace {

constexpr std::uint64_t kControlMagic = 0x67726f7665637472ull;  // "grovectr"
constexpr std::uint32_t kSlots = kMaxCreatedSegments;

struct ControlSegment {
  std::uint64_t magic;
  std::int64_t pid;
  unsigned long long start_time;
  std::uint32_t nslots;
  dsm_handle slots[kSlots];  // 0: free
};

struct Registry {
  std::mutex mutex;
  pid_t pid = 0;  // owner of `control`; differs from getpid() in a forked child
  ControlSegment* control = nullptr;
  bool atexit_registered = false;
};

Registry& TheRegistry() {
  static Registry* registry = new Registry;  // never destroyed: used at exit
  return *registry;
}

// Slots are shared with processes that create segments on the owner's behalf.
dsm_handle LoadSlot(const ControlSegment* c, std::uint32_t i) {
  return __atomic_load_n(&c->slots[i], __ATOMIC_ACQUIRE);
}
bool CasSlot(ControlSegment* c, std::uint32_t i, dsm_handle expected, dsm_handle desired) {
  return __atomic_compare_exchange_n(&c->slots[i], &expected, desired, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

// Claims a free slot for `handle`; on a full table, clears the entries of
// segments that no longer exist and tries once more.
bool AddToControl(ControlSegment* c, dsm_handle handle);

// Other processes' control segments this process has mapped to record
// segments on their behalf (a handful at most: one per area creator).
struct ForeignControl {
  pid_t pid;
  ControlSegment* control;
};
struct ForeignControls {
  std::mutex mutex;
  pid_t mapped_by = 0;  // the process that mapped them (a forked child starts afresh)
  std::vector<ForeignControl> list;
};
ForeignControls& TheForeignControls() {
  static ForeignControls* f = new ForeignControls;  // never destroyed: used at exit
  return *f;
}

std::string ControlName(pid_t pid) { return "/grove." + std::to_string(pid) + ".control"; }

bool NameExists(const std::string& name) {
  struct stat st;
  return stat(("/dev/shm" + name).c_str(), &st) == 0;
}

}  // namespace

// Removes this process's segments and control segment at normal exit.
void RemoveOwnAtExit() {
  Registry& r = TheRegistry();
  if (r.pid != getpid()) return;  // a forked child exiting: checked before taking a lock it may have inherited held
  std::lock_guard<std::mutex> lock(r.mutex);
  if (r.control == nullptr) return;
  for (std::uint32_t i = 0; i < r.control->nslots; ++i)
    if (const dsm_handle h = LoadSlot(r.control, i); h != 0) shm_unlink(SegmentName(h).c_str());
  munmap(r.control, sizeof(ControlSegment));
  r.control = nullptr;
  shm_unlink(ControlName(getpid()).c_str());
}

namespace {

// Creates this process's control segment (called with the mutex held).
void CreateControl(Registry& r) {
  const std::string name = ControlName(getpid());
  // Exclusive: a control segment left by a dead process with our (reused)
  // pid is removed and replaced, never truncated under a reader.
  int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0 && errno == EEXIST) {
    shm_unlink(name.c_str());
    fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  }
  if (fd < 0)
    ereport(ERROR, errcode(ERRCODE_INSUFFICIENT_RESOURCES),
            errmsg("could not create shared memory registry \"%s\": %s", name.c_str(), std::strerror(errno)));
  int rc = ftruncate(fd, sizeof(ControlSegment)) == 0 ? posix_fallocate(fd, 0, sizeof(ControlSegment)) : errno;
  void* p = rc == 0 ? mmap(nullptr, sizeof(ControlSegment), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
  if (p == MAP_FAILED && rc == 0) rc = errno;
  close(fd);
  if (rc != 0) {
    shm_unlink(name.c_str());
    ereport(ERROR, errcode(rc == ENOSPC ? ERRCODE_DISK_FULL : ERRCODE_INSUFFICIENT_RESOURCES),
            errmsg("could not create shared memory registry \"%s\": %s", name.c_str(), std::strerror(rc)));
  }
  auto* c = static_cast<ControlSegment*>(p);
  c->pid = getpid();
  c->start_time = ProcessStartTime(getpid());
  c->nslots = kSlots;
  std::atomic_thread_fence(std::memory_order_release);
  c->magic = kControlMagic;
  r.control = c;
  r.pid = getpid();
  if (!r.atexit_registered) {
    std::atexit(&RemoveOwnAtExit);
    r.atexit_registered = true;
  }
}

bool ParseGroveName(const char* name, pid_t* pid, const char** rest) {
  if (std::strncmp(name, "grove.", 6) != 0) return false;
  char* end = nullptr;
  const long value = std::strtol(name + 6, &end, 10);
  if (end == name + 6 || *end != '.' || value <= 0 || value > INT_MAX) return false;
  *pid = static_cast<pid_t>(value);
  *rest = end + 1;
  return true;
}

}  // namespace

std::string SegmentName(dsm_handle handle) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "/grove.%d.%08x", static_cast<int>(handle >> 32),
                static_cast<unsigned>(handle & 0xffffffffu));
  return buf;
}

pid_t CreatorOf(dsm_handle handle) { return static_cast<pid_t>(handle >> 32); }

unsigned long long ProcessStartTime(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return 0;
  char buf[1024];
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // Fields after the command name, which is in parentheses and may hold spaces.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return 0;
  unsigned long long start = 0;
  char state = 0;
  // state is field 3; starttime is field 22 (19 fields after the state).
  if (std::sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &state,
                  &start) != 2)
    return 0;
  return start;
}

bool ProcessAlive(pid_t pid, unsigned long long start_time) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return errno != ENOENT;
  char buf[1024];
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  if (p != nullptr) {
    char state = 0;
    if (std::sscanf(p + 1, " %c", &state) == 1 && (state == 'Z' || state == 'X')) return false;  // exited
  }
  if (start_time != 0 && ProcessStartTime(pid) != start_time) return false;  // pid reused
  return true;
}

namespace {

bool AddToControl(ControlSegment* c, dsm_handle handle) {
  for (int pass = 0; pass < 2; ++pass) {
    for (std::uint32_t i = 0; i < c->nslots; ++i)
      if (LoadSlot(c, i) == 0 && CasSlot(c, i, 0, handle)) return true;
    // Full: entries of segments destroyed by other processes are stale.
    for (std::uint32_t i = 0; i < c->nslots; ++i) {
      const dsm_handle h = LoadSlot(c, i);
      if (h != 0 && !NameExists(SegmentName(h))) CasSlot(c, i, h, 0);
    }
  }
  return false;
}

void RemoveFromControl(ControlSegment* c, dsm_handle handle) {
  for (std::uint32_t i = 0; i < c->nslots; ++i)
    if (LoadSlot(c, i) == handle && CasSlot(c, i, handle, 0)) return;
}

// Maps `owner`'s control segment (called with the foreign mutex held).
// nullptr if it does not exist or is not complete.
ControlSegment* MapForeignControl(pid_t owner) {
  const int fd = shm_open(ControlName(owner).c_str(), O_RDWR, 0);
  if (fd < 0) return nullptr;
  struct stat st;
  void* p = MAP_FAILED;
  // Shorter than the struct: being created (or left broken); mapping it could SIGBUS.
  if (fstat(fd, &st) == 0 && static_cast<std::size_t>(st.st_size) >= sizeof(ControlSegment))
    p = mmap(nullptr, sizeof(ControlSegment), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return nullptr;
  auto* c = static_cast<ControlSegment*>(p);
  if (__atomic_load_n(&c->magic, __ATOMIC_ACQUIRE) != kControlMagic || c->pid != owner || c->nslots != kSlots) {
    munmap(p, sizeof(ControlSegment));
    return nullptr;
  }
  return c;
}

ControlSegment* ForeignControlOf(ForeignControls& f, pid_t owner, bool map_if_missing) {
  if (f.mapped_by != getpid()) {
    f.list.clear();  // a forked child: the parent's mappings are not ours to use
    f.mapped_by = getpid();
  }
  for (const ForeignControl& fc : f.list)
    if (fc.pid == owner) return fc.control;
  if (!map_if_missing) return nullptr;
  ControlSegment* c = MapForeignControl(owner);
  if (c != nullptr) f.list.push_back({owner, c});
  return c;
}

}  // namespace

bool RegistryAdd(dsm_handle handle) {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (r.control == nullptr || r.pid != getpid()) CreateControl(r);
  return AddToControl(r.control, handle);
}

RegistryAddResult RegistryAddFor(pid_t owner, dsm_handle handle) {
  if (owner == getpid()) return RegistryAdd(handle) ? RegistryAddResult::kAdded : RegistryAddResult::kFull;
  ForeignControls& f = TheForeignControls();
  std::lock_guard<std::mutex> lock(f.mutex);
  ControlSegment* c = ForeignControlOf(f, owner, true);
  if (c == nullptr || !ProcessAlive(owner, c->start_time)) return RegistryAddResult::kOwnerGone;
  return AddToControl(c, handle) ? RegistryAddResult::kAdded : RegistryAddResult::kFull;
}

void RegistryRemove(dsm_handle handle) {
  const pid_t owner = CreatorOf(handle);
  if (owner != getpid()) {
    ForeignControls& f = TheForeignControls();
    std::lock_guard<std::mutex> lock(f.mutex);
    if (ControlSegment* c = ForeignControlOf(f, owner, false)) RemoveFromControl(c, handle);
    return;
  }
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (r.control == nullptr || r.pid != getpid()) return;
  RemoveFromControl(r.control, handle);
}

std::size_t RegistryLiveCount() {
  Registry& r = TheRegistry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (r.control == nullptr || r.pid != getpid()) return 0;
  std::size_t n = 0;
  for (std::uint32_t i = 0; i < r.control->nslots; ++i)
    if (const dsm_handle h = LoadSlot(r.control, i); h != 0 && NameExists(SegmentName(h))) ++n;
  return n;
}

void RegistryForgetAfterFork() {
  Registry& r = TheRegistry();
  // The mutex may have been held by another thread at fork: start afresh.
  new (&r.mutex) std::mutex;
  r.control = nullptr;  // the parent's mapping stays; the child never writes it
  r.pid = getpid();
}

std::size_t CleanupOrphans() {
  const pid_t self = getpid();
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return 0;
  // First the dead processes' control segments (they carry start times),
  // then every name of a dead pid.
  std::vector<std::string> names;
  while (dirent* e = readdir(dir)) names.emplace_back(e->d_name);
  closedir(dir);

  std::vector<pid_t> dead;
  auto is_dead = [&](pid_t pid) {
    for (pid_t d : dead)
      if (d == pid) return true;
    return false;
  };
  for (const std::string& name : names) {
    pid_t pid;
    const char* rest;
    if (!ParseGroveName(name.c_str(), &pid, &rest) || std::strcmp(rest, "control") != 0 || pid == self) continue;
    unsigned long long start_time = 0;
    int fd = shm_open(("/" + name).c_str(), O_RDONLY, 0);
    if (fd >= 0) {
      // pread, not mmap: a control segment still being created (or left
      // empty by a crash) is shorter than its header, which a mapping would
      // turn into SIGBUS; a short read is just a short read.
      struct {
        std::uint64_t magic;
        std::int64_t pid;
        unsigned long long start_time;
      } head{};
      if (pread(fd, &head, sizeof head, 0) == static_cast<ssize_t>(sizeof head) && head.magic == kControlMagic &&
          head.pid == pid)
        start_time = head.start_time;
      close(fd);
    }
    if (!ProcessAlive(pid, start_time)) dead.push_back(pid);
  }

  std::size_t removed = 0;
  for (const std::string& name : names) {
    pid_t pid;
    const char* rest;
    if (!ParseGroveName(name.c_str(), &pid, &rest) || pid == self) continue;
    if (!is_dead(pid)) {
      // A segment whose creator left no registry (died before creating it).
      if (ProcessAlive(pid, 0)) continue;
      dead.push_back(pid);
    }
    if (std::strcmp(rest, "control") == 0) continue;  // removed last, below
    if (shm_unlink(("/" + name).c_str()) == 0) ++removed;
  }
  for (pid_t pid : dead) shm_unlink(ControlName(pid).c_str());
  return removed;
}

}  // namespace grove::dsm_internal
