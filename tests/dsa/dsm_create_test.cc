// dsm_create / dsm_detach in one process: the address is usable and zeroed,
// the mapping is at least as long as asked, handles are valid and unique,
// the segment's name is in /dev/shm while attached and gone after the last
// detach, and the registry counts what this process created.
#include <set>
#include <string>
#include <vector>

#include "dsa_test_support.h"

namespace grove::test {
namespace {

using DsmCreateTest = DsmTest;

// For each size (1 B, 4 KiB, 1 MiB, 64 MiB): a valid handle, a mapping at
// least that long, every byte zero, every byte writable and read back; one
// new name "grove.<pid>.*" in /dev/shm while attached, none after detach.
TEST_F(DsmCreateTest, SizesAreZeroedUsableAndNamedWhileAttached) {
  for (const std::size_t size : {std::size_t{1}, std::size_t{4096}, std::size_t{1} << 20, std::size_t{64} << 20}) {
    SCOPED_TRACE("size " + std::to_string(size));
    const std::vector<std::string> before = SegmentNamesOf(self_);
    dsm_segment* seg = Create(size);
    ASSERT_NE(seg, nullptr);
    const dsm_handle h = dsm_segment_handle(seg);
    EXPECT_NE(h, DSM_HANDLE_INVALID);
    EXPECT_GE(dsm_segment_map_length(seg), size);
    void* addr = dsm_segment_address(seg);
    ASSERT_NE(addr, nullptr);
    EXPECT_TRUE(IsAllZero(addr, dsm_segment_map_length(seg))) << "a new segment must be zeroed";
    FillPattern(addr, size, 1);
    EXPECT_TRUE(HasPattern(addr, size, 1));
    const std::string name = SingleNewName(before);
    EXPECT_EQ(name.rfind(PidPrefix(self_), 0), 0u) << name;
    EXPECT_TRUE(ShmNameExists(name));
    EXPECT_EQ(dsm_find_mapping(h), seg);

    dsm_detach(seg);
    EXPECT_FALSE(ShmNameExists(name)) << name << " must go with the last detach";
    EXPECT_EQ(dsm_find_mapping(h), nullptr);
    EXPECT_EQ(SegmentNamesOf(self_), before);
  }
}

// The whole mapping, not only the bytes asked for, is zeroed and writable
// (a page-rounded tail must not be a trap).
TEST_F(DsmCreateTest, WholeMapLengthIsWritable) {
  dsm_segment* seg = Create(100);
  ASSERT_NE(seg, nullptr);
  const std::size_t len = dsm_segment_map_length(seg);
  ASSERT_GE(len, 100u);
  EXPECT_TRUE(IsAllZero(dsm_segment_address(seg), len));
  FillPattern(dsm_segment_address(seg), len, 2);
  EXPECT_TRUE(HasPattern(dsm_segment_address(seg), len, 2));
  dsm_detach(seg);
}

// A zero-byte segment is still a segment: valid handle, a name, detachable.
TEST_F(DsmCreateTest, ZeroBytes) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsm_segment* seg = Create(0);
  ASSERT_NE(seg, nullptr);
  EXPECT_NE(dsm_segment_handle(seg), DSM_HANDLE_INVALID);
  EXPECT_EQ(NewNames(before, SegmentNamesOf(self_)).size(), 1u);
  dsm_detach(seg);
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// Fifty segments at once: fifty distinct valid handles, fifty distinct
// names, fifty distinct non-overlapping mappings; each keeps its own data.
TEST_F(DsmCreateTest, HandlesNamesAndMappingsAreDistinct) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  std::vector<dsm_segment*> segs;
  std::set<dsm_handle> handles;
  for (unsigned i = 0; i < 50; ++i) {
    dsm_segment* seg = Create(8192);
    ASSERT_NE(seg, nullptr);
    segs.push_back(seg);
    EXPECT_NE(dsm_segment_handle(seg), DSM_HANDLE_INVALID);
    handles.insert(dsm_segment_handle(seg));
    FillPattern(dsm_segment_address(seg), 8192, i);
  }
  EXPECT_EQ(handles.size(), 50u) << "handles must be unique";
  EXPECT_EQ(NewNames(before, SegmentNamesOf(self_)).size(), 50u);
  for (std::size_t i = 0; i < segs.size(); ++i) {
    EXPECT_TRUE(HasPattern(dsm_segment_address(segs[i]), 8192, static_cast<unsigned>(i))) << "segment " << i;
    EXPECT_EQ(dsm_find_mapping(dsm_segment_handle(segs[i])), segs[i]);
    const auto* a = static_cast<const char*>(dsm_segment_address(segs[i]));
    for (std::size_t j = i + 1; j < segs.size(); ++j) {
      const auto* b = static_cast<const char*>(dsm_segment_address(segs[j]));
      EXPECT_TRUE(a + 8192 <= b || b + 8192 <= a) << "mappings " << i << " and " << j << " overlap";
    }
  }
  for (dsm_segment* seg : segs) dsm_detach(seg);
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// A handle is not reused while its segment lives, nor right after: a new
// segment created after one is destroyed gets a new handle (else a stale
// handle kept somewhere would attach a different segment without an error).
TEST_F(DsmCreateTest, HandleOfDestroyedSegmentIsNotReusedAtOnce) {
  dsm_segment* a = Create(64);
  const dsm_handle ha = dsm_segment_handle(a);
  dsm_detach(a);
  dsm_segment* b = Create(64);
  EXPECT_NE(dsm_segment_handle(b), ha);
  dsm_detach(b);
}

// dsm_created_segment_count counts this process's segments that exist:
// +1 per create, -1 per destroying detach.
TEST_F(DsmCreateTest, CreatedSegmentCountFollowsCreateAndDetach) {
  const std::size_t base = dsm_created_segment_count();
  dsm_segment* a = Create(10);
  EXPECT_EQ(dsm_created_segment_count(), base + 1);
  dsm_segment* b = Create(10);
  EXPECT_EQ(dsm_created_segment_count(), base + 2);
  dsm_detach(a);
  EXPECT_EQ(dsm_created_segment_count(), base + 1);
  dsm_detach(b);
  EXPECT_EQ(dsm_created_segment_count(), base);
}

// DsmAttachment detaches at scope exit; release() hands the attachment back
// without detaching; a moved-from attachment detaches nothing.
TEST_F(DsmCreateTest, DsmAttachmentRaii) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsm_handle h;
  {
    DsmAttachment att(Create(128));
    ASSERT_NE(att.get(), nullptr);
    h = dsm_segment_handle(att.get());
    DsmAttachment moved(std::move(att));
    EXPECT_EQ(att.get(), nullptr);
    EXPECT_EQ(dsm_find_mapping(h), moved.get());
  }
  EXPECT_EQ(dsm_find_mapping(h), nullptr);
  EXPECT_EQ(SegmentNamesOf(self_), before);

  dsm_segment* raw;
  {
    DsmAttachment att(Create(128));
    raw = att.release();
  }
  EXPECT_EQ(dsm_find_mapping(dsm_segment_handle(raw)), raw) << "release() must not detach";
  dsm_detach(raw);
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// A size beyond any sensible limit is an ERROR, and leaves nothing.
TEST_F(DsmCreateTest, AbsurdSizeIsAnError) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  const std::size_t base = dsm_created_segment_count();
  auto err = CatchError([&] { Create(SIZE_MAX - 4096); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(SegmentNamesOf(self_), before);
  EXPECT_EQ(dsm_created_segment_count(), base);
}

}  // namespace
}  // namespace grove::test
