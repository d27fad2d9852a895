// shm_toc: a table of contents at the start of a shared memory area.
// create/attach (a wrong magic number attaches nothing), chunks from
// shm_toc_allocate (aligned to SHM_TOC_ALIGNMENT, distinct, inside the
// area), insert/lookup, a duplicate key and a missing key, running out of
// room on allocate and on insert, shm_toc_freespace, the estimator (an area
// of exactly shm_toc_estimate() bytes holds what was estimated), a TOC in a
// DSM segment read and extended by another process, and 1000 keys.
#include <algorithm>
#include <cstdint>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "dsa_test_support.h"

namespace grove::test {
namespace {

using ShmTocTest = DsmTest;

constexpr std::uint64_t kMagic = 0x746f637465737431ull;  // "toctest1"

/// A heap area aligned to SHM_TOC_ALIGNMENT, filled with garbage (a TOC
/// must not need zeroed memory), followed by guard bytes that nothing may
/// touch (ASan also reports any access past `size`... within the guard the
/// bytes are checked by hand, so the check holds in every build).
class Area {
 public:
  explicit Area(std::size_t size, std::size_t offset = 0) : size_(size), offset_(offset) {
    raw_ = static_cast<unsigned char*>(::operator new (offset + size + kGuard, std::align_val_t{SHM_TOC_ALIGNMENT}));
    std::memset(raw_, 0xa5, offset + size);
    std::memset(raw_ + offset + size, kGuardByte, kGuard);
  }
  ~Area() { ::operator delete (raw_, std::align_val_t{SHM_TOC_ALIGNMENT}); }
  Area(const Area&) = delete;
  Area& operator=(const Area&) = delete;

  void* get() const { return raw_ + offset_; }
  std::size_t size() const { return size_; }
  bool GuardIntact() const {
    for (std::size_t i = 0; i < kGuard; ++i)
      if (raw_[offset_ + size_ + i] != kGuardByte) return false;
    return true;
  }
  /// Whether [p, p+n) lies inside the area.
  bool Holds(const void* p, std::size_t n) const {
    const auto* b = static_cast<const unsigned char*>(p);
    const auto* start = raw_ + offset_;
    return b >= start && n <= size_ && b <= start + size_ - n;
  }

 private:
  static constexpr std::size_t kGuard = 256;
  static constexpr unsigned char kGuardByte = 0xee;
  unsigned char* raw_;
  std::size_t size_;
  std::size_t offset_;
};

bool Aligned(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % SHM_TOC_ALIGNMENT == 0; }

// shm_toc_create puts the TOC at the start of the area; attaching with the
// same magic number finds it (same TOC, same entries); another magic number,
// or an area where no TOC was created, attaches nothing.
TEST_F(ShmTocTest, CreateAndAttach) {
  Area area(4096);
  shm_toc* toc = shm_toc_create(kMagic, area.get(), area.size());
  ASSERT_NE(toc, nullptr);
  EXPECT_EQ(static_cast<void*>(toc), area.get()) << "the TOC is at the start of the area";
  void* chunk = shm_toc_allocate(toc, 100);
  shm_toc_insert(toc, 1, chunk);

  shm_toc* again = shm_toc_attach(kMagic, area.get());
  ASSERT_EQ(again, toc);
  EXPECT_EQ(shm_toc_lookup(again, 1, false), chunk);
  EXPECT_EQ(shm_toc_attach(kMagic + 1, area.get()), nullptr) << "a wrong magic number must not attach";
  EXPECT_EQ(shm_toc_attach(~kMagic, area.get()), nullptr);

  Area other(4096);  // garbage, never a TOC
  EXPECT_EQ(shm_toc_attach(kMagic, other.get()), nullptr);
  EXPECT_TRUE(area.GuardIntact());
}

// A new TOC is empty whatever the area held before: lookups find nothing.
TEST_F(ShmTocTest, NewTocIsEmptyOverGarbage) {
  Area area(2048);
  shm_toc* toc = shm_toc_create(kMagic, area.get(), area.size());
  for (std::uint64_t key : {0ull, 1ull, 0xa5a5a5a5a5a5a5a5ull, ~0ull})
    EXPECT_EQ(shm_toc_lookup(toc, key, true), nullptr);
}

// Chunks of many sizes (1 B to 1000 B): each aligned to SHM_TOC_ALIGNMENT,
// inside the area, no two overlapping, none overlapping the TOC's own
// entries — each keeps its pattern while keys are inserted around it.
TEST_F(ShmTocTest, AllocateIsAlignedDistinctAndWithinTheArea) {
  Area area(16384);
  shm_toc* toc = shm_toc_create(kMagic, area.get(), area.size());
  const std::vector<std::size_t> sizes = {1, 7, 8, 63, 64, 65, 100, 127, 128, 129, 500, 1000, 1, 64};
  std::vector<std::pair<unsigned char*, std::size_t>> chunks;
  for (std::size_t n : sizes) {
    auto* p = static_cast<unsigned char*>(shm_toc_allocate(toc, n));
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(Aligned(p)) << "chunk of " << n << " bytes at " << static_cast<void*>(p);
    EXPECT_TRUE(area.Holds(p, n)) << "chunk of " << n << " bytes outside the area";
    chunks.emplace_back(p, n);
  }
  for (std::size_t i = 0; i < chunks.size(); ++i)
    for (std::size_t j = i + 1; j < chunks.size(); ++j) {
      const auto [a, na] = chunks[i];
      const auto [b, nb] = chunks[j];
      EXPECT_TRUE(a + na <= b || b + nb <= a) << "chunks " << i << " and " << j << " overlap";
    }
  for (std::size_t i = 0; i < chunks.size(); ++i)
    FillPattern(chunks[i].first, chunks[i].second, static_cast<unsigned>(i));
  for (std::size_t i = 0; i < chunks.size(); ++i) shm_toc_insert(toc, 100 + i, chunks[i].first);
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_TRUE(HasPattern(chunks[i].first, chunks[i].second, static_cast<unsigned>(i)))
        << "chunk " << i << " was overwritten by the TOC";
    EXPECT_EQ(shm_toc_lookup(toc, 100 + i, false), chunks[i].first);
  }
  EXPECT_TRUE(area.GuardIntact());
}

// Insert then lookup: every key gives back exactly the address inserted,
// in any order; keys 0 and ~0 are ordinary keys.
TEST_F(ShmTocTest, InsertAndLookup) {
  Area area(8192);
  shm_toc* toc = shm_toc_create(kMagic, area.get(), area.size());
  const std::vector<std::uint64_t> keys = {42, 0, ~0ull, 7, 0x8000000000000000ull};
  std::vector<void*> addrs;
  for (std::uint64_t k : keys) {
    addrs.push_back(shm_toc_allocate(toc, 32));
    shm_toc_insert(toc, k, addrs.back());
  }
  for (std::size_t i = keys.size(); i-- > 0;) EXPECT_EQ(shm_toc_lookup(toc, keys[i], false), addrs[i]) << keys[i];
  for (std::size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(shm_toc_lookup(toc, keys[i], true), addrs[i]) << keys[i];
}

// Inserting a key that is already there is an ERROR; the first entry stands.
TEST_F(ShmTocTest, DuplicateKeyIsAnError) {
  Area area(4096);
  shm_toc* toc = shm_toc_create(kMagic, area.get(), area.size());
  void* first = shm_toc_allocate(toc, 64);
  void* second = shm_toc_allocate(toc, 64);
  shm_toc_insert(toc, 5, first);
  auto err = CatchError([&] { shm_toc_insert(toc, 5, second); });
  ASSERT_TRUE(err.has_value()) << "a duplicate key must be refused";
  EXPECT_EQ(shm_toc_lookup(toc, 5, false), first);
  shm_toc_insert(toc, 6, second);  // the TOC still works
  EXPECT_EQ(shm_toc_lookup(toc, 6, false), second);
}

// A missing key: nullptr with noError; otherwise an ERROR naming the key.
TEST_F(ShmTocTest, MissingKey) {
  Area area(4096);
  shm_toc* toc = shm_toc_create(kMagic, area.get(), area.size());
  shm_toc_insert(toc, 1, shm_toc_allocate(toc, 8));
  EXPECT_EQ(shm_toc_lookup(toc, 987654321, true), nullptr);
  auto err = CatchError([&] { shm_toc_lookup(toc, 987654321, false); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(Contains(err->message(), "987654321")) << "the error should name the key: " << err->Format();
}

// Allocating more than is left is an ERROR "out of shared memory" that
// changes nothing: the free space is the same, earlier chunks and entries
// are intact, and a request that fits still succeeds.
TEST_F(ShmTocTest, AllocateOutOfSpaceIsAnError) {
  Area area(2048);
  shm_toc* toc = shm_toc_create(kMagic, area.get(), area.size());
  void* kept = shm_toc_allocate(toc, 256);
  FillPattern(kept, 256, 30);
  shm_toc_insert(toc, 1, kept);
  const std::size_t free_before = shm_toc_freespace(toc);
  auto err = CatchError([&] { shm_toc_allocate(toc, 4096); });
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(Contains(err->message(), "out of shared memory")) << err->Format();
  EXPECT_EQ(shm_toc_freespace(toc), free_before);
  EXPECT_TRUE(HasPattern(kept, 256, 30));
  EXPECT_EQ(shm_toc_lookup(toc, 1, false), kept);
  // Run it dry chunk by chunk: it ends in the same ERROR, never overflows.
  int chunks = 0;
  std::optional<Error> dry;
  while (!(dry = CatchError([&] { shm_toc_allocate(toc, 64); })).has_value()) {
    ASSERT_LT(++chunks, 1000) << "2 KiB cannot hold 1000 chunks of 64 B";
  }
  EXPECT_TRUE(Contains(dry->message(), "out of shared memory")) << dry->Format();
  EXPECT_TRUE(HasPattern(kept, 256, 30));
  EXPECT_TRUE(area.GuardIntact());
}

// shm_toc_freespace is what shm_toc_allocate can still give while keeping
// room for one more key: allocating exactly that much succeeds, and then
// one more key still fits.
TEST_F(ShmTocTest, FreespaceCanBeAllocatedAndStillFitsOneKey) {
  for (std::size_t size : {std::size_t{512}, std::size_t{1000}, std::size_t{4096}}) {
    SCOPED_TRACE("area of " + std::to_string(size) + " bytes");
    Area area(size);
    shm_toc* toc = shm_toc_create(kMagic, area.get(), area.size());
    shm_toc_insert(toc, 1, shm_toc_allocate(toc, 10));
    const std::size_t free = shm_toc_freespace(toc);
    ASSERT_GT(free, 0u);
    void* last = nullptr;
    auto err = CatchError([&] { last = shm_toc_allocate(toc, free); });
    ASSERT_FALSE(err.has_value()) << "allocating shm_toc_freespace() bytes failed: " << err->Format();
    EXPECT_TRUE(area.Holds(last, free));
    err = CatchError([&] { shm_toc_insert(toc, 2, last); });
    EXPECT_FALSE(err.has_value()) << "freespace promised room for one more key: " << err->Format();
    EXPECT_EQ(shm_toc_lookup(toc, 2, false), last);
    EXPECT_TRUE(area.GuardIntact());
  }
}

// Inserting when the entries have no room left is an ERROR "out of shared
// memory"; the keys inserted before stay findable.
TEST_F(ShmTocTest, InsertOutOfSpaceIsAnError) {
  Area area(1024);
  shm_toc* toc = shm_toc_create(kMagic, area.get(), area.size());
  void* chunk = shm_toc_allocate(toc, shm_toc_freespace(toc));  // leaves room for one key
  std::uint64_t key = 0;
  std::optional<Error> err;
  while (!(err = CatchError([&] { shm_toc_insert(toc, key, chunk); })).has_value()) {
    ++key;
    ASSERT_LT(key, 1000u) << "1 KiB cannot hold 1000 entries";
  }
  EXPECT_GE(key, 1u) << "freespace promised room for one key";
  EXPECT_TRUE(Contains(err->message(), "out of shared memory")) << err->Format();
  for (std::uint64_t k = 0; k < key; ++k) EXPECT_EQ(shm_toc_lookup(toc, k, false), chunk) << k;
  EXPECT_EQ(shm_toc_lookup(toc, key, true), nullptr) << "the refused key must not be there";
  EXPECT_TRUE(area.GuardIntact());
}

// An area of exactly shm_toc_estimate() bytes holds the estimated chunks
// and keys, in any order of allocation and insertion, for several mixes of
// sizes; every chunk lies inside the area.
TEST_F(ShmTocTest, EstimatedAreaFitsWhatWasEstimated) {
  const std::vector<std::vector<std::size_t>> mixes = {
      {1}, {64}, {65, 1, 4096}, {8, 8, 8, 8, 8, 8, 8, 8, 8, 8}, {1000, 24, 333, 64, 127, 129, 1, 5000},
  };
  for (const auto& mix : mixes) {
    for (const std::size_t extra_keys : {std::size_t{0}, std::size_t{3}}) {
      for (const bool keys_first : {false, true}) {
        SCOPED_TRACE(std::to_string(mix.size()) + " chunks, " + std::to_string(extra_keys) + " extra keys, " +
                     (keys_first ? "inserting as allocated" : "allocating all first"));
        shm_toc_estimator e;
        shm_toc_initialize_estimator(&e);
        for (std::size_t n : mix) shm_toc_estimate_chunk(&e, n);
        shm_toc_estimate_keys(&e, mix.size() + extra_keys);
        const std::size_t bytes = shm_toc_estimate(&e);
        Area area(bytes);
        shm_toc* toc = shm_toc_create(kMagic, area.get(), bytes);
        std::vector<void*> chunks;
        std::uint64_t key = 0;
        auto err = CatchError([&] {
          for (std::size_t n : mix) {
            chunks.push_back(shm_toc_allocate(toc, n));
            if (keys_first) shm_toc_insert(toc, key++, chunks.back());
          }
          if (!keys_first)
            for (void* c : chunks) shm_toc_insert(toc, key++, c);
          for (std::size_t i = 0; i < extra_keys; ++i) shm_toc_insert(toc, key++, chunks.front());
        });
        ASSERT_FALSE(err.has_value()) << "the estimated area was too small: " << err->Format();
        for (std::size_t i = 0; i < mix.size(); ++i) {
          EXPECT_TRUE(area.Holds(chunks[i], mix[i])) << "chunk " << i;
          EXPECT_TRUE(Aligned(chunks[i])) << "chunk " << i;
          FillPattern(chunks[i], mix[i], static_cast<unsigned>(i));
        }
        for (std::size_t i = 0; i < mix.size(); ++i) {
          EXPECT_TRUE(HasPattern(chunks[i], mix[i], static_cast<unsigned>(i))) << "chunk " << i;
          EXPECT_EQ(shm_toc_lookup(toc, i, false), chunks[i]);
        }
        EXPECT_TRUE(area.GuardIntact());
      }
    }
  }
}

// The estimator starts from nothing, grows with each chunk and key, and an
// empty estimate still makes room for a TOC.
TEST_F(ShmTocTest, EstimatorAccumulates) {
  shm_toc_estimator e;
  e.space_for_chunks = 12345;  // initialize must reset whatever was there
  e.number_of_keys = 678;
  shm_toc_initialize_estimator(&e);
  const std::size_t empty = shm_toc_estimate(&e);
  EXPECT_GT(empty, 0u);
  Area area(empty);
  EXPECT_NE(shm_toc_create(kMagic, area.get(), empty), nullptr);
  shm_toc_estimate_chunk(&e, 100);
  const std::size_t one_chunk = shm_toc_estimate(&e);
  EXPECT_GE(one_chunk, empty + 100);
  shm_toc_estimate_keys(&e, 10);
  EXPECT_GT(shm_toc_estimate(&e), one_chunk);
}

// Chunks are aligned to SHM_TOC_ALIGNMENT even when the area itself is not
// (it starts 8 bytes past a cache line): the header promises the alignment
// of every chunk, and states no requirement on the area's address.
TEST_F(ShmTocTest, ChunksAreAlignedEvenInAnUnalignedArea) {
  Area area(4096, /*offset=*/8);
  shm_toc* toc = shm_toc_create(kMagic, area.get(), area.size());
  for (std::size_t n : {std::size_t{1}, std::size_t{64}, std::size_t{100}}) {
    void* p = shm_toc_allocate(toc, n);
    EXPECT_TRUE(Aligned(p)) << "chunk of " << n << " bytes at " << p << " (area at " << area.get() << ")";
    EXPECT_TRUE(area.Holds(p, n));
  }
  EXPECT_TRUE(area.GuardIntact());
}

// A TOC in a DSM segment, read by another process where the segment is
// mapped at another address: a child attaches the segment and the TOC,
// looks up the parent's keys (wrong magic: nullptr; missing key: nullptr
// with noError), checks the data, allocates and inserts an entry of its own
// and writes an answer; the parent finds the child's entry and its data.
TEST_F(ShmTocTest, LookupFromAnotherProcess) {
  struct Shared {
    std::uint64_t values[8];
    std::uint64_t answer;
  };
  shm_toc_estimator e;
  shm_toc_initialize_estimator(&e);
  shm_toc_estimate_chunk(&e, sizeof(Shared));
  shm_toc_estimate_chunk(&e, 4096);
  shm_toc_estimate_chunk(&e, 128);  // the child's
  shm_toc_estimate_keys(&e, 3);
  const std::size_t bytes = shm_toc_estimate(&e);
  dsm_segment* seg = Create(bytes);
  shm_toc* toc = shm_toc_create(kMagic, dsm_segment_address(seg), bytes);
  auto* shared = static_cast<Shared*>(shm_toc_allocate(toc, sizeof(Shared)));
  for (int i = 0; i < 8; ++i) shared->values[i] = 1000 + i;
  shared->answer = 0;
  shm_toc_insert(toc, 1, shared);
  void* blob = shm_toc_allocate(toc, 4096);
  FillPattern(blob, 4096, 31);
  shm_toc_insert(toc, 2, blob);
  const dsm_handle h = dsm_segment_handle(seg);

  const pid_t child = RunChild([h] {
    dsm_segment* att = dsm_attach(h);
    CHILD_REQUIRE(shm_toc_attach(kMagic + 1, dsm_segment_address(att)) == nullptr);
    shm_toc* t = shm_toc_attach(kMagic, dsm_segment_address(att));
    CHILD_REQUIRE(t != nullptr);
    auto* s = static_cast<Shared*>(shm_toc_lookup(t, 1, false));
    CHILD_REQUIRE(s != nullptr);
    std::uint64_t sum = 0;
    for (int i = 0; i < 8; ++i) sum += s->values[i];
    CHILD_REQUIRE(sum == 8 * 1000 + 28);
    CHILD_REQUIRE(HasPattern(shm_toc_lookup(t, 2, false), 4096, 31));
    CHILD_REQUIRE(shm_toc_lookup(t, 99, true) == nullptr);
    void* mine = shm_toc_allocate(t, 128);
    FillPattern(mine, 128, 32);
    shm_toc_insert(t, 3, mine);
    s->answer = sum;
    dsm_detach(att);
    return 0;
  });
  ExpectChildSucceeded(child);
  EXPECT_EQ(shared->answer, 8u * 1000 + 28);
  void* childs = shm_toc_lookup(toc, 3, true);
  ASSERT_NE(childs, nullptr) << "the child's entry must be visible to the parent";
  EXPECT_TRUE(HasPattern(childs, 128, 32));
  dsm_detach(seg);
}

// 1000 keys, each with its own chunk holding its key: all found, each at
// its own chunk; absent keys are not; a duplicate among them is refused.
// The area is exactly the estimate for 1000 chunks and keys.
TEST_F(ShmTocTest, ThousandKeys) {
  constexpr std::uint64_t kKeys = 1000;
  shm_toc_estimator e;
  shm_toc_initialize_estimator(&e);
  for (std::uint64_t i = 0; i < kKeys; ++i) shm_toc_estimate_chunk(&e, sizeof(std::uint64_t) * (1 + i % 3));
  shm_toc_estimate_keys(&e, kKeys);
  const std::size_t bytes = shm_toc_estimate(&e);
  dsm_segment* seg = Create(bytes);
  shm_toc* toc = shm_toc_create(kMagic, dsm_segment_address(seg), bytes);
  auto key_of = [](std::uint64_t i) { return i * 0x9e3779b97f4a7c15ull + 17; };  // scattered keys
  std::vector<void*> chunks;
  for (std::uint64_t i = 0; i < kKeys; ++i) {
    auto* c = static_cast<std::uint64_t*>(shm_toc_allocate(toc, sizeof(std::uint64_t) * (1 + i % 3)));
    *c = key_of(i);
    shm_toc_insert(toc, key_of(i), c);
    chunks.push_back(c);
  }
  for (std::uint64_t i = kKeys; i-- > 0;) {
    auto* c = static_cast<std::uint64_t*>(shm_toc_lookup(toc, key_of(i), false));
    ASSERT_EQ(c, chunks[i]) << "key " << i;
    EXPECT_EQ(*c, key_of(i));
  }
  for (std::uint64_t i = kKeys; i < kKeys + 100; ++i) EXPECT_EQ(shm_toc_lookup(toc, key_of(i), true), nullptr);
  EXPECT_TRUE(CatchError([&] { shm_toc_insert(toc, key_of(500), chunks[0]); }).has_value());
  EXPECT_EQ(shm_toc_lookup(toc, key_of(500), false), chunks[500]);
  dsm_detach(seg);
}

}  // namespace
}  // namespace grove::test
