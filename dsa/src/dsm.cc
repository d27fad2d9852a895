// DSM segments: creation with reserved space, attach by handle, reference
// counting in the segment, detach callbacks, ownership by resource owners.
//
// Layout of a segment: a one-page header (magic, reference count, pinned
// flag, usable size), then the caller's area, page-aligned. The reference
// count counts attachments in all processes plus one for a pin; whoever
// drops it to zero removes the name (mappings elsewhere stay valid until
// unmapped).
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <pthread.h>
#include <mutex>
#include <random>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "dsm_internal.h"
#include "grove/base/error.h"
#include "grove/contexts/palloc.h"
#include "grove/resowner/resource_kinds.h"
#include "grove/resowner/resowner.h"

namespace grove {

using namespace dsm_internal;

namespace {

constexpr std::uint64_t kSegmentMagic = 0x67726f766564736dull;  // "grovedsm"
constexpr std::size_t kHeaderBytes = 4096;

struct SegmentHeader {
  std::uint64_t magic;
  std::atomic<std::uint32_t> refcnt;
  std::atomic<std::uint32_t> pinned;
  std::uint64_t user_size;
};
static_assert(sizeof(SegmentHeader) <= kHeaderBytes, "the header fits its page");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "reference counts work across processes");

}  // namespace

struct dsm_segment {
  dsm_handle handle;  // DSM_HANDLE_INVALID: a private segment (heap memory, never shared)
  pid_t attach_pid;  // the process that attached; a forked child only unmaps
  char* base;  // the mapping, header included
  std::size_t mapped;
  ResourceOwner owner;  // nullptr: the attachment belongs to the process
  // Threads of one process may share an attachment (thread-mode parallel
  // workers use their leader's): the callback list has its own lock.
  std::mutex callbacks_mutex;
  std::vector<std::pair<on_dsm_detach_callback, Datum>> callbacks;
  dsm_segment* next;

  SegmentHeader* header() const { return reinterpret_cast<SegmentHeader*>(base); }
};

namespace {

struct ProcessState {
  std::mutex mutex;
  pid_t pid = 0;           // the process that initialized this state (0: not yet)
  dsm_segment* segments = nullptr;
  std::uint32_t next_low = 0;
};

pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

ProcessState& State() {
  static ProcessState* state = new ProcessState;  // never destroyed: used at exit
  return *state;
}

void DetachInternal(dsm_segment* seg, bool forget_from_owner, bool remove_name = false);

void ReleaseFromOwner(Datum res) { DetachInternal(DatumGetPointer<dsm_segment>(res), false); }
char* PrintSegment(Datum res) {
  const dsm_segment* seg = DatumGetPointer<dsm_segment>(res);
  if (seg->handle == DSM_HANDLE_INVALID)
    return psprintf("private dynamic shared memory segment of %zu bytes", seg->header()->user_size);
  return psprintf("dynamic shared memory segment %s", SegmentName(seg->handle).c_str() + 1);
}

// In a forked child: attachments and registry are the parent's, and a lock
// another parent thread held at fork would never be released. Start afresh
// (the inherited mappings stay mapped but belong to nobody here).
void ResetAfterFork() {
  ProcessState& s = State();
  new (&s.mutex) std::mutex;
  s.segments = nullptr;
  s.pid = 0;
  RegistryForgetAfterFork();
}
void InstallForkHandler() { pthread_atfork(nullptr, nullptr, &ResetAfterFork); }

// First DSM call of a process (or of a child after fork): install the
// resource kind's release, clean up after dead processes. All of it under
// the state's lock, so two threads' first calls cannot interleave. Returns
// how many segments that cleanup removed (0 when already initialized).
std::size_t EnsureInitialized(bool clean_up = true) {
  pthread_once(&atfork_once, &InstallForkHandler);
  ProcessState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.pid == getpid()) return 0;
  SetResourceKindRelease(&kDsmSegmentResourceKind, &ReleaseFromOwner, &PrintSegment);
  std::random_device rd;
  s.next_low = rd();
  const std::size_t removed = clean_up ? CleanupOrphans() : 0;
  s.pid = getpid();
  return removed;
}

// A handle named after `owner` (whose registry records it). Lows come from
// a random start, so that two processes naming segments after one owner
// rarely collide; a collision is caught by O_EXCL and retried.
dsm_handle NextHandle(pid_t owner) {
  ProcessState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  std::uint32_t low;
  do {
    low = s.next_low++;
  } while (low == 0);
  return (static_cast<dsm_handle>(static_cast<std::uint32_t>(owner)) << 32) | low;
}

// Returns false if this process already tracks the handle (another thread
// attached it meanwhile).
bool Track(dsm_segment* seg) {
  ProcessState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  for (dsm_segment* other = s.segments; other != nullptr; other = other->next)
    if (other->handle == seg->handle) return false;
  seg->next = s.segments;
  s.segments = seg;
  return true;
}

void Untrack(dsm_segment* seg) {
  ProcessState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  for (dsm_segment** link = &s.segments; *link != nullptr; link = &(*link)->next) {
    if (*link == seg) {
      *link = seg->next;
      return;
    }
  }
}

// Drops one reference; the last one removes the name.
void DropReference(dsm_handle handle, SegmentHeader* header) {
  if (header->refcnt.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    shm_unlink(SegmentName(handle).c_str());
    RegistryRemove(handle);
  }
}

// The detach callbacks, last registered first; each is removed before it
// runs (so one registered by a callback runs too).
void RunDetachCallbacks(dsm_segment* seg) {
  for (;;) {
    std::pair<on_dsm_detach_callback, Datum> next;
    {
      std::lock_guard<std::mutex> lock(seg->callbacks_mutex);
      if (seg->callbacks.empty()) break;
      next = seg->callbacks.back();
      seg->callbacks.pop_back();
    }
    auto [function, arg] = next;
    function(seg, arg);
  }
}

void DetachInternal(dsm_segment* seg, bool forget_from_owner, bool remove_name) {
  const bool is_private = seg->handle == DSM_HANDLE_INVALID;
  if (is_private && seg->attach_pid != getpid()) {
    // Inherited through fork: the memory is this child's copy of the
    // parent's heap, the callbacks are the parent's (not run).
    std::free(seg->base);
    delete seg;
    return;
  }
  if (seg->attach_pid != getpid()) {
    // Inherited through fork: the reference and callbacks are the parent's.
    munmap(seg->base, seg->mapped);
    delete seg;
    return;
  }
  // The owner first: it is the only step that can fail (an owner already
  // being released), and then nothing has changed yet.
  if (forget_from_owner && seg->owner != nullptr)
    ResourceOwnerForget(seg->owner, PointerGetDatum(seg), &kDsmSegmentResourceKind);
  seg->owner = nullptr;
  RunDetachCallbacks(seg);
  if (is_private) {
    std::free(seg->base);
    delete seg;
    return;
  }
  Untrack(seg);
  SegmentHeader* header = seg->header();
  const dsm_handle handle = seg->handle;
  // Removed now whatever the count says: references of processes that died
  // attached are never dropped.
  if (remove_name) {
    shm_unlink(SegmentName(handle).c_str());
    RegistryRemove(handle);
  }
  // The reference is dropped while still mapped; then the mapping goes.
  DropReference(handle, header);
  munmap(seg->base, seg->mapped);
  delete seg;
}

void RememberInCurrentOwner(dsm_segment* seg) {
  seg->owner = CurrentResourceOwner;
  if (seg->owner != nullptr) ResourceOwnerRemember(seg->owner, PointerGetDatum(seg), &kDsmSegmentResourceKind);
}

std::size_t PageRound(std::size_t n) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return (n + page - 1) / page * page;
}

[[noreturn]] void BadHandle(dsm_handle handle, const char* why) {
  ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
          errmsg("could not attach to dynamic shared memory segment %llx: %s", static_cast<unsigned long long>(handle),
                 why));
  __builtin_unreachable();
}

}  // namespace

namespace {

dsm_segment* CreateSegment(pid_t owner, std::size_t size, int flags) {
  EnsureInitialized();
  if (size > (std::size_t{1} << 46))
    ereport(ERROR, errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED), errmsg("invalid shared memory segment size %zu", size));
  // Room in the owner first: once the segment exists, recording it must not fail.
  if (CurrentResourceOwner != nullptr) ResourceOwnerEnlarge(CurrentResourceOwner);
  const std::size_t total = kHeaderBytes + PageRound(size == 0 ? 1 : size);
  // Allocated first: once the segment exists, nothing may fail.
  std::unique_ptr<dsm_segment> seg(new dsm_segment{DSM_HANDLE_INVALID, getpid(), nullptr, 0, nullptr, {}, {}, nullptr});

  dsm_handle handle = DSM_HANDLE_INVALID;
  std::string name;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    handle = NextHandle(owner);
    name = SegmentName(handle);
    // Registered before it exists, so a crash right after creation leaves
    // nothing the cleanup would not find.
    const RegistryAddResult added = RegistryAddFor(owner, handle);
    if (added == RegistryAddResult::kOwnerGone)
      ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
              errmsg("cannot create a shared memory segment owned by process %d: it is not running",
                     static_cast<int>(owner)));
    if (added == RegistryAddResult::kFull) {
      if (flags & DSM_CREATE_NULL_IF_MAXSEGMENTS) return nullptr;
      ereport(ERROR, errcode(ERRCODE_INSUFFICIENT_RESOURCES), errmsg("too many dynamic shared memory segments"),
              errdetail("A process can have at most %zu segments it created alive at once.", kMaxCreatedSegments));
    }
    fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
      const int err = errno;
      RegistryRemove(handle);
      if (err != EEXIST || attempt > 100)
        ereport(ERROR, errcode(ERRCODE_INSUFFICIENT_RESOURCES),
                errmsg("could not create shared memory segment \"%s\": %s", name.c_str(), std::strerror(err)));
    }
  }
  // Reserve the space now: a full /dev/shm must fail here, not as a SIGBUS
  // at some later first touch.
  int rc = ftruncate(fd, static_cast<off_t>(total)) == 0 ? 0 : errno;
  if (rc == 0) rc = posix_fallocate(fd, 0, static_cast<off_t>(total));
  void* base = MAP_FAILED;
  if (rc == 0) {
    base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) rc = errno;
  }
  close(fd);
  if (rc != 0) {
    shm_unlink(name.c_str());
    RegistryRemove(handle);
    if ((flags & DSM_CREATE_NULL_IF_MAXSEGMENTS) && (rc == ENOSPC || rc == ENOMEM)) return nullptr;
    ereport(ERROR, errcode(rc == ENOSPC ? ERRCODE_DISK_FULL : ERRCODE_INSUFFICIENT_RESOURCES),
            errmsg("could not resize shared memory segment \"%s\" to %zu bytes: %s", name.c_str(), total,
                   std::strerror(rc)),
            errhint(rc == ENOSPC ? "/dev/shm is full or too small; containers often limit it to 64 MiB." : ""));
  }
  auto* header = static_cast<SegmentHeader*>(base);
  header->user_size = size;
  header->pinned.store(0, std::memory_order_relaxed);
  header->refcnt.store(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  header->magic = kSegmentMagic;

  seg->handle = handle;
  seg->base = static_cast<char*>(base);
  seg->mapped = total;
  Track(seg.get());  // a fresh handle: cannot be tracked already
  RememberInCurrentOwner(seg.get());
  return seg.release();
}

}  // namespace

dsm_segment* dsm_create(std::size_t size, int flags) { return CreateSegment(getpid(), size, flags); }

dsm_segment* dsm_create_private(std::size_t size) {
  EnsureInitialized();  // the resource kind's release
  if (size > (std::size_t{1} << 46))
    ereport(ERROR, errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED), errmsg("invalid shared memory segment size %zu", size));
  if (CurrentResourceOwner != nullptr) ResourceOwnerEnlarge(CurrentResourceOwner);
  // The same layout as a shared segment (header page, then the page-aligned
  // area), so that every accessor works unchanged; no name, no registry.
  const std::size_t total = kHeaderBytes + PageRound(size == 0 ? 1 : size);
  std::unique_ptr<dsm_segment> seg(new dsm_segment{DSM_HANDLE_INVALID, getpid(), nullptr, 0, nullptr, {}, {}, nullptr});
  void* base = std::aligned_alloc(kHeaderBytes, total);
  if (base == nullptr)
    ereport(ERROR, errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory"),
            errdetail("Failed on a private segment of %zu bytes.", total));
  std::memset(base, 0, total);
  auto* header = static_cast<SegmentHeader*>(base);
  header->user_size = size;
  header->refcnt.store(1, std::memory_order_relaxed);
  header->magic = kSegmentMagic;
  seg->base = static_cast<char*>(base);
  seg->mapped = total;
  RememberInCurrentOwner(seg.get());
  return seg.release();
}

dsm_segment* dsm_create_owned_by(pid_t owner, std::size_t size, int flags) {
  if (owner <= 0)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid owner process %d", static_cast<int>(owner)));
  return CreateSegment(owner, size, flags);
}

dsm_segment* dsm_attach(dsm_handle handle) {
  EnsureInitialized();
  if (handle == DSM_HANDLE_INVALID) BadHandle(handle, "invalid handle");
  if (dsm_find_mapping(handle) != nullptr)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("dynamic shared memory segment %llx is already attached in this process",
                   static_cast<unsigned long long>(handle)),
            errhint("Use dsm_find_mapping to get the existing attachment."));
  if (CurrentResourceOwner != nullptr) ResourceOwnerEnlarge(CurrentResourceOwner);
  std::unique_ptr<dsm_segment> seg(new dsm_segment{handle, getpid(), nullptr, 0, nullptr, {}, {}, nullptr});
  const std::string name = SegmentName(handle);
  int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) BadHandle(handle, errno == ENOENT ? "it does not exist (any more)" : std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || static_cast<std::size_t>(st.st_size) < kHeaderBytes) {
    close(fd);
    BadHandle(handle, "it is not a grove segment");
  }
  const std::size_t total = static_cast<std::size_t>(st.st_size);
  void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) BadHandle(handle, std::strerror(errno));
  auto* header = static_cast<SegmentHeader*>(base);
  if (header->magic != kSegmentMagic) {
    munmap(base, total);
    BadHandle(handle, "it is not a grove segment");
  }
  // Take a reference unless the last one is gone: then it is being
  // destroyed, and a count of 0 must never be raised again.
  std::uint32_t refs = header->refcnt.load(std::memory_order_acquire);
  for (;;) {
    if (refs == 0) {
      munmap(base, total);
      BadHandle(handle, "it is being destroyed");
    }
    if (header->refcnt.compare_exchange_weak(refs, refs + 1, std::memory_order_acq_rel)) break;
  }
  seg->base = static_cast<char*>(base);
  seg->mapped = total;
  if (!Track(seg.get())) {
    DropReference(handle, header);
    munmap(base, total);
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("dynamic shared memory segment %llx is already attached in this process",
                   static_cast<unsigned long long>(handle)));
  }
  RememberInCurrentOwner(seg.get());
  return seg.release();
}

void dsm_detach(dsm_segment* seg) { DetachInternal(seg, true); }

void dsm_detach_and_remove(dsm_segment* seg) { DetachInternal(seg, true, true); }

void dsm_pin_mapping(dsm_segment* seg) {
  if (seg->owner == nullptr) return;
  ResourceOwnerForget(seg->owner, PointerGetDatum(seg), &kDsmSegmentResourceKind);
  seg->owner = nullptr;
}

void dsm_unpin_mapping(dsm_segment* seg) {
  if (seg->owner != nullptr || CurrentResourceOwner == nullptr) return;
  ResourceOwnerEnlarge(CurrentResourceOwner);
  RememberInCurrentOwner(seg);
}

void dsm_pin_segment(dsm_segment* seg) {
  if (seg->handle == DSM_HANDLE_INVALID)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("cannot pin a private dynamic shared memory segment"),
            errdetail("A private segment lives in this process's memory and ends with its detach."));
  SegmentHeader* header = seg->header();
  // The pin's reference exists before the pin is visible, so a concurrent
  // unpin can never drop a reference that was not taken yet.
  header->refcnt.fetch_add(1, std::memory_order_acq_rel);
  std::uint32_t expected = 0;
  if (!header->pinned.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    header->refcnt.fetch_sub(1, std::memory_order_acq_rel);  // we hold another, so never the last
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("cannot pin dynamic shared memory segment %s: it is already pinned",
                   SegmentName(seg->handle).c_str() + 1));
  }
}

void dsm_unpin_segment(dsm_handle handle) {
  EnsureInitialized();
  if (dsm_segment* seg = dsm_find_mapping(handle)) {
    SegmentHeader* header = seg->header();
    std::uint32_t expected = 1;
    if (!header->pinned.compare_exchange_strong(expected, 0, std::memory_order_acq_rel))
      ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
              errmsg("cannot unpin dynamic shared memory segment %s: it is not pinned",
                     SegmentName(handle).c_str() + 1));
    DropReference(handle, header);
    return;
  }
  // Not attached here: map just the header to drop the pin's reference.
  const std::string name = SegmentName(handle);
  int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) BadHandle(handle, errno == ENOENT ? "it does not exist (any more)" : std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || static_cast<std::size_t>(st.st_size) < kHeaderBytes) {
    close(fd);  // still being created, or not a grove segment: mapping it could SIGBUS
    BadHandle(handle, "it is not a complete grove segment");
  }
  void* base = mmap(nullptr, kHeaderBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) BadHandle(handle, std::strerror(errno));
  auto* header = static_cast<SegmentHeader*>(base);
  std::uint32_t expected = 1;
  const bool was_pinned =
      header->magic == kSegmentMagic && header->pinned.compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
  if (was_pinned) DropReference(handle, header);
  munmap(base, kHeaderBytes);
  if (!was_pinned)
    ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
            errmsg("cannot unpin dynamic shared memory segment %s: it is not pinned", name.c_str() + 1));
}

bool dsm_segment_is_pinned(dsm_segment* seg) { return seg->header()->pinned.load(std::memory_order_acquire) != 0; }
bool dsm_mapping_is_pinned(dsm_segment* seg) { return seg->owner == nullptr; }

void* dsm_segment_address(dsm_segment* seg) { return seg->base + kHeaderBytes; }
std::size_t dsm_segment_map_length(dsm_segment* seg) { return seg->mapped - kHeaderBytes; }
dsm_handle dsm_segment_handle(dsm_segment* seg) { return seg->handle; }

dsm_segment* dsm_find_mapping(dsm_handle handle) {
  ProcessState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.pid != getpid()) return nullptr;
  for (dsm_segment* seg = s.segments; seg != nullptr; seg = seg->next)
    if (seg->handle == handle) return seg;
  return nullptr;
}

void on_dsm_detach(dsm_segment* seg, on_dsm_detach_callback function, Datum arg) {
  std::lock_guard<std::mutex> lock(seg->callbacks_mutex);
  seg->callbacks.emplace_back(function, arg);
}

void dsm_run_detach_callbacks(dsm_segment* seg) { RunDetachCallbacks(seg); }

void cancel_on_dsm_detach(dsm_segment* seg, on_dsm_detach_callback function, Datum arg) {
  std::lock_guard<std::mutex> lock(seg->callbacks_mutex);
  for (auto it = seg->callbacks.rbegin(); it != seg->callbacks.rend(); ++it) {
    if (it->first == function && it->second == arg) {
      seg->callbacks.erase(std::next(it).base());
      return;
    }
  }
}

void dsm_initialize_without_cleanup() { EnsureInitialized(false); }

std::size_t dsm_cleanup_orphans() {
  const std::size_t at_start = EnsureInitialized();  // the first call cleans up as it starts
  return at_start + CleanupOrphans();
}

std::size_t dsm_created_segment_count() { return RegistryLiveCount(); }

void dsm_process_exit() { RemoveOwnAtExit(); }

}  // namespace grove
