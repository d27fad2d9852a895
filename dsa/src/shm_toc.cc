// shm_toc: a table of contents for a shared memory area (PostgreSQL's
// shm_toc.c design). The header and its entries grow forward from the start
// of the area; chunks are carved backward from the end. Allocation and
// insertion take a process-shared spinlock; lookup reads the entry count
// with acquire ordering and takes no lock, since an entry is fully written
// before the count that publishes it.
#include "grove/dsa/shm_toc.h"

#include <atomic>
#include <cstddef>
#include <new>
#include <thread>

#include "grove/base/error.h"

namespace grove {

namespace {

struct shm_toc_entry {
  std::uint64_t key;
  std::uint64_t offset;  // from the start of the TOC
};

constexpr std::size_t AlignUp(std::size_t n) { return (n + SHM_TOC_ALIGNMENT - 1) & ~(SHM_TOC_ALIGNMENT - 1); }
constexpr std::size_t AlignDown(std::size_t n) { return n & ~(SHM_TOC_ALIGNMENT - 1); }

}  // namespace

struct shm_toc {
  std::uint64_t magic;
  std::atomic<bool> lock;  // lock-free, so it works across processes
  std::size_t total_bytes;
  std::size_t allocated_bytes;
  std::atomic<std::uint32_t> nentry;
  shm_toc_entry entries[1];  // really nentry of them
};
static_assert(std::atomic<bool>::is_always_lock_free, "the TOC lock works across processes");

namespace {

constexpr std::size_t kHeaderBytes = offsetof(shm_toc, entries);

class TocLock {
 public:
  explicit TocLock(shm_toc* toc) : toc_(toc) {
    while (toc_->lock.exchange(true, std::memory_order_acquire)) std::this_thread::yield();
  }
  ~TocLock() { toc_->lock.store(false, std::memory_order_release); }

 private:
  shm_toc* toc_;
};

std::size_t UsedBytes(const shm_toc* toc, std::uint32_t nentry) {
  return kHeaderBytes + nentry * sizeof(shm_toc_entry) + toc->allocated_bytes;
}

}  // namespace

shm_toc* shm_toc_create(std::uint64_t magic, void* address, std::size_t nbytes) {
  if (reinterpret_cast<std::uintptr_t>(address) % alignof(shm_toc) != 0)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("a table of contents must start %zu-byte aligned, not at %p", alignof(shm_toc), address));
  // Chunks are carved back from the end of the area, so its end must be
  // aligned for the chunks to be: whatever the start, end on a boundary.
  const std::uintptr_t start = reinterpret_cast<std::uintptr_t>(address);
  const std::size_t total = nbytes >= SHM_TOC_ALIGNMENT ? AlignDown(start + nbytes) - start : 0;
  if (total < kHeaderBytes + sizeof(shm_toc_entry))
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("shared memory area of %zu bytes is too small for a table of contents", nbytes));
  auto* toc = new (address) shm_toc;
  toc->lock.store(false, std::memory_order_relaxed);
  toc->total_bytes = total;
  toc->allocated_bytes = 0;
  toc->nentry.store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  toc->magic = magic;
  return toc;
}

shm_toc* shm_toc_attach(std::uint64_t magic, void* address) {
  auto* toc = static_cast<shm_toc*>(address);
  if (toc->magic != magic) return nullptr;
  std::atomic_thread_fence(std::memory_order_acquire);
  return toc;
}

void* shm_toc_allocate(shm_toc* toc, std::size_t nbytes) {
  if (nbytes > toc->total_bytes) nbytes = toc->total_bytes + 1;  // too large: fails below, without wrapping
  nbytes = AlignUp(nbytes);
  TocLock lock(toc);
  const std::uint32_t n = toc->nentry.load(std::memory_order_relaxed);
  if (nbytes > toc->total_bytes || UsedBytes(toc, n) > toc->total_bytes - nbytes)
    ereport(ERROR, errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of shared memory"),
            errdetail("The table of contents at %p has %zu of %zu bytes left; %zu were requested.",
                      static_cast<void*>(toc), toc->total_bytes - UsedBytes(toc, n), toc->total_bytes, nbytes));
  toc->allocated_bytes += nbytes;
  return reinterpret_cast<char*>(toc) + toc->total_bytes - toc->allocated_bytes;
}

std::size_t shm_toc_freespace(shm_toc* toc) {
  TocLock lock(toc);
  const std::uint32_t n = toc->nentry.load(std::memory_order_relaxed);
  const std::size_t used = UsedBytes(toc, n + 1);
  return used >= toc->total_bytes ? 0 : AlignDown(toc->total_bytes - used);
}

void shm_toc_insert(shm_toc* toc, std::uint64_t key, void* address) {
  const std::size_t offset = static_cast<std::size_t>(static_cast<char*>(address) - reinterpret_cast<char*>(toc));
  if (static_cast<char*>(address) < reinterpret_cast<char*>(toc) || offset >= toc->total_bytes)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("address %p is outside the table of contents at %p", address, static_cast<void*>(toc)));
  TocLock lock(toc);
  const std::uint32_t n = toc->nentry.load(std::memory_order_relaxed);
  for (std::uint32_t i = 0; i < n; ++i)
    if (toc->entries[i].key == key)
      ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
              errmsg("key %llu is already present in the table of contents at %p",
                     static_cast<unsigned long long>(key), static_cast<void*>(toc)));
  if (UsedBytes(toc, n) + sizeof(shm_toc_entry) > toc->total_bytes)
    ereport(ERROR, errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of shared memory"),
            errdetail("No room for another entry in the table of contents at %p.", static_cast<void*>(toc)));
  toc->entries[n] = shm_toc_entry{key, offset};
  toc->nentry.store(n + 1, std::memory_order_release);  // publishes the entry
}

void* shm_toc_lookup(shm_toc* toc, std::uint64_t key, bool noError) {
  const std::uint32_t n = toc->nentry.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < n; ++i)
    if (toc->entries[i].key == key) return reinterpret_cast<char*>(toc) + toc->entries[i].offset;
  if (noError) return nullptr;
  ereport(ERROR, errcode(ERRCODE_INTERNAL_ERROR),
          errmsg("could not find key %llu in the table of contents at %p", static_cast<unsigned long long>(key),
                 static_cast<void*>(toc)));
  return nullptr;
}

void shm_toc_initialize_estimator(shm_toc_estimator* e) {
  e->space_for_chunks = 0;
  e->number_of_keys = 0;
}

void shm_toc_estimate_chunk(shm_toc_estimator* e, std::size_t sz) { e->space_for_chunks += AlignUp(sz); }
void shm_toc_estimate_keys(shm_toc_estimator* e, std::size_t cnt) { e->number_of_keys += cnt; }

std::size_t shm_toc_estimate(const shm_toc_estimator* e) {
  return AlignUp(kHeaderBytes + e->number_of_keys * sizeof(shm_toc_entry) + e->space_for_chunks);
}

}  // namespace grove
