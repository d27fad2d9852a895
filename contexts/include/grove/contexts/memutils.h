// Creating and managing memory contexts: the tree, the four allocators,
// well-known contexts, statistics, limits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>

#include "grove/contexts/palloc.h"

namespace grove {

/// Largest ordinary request: 1 GiB - 1. The chunk header stores sizes in 30 bits.
inline constexpr std::size_t MaxAllocSize = (std::size_t{1} << 30) - 1;
/// Largest MCXT_ALLOC_HUGE request.
inline constexpr std::size_t MaxAllocHugeSize = SIZE_MAX / 2;
inline constexpr bool AllocSizeIsValid(std::size_t size) { return size <= MaxAllocSize; }
inline constexpr bool AllocHugeSizeIsValid(std::size_t size) { return size <= MaxAllocHugeSize; }

/// Root of the thread's tree. Never reset or deleted while the thread runs.
extern thread_local constinit MemoryContext TopMemoryContext;
/// Where error reports are formatted; keeps 8 KiB reserved so that
/// "out of memory" can always be reported. Reset after each report.
extern thread_local constinit MemoryContext ErrorContext;

/// Sets up TopMemoryContext and ErrorContext for the calling thread (done
/// automatically on first use; calling it again does nothing).
void MemoryContextInit();

// --- AllocSet: the general-purpose allocator ------------------------------
// (minContextSize, initBlockSize, maxBlockSize) presets, as PostgreSQL.
#define ALLOCSET_DEFAULT_MINSIZE 0
#define ALLOCSET_DEFAULT_INITSIZE (8 * 1024)
#define ALLOCSET_DEFAULT_MAXSIZE (8 * 1024 * 1024)
#define ALLOCSET_DEFAULT_SIZES ALLOCSET_DEFAULT_MINSIZE, ALLOCSET_DEFAULT_INITSIZE, ALLOCSET_DEFAULT_MAXSIZE
#define ALLOCSET_SMALL_MINSIZE 0
#define ALLOCSET_SMALL_INITSIZE (1 * 1024)
#define ALLOCSET_SMALL_MAXSIZE (8 * 1024)
#define ALLOCSET_SMALL_SIZES ALLOCSET_SMALL_MINSIZE, ALLOCSET_SMALL_INITSIZE, ALLOCSET_SMALL_MAXSIZE
#define ALLOCSET_START_SMALL_SIZES ALLOCSET_SMALL_MINSIZE, ALLOCSET_SMALL_INITSIZE, ALLOCSET_DEFAULT_MAXSIZE
/// Largest chunk an AllocSet serves from its blocks; larger ones get their own block.
#define ALLOC_CHUNK_LIMIT (8 * 1024)

/// `name` must be a string with static lifetime (as PostgreSQL requires);
/// use MemoryContextSetIdentifier for dynamic text.
MemoryContext AllocSetContextCreate(MemoryContext parent, const char* name, std::size_t minContextSize,
                                    std::size_t initBlockSize, std::size_t maxBlockSize);

// --- Slab: fixed-size chunks -------------------------------------------------
#define SLAB_DEFAULT_BLOCK_SIZE (8 * 1024)
#define SLAB_LARGE_BLOCK_SIZE (8 * 1024 * 1024)
MemoryContext SlabContextCreate(MemoryContext parent, const char* name, std::size_t blockSize,
                                std::size_t chunkSize);

// --- Generation: chunks freed roughly in allocation order --------------------
MemoryContext GenerationContextCreate(MemoryContext parent, const char* name, std::size_t minContextSize,
                                      std::size_t initBlockSize, std::size_t maxBlockSize);

// --- Bump: no per-chunk header, no pfree ------------------------------------
MemoryContext BumpContextCreate(MemoryContext parent, const char* name, std::size_t minContextSize,
                                std::size_t initBlockSize, std::size_t maxBlockSize);

// --- The tree -------------------------------------------------------------------
/// Frees everything allocated in `context` and deletes its descendants.
void MemoryContextReset(MemoryContext context);
/// Frees the context's own memory; children are left alone.
void MemoryContextResetOnly(MemoryContext context);
/// Resets all descendants, not the context itself.
void MemoryContextResetChildren(MemoryContext context);
/// Deletes the context and its descendants (children first; each context's
/// reset callbacks run before its memory goes). Deleting the current context
/// or one of its ancestors is an ERROR.
void MemoryContextDelete(MemoryContext context);
void MemoryContextDeleteChildren(MemoryContext context);
/// Moves `context` under `new_parent` (nullptr: make it a root). Making a
/// context its own descendant is an ERROR.
void MemoryContextSetParent(MemoryContext context, MemoryContext new_parent);
/// Attaches a descriptive string shown in statistics. Not copied: it must
/// outlive the context (allocate it in the context itself), as PostgreSQL.
void MemoryContextSetIdentifier(MemoryContext context, const char* id);

MemoryContext MemoryContextGetParent(MemoryContext context);
const char* MemoryContextGetName(MemoryContext context);
/// "AllocSet", "Slab", "Generation" or "Bump".
const char* MemoryContextGetTypeName(MemoryContext context);
bool MemoryContextIsEmpty(MemoryContext context);
/// Bytes obtained from the system for this context (and its subtree if `recurse`).
std::size_t MemoryContextMemAllocated(MemoryContext context, bool recurse);
/// Whether `context` is `ancestor` or below it.
bool MemoryContextIsDescendant(MemoryContext context, MemoryContext ancestor);

// --- Beyond PostgreSQL ---------------------------------------------------------
/// Caps the bytes the subtree rooted at `context` may hold (0 removes the
/// cap). A request that would exceed a cap anywhere above it is an
/// out-of-memory ERROR naming the capped context. Setting a cap below what
/// the subtree holds now is an ERROR and changes nothing.
void MemoryContextSetLimit(MemoryContext context, std::size_t limit_bytes);
std::size_t MemoryContextGetLimit(MemoryContext context);
/// How many bytes of blocks a reset keeps for reuse instead of returning
/// them to malloc (default GROVE_DEFAULT_RETAIN_BYTES; 0 gives PostgreSQL's
/// behaviour: only the keeper block survives).
void MemoryContextSetRetention(MemoryContext context, std::size_t retain_bytes);
inline constexpr std::size_t GROVE_DEFAULT_RETAIN_BYTES = 8 * 1024 * 1024;

// --- Statistics ------------------------------------------------------------------
struct MemoryContextCounters {
  std::size_t nblocks = 0;     ///< blocks held (retained ones included)
  std::size_t freechunks = 0;  ///< chunks on free lists
  std::size_t totalspace = 0;  ///< bytes of all blocks (== mem_allocated)
  std::size_t freespace = 0;   ///< bytes not handed out: free chunks, unused block tails, retained blocks
};

/// Prints the tree below `context` to stderr as PostgreSQL does:
/// "name: N total in B blocks; F free (C chunks); U used", at most 100
/// children per context (the rest summarized), then "Grand total: ...".
void MemoryContextStats(MemoryContext context);
void MemoryContextStatsDetail(MemoryContext context, int max_level, int max_children, std::FILE* out);
/// Counters of this context alone.
MemoryContextCounters MemoryContextGetCounters(MemoryContext context);
/// Verifies every chunk of the subtree (sentinels, headers); checking builds
/// only, a no-op otherwise. Problems are reported as WARNINGs.
void MemoryContextCheck(MemoryContext context);

}  // namespace grove
