// The dynamic shared area (PostgreSQL's dsa.h; grove's code): a heap in
// shared memory that any process attached to it can allocate from and free
// into, addressed by position-independent `dsa_pointer`s.
//
//   dsa_area* area = dsa_create();                    // leader
//   dsa_pointer dp = dsa_allocate(area, 100);
//   std::memcpy(dsa_get_address(area, dp), row, 100);
//   ... hand dsa_get_handle(area) and dp to a worker (a TOC, a queue) ...
//   dsa_area* a = dsa_attach(handle);                 // worker process
//   use(dsa_get_address(a, dp)); dsa_free(a, dp); dsa_detach(a);
//
// Design (REFERENCE.md "DSA"):
// * dsa_pointer = segment index (high 24 bits) and byte offset (low 40).
//   Segments are DSM segments, created as the area grows (1 MiB, then two of
//   each doubling size) and mapped in a process the first time it touches
//   one of their pointers. Freed segments are noticed by every process.
// * Objects up to 8 KiB come from 36 size classes, carved out of 64 KiB
//   superblocks; larger ones are runs of whole 4 KiB pages. Spans sit in
//   fullness lists; an empty superblock goes back to its segment's free
//   pages, and a segment (other than the first) with no page in use is
//   destroyed.
// * Beyond PostgreSQL:
//   - every dsa_area (one per attaching process, or thread) keeps a cache of
//     free objects per size class, refilled and drained in batches, so that
//     allocation and free of small objects take no lock most of the time and
//     processes rarely meet on one;
//   - the area's locks are robust: a process that dies holding one does not
//     hang the others; they get an ERROR saying the area may be inconsistent;
//   - dsa_trim gives back empty superblocks and free segments, so that an
//     area returns to its initial size after a burst.
//
// Lifetimes: a dsa_area belongs to CurrentResourceOwner at dsa_create /
// dsa_attach (kind "DSA area"; detached when the owner releases, with a leak
// WARNING at commit) unless dsa_pin_mapping gives it to the process. The area
// itself lives while some dsa_area is attached or it is pinned (dsa_pin),
// and at most as long as the process that created it: its segments are
// recorded in that process's registry (dsm.h), whichever process grew them.
//
// A dsa_area is used by one thread at a time. Threads of one process each
// dsa_attach the area (they share the mappings, each has its own cache).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "grove/dsa/dsm.h"

namespace grove {

/// A position-independent pointer into an area. 0 is invalid.
using dsa_pointer = std::uint64_t;
inline constexpr dsa_pointer InvalidDsaPointer = 0;
inline constexpr bool DsaPointerIsValid(dsa_pointer dp) { return dp != InvalidDsaPointer; }

/// Names an area across processes (the handle of its first segment).
using dsa_handle = dsm_handle;
inline constexpr dsa_handle DSA_HANDLE_INVALID = DSM_HANDLE_INVALID;

struct dsa_area;  // one attachment to an area

// dsa_allocate_extended flags.
inline constexpr int DSA_ALLOC_HUGE = 0x01;    ///< allow requests of 1 GiB and more
inline constexpr int DSA_ALLOC_NO_OOM = 0x02;  ///< InvalidDsaPointer instead of an ERROR when out of memory
inline constexpr int DSA_ALLOC_ZERO = 0x04;    ///< zero the object

/// Requests above this need DSA_ALLOC_HUGE (PostgreSQL's MaxAllocSize).
inline constexpr std::size_t DSA_MAX_ALLOC_SIZE = (std::size_t{1} << 30) - 1;
inline constexpr std::size_t DSA_DEFAULT_INIT_SEGMENT_SIZE = std::size_t{1} << 20;
inline constexpr std::size_t DSA_MAX_SEGMENT_SIZE = std::size_t{1} << 40;
/// An area has at most this many segments at once.
inline constexpr std::size_t DSA_MAX_SEGMENTS = 1024;

/// Creates an area in a new DSM segment of DSA_DEFAULT_INIT_SEGMENT_SIZE and
/// attaches it. `tranche_id` is kept for PostgreSQL's shape and shown in
/// statistics.
dsa_area* dsa_create(int tranche_id = 0);
/// The same with the first segment's size and the largest segment size
/// chosen (init_segment_size ≥ dsa_minimum_size(), max ≥ init).
dsa_area* dsa_create_ext(int tranche_id, std::size_t init_segment_size, std::size_t max_segment_size);
/// Creates an area whose control data and first segment live in `place`
/// (`size` bytes, 8-byte aligned, ≥ dsa_minimum_size(); typically memory in
/// a DSM segment set up with shm_toc). If `segment` is given, the area is
/// released when this process detaches it; otherwise call
/// dsa_release_in_place when done. ERROR if `place` is too small.
dsa_area* dsa_create_in_place(void* place, std::size_t size, int tranche_id, dsm_segment* segment);
/// Attaches an area created with dsa_create in another process (or this one).
/// ERROR if the handle names no live area.
dsa_area* dsa_attach(dsa_handle handle);
/// Attaches an area created in place; `segment` as in dsa_create_in_place.
dsa_area* dsa_attach_in_place(void* place, dsm_segment* segment);
/// Drops one reference of an in-place area (dsa_create/attach_in_place did
/// not have a segment to tie it to). The last one destroys its segments.
/// Never throws: a failure (a dead lock holder) is a WARNING.
void dsa_release_in_place(void* place);

/// ERROR for an area created in place (it has no handle of its own).
dsa_handle dsa_get_handle(dsa_area* area);
/// Keeps the area alive with nothing attached, until dsa_unpin.
void dsa_pin(dsa_area* area);
void dsa_unpin(dsa_area* area);
/// The attachment lives until dsa_detach or process exit, whatever happens
/// to the resource owner that held it.
void dsa_pin_mapping(dsa_area* area);
/// Gives the cached objects back, unmaps what this attachment mapped, and
/// drops its reference (the last one, unpinned, destroys the area).
void dsa_detach(dsa_area* area);

/// ERROR "out of memory" when the area cannot grow (size limit, /dev/shm
/// full, too many segments); ERROR for a size above DSA_MAX_ALLOC_SIZE.
dsa_pointer dsa_allocate(dsa_area* area, std::size_t size);
dsa_pointer dsa_allocate0(dsa_area* area, std::size_t size);
dsa_pointer dsa_allocate_extended(dsa_area* area, std::size_t size, int flags);
/// ERROR for a pointer that is not the start of an object of this area
/// (invalid, outside every segment, inside an object, on a free page).
/// Freeing an object twice is detected only when both frees reach the
/// shared pool (WARNING, the second ignored); twice into this attachment's
/// cache is not detected (as PostgreSQL, which never detects it).
void dsa_free(dsa_area* area, dsa_pointer dp);
/// The address of `dp` in this process (nullptr for InvalidDsaPointer);
/// maps the segment on first use. ERROR if `dp` lies outside every segment.
void* dsa_get_address(dsa_area* area, dsa_pointer dp);

/// Gives back this attachment's cached objects, empty superblocks kept for
/// reuse, and every segment other than the first that has no page in use.
void dsa_trim(dsa_area* area);
/// Limits the bytes of all segments together; growth beyond it fails.
void dsa_set_size_limit(dsa_area* area, std::size_t limit);
/// Bytes of all segments of the area.
std::size_t dsa_get_total_size(dsa_area* area);
/// The smallest `size` dsa_create_in_place accepts.
std::size_t dsa_minimum_size();

/// Statistics of an area. Objects held in attachments' caches count as
/// allocated (they are, from the area's point of view).
struct DsaSizeClassStats {
  std::size_t object_size;
  std::size_t superblocks;      ///< spans of this class
  std::size_t objects;          ///< capacity of those spans
  std::size_t allocated;        ///< objects handed out (to users or caches)
  std::size_t cached_here;      ///< of those, in this attachment's cache
};
struct DsaStats {
  int tranche_id;
  std::size_t total_size;       ///< bytes of all segments
  std::size_t size_limit;
  std::size_t segments;
  std::size_t pages;            ///< usable 4 KiB pages of all segments
  std::size_t free_pages;
  std::size_t largest_free_run; ///< pages, over all segments
  std::size_t large_objects;    ///< objects above 8 KiB
  std::size_t large_pages;
  std::vector<DsaSizeClassStats> classes;  ///< only classes with a superblock
};
DsaStats dsa_get_stats(dsa_area* area);
/// The statistics as text (PostgreSQL's dsa_dump layout, roughly).
std::string dsa_dump_string(dsa_area* area);
/// Writes dsa_dump_string to stderr.
void dsa_dump(dsa_area* area);

}  // namespace grove
