// Concurrent hash tables stored in a dynamic shared area (PostgreSQL's
// lib/dshash.h; grove's code): any process attached to the area finds,
// inserts and deletes entries, each operation locking one of 128 partitions.
//
//   dshash_parameters params{sizeof(Key), sizeof(Entry), dshash_memcmp, dshash_memhash, dshash_memcpy};
//   dshash_table* t = dshash_create(area, &params, nullptr);        // leader
//   ... hand dshash_get_hash_table_handle(t) to a worker ...
//   dshash_table* w = dshash_attach(area, &params, handle, nullptr);  // worker
//   bool found;
//   auto* e = static_cast<Entry*>(dshash_find_or_insert(w, &key, &found));
//   if (!found) e->count = 0;
//   ++e->count;
//   dshash_release_lock(w, e);
//
// Design:
// * A control object in the area holds a magic number, the key and entry
//   sizes, 128 partitions (a lock and an entry count each, one cache line)
//   and the bucket array: 2^size_log2 dsa_pointers heading chains of items.
//   An item is a header (next item, the key's cached hash) followed by the
//   caller's entry, whose first key_size bytes are the key.
// * The top 7 bits of a key's 32-bit hash choose its partition, the top
//   size_log2 bits its bucket, so each partition owns a contiguous run of
//   buckets and doubling the array splits every bucket in two without
//   moving an item to another partition.
// * When an insert finds its partition's entries above 3/4 of the
//   partition's buckets, the array doubles: all partition locks are taken,
//   items are relinked into a new array, the old one is freed. The table
//   never shrinks.
//
// Locks. Each partition has a SharedMutex (shared_mutex.h): robust and
// process-shared, so a process that dies holding one turns every later
// access to that partition into an ERROR "... may be inconsistent" instead
// of a hang. Unlike PostgreSQL's LWLocks they are exclusive only:
// dshash_find(..., exclusive=false) and a shared scan lock their partition
// exclusively as well (readers of one partition wait for each other). The
// `exclusive` arguments are still checked — dshash_delete_entry and
// dshash_delete_current need an exclusive lock — so that code written
// against this API stays correct if shared locking is added.
//
// Lock ordering (what keeps the table free of deadlocks):
// 1. Whoever takes more than one partition lock takes them in ascending
//    partition order: a resize (all 128), a scan (hand over hand, the next
//    partition before the current one is let go), dshash_dump and the
//    statistics and verification walks (all 128).
// 2. A dshash_table (one process's handle) holds at most one partition lock
//    for its caller: the entry dshash_find / dshash_find_or_insert returned,
//    or the position of its one running scan. Every other operation on that
//    handle while it does is an ERROR (as PostgreSQL asserts): it would wait
//    for itself, or hold one lock while a resize waits for it in ascending
//    order. Other handles — other tables, or the same table attached twice —
//    are the caller's business: holding entries of two tables at once can
//    deadlock with a process doing the same in the opposite order.
// 3. The area's own locks (dsa_allocate, dsa_free) are taken inside a
//    partition lock, never the other way round.
// No function returns to its caller holding a partition lock, except for the
// entry it returns (released by dshash_release_lock or dshash_delete_entry)
// and a scan's position (released when the scan moves on, ends or is
// terminated).
//
// Lifetimes: a dshash_table is process-local, allocated in
// CurrentMemoryContext at create/attach, and is used by one thread at a
// time; it must be detached (dshash_detach) before its dsa_area is. The
// table itself lives in the area until dshash_destroy (or until the area
// goes). Keys are compared and hashed with the functions given at
// create/attach: every process must use the same ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "grove/dsa/dsa.h"

namespace grove {

/// A hash of a key. Tables use its high bits (partition, then bucket).
using dshash_hash = std::uint32_t;

/// Names a table across processes (the dsa_pointer of its control object).
using dshash_table_handle = dsa_pointer;
inline constexpr dshash_table_handle DSHASH_HANDLE_INVALID = InvalidDsaPointer;

/// Returns <0, 0 or >0 as memcmp. `size` is the key size; `arg` is the
/// pointer given at dshash_create / dshash_attach.
using dshash_compare_function = int (*)(const void* a, const void* b, std::size_t size, void* arg);
using dshash_hash_function = dshash_hash (*)(const void* v, std::size_t size, void* arg);
/// Copies a key into a new entry.
using dshash_copy_function = void (*)(void* dest, const void* src, std::size_t size, void* arg);

struct dshash_parameters {
  std::size_t key_size;    ///< the first key_size bytes of an entry are its key (> 0)
  std::size_t entry_size;  ///< the whole entry, key included (≥ key_size)
  dshash_compare_function compare_function;
  dshash_hash_function hash_function;
  dshash_copy_function copy_function;
  int tranche_id = 0;      ///< kept for PostgreSQL's shape; shown by dshash_dump
};

/// Number of lock partitions (PostgreSQL's NUM_BUFFER_PARTITIONS).
inline constexpr int DSHASH_NUM_PARTITIONS_LOG2 = 7;
inline constexpr int DSHASH_NUM_PARTITIONS = 1 << DSHASH_NUM_PARTITIONS_LOG2;

struct dshash_table;  // one process's handle on a table

/// Keys compared, hashed and copied as key_size raw bytes.
int dshash_memcmp(const void* a, const void* b, std::size_t size, void* arg);
dshash_hash dshash_memhash(const void* v, std::size_t size, void* arg);
void dshash_memcpy(void* dest, const void* src, std::size_t size, void* arg);
/// Keys that are NUL-terminated strings in a key_size buffer. A string with
/// no NUL in its first key_size bytes is an ERROR (hash and copy check it;
/// the hash is always computed first). The copy zero-fills the rest of the
/// key, so equal strings have equal key bytes.
int dshash_strcmp(const void* a, const void* b, std::size_t size, void* arg);
dshash_hash dshash_strhash(const void* v, std::size_t size, void* arg);
void dshash_strcpy(void* dest, const void* src, std::size_t size, void* arg);

/// Creates an empty table in `area`. ERROR for parameters that cannot work
/// (a zero key size, an entry smaller than its key or larger than an area
/// allocation, a missing function) and when the area is out of memory.
/// `arg` is passed to the parameter functions.
dshash_table* dshash_create(dsa_area* area, const dshash_parameters* params, void* arg);
/// Attaches a table created (in any process) with the same key and entry
/// sizes. ERROR if `handle` does not name a live table of `area` or the
/// sizes differ.
dshash_table* dshash_attach(dsa_area* area, const dshash_parameters* params, dshash_table_handle handle, void* arg);
dshash_table_handle dshash_get_hash_table_handle(dshash_table* table);
/// Frees the handle. The table stays in the area. A lock the handle still
/// holds (an entry not released, a scan not terminated after an ERROR) is
/// released first: detaching is how a caller unwinding from an error lets
/// go of everything.
void dshash_detach(dshash_table* table);
/// Frees every entry, the bucket array and the control object, then the
/// handle. Nobody else may use the table any more (other processes only
/// dshash_detach their handles). A table a process died resizing (every
/// partition then reports inconsistency) is freed without walking its
/// entries, which stay allocated until the area goes.
void dshash_destroy(dshash_table* table);

/// The entry with this key, locked (release it with dshash_release_lock), or
/// nullptr (nothing locked). See the header comment on `exclusive`.
void* dshash_find(dshash_table* table, const void* key, bool exclusive);
/// The entry with this key, exclusively locked; a new one (key copied in,
/// the rest uninitialized, *found = false) if there was none.
void* dshash_find_or_insert(dshash_table* table, const void* key, bool* found);
/// Deletes the entry with this key; false if there was none.
bool dshash_delete_key(dshash_table* table, const void* key);
/// Deletes an entry this handle holds exclusively (from dshash_find with
/// exclusive=true or dshash_find_or_insert) and releases its lock.
void dshash_delete_entry(dshash_table* table, void* entry);
/// Releases the lock on an entry this handle holds. ERROR for an entry it
/// does not hold.
void dshash_release_lock(dshash_table* table, void* entry);

/// A sequential scan. Default-constructed it is not usable; dshash_seq_init
/// sets it up. Destroying a scan that still holds a lock terminates it, so an
/// ERROR unwinding through a scan releases its partition. A scan must not
/// outlive its dshash_table.
struct dshash_seq_status {
  dshash_seq_status() = default;
  ~dshash_seq_status();
  dshash_seq_status(const dshash_seq_status&) = delete;
  dshash_seq_status& operator=(const dshash_seq_status&) = delete;

  dshash_table* hash_table = nullptr;
  std::size_t curbucket = 0;     ///< bucket of the current item
  std::size_t nbuckets = 0;      ///< buckets when the scan started (no resize while it runs)
  void* curitem = nullptr;       ///< the item last returned (nullptr once deleted)
  dsa_pointer pnextitem = InvalidDsaPointer;  ///< read before returning, so the current item may go
  int curpartition = -1;         ///< the partition locked by the scan, -1 for none
  bool exclusive = false;
  int state = 0;                 ///< internal: not started, running, finished, failed
};

/// Prepares a scan of every entry; takes no lock yet.
void dshash_seq_init(dshash_seq_status* status, dshash_table* table, bool exclusive);
/// The next entry, with its partition locked, or nullptr at the end (then
/// no lock is held). Each entry present for the whole scan is returned
/// exactly once. The table cannot grow while a scan holds a lock, and
/// inserts into partitions the scan has passed wait for nothing, so a
/// scan's view is of each partition as it reaches it.
void* dshash_seq_next(dshash_seq_status* status);
/// Ends a scan early (harmless after the end, or twice).
void dshash_seq_term(dshash_seq_status* status);
/// Deletes the entry dshash_seq_next just returned; the scan must be
/// exclusive. The scan goes on with the next entry.
void dshash_delete_current(dshash_seq_status* status);

/// Statistics, counted under all partition locks.
struct DshashStats {
  std::size_t entries;
  std::size_t size_log2;          ///< buckets = 2^size_log2
  std::size_t buckets;
  std::size_t empty_buckets;
  std::size_t longest_chain;
  std::size_t min_partition_entries;
  std::size_t max_partition_entries;
};
DshashStats dshash_get_stats(dshash_table* table);
/// Checks the table's invariants under all partition locks: every item sits
/// in the bucket its cached hash names, the cached hash is the key's hash,
/// no key appears twice in a bucket, partition counts match their chains.
/// Returns false and describes the first violation in `why`.
bool dshash_verify(dshash_table* table, std::string* why);
/// Sizes, per-partition counts and chain lengths, as text.
std::string dshash_dump_string(dshash_table* table);
/// Writes dshash_dump_string to stderr.
void dshash_dump(dshash_table* table);

/// Releases the lock on `entry` if this handle holds it; never fails (for
/// destructors). True if it did release.
bool DshashReleaseIfHeld(dshash_table* table, void* entry) noexcept;

/// RAII over an entry returned by dshash_find / dshash_find_or_insert: the
/// lock is released when the guard goes, also when an ERROR unwinds.
class DshashEntryLock {
 public:
  DshashEntryLock(dshash_table* table, void* entry) : table_(table), entry_(entry) {}
  ~DshashEntryLock() {
    if (entry_ != nullptr) DshashReleaseIfHeld(table_, entry_);
  }
  DshashEntryLock(const DshashEntryLock&) = delete;
  DshashEntryLock& operator=(const DshashEntryLock&) = delete;

  void* get() const { return entry_; }
  explicit operator bool() const { return entry_ != nullptr; }
  /// Gives the lock back to the caller (who must release it).
  void* release() {
    void* e = entry_;
    entry_ = nullptr;
    return e;
  }
  /// Deletes the entry (and releases its lock). If that is an ERROR while
  /// the lock is still held (a shared lock), the guard still releases it.
  void Delete() {
    dshash_delete_entry(table_, entry_);
    entry_ = nullptr;
  }

 private:
  dshash_table* table_;
  void* entry_;
};

}  // namespace grove
