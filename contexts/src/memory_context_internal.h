// What every allocator shares (internal to contexts/): the context node,
// the method table, block acquisition with accounting and limits, and the
// one place where allocation failure is turned into an ERROR.
#pragma once

#include <cstddef>
#include <cstdint>

#include "grove/contexts/memutils.h"
#include "memdebug.h"
#include "memory_chunk.h"

namespace grove::mcxt {

struct MemoryContextMethods {
  /// Returns nullptr only when `flags` has MCXT_ALLOC_NO_OOM and memory ran
  /// out; otherwise raises ERROR. Never sees size == 0 specially.
  void* (*alloc)(MemoryContext context, std::size_t size, int flags);
  void (*free_p)(void* pointer);
  void* (*realloc)(void* pointer, std::size_t size, int flags);
  /// Frees all chunks; the context stays usable. Children are not touched.
  void (*reset)(MemoryContext context);
  /// Frees everything, the context node included.
  void (*delete_context)(MemoryContext context);
  MemoryContext (*get_chunk_context)(void* pointer);
  std::size_t (*get_chunk_space)(void* pointer);
  bool (*is_empty)(MemoryContext context);
  void (*stats)(MemoryContext context, MemoryContextCounters* counters);
  /// Checking builds: verifies every chunk, reports problems as WARNINGs.
  void (*check)(MemoryContext context);
  /// Gives back blocks held only for reuse (retained by reset, spare empty
  /// blocks). Never touches live chunks.
  void (*trim)(MemoryContext context);
  const char* name;
};

// One method table per allocator (defined in alloc_set.cc, generation.cc, …).
extern const MemoryContextMethods kAllocSetMethods;
extern const MemoryContextMethods kGenerationMethods;
extern const MemoryContextMethods kSlabMethods;
extern const MemoryContextMethods kBumpMethods;
extern const MemoryContextMethods kAlignedRedirectMethods;

/// Dispatch table indexed by the method id in a chunk header. Reserved ids
/// have entries that raise "invalid pointer" errors.
extern const MemoryContextMethods* const kMethodsById[kNumMethodIds];

}  // namespace grove::mcxt

namespace grove {

/// The node every context type starts with. Invariants:
/// * mem_allocated == sum of the sizes of the blocks this context holds
///   (its node's own block included), as obtained from the system.
/// * For a context with a limit (limit != 0): subtree_bytes == sum of
///   mem_allocated over its subtree, and subtree_bytes <= limit.
/// * limit_holder is the nearest context at or above this one with a limit
///   (nullptr when there is none); a limited context's limit_parent is the
///   nearest limited context strictly above it.
struct MemoryContextData {
  const mcxt::MemoryContextMethods* methods;
  unsigned method_id;
  bool isReset;  ///< nothing allocated since the last reset
  std::size_t mem_allocated;
  MemoryContext parent;
  MemoryContext firstchild;
  MemoryContext prevchild;
  MemoryContext nextchild;
  const char* name;
  const char* ident;
  MemoryContextCallback* reset_cbs;
  MemoryContext limit_holder;
  MemoryContext limit_parent;
  std::size_t limit;
  std::size_t subtree_bytes;
  std::size_t retain_bytes;  ///< how much a reset may keep beyond the keeper block
};

}  // namespace grove

namespace grove::mcxt {

/// Links a freshly initialized node into the tree under `parent` (nullptr:
/// a root) and sets the common fields. The allocator has already set
/// mem_allocated and obtained its first block through AcquireFirstBlock.
void MemoryContextCreate(MemoryContext node, const MemoryContextMethods* methods, unsigned method_id,
                         MemoryContext parent, const char* name);

/// Obtains a block of `size` bytes for `context`, charging its limits.
/// Returns nullptr when a limit or the system refuses; the reason is kept
/// for the error that AllocationFailure raises.
void* AcquireBlock(MemoryContext context, std::size_t size);
/// Gives a block back and uncharges it.
void ReleaseBlock(MemoryContext context, void* block, std::size_t size);
/// The first block of a context being created under `parent`, before the
/// node exists; charged to the parent's limits. Registered and counted by
/// AdoptFirstBlock once the node is initialized.
void* AcquireFirstBlock(MemoryContext parent, std::size_t size);
void AdoptFirstBlock(MemoryContext context, void* block, std::size_t size);
/// Undoes AcquireFirstBlock when creation fails before AdoptFirstBlock.
void ReleaseFirstBlock(MemoryContext parent, void* block, std::size_t size);

/// Creation could not get its first block: ERROR "out of memory" naming the
/// context being created (and the limit that refused, if one did).
void* CreationFailure(MemoryContext parent, const char* name, std::size_t size);
/// ERROR unless the block sizes are usable: initBlockSize >= 1024,
/// initBlockSize <= maxBlockSize <= 1 GiB, multiples of 8, and minContextSize
/// 0 or within [1024, maxBlockSize].
void ValidateBlockSizes(const char* name, std::size_t minContextSize, std::size_t initBlockSize,
                        std::size_t maxBlockSize);

/// Visits the strict descendants of `root` in pre-order without recursion
/// (trees can be deep, and walks run on the out-of-memory path). `visit(n)`
/// returns whether to descend into n's children.
template <typename Visit>
void ForEachDescendant(MemoryContext root, Visit visit) {
  MemoryContext n = root->firstchild;
  while (n != nullptr) {
    if (visit(n) && n->firstchild != nullptr) {
      n = n->firstchild;
      continue;
    }
    while (n != root && n->nextchild == nullptr) n = n->parent;
    if (n == root) break;
    n = n->nextchild;
  }
}

/// Trims every context of the subtree (see MemoryContextMethods::trim).
/// Returns whether anything was given back. Used when a limit refuses a
/// block: memory held only for reuse must not cause an out-of-memory error.
bool TrimSubtree(MemoryContext root);

/// Charges / uncharges `bytes` to every limited context from `start` up.
/// Charge returns false (and changes nothing) if a limit would be exceeded.
bool LimitCharge(MemoryContext start, std::size_t bytes);
void LimitUncharge(MemoryContext start, std::size_t bytes);

/// The one place where running out of memory is handled: returns nullptr
/// for MCXT_ALLOC_NO_OOM, otherwise dumps statistics (if enabled) and raises
/// ERROR "out of memory" naming the request, the context and, when a limit
/// refused, the limited context.
void* AllocationFailure(MemoryContext context, std::size_t size, int flags);
/// ERROR "invalid memory alloc request size N" for sizes over the maximum.
[[noreturn]] void InvalidAllocSize(std::size_t size);
/// Checks a request size against MaxAllocSize / MaxAllocHugeSize per flags.
inline void CheckAllocSize(std::size_t size, int flags) {
  if (GROVE_UNLIKELY(size > MaxAllocSize) &&
      (!(flags & MCXT_ALLOC_HUGE) || size > MaxAllocHugeSize))
    InvalidAllocSize(size);
}

/// Where a reset puts the blocks it keeps; shared by the allocators that
/// retain blocks. Returns whether `size` more bytes may be retained.
inline bool MayRetain(MemoryContext context, std::size_t retained_so_far, std::size_t size) {
  return retained_so_far + size <= context->retain_bytes;
}

// --- checking builds ---------------------------------------------------------
/// The registry of live blocks lets pfree() prove a pointer is grove's before
/// reading its header. Checking builds only; no-ops otherwise.
/// Returns false if the registry could not record the block (it is then
/// not handed out).
bool RegisterBlock(const void* start, std::size_t size, MemoryContext owner);
void UnregisterBlock(const void* start);
void ReassignBlock(const void* start, MemoryContext owner);
struct BlockEntry {
  const char* start;
  const char* end;
  MemoryContext owner;
};
/// Finds the live block containing `p`; false if none.
bool LookupBlock(const void* p, BlockEntry* entry);

/// Reports "detected write past chunk end in NAME %p" as a WARNING.
void ReportSentinelDamage(MemoryContext context, const void* chunk);
/// A WARNING from an allocator's consistency check. Goes to stderr instead
/// of the message sink when the context is ErrorContext or the thread is
/// exiting (the sink may be gone).
void CheckWarning(MemoryContext context, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
/// Whether the calling thread is freeing its tree at exit.
bool TearingDown();

// Per-allocator check of a header-bearing chunk for the method table.
[[noreturn]] void BogusPointer(const char* caller, const void* p, const char* why);

}  // namespace grove::mcxt
