// A pointer freed twice. dsa_free checks a pointer when it caches it; the
// second copy may reach the class's pool only after the first emptied the
// superblock and the superblock went back to its segment. The pool must
// recheck under its lock: a WARNING and the second free ignored — never a
// write through a stale span, a crash, or another class's objects touched.
#include <map>
#include <vector>

#include "dsa_area_test_support.h"
#include "../support/report_capture.h"

namespace grove::test {
namespace {

using DsaDoubleFreeTest = DsaAreaTest;

TEST_F(DsaDoubleFreeTest, SecondFreeAfterItsSuperblockWentBackIsAWarning) {
  CreateArea();
  // 8 KiB objects: eight to a superblock, so four superblocks.
  std::vector<dsa_pointer> objects;
  for (int i = 0; i < 32; ++i) objects.push_back(dsa_allocate(area_, 8192));
  std::map<std::uint64_t, std::vector<dsa_pointer>> by_superblock;
  for (dsa_pointer dp : objects) by_superblock[dp / 65536].push_back(dp);
  ASSERT_GE(by_superblock.size(), 3u);
  auto it = by_superblock.begin();
  const std::vector<dsa_pointer> a = it->second;
  const std::vector<dsa_pointer> c = std::next(it, 2)->second;
  ASSERT_EQ(a.size(), 8u);
  MessageCapture capture;
  dsa_free(area_, a[0]);
  for (int i = 1; i < 8; ++i) dsa_free(area_, a[i]);
  dsa_free(area_, a[0]);  // twice
  for (dsa_pointer dp : c) dsa_free(area_, dp);
  dsa_trim(area_);        // drains the cache: superblock A empties, then the duplicate arrives
  EXPECT_EQ(capture.CountContaining("freed twice"), 1u) << capture.All();
  EXPECT_AREA_CONSISTENT(area_);
  for (const auto& [sb, dps] : by_superblock)
    if (dps != a && dps != c)
      for (dsa_pointer dp : dps) dsa_free(area_, dp);
  dsa_trim(area_);
  EXPECT_AREA_CONSISTENT(area_);
  EXPECT_EQ(dsa_get_total_size(area_), initial_);
}

}  // namespace
}  // namespace grove::test
