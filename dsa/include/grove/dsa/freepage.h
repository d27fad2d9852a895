// The free-page manager: runs of free pages of one shared memory segment,
// for the DSA's large allocations and superblocks (PostgreSQL's freepage.c
// plays this role; the design here is grove's own).
//
// * Position independent: it lives in shared memory and stores page
//   numbers, never pointers, so every process can use it at any address.
// * It keeps its metadata in its own array (12 bytes per page), not inside
//   the free pages, so freeing a run never touches — or faults in — the
//   pages themselves.
// * Free runs are kept in 129 lists: runs of exactly 1…128 pages, and one
//   list of longer runs. Get takes the best fit; Put merges a run with free
//   neighbours on both sides in O(1) (boundary tags on a run's first and
//   last page), so the largest contiguous run is always known exactly.
//
// Not thread-safe: the caller holds the area lock.
#pragma once

#include <cstddef>
#include <cstdint>

namespace grove {

inline constexpr std::size_t FPM_PAGE_SIZE = 4096;

struct FreePageManager;

/// Bytes a manager of `npages` pages occupies (place it in shared memory).
std::size_t FreePageManagerSize(std::size_t npages);
/// Initializes a manager of pages [0, npages), all of them in use.
/// ERROR if npages is 0 or above 2^30 - 1.
FreePageManager* FreePageManagerInitialize(void* at, std::size_t npages);

/// Frees pages [first, first + npages), merging with free neighbours.
/// ERROR if the range is outside the manager or starts or ends on the first
/// or last page of a free run. Only those boundary pages are checked:
/// freeing pages inside a free run is not detected (the caller's page map
/// knows which pages it holds).
void FreePageManagerPut(FreePageManager* fpm, std::size_t first, std::size_t npages);
/// Takes `npages` contiguous pages from the smallest free run that can hold
/// them; returns false (nothing changed) if no run is long enough.
bool FreePageManagerGet(FreePageManager* fpm, std::size_t npages, std::size_t* first);

std::size_t FreePageManagerFreePages(const FreePageManager* fpm);
/// The longest run of free pages (0 when none is free).
std::size_t FreePageManagerLargestRun(const FreePageManager* fpm);
std::size_t FreePageManagerTotalPages(const FreePageManager* fpm);
/// Verifies every invariant (lists, tags, counts); returns false and fills
/// `why` (static text) on the first violation. For tests and checking builds.
bool FreePageManagerCheck(const FreePageManager* fpm, const char** why);

}  // namespace grove
