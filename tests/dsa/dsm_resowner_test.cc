// Attachments and resource owners: inside a transaction an attachment
// (dsm_create or dsm_attach) belongs to CurrentResourceOwner, so an abort
// detaches it silently and a commit detaches it with a leak WARNING;
// dsm_pin_mapping hands it to the process, dsm_unpin_mapping back to the
// owner; dsm_detach inside the transaction makes the owner forget it.
// Subtransactions: an abort detaches what the subtransaction attached, a
// commit hands it to the parent.
#include <string>
#include <vector>

#include "dsa_test_support.h"

namespace grove::test {
namespace {

// Counts the detaches of the attachments it is registered on.
void CountDetach(dsm_segment*, Datum arg) { ++*DatumGetPointer<int>(arg); }

class DsmResownerTest : public DsmTest {
 protected:
  /// Creates a segment, registers the detach counter on it, returns it and
  /// (through `name`) its name in /dev/shm.
  dsm_segment* CreateCounted(std::string* name) {
    const std::vector<std::string> before = SegmentNamesOf(self_);
    dsm_segment* seg = Create(1024);
    *name = SingleNewName(before);
    on_dsm_detach(seg, CountDetach, PointerGetDatum(&detaches_));
    return seg;
  }
  int detaches_ = 0;
};

// Created inside a transaction, still attached at abort: detached by the
// abort (callbacks run, the name goes), with no report at all.
TEST_F(DsmResownerTest, AbortDetachesCreatedSegmentSilently) {
  StartTransactionCommand();
  std::string name;
  dsm_segment* seg = CreateCounted(&name);
  const dsm_handle h = dsm_segment_handle(seg);
  ASSERT_TRUE(ShmNameExists(name));
  MessageCapture capture;
  AbortCurrentTransaction();
  EXPECT_EQ(detaches_, 1);
  EXPECT_EQ(dsm_find_mapping(h), nullptr);
  EXPECT_FALSE(ShmNameExists(name));
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
}

// Created inside a transaction, still attached at commit: detached by the
// commit, with one WARNING "resource was not closed" naming the segment.
TEST_F(DsmResownerTest, CommitDetachesCreatedSegmentWithLeakWarning) {
  StartTransactionCommand();
  std::string name;
  dsm_segment* seg = CreateCounted(&name);
  const dsm_handle h = dsm_segment_handle(seg);
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_EQ(detaches_, 1);
  EXPECT_EQ(dsm_find_mapping(h), nullptr);
  EXPECT_FALSE(ShmNameExists(name));
  ASSERT_EQ(capture.CountContaining(kLeakText), 1u) << capture.All();
  EXPECT_EQ(capture.CountLevel(WARNING), 1u) << capture.All();
  for (const ErrorData& r : capture.reports)
    if (Contains(r.message, kLeakText)) {
      EXPECT_EQ(r.elevel, WARNING);
      EXPECT_TRUE(Contains(r.message, name)) << "the warning should name the segment: " << r.message;
    }
}

// Attached (not created) inside a transaction: the abort detaches that
// attachment silently; the segment itself lives on (it is pinned), and can
// be attached again.
TEST_F(DsmResownerTest, AbortDetachesAttachedSegmentSilently) {
  std::string name;
  dsm_segment* seg = CreateCounted(&name);
  const dsm_handle h = dsm_segment_handle(seg);
  PinSegment(seg);
  dsm_detach(seg);
  ASSERT_EQ(detaches_, 1);

  StartTransactionCommand();
  dsm_segment* att = Attach(h);
  on_dsm_detach(att, CountDetach, PointerGetDatum(&detaches_));
  MessageCapture capture;
  AbortCurrentTransaction();
  EXPECT_EQ(detaches_, 2);
  EXPECT_EQ(dsm_find_mapping(h), nullptr);
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_TRUE(ShmNameExists(name)) << "pinned: the segment outlives the attachment";
  UnpinSegment(h);
  EXPECT_FALSE(ShmNameExists(name));
}

// Attached inside a transaction and still attached at commit: a leak
// WARNING, and detached.
TEST_F(DsmResownerTest, CommitDetachesAttachedSegmentWithLeakWarning) {
  std::string name;
  dsm_segment* seg = CreateCounted(&name);
  const dsm_handle h = dsm_segment_handle(seg);
  PinSegment(seg);
  dsm_detach(seg);

  StartTransactionCommand();
  Attach(h);
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_EQ(dsm_find_mapping(h), nullptr);
  EXPECT_EQ(capture.CountContaining(kLeakText), 1u) << capture.All();
  UnpinSegment(h);
  EXPECT_FALSE(ShmNameExists(name));
}

// dsm_pin_mapping inside the transaction: the commit neither detaches nor
// warns; the attachment is the process's until dsm_detach.
TEST_F(DsmResownerTest, PinMappingSurvivesCommit) {
  StartTransactionCommand();
  std::string name;
  dsm_segment* seg = CreateCounted(&name);
  const dsm_handle h = dsm_segment_handle(seg);
  dsm_pin_mapping(seg);
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_EQ(detaches_, 0);
  EXPECT_EQ(dsm_find_mapping(h), seg);
  EXPECT_TRUE(ShmNameExists(name));
  FillPattern(dsm_segment_address(seg), 1024, 6);  // still usable
  EXPECT_TRUE(HasPattern(dsm_segment_address(seg), 1024, 6));
  dsm_detach(seg);
  EXPECT_EQ(detaches_, 1);
  EXPECT_FALSE(ShmNameExists(name));
}

// ... and survives an abort just as well.
TEST_F(DsmResownerTest, PinMappingSurvivesAbort) {
  StartTransactionCommand();
  std::string name;
  dsm_segment* seg = CreateCounted(&name);
  const dsm_handle h = dsm_segment_handle(seg);
  dsm_pin_mapping(seg);
  AbortCurrentTransaction();
  EXPECT_EQ(detaches_, 0);
  EXPECT_EQ(dsm_find_mapping(h), seg);
  EXPECT_TRUE(ShmNameExists(name));
  dsm_detach(seg);
  EXPECT_FALSE(ShmNameExists(name));
}

// dsm_detach inside the transaction makes the owner forget the attachment:
// the commit reports nothing, and nothing is detached twice.
TEST_F(DsmResownerTest, DetachInsideTransactionForgetsIt) {
  StartTransactionCommand();
  std::string name;
  dsm_segment* seg = CreateCounted(&name);
  dsm_detach(seg);
  EXPECT_EQ(detaches_, 1);
  EXPECT_FALSE(ShmNameExists(name));
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_EQ(detaches_, 1);
}

// Outside a transaction (no CurrentResourceOwner) an attachment belongs to
// the process: a later transaction's abort or commit does not touch it.
TEST_F(DsmResownerTest, WithoutOwnerTheAttachmentBelongsToTheProcess) {
  ASSERT_EQ(CurrentResourceOwner, nullptr);
  std::string name;
  dsm_segment* seg = CreateCounted(&name);
  const dsm_handle h = dsm_segment_handle(seg);
  StartTransactionCommand();
  AbortCurrentTransaction();
  MessageCapture capture;
  StartTransactionCommand();
  CommitTransactionCommand();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_EQ(detaches_, 0);
  EXPECT_EQ(dsm_find_mapping(h), seg);
  dsm_detach(seg);
  EXPECT_FALSE(ShmNameExists(name));
}

// dsm_unpin_mapping gives a process-owned attachment to CurrentResourceOwner:
// the transaction's abort then detaches it.
TEST_F(DsmResownerTest, UnpinMappingGivesItToTheOwner) {
  std::string name;
  dsm_segment* seg = CreateCounted(&name);
  const dsm_handle h = dsm_segment_handle(seg);
  StartTransactionCommand();
  dsm_unpin_mapping(seg);
  AbortCurrentTransaction();
  EXPECT_EQ(detaches_, 1);
  EXPECT_EQ(dsm_find_mapping(h), nullptr);
  EXPECT_FALSE(ShmNameExists(name));
}

// Pin then unpin the mapping inside one transaction: it is the owner's
// again, so the commit warns and detaches it.
TEST_F(DsmResownerTest, PinThenUnpinMappingIsOwnedAgain) {
  StartTransactionCommand();
  std::string name;
  dsm_segment* seg = CreateCounted(&name);
  dsm_pin_mapping(seg);
  dsm_unpin_mapping(seg);
  MessageCapture capture;
  CommitTransactionCommand();
  EXPECT_EQ(detaches_, 1);
  EXPECT_EQ(capture.CountContaining(kLeakText), 1u) << capture.All();
  EXPECT_FALSE(ShmNameExists(name));
}

// Detach callbacks also run last-registered-first when the owner detaches.
std::vector<int>* g_order = nullptr;
void RecordOrder(dsm_segment*, Datum arg) { g_order->push_back(static_cast<int>(arg)); }

TEST_F(DsmResownerTest, OwnerDetachRunsCallbacksLastRegisteredFirst) {
  std::vector<int> order;
  g_order = &order;
  StartTransactionCommand();
  dsm_segment* seg = Create(64);
  on_dsm_detach(seg, RecordOrder, 1);
  on_dsm_detach(seg, RecordOrder, 2);
  on_dsm_detach(seg, RecordOrder, 3);
  cancel_on_dsm_detach(seg, RecordOrder, 2);
  AbortCurrentTransaction();
  g_order = nullptr;
  EXPECT_EQ(order, (std::vector<int>{3, 1}));
}

// A segment created in a subtransaction that aborts is detached by that
// abort; the transaction goes on and commits with nothing to report.
TEST_F(DsmResownerTest, SubtransactionAbortDetaches) {
  StartTransactionCommand();
  BeginInternalSubTransaction("sub");
  std::string name;
  dsm_segment* seg = CreateCounted(&name);
  const dsm_handle h = dsm_segment_handle(seg);
  MessageCapture capture;
  RollbackAndReleaseCurrentSubTransaction();
  EXPECT_EQ(detaches_, 1);
  EXPECT_EQ(dsm_find_mapping(h), nullptr);
  EXPECT_FALSE(ShmNameExists(name));
  CommitTransactionCommand();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
}

// A segment created in a subtransaction that commits passes to the parent:
// still attached after the subcommit, detached (with a leak WARNING) at the
// top-level commit.
TEST_F(DsmResownerTest, SubtransactionCommitHandsItToTheParent) {
  StartTransactionCommand();
  BeginInternalSubTransaction("sub");
  std::string name;
  dsm_segment* seg = CreateCounted(&name);
  const dsm_handle h = dsm_segment_handle(seg);
  MessageCapture capture;
  ReleaseCurrentSubTransaction();
  EXPECT_EQ(detaches_, 0);
  EXPECT_EQ(dsm_find_mapping(h), seg);
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  CommitTransactionCommand();
  EXPECT_EQ(detaches_, 1);
  EXPECT_EQ(capture.CountContaining(kLeakText), 1u) << capture.All();
  EXPECT_FALSE(ShmNameExists(name));
}

// A statement that creates a segment and then fails: RunStatement's abort
// detaches it; nothing stays.
TEST_F(DsmResownerTest, FailingStatementLeavesNoSegment) {
  const std::vector<std::string> before = SegmentNamesOf(self_);
  dsm_handle h = DSM_HANDLE_INVALID;
  std::string error;
  const bool ok = RunStatement(
      [&] {
        dsm_segment* seg = Create(4096);
        h = dsm_segment_handle(seg);
        elog(ERROR, "statement fails after dsm_create");
      },
      [&](const ErrorData& e) { error = e.message; });
  EXPECT_FALSE(ok);
  EXPECT_EQ(error, "statement fails after dsm_create");
  EXPECT_NE(h, DSM_HANDLE_INVALID);
  EXPECT_EQ(dsm_find_mapping(h), nullptr);
  EXPECT_EQ(SegmentNamesOf(self_), before);
}

}  // namespace
}  // namespace grove::test
