// on_dsm_detach / cancel_on_dsm_detach: callbacks run at detach, last
// registered first, each once, with their segment and argument, while the
// segment is still mapped; cancel removes exactly one registration.
#include <algorithm>
#include <string>
#include <vector>

#include "dsa_test_support.h"

namespace grove::test {
namespace {

struct CallLog {
  std::vector<int> order;
  std::vector<dsm_segment*> segs;
  std::vector<unsigned char> first_byte;  // read through the segment in the callback
};
CallLog* g_log = nullptr;

// Records which argument it was called with (the argument is an index into
// the test's array of ints), and the segment's first byte.
void Record(dsm_segment* seg, Datum arg) {
  g_log->order.push_back(*DatumGetPointer<int>(arg));
  g_log->segs.push_back(seg);
  g_log->first_byte.push_back(*static_cast<unsigned char*>(dsm_segment_address(seg)));
}
void RecordOther(dsm_segment* seg, Datum arg) {
  g_log->order.push_back(1000 + *DatumGetPointer<int>(arg));
  g_log->segs.push_back(seg);
  g_log->first_byte.push_back(0);
}

class DsmDetachCallbackTest : public DsmTest {
 protected:
  void SetUp() override {
    DsmTest::SetUp();
    g_log = &log_;
  }
  void TearDown() override {
    g_log = nullptr;
    DsmTest::TearDown();
  }
  CallLog log_;
  int args_[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  Datum A(int i) { return PointerGetDatum(&args_[i]); }
};

// Three callbacks run at dsm_detach in reverse order of registration, each
// once, each given its segment, and each can still read the segment.
TEST_F(DsmDetachCallbackTest, CallbacksRunLastRegisteredFirst) {
  dsm_segment* seg = Create(64);
  *static_cast<unsigned char*>(dsm_segment_address(seg)) = 0xab;
  on_dsm_detach(seg, Record, A(1));
  on_dsm_detach(seg, Record, A(2));
  on_dsm_detach(seg, Record, A(3));
  EXPECT_TRUE(log_.order.empty()) << "callbacks run at detach, not at registration";
  dsm_detach(seg);
  EXPECT_EQ(log_.order, (std::vector<int>{3, 2, 1}));
  EXPECT_EQ(log_.segs, (std::vector<dsm_segment*>{seg, seg, seg}));
  EXPECT_EQ(log_.first_byte, (std::vector<unsigned char>{0xab, 0xab, 0xab}))
      << "callbacks must run while the segment is still mapped";
}

// cancel_on_dsm_detach removes the one registration with that function and
// argument; the others still run, in order.
TEST_F(DsmDetachCallbackTest, CancelRemovesOneRegistration) {
  dsm_segment* seg = Create(64);
  on_dsm_detach(seg, Record, A(1));
  on_dsm_detach(seg, Record, A(2));
  on_dsm_detach(seg, Record, A(3));
  cancel_on_dsm_detach(seg, Record, A(2));
  dsm_detach(seg);
  EXPECT_EQ(log_.order, (std::vector<int>{3, 1}));
}

// Cancel matches function and argument both: a different argument or a
// different function cancels nothing.
TEST_F(DsmDetachCallbackTest, CancelMatchesFunctionAndArgument) {
  dsm_segment* seg = Create(64);
  on_dsm_detach(seg, Record, A(1));
  on_dsm_detach(seg, RecordOther, A(2));
  cancel_on_dsm_detach(seg, Record, A(2));       // right arg, wrong function
  cancel_on_dsm_detach(seg, RecordOther, A(1));  // right function, wrong arg
  cancel_on_dsm_detach(seg, Record, A(7));       // never registered
  dsm_detach(seg);
  EXPECT_EQ(log_.order, (std::vector<int>{1002, 1}));
}

// The same function and argument registered twice: cancel removes one of
// them, the other still runs (once).
TEST_F(DsmDetachCallbackTest, CancelRemovesOnlyOneOfTwoIdenticalRegistrations) {
  dsm_segment* seg = Create(64);
  on_dsm_detach(seg, Record, A(4));
  on_dsm_detach(seg, Record, A(5));
  on_dsm_detach(seg, Record, A(4));
  cancel_on_dsm_detach(seg, Record, A(4));
  dsm_detach(seg);
  ASSERT_EQ(log_.order.size(), 2u);
  EXPECT_EQ(std::count(log_.order.begin(), log_.order.end(), 4), 1);
  EXPECT_EQ(std::count(log_.order.begin(), log_.order.end(), 5), 1);
}

// Callbacks belong to one attachment: detaching another segment runs none
// of them.
TEST_F(DsmDetachCallbackTest, CallbacksArePerSegment) {
  dsm_segment* a = Create(64);
  dsm_segment* b = Create(64);
  on_dsm_detach(a, Record, A(1));
  on_dsm_detach(b, Record, A(2));
  dsm_detach(b);
  EXPECT_EQ(log_.order, (std::vector<int>{2}));
  dsm_detach(a);
  EXPECT_EQ(log_.order, (std::vector<int>{2, 1}));
}

// A callback registered on an attachment of a pinned segment runs when that
// attachment goes, although the segment survives it.
TEST_F(DsmDetachCallbackTest, CallbacksRunAtDetachEvenIfTheSegmentSurvives) {
  dsm_segment* seg = Create(64);
  const dsm_handle h = dsm_segment_handle(seg);
  PinSegment(seg);
  on_dsm_detach(seg, Record, A(6));
  dsm_detach(seg);
  EXPECT_EQ(log_.order, (std::vector<int>{6}));
  dsm_segment* again = Attach(h);
  dsm_detach(again);
  EXPECT_EQ(log_.order, (std::vector<int>{6})) << "a new attachment starts with no callbacks";
  UnpinSegment(h);
}

}  // namespace
}  // namespace grove::test
