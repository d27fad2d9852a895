// Lifetime edges of DSM attachments found in review: a DsmAttachment is the
// only owner of its attachment (a resource owner ending first must not detach
// it behind its back), and a forked child that releases inherited resource
// owners never touches its parent's segments.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "dsa_test_support.h"
#include "grove/dsa/dsm.h"
#include "grove/dsa/shm_toc.h"
#include "grove/runtime/xact.h"

namespace grove::test {
namespace {

using DsmLifetimeTest = DsmTest;

// The name in /dev/shm of a segment: "grove.<creator pid>.<low half in hex>".
std::string SegmentName(dsm_handle handle) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "grove.%d.%08x", static_cast<int>(handle >> 32),
                static_cast<unsigned>(handle & 0xffffffffu));
  return buf;
}

// A DsmAttachment made inside a subtransaction that rolls back: the
// subtransaction's owner does not detach it (the guard took it over), so the
// guard's own detach later is the only one — no double detach, no warning.
TEST_F(DsmLifetimeTest, AttachmentGuardOutlivesItsSubtransaction) {
  InitializeDsm();
  StartTransactionCommand();
  {
    BeginInternalSubTransaction("sp");
    DsmAttachment att(dsm_create(4096));
    const std::string name = SegmentName(dsm_segment_handle(att.get()));
    RollbackAndReleaseCurrentSubTransaction();
    EXPECT_TRUE(ShmNameExists(name)) << "the rollback must not detach the guard's segment";
    static_cast<char*>(dsm_segment_address(att.get()))[0] = 1;  // still mapped
  }  // the guard detaches here, once
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_EQ(capture.CountContaining(kLeakText), 0u) << capture.All();
}

// A child forked while the parent's transaction holds a segment aborts that
// (inherited) transaction: the parent's segment stays, with its reference.
TEST_F(DsmLifetimeTest, ForkedChildReleasingInheritedOwnerLeavesParentSegment) {
  InitializeDsm();
  StartTransactionCommand();
  dsm_segment* seg = dsm_create(4096);
  const dsm_handle handle = dsm_segment_handle(seg);
  const pid_t child = RunChild([] {
    AbortCurrentTransaction();  // releases the inherited owner's DSM entry
    return 0;
  });
  const int status = Reap(child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(ShmNameExists(SegmentName(handle))) << "the child must not drop the parent's reference";
  // The parent's own attachment and reference are intact: a second process
  // can still attach, and the parent's detach is the last one.
  const pid_t reader = RunChild([handle] {
    dsm_segment* s = dsm_attach(handle);
    dsm_detach(s);
    return 0;
  });
  EXPECT_EQ(WEXITSTATUS(Reap(reader)), 0);
  EXPECT_TRUE(ShmNameExists(SegmentName(handle)));
  dsm_detach(seg);
  EXPECT_FALSE(ShmNameExists(SegmentName(handle)));
  CommitTransactionCommand();
}

// An object under a segment's name that is shorter than a segment header
// (one being created, or not grove's): attach and unpin are ERRORs, never a
// SIGBUS from mapping past its end.
TEST_F(DsmLifetimeTest, IncompleteSegmentIsAnErrorNotASigbus) {
  InitializeDsm();
  const dsm_handle handle = (static_cast<dsm_handle>(getpid()) << 32) | 0x7777abcdu;
  const std::string name = "/" + SegmentName(handle);
  const int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  close(fd);  // size 0
  EXPECT_THROW(dsm_unpin_segment(handle), Error);
  EXPECT_THROW(dsm_attach(handle), Error);
  shm_unlink(name.c_str());
}

// A request larger than the area fails cleanly, also when rounding it up
// would wrap around.
TEST_F(DsmLifetimeTest, HugeTocAllocationIsAnError) {
  alignas(64) static char area[4096];
  shm_toc* toc = shm_toc_create(1, area, sizeof area);
  EXPECT_THROW(shm_toc_allocate(toc, SIZE_MAX), Error);
  EXPECT_THROW(shm_toc_allocate(toc, SIZE_MAX - 10), Error);
  EXPECT_NE(shm_toc_allocate(toc, 64), nullptr) << "the TOC still works";
}

}  // namespace
}  // namespace grove::test
