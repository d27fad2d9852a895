// shm_toc: a table of contents at the start of a shared memory area
// (PostgreSQL's shm_toc.h). Keyed entries point at chunks allocated from
// the same area; entries grow forward from the header, chunks are carved
// backward from the end. Lookups take no lock: an entry is published with a
// release store of the entry count after it is written. Allocation and
// insertion take a spinlock that is not robust (as PostgreSQL's): they are
// done by the area's creator while it sets the area up, before others use it.
//
//   shm_toc_estimator e; shm_toc_initialize_estimator(&e);
//   shm_toc_estimate_chunk(&e, sizeof(Shared)); shm_toc_estimate_keys(&e, 1);
//   dsm_segment* seg = dsm_create(shm_toc_estimate(&e));
//   shm_toc* toc = shm_toc_create(MAGIC, dsm_segment_address(seg), shm_toc_estimate(&e));
//   auto* shared = static_cast<Shared*>(shm_toc_allocate(toc, sizeof(Shared)));
//   shm_toc_insert(toc, KEY_SHARED, shared);
//   ... in another process: shm_toc_attach(MAGIC, address); shm_toc_lookup(toc, KEY_SHARED, false)
#pragma once

#include <cstddef>
#include <cstdint>

namespace grove {

struct shm_toc;

struct shm_toc_estimator {
  std::size_t space_for_chunks;
  std::size_t number_of_keys;
};

/// Alignment of every chunk shm_toc_allocate returns (a cache line).
inline constexpr std::size_t SHM_TOC_ALIGNMENT = 64;

/// `address` must be 8-byte aligned; chunks are 64-byte aligned whatever
/// the area's start (an unaligned area loses up to 63 bytes at its end).
shm_toc* shm_toc_create(std::uint64_t magic, void* address, std::size_t nbytes);
/// nullptr if the magic number does not match (not a TOC, or another kind).
shm_toc* shm_toc_attach(std::uint64_t magic, void* address);
/// ERROR "out of shared memory" if the area has no room left.
void* shm_toc_allocate(shm_toc* toc, std::size_t nbytes);
/// Bytes still available to shm_toc_allocate (after room for one more key).
std::size_t shm_toc_freespace(shm_toc* toc);
/// ERROR if the key is already present or there is no room for an entry.
void shm_toc_insert(shm_toc* toc, std::uint64_t key, void* address);
/// nullptr if absent and noError; otherwise ERROR naming the key.
void* shm_toc_lookup(shm_toc* toc, std::uint64_t key, bool noError);

void shm_toc_initialize_estimator(shm_toc_estimator* e);
void shm_toc_estimate_chunk(shm_toc_estimator* e, std::size_t sz);
void shm_toc_estimate_keys(shm_toc_estimator* e, std::size_t cnt);
/// Bytes an area needs for the chunks and keys estimated so far.
std::size_t shm_toc_estimate(const shm_toc_estimator* e);

}  // namespace grove
