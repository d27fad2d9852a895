// dsa_get_stats and dsa_dump_string: the numbers describe the area as the
// test built it — tranche, sizes, segments, pages, large objects, and per
// size class the superblocks, capacity, objects handed out and this
// attachment's cache — and the text mentions segments and classes.
#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "dsa_area_test_support.h"
#include "grove/dsa/dsa.h"
#include "grove/dsa/dsa_testing.h"

namespace grove::test {
namespace {

constexpr std::size_t kPage = 4096;

class DsaStatsTest : public DsmTest {
 protected:
  void TearDown() override {
    for (dsa_area* a : areas_) dsa_detach(a);
    DsmTest::TearDown();
  }
  dsa_area* Keep(dsa_area* a) {
    areas_.push_back(a);
    return a;
  }
  std::vector<dsa_area*> areas_;
};

const DsaSizeClassStats* FindClass(const DsaStats& s, std::size_t object_size) {
  for (const DsaSizeClassStats& c : s.classes)
    if (c.object_size == object_size) return &c;
  return nullptr;
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// A fresh area: its tranche, one segment of the default size, every page
// free, no class and no large object.
TEST_F(DsaStatsTest, FreshArea) {
  dsa_area* area = Keep(dsa_create(42));
  const DsaStats s = dsa_get_stats(area);
  EXPECT_EQ(s.tranche_id, 42);
  EXPECT_EQ(s.total_size, DSA_DEFAULT_INIT_SEGMENT_SIZE);
  EXPECT_EQ(s.total_size, dsa_get_total_size(area));
  EXPECT_EQ(s.segments, 1u);
  EXPECT_GT(s.pages, 0u);
  EXPECT_LT(s.pages, DSA_DEFAULT_INIT_SEGMENT_SIZE / kPage) << "the segment's header takes some of it";
  EXPECT_EQ(s.free_pages, s.pages);
  EXPECT_EQ(s.largest_free_run, s.pages);
  EXPECT_EQ(s.large_objects, 0u);
  EXPECT_EQ(s.large_pages, 0u);
  EXPECT_TRUE(s.classes.empty());
}

// Small objects: the class serving 100 bytes appears with at least one
// superblock, a capacity of at least the objects handed out, at least the
// 10 allocated counted, and this attachment's cached objects among them.
// Pages in use are no longer free.
TEST_F(DsaStatsTest, SmallObjectsShowInTheirClass) {
  dsa_area* area = Keep(dsa_create());
  const std::size_t pages_free = dsa_get_stats(area).free_pages;
  std::vector<dsa_pointer> dps;
  for (int i = 0; i < 10; ++i) dps.push_back(dsa_allocate(area, 100));
  const std::size_t object_size = dsa_testing::SizeClassObjectSize(dsa_testing::SizeClassOf(100));
  const DsaStats s = dsa_get_stats(area);
  const DsaSizeClassStats* c = FindClass(s, object_size);
  ASSERT_NE(c, nullptr) << "the class of " << object_size << " bytes should be listed";
  EXPECT_GE(c->superblocks, 1u);
  EXPECT_GE(c->allocated, 10u);
  EXPECT_GE(c->objects, c->allocated);
  EXPECT_LE(c->objects, c->superblocks * 64 * kKiB / object_size);
  EXPECT_LE(c->cached_here, c->allocated - 10) << "the 10 the test holds are not in the cache";
  EXPECT_LE(s.free_pages, pages_free - 16) << "a 64 KiB superblock is 16 pages in use";
  EXPECT_EQ(s.large_objects, 0u);
  // Only classes with a superblock are listed.
  for (const DsaSizeClassStats& k : s.classes) EXPECT_GE(k.superblocks, 1u) << k.object_size;
  for (dsa_pointer dp : dps) dsa_free(area, dp);
}

// Large objects: counted one by one, with their pages (whole 4 KiB pages);
// freeing gives the pages back exactly. (The first large object may also
// take a page for the area's own span records: the exact arithmetic starts
// after it.)
TEST_F(DsaStatsTest, LargeObjectsAreCountedWithTheirPages) {
  dsa_area* area = Keep(dsa_create());
  const std::size_t free_before = dsa_get_stats(area).free_pages;
  const dsa_pointer a = dsa_allocate(area, 20 * kKiB);  // 5 pages
  DsaStats s = dsa_get_stats(area);
  EXPECT_EQ(s.large_objects, 1u);
  EXPECT_EQ(s.large_pages, 5u);
  EXPECT_LE(s.free_pages, free_before - 5);
  EXPECT_GE(s.free_pages, free_before - 6);
  const std::size_t free_a = s.free_pages;
  const dsa_pointer b = dsa_allocate(area, 20 * kKiB + 1);  // 6 pages
  const dsa_pointer c = dsa_allocate(area, 8 * kKiB + 1);   // 3 pages: above the largest class
  s = dsa_get_stats(area);
  EXPECT_EQ(s.large_objects, 3u);
  EXPECT_EQ(s.large_pages, 14u);
  EXPECT_EQ(s.free_pages, free_a - 9);
  dsa_free(area, b);
  s = dsa_get_stats(area);
  EXPECT_EQ(s.large_objects, 2u);
  EXPECT_EQ(s.large_pages, 8u);
  EXPECT_EQ(s.free_pages, free_a - 3);
  dsa_free(area, a);
  dsa_free(area, c);
  s = dsa_get_stats(area);
  EXPECT_EQ(s.large_objects, 0u);
  EXPECT_EQ(s.large_pages, 0u);
  EXPECT_EQ(s.free_pages, free_a + 5);
  EXPECT_LE(s.largest_free_run, s.free_pages);
  EXPECT_GE(s.largest_free_run + 1, s.free_pages) << "freed neighbours merge back (one page may hold spans)";
}

// Growth shows in segments, total size and pages.
TEST_F(DsaStatsTest, GrowthShowsInSegmentsAndPages) {
  dsa_area* area = Keep(dsa_create());
  const DsaStats before = dsa_get_stats(area);
  const dsa_pointer big = dsa_allocate(area, 3 * kMiB);
  const DsaStats after = dsa_get_stats(area);
  EXPECT_EQ(after.segments, 2u);
  EXPECT_GE(after.total_size, before.total_size + 3 * kMiB);
  EXPECT_GE(after.pages, before.pages + 3 * kMiB / kPage);
  EXPECT_EQ(after.large_pages, 3 * kMiB / kPage);
  EXPECT_LE(after.largest_free_run, after.free_pages);
  dsa_free(area, big);
  dsa_trim(area);
  EXPECT_EQ(dsa_get_stats(area).segments, 1u);
}

// cached_here is this attachment's cache only, and adds up over the
// classes to dsa_testing::CachedObjects; another attachment of the same
// area sees the same objects handed out but none in its own cache; a trim
// empties the cache.
TEST_F(DsaStatsTest, CachedHereIsThisAttachmentsCache) {
  dsa_area* a = Keep(dsa_create());
  dsa_area* b = Keep(dsa_attach(dsa_get_handle(a)));
  std::vector<dsa_pointer> dps;
  for (int i = 0; i < 200; ++i) dps.push_back(dsa_allocate(a, 24 + (i % 4) * 200));
  for (int i = 0; i < 200; i += 2) dsa_free(a, dps[i]);
  const DsaStats sa = dsa_get_stats(a);
  const DsaStats sb = dsa_get_stats(b);
  std::size_t cached = 0, allocated_a = 0, allocated_b = 0;
  for (const DsaSizeClassStats& c : sa.classes) {
    cached += c.cached_here;
    allocated_a += c.allocated;
    EXPECT_LE(c.cached_here, c.allocated);
  }
  for (const DsaSizeClassStats& c : sb.classes) {
    EXPECT_EQ(c.cached_here, 0u) << "b has cached nothing";
    allocated_b += c.allocated;
  }
  EXPECT_EQ(cached, dsa_testing::CachedObjects(a));
  EXPECT_EQ(allocated_a, allocated_b) << "both attachments see the same area";
  EXPECT_GE(allocated_a, 100u + cached);
  dsa_trim(a);
  EXPECT_EQ(dsa_testing::CachedObjects(a), 0u);
  for (const DsaSizeClassStats& c : dsa_get_stats(a).classes) EXPECT_EQ(c.cached_here, 0u);
  for (int i = 1; i < 200; i += 2) dsa_free(b, dps[i]);
}

// The text: mentions segments and size classes, and the object size of a
// class in use; dsa_dump writes it (to stderr) without failing.
TEST_F(DsaStatsTest, DumpMentionsSegmentsAndClasses) {
  dsa_area* area = Keep(dsa_create(7));
  const dsa_pointer small = dsa_allocate(area, 300);
  const dsa_pointer big = dsa_allocate(area, 2 * kMiB);
  const std::size_t object_size = dsa_testing::SizeClassObjectSize(dsa_testing::SizeClassOf(300));
  const std::string text = Lower(dsa_dump_string(area));
  EXPECT_TRUE(Contains(text, "segment")) << text;
  EXPECT_TRUE(Contains(text, "class")) << text;
  EXPECT_TRUE(Contains(text, std::to_string(object_size))) << text;
  dsa_dump(area);
  dsa_free(area, small);
  dsa_free(area, big);
}

}  // namespace
}  // namespace grove::test
