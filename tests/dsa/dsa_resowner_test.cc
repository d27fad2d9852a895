// Areas and resource owners: inside a transaction, dsa_create and dsa_attach
// give the attachment to CurrentResourceOwner (kind "DSA area"). A commit
// that finds it still attached detaches it with one leak WARNING ("resource
// was not closed"); an abort detaches it silently; dsa_pin_mapping gives it
// to the process; dsa_detach inside the transaction makes the owner forget
// it. Subtransactions: an abort detaches what the subtransaction attached.
// Segments an area grows or maps inside a transaction belong to the area,
// not to the transaction: they outlive it.
#include <string>
#include <vector>

#include "dsa_area_test_support.h"
#include "grove/dsa/dsa.h"
#include "grove/dsa/dsa_testing.h"

namespace grove::test {
namespace {

using DsaResownerTest = DsmTest;

// Created inside a transaction, still attached at commit: detached by the
// commit with exactly one leak WARNING (the area; its segments are the
// area's business, not separate leaks); the area is destroyed (it was the
// only attachment), every segment it grew included.
TEST_F(DsaResownerTest, CommitDetachesWithOneLeakWarning) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  StartTransactionCommand();
  dsa_area* area = dsa_create();
  const dsa_handle h = dsa_get_handle(area);
  const dsa_pointer big = dsa_allocate(area, 2 * kMiB);  // a second segment
  FillPattern(dsa_get_address(area, big), 2 * kMiB, 1);
  dsa_allocate(area, 100);  // never freed: the area goes anyway
  EXPECT_GE(NewNames(before, SegmentNamesOf(self_)).size(), 2u);
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_EQ(capture.CountContaining(kLeakText), 1u) << capture.All();
  EXPECT_EQ(capture.CountLevel(WARNING), 1u) << capture.All();
  EXPECT_EQ(capture.reports.size(), 1u) << capture.All();
  EXPECT_EQ(SegmentNamesOf(self_), before) << "detached at commit: the area and every segment it grew are gone";
  EXPECT_TRUE(CatchError([&] { dsa_detach(dsa_attach(h)); }).has_value()) << "the area must be gone";
}

// Created inside a transaction, still attached at abort: detached silently.
TEST_F(DsaResownerTest, AbortDetachesSilently) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  StartTransactionCommand();
  dsa_area* area = dsa_create();
  dsa_allocate(area, 3 * kMiB);
  dsa_allocate(area, 64);
  MessageCapture capture;
  AbortCurrentTransaction();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// dsa_pin_mapping inside the transaction: neither the commit nor a later
// abort touches the attachment; the area and its objects stay until
// dsa_detach.
TEST_F(DsaResownerTest, PinMappingTakesItOutOfTheOwner) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  StartTransactionCommand();
  dsa_area* area = dsa_create();
  dsa_pin_mapping(area);
  const dsa_pointer dp = dsa_allocate(area, 5000);
  const dsa_pointer big = dsa_allocate(area, 2 * kMiB);
  FillPattern(dsa_get_address(area, dp), 5000, 2);
  FillPattern(dsa_get_address(area, big), 2 * kMiB, 3);
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_TRUE(HasPattern(dsa_get_address(area, dp), 5000, 2));
  EXPECT_TRUE(HasPattern(dsa_get_address(area, big), 2 * kMiB, 3));
  StartTransactionCommand();
  AbortCurrentTransaction();
  EXPECT_TRUE(HasPattern(dsa_get_address(area, big), 2 * kMiB, 3));
  dsa_free(area, dp);
  dsa_free(area, big);
  EXPECT_AREA_CONSISTENT(area);
  dsa_detach(area);
  EXPECT_EQ(SegmentNamesOf(self_), before);
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
}

// dsa_detach inside the transaction: the owner forgets the area; the
// commit reports nothing and detaches nothing twice.
TEST_F(DsaResownerTest, DetachInsideTheTransactionIsForgotten) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  StartTransactionCommand();
  dsa_area* area = dsa_create();
  dsa_free(area, dsa_allocate(area, 10));
  dsa_detach(area);
  EXPECT_EQ(SegmentNamesOf(self_), before);
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
}

// An attachment made inside a transaction to an area the process already
// has attached (outside any transaction): the abort detaches that one
// attachment silently; the outer one keeps working, and still sees the
// objects the inner one allocated — and the segment the inner one made the
// area grow into.
TEST_F(DsaResownerTest, AbortDetachesOnlyTheInnerAttachment) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsa_area* outer = dsa_create();
  const dsa_pointer mine = dsa_allocate(outer, 400);
  FillPattern(dsa_get_address(outer, mine), 400, 4);

  StartTransactionCommand();
  dsa_area* inner = dsa_attach(dsa_get_handle(outer));
  EXPECT_TRUE(HasPattern(dsa_get_address(inner, mine), 400, 4));
  const dsa_pointer theirs = dsa_allocate(inner, 3 * kMiB);  // grows the area inside the transaction
  FillPattern(dsa_get_address(inner, theirs), 3 * kMiB, 5);
  const dsa_pointer small = dsa_allocate(inner, 64);
  FillPattern(dsa_get_address(inner, small), 64, 6);
  MessageCapture capture;
  AbortCurrentTransaction();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();

  EXPECT_TRUE(HasPattern(dsa_get_address(outer, mine), 400, 4));
  EXPECT_TRUE(HasPattern(dsa_get_address(outer, theirs), 3 * kMiB, 5))
      << "a segment grown inside the transaction belongs to the area, not to the transaction";
  EXPECT_TRUE(HasPattern(dsa_get_address(outer, small), 64, 6));
  dsa_free(outer, theirs);
  dsa_free(outer, small);
  dsa_free(outer, mine);
  EXPECT_AREA_CONSISTENT(outer);
  dsa_detach(outer);
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// The same with a commit: one leak WARNING for the inner attachment, none
// for the segment grown inside the transaction, which outlives it.
TEST_F(DsaResownerTest, CommitWarnsOnlyForTheInnerAttachment) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsa_area* outer = dsa_create();
  StartTransactionCommand();
  dsa_area* inner = dsa_attach(dsa_get_handle(outer));
  const dsa_pointer big = dsa_allocate(inner, 3 * kMiB);
  FillPattern(dsa_get_address(inner, big), 3 * kMiB, 7);
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_EQ(capture.CountContaining(kLeakText), 1u) << capture.All();
  EXPECT_EQ(capture.reports.size(), 1u) << capture.All();
  EXPECT_TRUE(HasPattern(dsa_get_address(outer, big), 3 * kMiB, 7));
  dsa_free(outer, big);
  dsa_detach(outer);
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// An area attached outside any transaction grows inside one (the segment
// is created while the transaction's owner is current): the segment is the
// area's, so neither an abort nor a commit detaches or reports it.
TEST_F(DsaResownerTest, SegmentGrownInsideATransactionOutlivesIt) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsa_area* area = dsa_create();
  for (int abort : {1, 0}) {
    SCOPED_TRACE(abort ? "abort" : "commit");
    StartTransactionCommand();
    const dsa_pointer big = dsa_allocate(area, 3 * kMiB);
    FillPattern(dsa_get_address(area, big), 3 * kMiB, 8);
    MessageCapture capture;
    if (abort)
      AbortCurrentTransaction();
    else
      CommitTransactionCommand();
    EXPECT_TRUE(capture.reports.empty()) << capture.All();
    EXPECT_TRUE(HasPattern(dsa_get_address(area, big), 3 * kMiB, 8));
    dsa_free(area, big);
    EXPECT_AREA_CONSISTENT(area);
  }
  dsa_detach(area);
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

// A segment another process grew, mapped by this one for the first time
// inside a transaction (dsa_get_address): the mapping belongs to the area
// and survives the abort.
TEST_F(DsaResownerTest, SegmentMappedInsideATransactionOutlivesIt) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsa_area* area = dsa_create();
  const dsa_handle h = dsa_get_handle(area);
  Pipe reply;
  const pid_t child = RunChild([&] {
    reply.CloseRead();
    dsa_area* a = dsa_attach(h);
    const dsa_pointer big = dsa_allocate(a, 3 * kMiB);
    FillPattern(dsa_get_address(a, big), 3 * kMiB, 9);
    dsa_detach(a);
    CHILD_REQUIRE(reply.Send(big));
    return 0;
  });
  reply.CloseWrite();
  dsa_pointer big = InvalidDsaPointer;
  ASSERT_TRUE(reply.Receive(&big));
  ExpectChildSucceeded(child);

  StartTransactionCommand();
  EXPECT_TRUE(HasPattern(dsa_get_address(area, big), 3 * kMiB, 9));  // maps the segment here
  MessageCapture capture;
  AbortCurrentTransaction();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_TRUE(HasPattern(dsa_get_address(area, big), 3 * kMiB, 9)) << "the mapping must outlive the transaction";
  dsa_free(area, big);
  EXPECT_AREA_CONSISTENT(area);
  dsa_detach(area);
  EXPECT_EQ(SegmentNamesOf(self_), before);
  dsm_cleanup_orphans();  // the _exit()ed child's registry, if it made one
}

// Subtransactions: an area attached in a subtransaction that rolls back is
// detached silently; one attached in a subtransaction that commits passes
// to the parent, whose commit reports it.
TEST_F(DsaResownerTest, Subtransactions) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  StartTransactionCommand();
  BeginInternalSubTransaction("rolled back");
  dsa_area* a = dsa_create();
  dsa_allocate(a, 2 * kMiB);
  MessageCapture capture;
  RollbackAndReleaseCurrentSubTransaction();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_EQ(SegmentNamesOf(self_), before) << "the rolled-back subtransaction's area is gone";

  BeginInternalSubTransaction("committed");
  dsa_area* b = dsa_create();
  const dsa_pointer dp = dsa_allocate(b, 100);
  ReleaseCurrentSubTransaction();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  FillPattern(dsa_get_address(b, dp), 100, 10);  // still attached: the parent holds it
  EXPECT_TRUE(HasPattern(dsa_get_address(b, dp), 100, 10));
  CommitTransactionCommand();
  EXPECT_EQ(capture.CountContaining(kLeakText), 1u) << capture.All();
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

}  // namespace
}  // namespace grove::test
