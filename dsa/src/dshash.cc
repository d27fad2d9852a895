// Concurrent hash tables in a dynamic shared area (see dshash.h for the
// design and the lock ordering). This file: layout, locking helpers, the
// operations, resizing and scans; statistics, verification and dump are at
// the end.
#include "grove/dsa/dshash.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "grove/base/assert.h"
#include "grove/base/error.h"
#include "grove/contexts/palloc.h"
#include "grove/dsa/shared_mutex.h"

namespace grove {

namespace {

// "dshash" and a layout version; the first word of a control object.
constexpr std::uint64_t kMagic = 0x6873616864730001ULL;

constexpr int kHashBits = 32;
static_assert(sizeof(dshash_hash) * 8 == kHashBits, "partition and bucket indexes are the hash's top bits");
// The bucket index is the hash's top size_log2 bits, so the table cannot
// have more buckets than hash values; it starts with one per partition.
constexpr std::size_t kMinSizeLog2 = DSHASH_NUM_PARTITIONS_LOG2;
constexpr std::size_t kMaxSizeLog2 = kHashBits;

// The header of an item; the caller's entry follows at kItemHeaderSize.
struct Item {
  dsa_pointer next;  // the next item of the bucket, or InvalidDsaPointer
  dshash_hash hash;  // the key's hash: resizing and lookups never call the hash function again
};
// Entries are 16-byte aligned (what the area hands out), whatever the key.
constexpr std::size_t kItemHeaderSize = 16;
static_assert(sizeof(Item) <= kItemHeaderSize, "the entry must not overlap the item header");

// One partition: a lock over a run of buckets, and how many items they
// hold (for the load factor). 64 bytes, so that processes working on
// neighbouring partitions do not share a cache line once the control object
// is 64-byte aligned (it is larger than a small object: whole pages).
struct Partition {
  SharedMutex lock;
  std::size_t count;  // guarded by `lock`
  char pad[64 - sizeof(SharedMutex) - sizeof(std::size_t)];
};
static_assert(sizeof(Partition) == 64, "one partition per cache line");

// The table in the area.
struct Control {
  std::uint64_t magic;  // first: attach reads it before trusting anything else
  dshash_table_handle handle;  // this object's own dsa_pointer: a second identity check
  std::uint64_t key_size;
  std::uint64_t entry_size;
  std::int32_t tranche_id;
  // Written only with every partition lock held; read with any one held.
  std::uint32_t size_log2;
  dsa_pointer buckets;
  // Nonzero while a resize relinks items (under all locks). If its process
  // dies then, chains are half moved: every partition reports inconsistency
  // and dshash_destroy must not walk them.
  std::uint32_t resizing;
  char pad[12];
  Partition partitions[DSHASH_NUM_PARTITIONS];
};
static_assert(offsetof(Control, partitions) == 64, "partitions start on a cache line of the control object");

inline std::size_t PartitionForHash(dshash_hash h) { return h >> (kHashBits - DSHASH_NUM_PARTITIONS_LOG2); }
inline std::size_t BucketIndex(dshash_hash h, std::size_t size_log2) {
  return static_cast<std::size_t>(h) >> (kHashBits - size_log2);
}
inline std::size_t BucketsPerPartition(std::size_t size_log2) { return std::size_t{1} << (size_log2 - kMinSizeLog2); }
inline std::size_t FirstBucket(std::size_t partition, std::size_t size_log2) {
  return partition << (size_log2 - kMinSizeLog2);
}
inline std::size_t PartitionForBucket(std::size_t bucket, std::size_t size_log2) {
  return bucket >> (size_log2 - kMinSizeLog2);
}
// Grow when a partition holds more than 3/4 of an item per bucket
// (PostgreSQL's threshold: chains stay short, a doubling is rare).
inline std::size_t MaxCountPerPartition(std::size_t size_log2) {
  return BucketsPerPartition(size_log2) / 2 + BucketsPerPartition(size_log2) / 4;
}

inline void* EntryOf(Item* item) { return reinterpret_cast<char*>(item) + kItemHeaderSize; }
inline Item* ItemOf(void* entry) { return reinterpret_cast<Item*>(static_cast<char*>(entry) - kItemHeaderSize); }

enum ScanState : int { kScanNotStarted = 0, kScanRunning, kScanFinished, kScanFailed };

}  // namespace

// One process's handle. Lock ordering rule 2: it holds at most one
// partition lock for its caller, described by held_*.
struct dshash_table {
  dsa_area* area;
  dshash_parameters params;
  void* arg;
  Control* control;
  // This process's address of control->buckets and its size, refreshed
  // under a partition lock (EnsureBuckets); valid while one is held.
  dsa_pointer* buckets;
  std::size_t size_log2;
  int held_partition;           // -1: no lock held for the caller
  void* held_entry;             // the entry handed out, or nullptr for a scan's lock
  bool held_exclusive;          // what the caller asked for (the lock is exclusive anyway)
  dshash_seq_status* scan;      // the running scan that holds held_partition
};

namespace {

// --- checks -------------------------------------------------------------------------------------

// The caller's two kinds of mistakes: an argument that cannot be right, and
// a call the state of the handle or scan does not allow.
[[noreturn]] void BadArgument(const char* fn, const char* what) {
  ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s: %s", fn, what));
  __builtin_unreachable();
}
[[noreturn]] void WrongState(const char* fn, const char* what, const char* detail = nullptr) {
  ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), errmsg("%s: %s", fn, what),
          detail != nullptr ? errdetail("%s", detail) : 0);
  __builtin_unreachable();
}

void CheckTable(const dshash_table* t, const char* fn) {
  if (t == nullptr) BadArgument(fn, "dshash_table is null");
  if (t->control->magic != kMagic) WrongState(fn, "the dshash table was destroyed");
}

// Rule 2: an operation that locks must find the handle holding nothing.
void CheckNoLockHeld(const dshash_table* t, const char* fn) {
  if (t->held_partition < 0) return;
  ereport(ERROR, errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
          errmsg("%s: this dshash_table already holds a lock", fn),
          errdetail(t->scan != nullptr ? "A sequential scan of the table is running."
                                       : "An entry returned by dshash_find or dshash_find_or_insert was not released."),
          errhint("Release the entry (dshash_release_lock) or end the scan (dshash_seq_term) first; holding two "
                  "partition locks of one table can deadlock."));
}

// The entry must be the one this handle holds for its caller.
void CheckHeldEntry(const dshash_table* t, const void* entry, const char* fn) {
  if (t == nullptr) BadArgument(fn, "dshash_table is null");
  if (entry == nullptr || t->held_entry != entry)
    WrongState(fn, "the entry is not locked by this dshash_table",
               t->held_partition < 0 ? "It holds no lock."
               : t->scan != nullptr  ? "Its lock belongs to a sequential scan."
                                     : "It holds the lock of another entry.");
}

void CheckUsable(const dshash_table* t, const char* fn) {
  CheckTable(t, fn);
  CheckNoLockHeld(t, fn);
}

void ValidateParams(const dsa_area* area, const dshash_parameters* params, const char* fn) {
  if (area == nullptr) BadArgument(fn, "dsa_area is null");
  if (params == nullptr) BadArgument(fn, "dshash_parameters is null");
  if (params->key_size == 0) BadArgument(fn, "key_size must be positive");
  if (params->entry_size < params->key_size)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("%s: entry_size %zu is smaller than key_size %zu", fn, params->entry_size, params->key_size));
  if (params->entry_size > DSA_MAX_ALLOC_SIZE - kItemHeaderSize)
    ereport(ERROR, errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
            errmsg("%s: entry_size %zu is too large (at most %zu)", fn, params->entry_size,
                   DSA_MAX_ALLOC_SIZE - kItemHeaderSize));
  if (params->compare_function == nullptr || params->hash_function == nullptr || params->copy_function == nullptr)
    BadArgument(fn, "compare_function, hash_function and copy_function must all be set");
}

// --- locks --------------------------------------------------------------------------------------

void LockPartition(dshash_table* t, std::size_t p) {
  SharedMutex* m = &t->control->partitions[p].lock;
  try {
    SharedMutexLock(m, "dshash table partition");
  } catch (const Error&) {
    if (!SharedMutexIsPoisoned(m)) throw;
    // Say which partition and what to do, rather than the mutex's generic text.
    ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED),
            errmsg("dshash table partition %zu may be inconsistent: a process died holding its lock", p),
            errdetail("Entries of that partition, or the whole table if it was being resized, may be half changed."),
            errhint("Destroy the table and build it again."));
  }
}

inline void UnlockPartition(dshash_table* t, std::size_t p) { SharedMutexUnlock(&t->control->partitions[p].lock); }

// One partition lock for the length of a scope, unless handed to the caller.
class PartitionGuard {
 public:
  PartitionGuard(dshash_table* t, std::size_t p) : t_(t), p_(p) { LockPartition(t, p); }
  ~PartitionGuard() { Unlock(); }
  PartitionGuard(const PartitionGuard&) = delete;
  PartitionGuard& operator=(const PartitionGuard&) = delete;
  void Unlock() {
    if (locked_) UnlockPartition(t_, p_);
    locked_ = false;
  }
  // The lock now belongs to the caller of the dshash function.
  void HandToCaller() { locked_ = false; }

 private:
  dshash_table* t_;
  std::size_t p_;
  bool locked_ = true;
};

// Partition locks 0, 1, 2, ... taken in ascending order (rule 1) and all
// released, last first, when the scope ends — also after an ERROR part-way.
class AscendingLocks {
 public:
  explicit AscendingLocks(dshash_table* t) : t_(t) {}
  ~AscendingLocks() {
    while (taken_ > 0) UnlockPartition(t_, --taken_);
  }
  AscendingLocks(const AscendingLocks&) = delete;
  AscendingLocks& operator=(const AscendingLocks&) = delete;
  void TakeNext() {
    LockPartition(t_, taken_);
    ++taken_;
  }
  void TakeAll() {
    while (taken_ < static_cast<std::size_t>(DSHASH_NUM_PARTITIONS)) TakeNext();
  }

 private:
  dshash_table* t_;
  std::size_t taken_ = 0;
};

// With a partition lock held: no resize can run, so control->buckets and
// size_log2 are stable; map the current array if it changed since we last
// looked.
void EnsureBuckets(dshash_table* t) {
  const Control* c = t->control;
  if (t->buckets != nullptr && t->size_log2 == c->size_log2) return;
  t->buckets = static_cast<dsa_pointer*>(dsa_get_address(t->area, c->buckets));
  t->size_log2 = c->size_log2;
}

// The lock of partition p now belongs to the caller, for `entry` (nullptr:
// for a scan).
void HoldForCaller(dshash_table* t, std::size_t p, void* entry, bool exclusive) {
  t->held_partition = static_cast<int>(p);
  t->held_entry = entry;
  t->held_exclusive = exclusive;
}

void ForgetHeld(dshash_table* t) {
  t->held_partition = -1;
  t->held_entry = nullptr;
  t->held_exclusive = false;
}

// --- buckets ------------------------------------------------------------------------------------

inline Item* ItemAt(dshash_table* t, dsa_pointer dp) { return static_cast<Item*>(dsa_get_address(t->area, dp)); }

dshash_hash HashKey(dshash_table* t, const void* key, const char* fn) {
  if (key == nullptr) BadArgument(fn, "key is null");
  return t->params.hash_function(key, t->params.key_size, t->arg);
}

inline bool KeysEqual(dshash_table* t, const void* a, const void* b) {
  return t->params.compare_function(a, b, t->params.key_size, t->arg) == 0;
}

// The item with this key in the chain starting at `dp`, or nullptr. The
// cached hash is compared first: most non-matching items cost no call.
Item* FindInBucket(dshash_table* t, const void* key, dshash_hash hash, dsa_pointer dp) {
  while (DsaPointerIsValid(dp)) {
    Item* item = ItemAt(t, dp);
    if (item->hash == hash && KeysEqual(t, key, EntryOf(item))) return item;
    dp = item->next;
  }
  return nullptr;
}

// A new item for `key`, linked at the head of `bucket`.
Item* InsertIntoBucket(dshash_table* t, const void* key, dshash_hash hash, dsa_pointer* bucket) {
  const dsa_pointer dp = dsa_allocate(t->area, kItemHeaderSize + t->params.entry_size);
  Item* item = ItemAt(t, dp);
  try {
    t->params.copy_function(EntryOf(item), key, t->params.key_size, t->arg);
  } catch (...) {
    dsa_free(t->area, dp);
    throw;
  }
  item->hash = hash;
  item->next = *bucket;
  // The item is complete before it is published: a process that dies
  // between these stores leaves an unreachable item, never a reachable
  // half-written one (the compiler must not reorder them).
  std::atomic_signal_fence(std::memory_order_release);
  *bucket = dp;
  return item;
}

// Unlinks `target` from the chain at `bucket` (one store: a chain is
// consistent at every step). Returns its dsa_pointer, or InvalidDsaPointer
// if it is not there.
dsa_pointer UnlinkItem(dshash_table* t, Item* target, dsa_pointer* bucket) {
  dsa_pointer* link = bucket;
  while (DsaPointerIsValid(*link)) {
    const dsa_pointer dp = *link;
    Item* item = ItemAt(t, dp);
    if (item == target) {
      *link = item->next;
      return dp;
    }
    link = &item->next;
  }
  return InvalidDsaPointer;
}

[[noreturn]] void ItemNotInItsBucket(const char* fn) {
  ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED),
          errmsg("%s: the entry is not in the bucket its hash names; the dshash table is corrupted", fn));
  __builtin_unreachable();
}

// --- resizing -------------------------------------------------------------------------------

// Doubles the bucket array to 2^new_size_log2 buckets, unless another
// process did it first. Called holding no partition lock.
void Resize(dshash_table* t, std::size_t new_size_log2) {
  Control* c = t->control;
  dsa_pointer old_dp;
  {
    AscendingLocks locks(t);
    locks.TakeNext();
    if (c->size_log2 >= new_size_log2) return;  // another process grew it meanwhile: done, cheaply
    locks.TakeAll();
    EnsureBuckets(t);
    Assert(new_size_log2 == t->size_log2 + 1);
    const std::size_t old_count = std::size_t{1} << t->size_log2;
    const dsa_pointer new_dp = dsa_allocate_extended(t->area, sizeof(dsa_pointer) * (std::size_t{1} << new_size_log2),
                                                     DSA_ALLOC_HUGE | DSA_ALLOC_ZERO);
    auto* new_buckets = static_cast<dsa_pointer*>(dsa_get_address(t->area, new_dp));
    // First pass, changing nothing: map every item's segment in this
    // process. The relinking pass then cannot fail part-way (it would leave
    // chains half moved) for a segment that could not be mapped.
    for (std::size_t i = 0; i < old_count; ++i) {
      dsa_pointer dp = t->buckets[i];
      while (DsaPointerIsValid(dp)) dp = ItemAt(t, dp)->next;
    }
    c->resizing = 1;
    try {
      for (std::size_t i = 0; i < old_count; ++i) {
        dsa_pointer dp = t->buckets[i];
        while (DsaPointerIsValid(dp)) {
          Item* item = ItemAt(t, dp);
          const dsa_pointer next = item->next;
          dsa_pointer* head = &new_buckets[BucketIndex(item->hash, new_size_log2)];
          item->next = *head;
          *head = dp;
          dp = next;
        }
      }
    } catch (...) {
      // Not expected after the first pass; if it happens the chains are
      // half moved, so say so to every process as a dead resizer would.
      for (Partition& p : c->partitions) p.lock.poisoned.store(1, std::memory_order_release);
      throw;
    }
    old_dp = c->buckets;
    c->buckets = new_dp;
    c->size_log2 = static_cast<std::uint32_t>(new_size_log2);
    c->resizing = 0;
    t->buckets = new_buckets;
    t->size_log2 = new_size_log2;
  }
  // Unreachable now; freed outside the locks (a failure here leaks it, no more).
  dsa_free(t->area, old_dp);
}

// Ends a scan: releases its lock, if any, and detaches it from the table.
void EndScan(dshash_seq_status* s, ScanState state) noexcept {
  dshash_table* t = s->hash_table;
  if (s->curpartition >= 0 && t != nullptr) {
    UnlockPartition(t, static_cast<std::size_t>(s->curpartition));
    ForgetHeld(t);
    t->scan = nullptr;
  }
  s->curpartition = -1;
  s->curitem = nullptr;
  s->pnextitem = InvalidDsaPointer;
  s->state = state;
}

// Lets go of whatever lock this handle holds for its caller (an entry, or
// a scan, which is then finished and forgets the table).
void ReleaseHeld(dshash_table* t) noexcept {
  if (dshash_seq_status* s = t->scan) {
    EndScan(s, kScanFinished);
    s->hash_table = nullptr;
  } else if (t->held_partition >= 0) {
    UnlockPartition(t, static_cast<std::size_t>(t->held_partition));
    ForgetHeld(t);
  }
}

dshash_table* NewHandle(dsa_area* area, const dshash_parameters* params, void* arg) {
  // The bucket array is mapped under the first partition lock taken.
  return new (palloc(sizeof(dshash_table))) dshash_table{area, *params, arg, nullptr, nullptr, 0, -1, nullptr, false, nullptr};
}

}  // namespace

// --- key functions -------------------------------------------------------------------------------

int dshash_memcmp(const void* a, const void* b, std::size_t size, void*) { return std::memcmp(a, b, size); }

namespace {
// MurmurHash3-style mixing of 8-byte words and its 64-bit finalizer: every
// input bit affects the top bits, which is what partitions and buckets use.
dshash_hash HashBytes(const void* v, std::size_t n) {
  const auto* b = static_cast<const unsigned char*>(v);
  std::uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0xc2b2ae3d27d4eb4fULL);
  auto mix = [&h](std::uint64_t k) {
    k = std::rotl(k * 0x87c37b91114253d5ULL, 31) * 0x4cf5ad432745937fULL;
    h = std::rotl(h ^ k, 27) * 5 + 0x52dce729;
  };
  for (; n >= 8; n -= 8, b += 8) {
    std::uint64_t k;
    std::memcpy(&k, b, 8);
    mix(k);
  }
  if (n > 0) {
    std::uint64_t k = 0;
    std::memcpy(&k, b, n);
    mix(k);
  }
  h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdULL;
  h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ULL;
  return static_cast<dshash_hash>((h ^ (h >> 33)) >> 32);
}

std::size_t CheckedStrlen(const void* s, std::size_t size, const char* fn) {
  const std::size_t n = strnlen(static_cast<const char*>(s), size);
  if (n == size)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("%s: string key is not terminated within the key size (%zu bytes)", fn, size));
  return n;
}
}  // namespace

dshash_hash dshash_memhash(const void* v, std::size_t size, void*) { return HashBytes(v, size); }

void dshash_memcpy(void* dest, const void* src, std::size_t size, void*) { std::memcpy(dest, src, size); }

int dshash_strcmp(const void* a, const void* b, std::size_t size, void*) {
  // Bounded: a key that lacks its NUL is caught by the hash, which runs first.
  return std::strncmp(static_cast<const char*>(a), static_cast<const char*>(b), size);
}

dshash_hash dshash_strhash(const void* v, std::size_t size, void*) {
  return HashBytes(v, CheckedStrlen(v, size, "dshash_strhash"));
}

void dshash_strcpy(void* dest, const void* src, std::size_t size, void*) {
  const std::size_t n = CheckedStrlen(src, size, "dshash_strcpy");
  std::memcpy(dest, src, n);
  std::memset(static_cast<char*>(dest) + n, 0, size - n);
}

// --- create, attach, detach, destroy -------------------------------------------------------------

dshash_table* dshash_create(dsa_area* area, const dshash_parameters* params, void* arg) {
  ValidateParams(area, params, "dshash_create");
  dshash_table* t = NewHandle(area, params, arg);
  dsa_pointer control_dp = InvalidDsaPointer;
  try {
    control_dp = dsa_allocate(area, sizeof(Control));
    // All zero, magic included: nothing can attach to a half-built table.
    auto* c = new (dsa_get_address(area, control_dp)) Control{};
    c->handle = control_dp;
    c->key_size = params->key_size;
    c->entry_size = params->entry_size;
    c->tranche_id = params->tranche_id;
    for (Partition& p : c->partitions) SharedMutexInit(&p.lock);
    // One bucket per partition to start with (PostgreSQL's choice).
    c->size_log2 = static_cast<std::uint32_t>(kMinSizeLog2);
    c->buckets = dsa_allocate_extended(area, sizeof(dsa_pointer) * DSHASH_NUM_PARTITIONS, DSA_ALLOC_ZERO);
    c->magic = kMagic;
    t->control = c;
  } catch (...) {
    if (DsaPointerIsValid(control_dp)) dsa_free(area, control_dp);
    pfree(t);
    throw;
  }
  return t;
}

dshash_table* dshash_attach(dsa_area* area, const dshash_parameters* params, dshash_table_handle handle, void* arg) {
  ValidateParams(area, params, "dshash_attach");
  if (!DsaPointerIsValid(handle)) BadArgument("dshash_attach", "invalid dshash table handle");
  // Before reading a word of it: the whole control object must lie in one
  // mapped segment of this area (both ends map, contiguously), aligned.
  Control* c = nullptr;
  try {
    auto* first = static_cast<char*>(dsa_get_address(area, handle));
    auto* last = static_cast<char*>(dsa_get_address(area, handle + sizeof(Control) - 1));
    if (last == first + sizeof(Control) - 1 && reinterpret_cast<std::uintptr_t>(first) % alignof(Control) == 0)
      c = reinterpret_cast<Control*>(first);
  } catch (const Error&) {
    c = nullptr;  // the area's own complaint; ours below names the handle
  }
  if (c == nullptr || c->magic != kMagic || c->handle != handle)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("dshash_attach: %#" PRIx64 " is not the handle of a dshash table of this area", handle));
  if (c->size_log2 < kMinSizeLog2 || c->size_log2 > kMaxSizeLog2)
    ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED),
            errmsg("dshash_attach: the dshash table's size (2^%u buckets) is impossible; it is corrupted",
                   c->size_log2));
  if (c->key_size != params->key_size || c->entry_size != params->entry_size)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("dshash_attach: key_size %zu and entry_size %zu do not match the table's (%" PRIu64 " and %" PRIu64
                   ")",
                   params->key_size, params->entry_size, c->key_size, c->entry_size));
  dshash_table* t = NewHandle(area, params, arg);
  t->control = c;
  return t;
}

dshash_table_handle dshash_get_hash_table_handle(dshash_table* table) {
  CheckTable(table, "dshash_get_hash_table_handle");
  return table->control->handle;
}

void dshash_detach(dshash_table* table) {
  if (table == nullptr) BadArgument("dshash_detach", "dshash_table is null");
  // The table may be destroyed already (by another process): only local
  // state is touched, and the held lock, which outlives a destroy only if
  // that process broke the destroy contract.
  ReleaseHeld(table);
  pfree(table);
}

void dshash_destroy(dshash_table* table) {
  CheckTable(table, "dshash_destroy");
  ReleaseHeld(table);
  Control* c = table->control;
  dsa_area* area = table->area;
  // No lock: the caller guarantees nobody else uses the table. A partition
  // whose holder died is still walked: inserts and deletes change a chain
  // with one store, so chains are whole; only a dead resize breaks them.
  const bool walk = c->resizing == 0;
  const dsa_pointer buckets_dp = c->buckets;
  const std::size_t count = std::size_t{1} << c->size_log2;
  c->magic = 0;  // first: a late attach or use fails cleanly instead of reading freed memory
  try {
    if (walk) {
      auto* buckets = static_cast<dsa_pointer*>(dsa_get_address(area, buckets_dp));
      for (std::size_t i = 0; i < count; ++i) {
        dsa_pointer dp = buckets[i];
        while (DsaPointerIsValid(dp)) {
          const dsa_pointer next = ItemAt(table, dp)->next;
          dsa_free(area, dp);
          dp = next;
        }
      }
    }
    dsa_free(area, buckets_dp);
    dsa_free(area, c->handle);
  } catch (...) {
    pfree(table);
    throw;
  }
  pfree(table);
}

// --- find, insert, delete, release ---------------------------------------------------------------

void* dshash_find(dshash_table* table, const void* key, bool exclusive) {
  CheckUsable(table, "dshash_find");
  const dshash_hash hash = HashKey(table, key, "dshash_find");
  const std::size_t p = PartitionForHash(hash);
  PartitionGuard guard(table, p);
  EnsureBuckets(table);
  Item* item = FindInBucket(table, key, hash, table->buckets[BucketIndex(hash, table->size_log2)]);
  if (item == nullptr) return nullptr;
  guard.HandToCaller();
  HoldForCaller(table, p, EntryOf(item), exclusive);
  return EntryOf(item);
}

void* dshash_find_or_insert(dshash_table* table, const void* key, bool* found) {
  CheckUsable(table, "dshash_find_or_insert");
  if (found == nullptr) BadArgument("dshash_find_or_insert", "found is null");
  const dshash_hash hash = HashKey(table, key, "dshash_find_or_insert");
  const std::size_t p = PartitionForHash(hash);
  Partition& partition = table->control->partitions[p];
  for (;;) {
    PartitionGuard guard(table, p);
    EnsureBuckets(table);
    dsa_pointer* bucket = &table->buckets[BucketIndex(hash, table->size_log2)];
    Item* item = FindInBucket(table, key, hash, *bucket);
    if (item != nullptr) {
      *found = true;
    } else {
      if (partition.count > MaxCountPerPartition(table->size_log2) && table->size_log2 < kMaxSizeLog2) {
        // This partition is over the load factor; take it as representative
        // of the table (no shared counter for all to fight over) and grow.
        // Rule 1: the resize takes every lock in order, starting from none.
        const std::size_t target = table->size_log2 + 1;
        guard.Unlock();
        Resize(table, target);
        continue;
      }
      item = InsertIntoBucket(table, key, hash, bucket);
      ++partition.count;
      *found = false;
    }
    guard.HandToCaller();
    HoldForCaller(table, p, EntryOf(item), true);
    return EntryOf(item);
  }
}

bool dshash_delete_key(dshash_table* table, const void* key) {
  CheckUsable(table, "dshash_delete_key");
  const dshash_hash hash = HashKey(table, key, "dshash_delete_key");
  const std::size_t p = PartitionForHash(hash);
  dsa_pointer victim = InvalidDsaPointer;
  {
    PartitionGuard guard(table, p);
    EnsureBuckets(table);
    dsa_pointer* bucket = &table->buckets[BucketIndex(hash, table->size_log2)];
    Item* item = FindInBucket(table, key, hash, *bucket);
    if (item == nullptr) return false;
    victim = UnlinkItem(table, item, bucket);
    Assert(DsaPointerIsValid(victim));
    --table->control->partitions[p].count;
  }
  // Unreachable now: freed outside the partition lock, which is held no
  // longer than the chain change needs.
  dsa_free(table->area, victim);
  return true;
}

void dshash_release_lock(dshash_table* table, void* entry) {
  CheckHeldEntry(table, entry, "dshash_release_lock");
  DshashReleaseIfHeld(table, entry);
}

bool DshashReleaseIfHeld(dshash_table* table, void* entry) noexcept {
  if (table == nullptr || entry == nullptr || table->held_entry != entry) return false;
  UnlockPartition(table, static_cast<std::size_t>(table->held_partition));
  ForgetHeld(table);
  return true;
}

void dshash_delete_entry(dshash_table* table, void* entry) {
  CheckHeldEntry(table, entry, "dshash_delete_entry");
  if (!table->held_exclusive)
    WrongState("dshash_delete_entry", "the entry was found with exclusive=false",
               "Deleting needs an exclusive lock: dshash_find(..., true) or dshash_find_or_insert.");
  const auto p = static_cast<std::size_t>(table->held_partition);
  Item* item = ItemOf(entry);
  // The lock held since the entry was found keeps buckets and size_log2 valid.
  dsa_pointer victim = UnlinkItem(table, item, &table->buckets[BucketIndex(item->hash, table->size_log2)]);
  if (DsaPointerIsValid(victim)) --table->control->partitions[p].count;
  UnlockPartition(table, p);
  ForgetHeld(table);
  if (!DsaPointerIsValid(victim)) ItemNotInItsBucket("dshash_delete_entry");
  dsa_free(table->area, victim);
}

// --- sequential scans ----------------------------------------------------------------------------

namespace {

void* SeqNext(dshash_seq_status* s) {
  dshash_table* t = s->hash_table;
  dsa_pointer next;
  if (s->state == kScanNotStarted) {
    // Partition 0 first, in ascending order like a resize (rule 1). From
    // here until the scan ends some partition is locked, so the table
    // cannot grow under the scan: nbuckets stays right.
    LockPartition(t, 0);
    s->curpartition = 0;
    s->state = kScanRunning;
    HoldForCaller(t, 0, nullptr, s->exclusive);
    t->scan = s;
    EnsureBuckets(t);
    s->nbuckets = std::size_t{1} << t->size_log2;
    s->curbucket = 0;
    next = t->buckets[0];
  } else {
    next = s->pnextitem;
  }
  while (!DsaPointerIsValid(next)) {
    if (++s->curbucket >= s->nbuckets) {
      EndScan(s, kScanFinished);  // nothing stays locked past the last entry
      return nullptr;
    }
    const std::size_t np = PartitionForBucket(s->curbucket, t->size_log2);
    if (static_cast<int>(np) != s->curpartition) {
      // Hand over hand: the next partition before the current one is let go,
      // so that no resize slips in between (rule 1 keeps this deadlock-free).
      LockPartition(t, np);
      UnlockPartition(t, static_cast<std::size_t>(s->curpartition));
      s->curpartition = static_cast<int>(np);
      t->held_partition = static_cast<int>(np);
    }
    next = t->buckets[s->curbucket];
  }
  Item* item = ItemAt(t, next);
  s->curitem = item;
  s->pnextitem = item->next;  // read now: the caller may delete this item
  return EntryOf(item);
}

}  // namespace

dshash_seq_status::~dshash_seq_status() { dshash_seq_term(this); }

void dshash_seq_init(dshash_seq_status* status, dshash_table* table, bool exclusive) {
  if (status == nullptr) BadArgument("dshash_seq_init", "status is null");
  CheckTable(table, "dshash_seq_init");
  if (status->curpartition >= 0)
    WrongState("dshash_seq_init", "the scan is still running", "End it with dshash_seq_term first.");
  status->hash_table = table;
  status->curbucket = 0;
  status->nbuckets = 0;
  status->curitem = nullptr;
  status->pnextitem = InvalidDsaPointer;
  status->curpartition = -1;
  status->exclusive = exclusive;
  status->state = kScanNotStarted;
}

void* dshash_seq_next(dshash_seq_status* status) {
  if (status == nullptr || status->hash_table == nullptr)
    WrongState("dshash_seq_next", "the scan is not initialized, or its table was detached");
  if (status->state == kScanFinished) return nullptr;
  if (status->state == kScanFailed) WrongState("dshash_seq_next", "the scan was ended by an earlier error");
  if (status->state == kScanNotStarted) CheckUsable(status->hash_table, "dshash_seq_next");
  try {
    return SeqNext(status);
  } catch (...) {
    EndScan(status, kScanFailed);  // releases the partition it held
    throw;
  }
}

void dshash_seq_term(dshash_seq_status* status) {
  if (status == nullptr) return;
  if (status->state == kScanNotStarted || status->state == kScanRunning) EndScan(status, kScanFinished);
}

void dshash_delete_current(dshash_seq_status* status) {
  const char* fn = "dshash_delete_current";
  if (status == nullptr || status->hash_table == nullptr || status->state != kScanRunning)
    WrongState(fn, "no scan is running");
  if (!status->exclusive) WrongState(fn, "the scan is not exclusive");
  if (status->curitem == nullptr) WrongState(fn, "the current entry was already deleted");
  dshash_table* t = status->hash_table;
  auto* item = static_cast<Item*>(status->curitem);
  const dsa_pointer victim = UnlinkItem(t, item, &t->buckets[status->curbucket]);
  if (!DsaPointerIsValid(victim)) ItemNotInItsBucket("dshash_delete_current");
  --t->control->partitions[status->curpartition].count;
  status->curitem = nullptr;
  // Freed under the scan's lock (the scan keeps it for the next entry).
  dsa_free(t->area, victim);
}

// --- statistics, verification, dump --------------------------------------------------------------

namespace {

struct PartitionInfo {
  std::size_t count, first_bucket, end_bucket, empty_buckets, longest_chain;
};

// Calls f(partition info) for every partition, with every partition locked.
template <typename F>
void WithAllPartitions(dshash_table* t, const char* fn, F&& f) {
  CheckUsable(t, fn);
  AscendingLocks locks(t);
  locks.TakeAll();
  EnsureBuckets(t);
  for (std::size_t p = 0; p < static_cast<std::size_t>(DSHASH_NUM_PARTITIONS); ++p) {
    PartitionInfo info{t->control->partitions[p].count, FirstBucket(p, t->size_log2), FirstBucket(p + 1, t->size_log2),
                       0, 0};
    for (std::size_t b = info.first_bucket; b < info.end_bucket; ++b) {
      std::size_t len = 0;
      for (dsa_pointer dp = t->buckets[b]; DsaPointerIsValid(dp); dp = ItemAt(t, dp)->next) ++len;
      info.empty_buckets += len == 0;
      info.longest_chain = std::max(info.longest_chain, len);
    }
    f(p, info);
  }
}

// The first violation in one partition's buckets, or "".
std::string VerifyPartition(dshash_table* t, std::size_t p, const PartitionInfo& info) {
  std::size_t seen = 0;
  for (std::size_t b = info.first_bucket; b < info.end_bucket; ++b) {
    const std::string where = "bucket " + std::to_string(b) + " (partition " + std::to_string(p) + ")";
    for (dsa_pointer dp = t->buckets[b]; DsaPointerIsValid(dp); dp = ItemAt(t, dp)->next) {
      Item* item = ItemAt(t, dp);
      if (++seen > info.count) return where + ": more items than the partition counts";  // or a cycle
      if (BucketIndex(item->hash, t->size_log2) != b) return where + ": an item whose hash names another bucket";
      if (t->params.hash_function(EntryOf(item), t->params.key_size, t->arg) != item->hash)
        return where + ": an item caches a hash its key does not have";
      for (dsa_pointer o = item->next; DsaPointerIsValid(o); o = ItemAt(t, o)->next)
        if (ItemAt(t, o)->hash == item->hash && KeysEqual(t, EntryOf(item), EntryOf(ItemAt(t, o))))
          return where + ": a key appears twice";
    }
  }
  if (seen != info.count)
    return "partition " + std::to_string(p) + " counts " + std::to_string(info.count) + " items but holds " +
           std::to_string(seen);
  return "";
}

}  // namespace

DshashStats dshash_get_stats(dshash_table* table) {
  DshashStats st{};
  st.min_partition_entries = SIZE_MAX;
  WithAllPartitions(table, "dshash_get_stats", [&](std::size_t, const PartitionInfo& info) {
    st.entries += info.count;
    st.min_partition_entries = std::min(st.min_partition_entries, info.count);
    st.max_partition_entries = std::max(st.max_partition_entries, info.count);
    st.empty_buckets += info.empty_buckets;
    st.longest_chain = std::max(st.longest_chain, info.longest_chain);
  });
  st.size_log2 = table->size_log2;
  st.buckets = std::size_t{1} << table->size_log2;
  return st;
}

bool dshash_verify(dshash_table* table, std::string* why) {
  std::string problem;
  WithAllPartitions(table, "dshash_verify", [&](std::size_t p, const PartitionInfo& info) {
    if (problem.empty()) problem = VerifyPartition(table, p, info);
  });
  if (problem.empty() && table->control->resizing != 0) problem = "a resize is marked as running";
  if (why != nullptr) *why = problem;
  return problem.empty();
}

std::string dshash_dump_string(dshash_table* table) {
  char line[256];
  std::size_t total = 0;
  std::string parts;
  WithAllPartitions(table, "dshash_dump", [&](std::size_t p, const PartitionInfo& info) {
    total += info.count;
    std::snprintf(line, sizeof line, "  partition %zu: %zu entries, buckets %zu..%zu (%zu empty), longest chain %zu\n",
                  p, info.count, info.first_bucket, info.end_bucket - 1, info.empty_buckets, info.longest_chain);
    parts += line;
  });
  const Control* c = table->control;
  std::snprintf(line, sizeof line,
                "dshash table %#" PRIx64 " (tranche %d): key %" PRIu64 " bytes, entry %" PRIu64
                " bytes, %zu buckets (2^%zu), %zu entries\n",
                c->handle, c->tranche_id, c->key_size, c->entry_size, std::size_t{1} << table->size_log2,
                table->size_log2, total);
  return line + parts;
}

void dshash_dump(dshash_table* table) { std::fputs(dshash_dump_string(table).c_str(), stderr); }

}  // namespace grove
