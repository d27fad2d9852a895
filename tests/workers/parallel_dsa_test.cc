// A dynamic shared area used by a parallel context's workers, in each launch
// mode: the leader creates the area in place in a chunk of the context's
// segment (or as an area of its own, handed over by handle); the workers
// attach it, allocate objects of every kind (small, large, enough to grow the
// area by new segments) and write them; the leader reads every object back,
// frees them, and nothing of the area is left once the context is gone. A
// worker that leaves its attachment behind has it released (with a leak
// WARNING, forwarded to the leader) by its transaction.
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "parallel_test_support.h"
#include "grove/dsa/dsa.h"
#include "grove/workers/parallel.h"

namespace grove::test {
namespace {

constexpr std::uint64_t kKeyShared = PARALLEL_KEY_FIRST_USER;
constexpr std::uint64_t kKeyArea = PARALLEL_KEY_FIRST_USER + 1;
constexpr int kWorkers = 3;
constexpr int kObjects = 60;
constexpr std::size_t kAreaSize = 256 * 1024;  // in place; the workers grow the area beyond it

/// Object k's size: small classes, page runs, and a few that need a segment
/// of their own.
std::size_t ObjectSize(int k) {
  static constexpr std::size_t kSizes[] = {24, 200, 1500, 9000, 70000, 24, 640, 33000, 8, 300000};
  return kSizes[k % std::size(kSizes)];
}
unsigned Seed(int worker, int k) { return static_cast<unsigned>(worker * 1000 + k); }

struct DsaShared {
  dsa_handle handle;  // for the by-handle entries
  dsa_pointer objects[kWorkers][kObjects];
  std::atomic<std::uint32_t> done;
};

DsaShared* SharedOf(shm_toc* toc) { return static_cast<DsaShared*>(shm_toc_lookup(toc, kKeyShared, false)); }

void AllocateAndFill(dsa_area* area, DsaShared* shared) {
  const int n = ParallelWorkerNumber();
  for (int k = 0; k < kObjects; ++k) {
    const dsa_pointer dp = dsa_allocate(area, ObjectSize(k));
    FillPattern(dsa_get_address(area, dp), ObjectSize(k), Seed(n, k));
    shared->objects[n][k] = dp;
  }
  shared->done.fetch_add(1);
}

/// In place, with the reference dropped explicitly: valid in every mode.
void InPlaceEntry(dsm_segment*, shm_toc* toc) {
  void* place = shm_toc_lookup(toc, kKeyArea, false);
  dsa_area* area = dsa_attach_in_place(place, nullptr);
  AllocateAndFill(area, SharedOf(toc));
  dsa_detach(area);             // unmaps
  dsa_release_in_place(place);  // drops the reference
}

/// In place, the reference tied to the worker's attachment of the segment
/// (PostgreSQL's way: dropped when the segment is detached).
void InPlaceTiedEntry(dsm_segment* seg, shm_toc* toc) {
  dsa_area* area = dsa_attach_in_place(shm_toc_lookup(toc, kKeyArea, false), seg);
  AllocateAndFill(area, SharedOf(toc));
  dsa_detach(area);
}

void ByHandleEntry(dsm_segment*, shm_toc* toc) {
  DsaShared* shared = SharedOf(toc);
  dsa_area* area = dsa_attach(shared->handle);
  AllocateAndFill(area, shared);
  dsa_detach(area);
}

/// Leaves its attachment to the worker's resource owner.
void ForgetfulEntry(dsm_segment*, shm_toc* toc) {
  DsaShared* shared = SharedOf(toc);
  AllocateAndFill(dsa_attach(shared->handle), shared);
}

const bool registered = [] {
  RegisterParallelEntry("dsa.in_place", &InPlaceEntry);
  RegisterParallelEntry("dsa.in_place_tied", &InPlaceTiedEntry);
  RegisterParallelEntry("dsa.by_handle", &ByHandleEntry);
  RegisterParallelEntry("dsa.forgetful", &ForgetfulEntry);
  return true;
}();

class ParallelDsaTest : public ParallelModeTest {
 protected:
  void SetUp() override {
    DsmTest::SetUp();
    before_ = SegmentNamesOf(self_);
  }

  /// A context with DsaShared and, if `in_place`, room for an area.
  ParallelContext* Prepare(const char* entry, bool in_place, DsaShared** shared, void** place) {
    ParallelContext* pcxt = CreateParallelContext(entry, kWorkers, GetParam());
    shm_toc_estimate_chunk(&pcxt->estimator, sizeof(DsaShared));
    if (in_place) shm_toc_estimate_chunk(&pcxt->estimator, kAreaSize);
    shm_toc_estimate_keys(&pcxt->estimator, 2);
    InitializeParallelDSM(pcxt);
    *shared = new (shm_toc_allocate(pcxt->toc, sizeof(DsaShared))) DsaShared{};
    shm_toc_insert(pcxt->toc, kKeyShared, *shared);
    if (in_place) {
      *place = shm_toc_allocate(pcxt->toc, kAreaSize);
      shm_toc_insert(pcxt->toc, kKeyArea, *place);
    }
    return pcxt;
  }

  /// Every object of every worker holds its pattern; then all are freed.
  void VerifyAndFree(dsa_area* area, const DsaShared* shared) {
    EXPECT_EQ(shared->done.load(), static_cast<std::uint32_t>(kWorkers));
    int bad = 0;
    for (int n = 0; n < kWorkers; ++n)
      for (int k = 0; k < kObjects; ++k) {
        const dsa_pointer dp = shared->objects[n][k];
        if (!DsaPointerIsValid(dp) || !HasPattern(dsa_get_address(area, dp), ObjectSize(k), Seed(n, k))) {
          if (++bad <= 5) ADD_FAILURE() << "worker " << n << ", object " << k << " (" << ObjectSize(k) << " bytes)";
          continue;
        }
        dsa_free(area, dp);
      }
    EXPECT_EQ(bad, 0);
  }

  void RunInPlace(const char* entry) {
    DsaShared* shared = nullptr;
    void* place = nullptr;
    ParallelContext* pcxt = Prepare(entry, true, &shared, &place);
    dsa_area* area = dsa_create_in_place(place, kAreaSize, 0, pcxt->seg);
    LaunchParallelWorkers(pcxt);
    ASSERT_EQ(pcxt->nworkers_launched, kWorkers);
    const std::optional<Error> e = CatchError([&] { WaitForParallelWorkersToFinish(pcxt); });
    ASSERT_FALSE(e.has_value()) << e->Format();
    EXPECT_GT(dsa_get_total_size(area), kAreaSize) << "the workers did not grow the area";
    VerifyAndFree(area, shared);
    dsa_detach(area);
    DestroyParallelContext(pcxt);  // detaching the segment releases the area: its segments go
    EXPECT_EQ(NamesWithoutRecycled(), before_) << "the area's segments are left";
  }

  std::vector<std::string> before_;
};

TEST_P(ParallelDsaTest, AreaInPlaceInTheContextsSegment) { RunInPlace("dsa.in_place"); }

TEST_P(ParallelDsaTest, AreaOfItsOwnByHandle) {
  DsaShared* shared = nullptr;
  ParallelContext* pcxt = Prepare("dsa.by_handle", false, &shared, nullptr);
  dsa_area* area = dsa_create();
  shared->handle = dsa_get_handle(area);
  LaunchParallelWorkers(pcxt);
  ASSERT_EQ(pcxt->nworkers_launched, kWorkers);
  const std::optional<Error> e = CatchError([&] { WaitForParallelWorkersToFinish(pcxt); });
  ASSERT_FALSE(e.has_value()) << e->Format();
  VerifyAndFree(area, shared);
  DestroyParallelContext(pcxt);  // the area outlives the context
  dsa_detach(area);              // the last attachment: the area goes
  EXPECT_EQ(NamesWithoutRecycled(), before_) << "the area's segments are left";
}

TEST_P(ParallelDsaTest, AttachmentLeftByAWorkerIsReleasedByItsTransaction) {
  MessageCapture capture;
  DsaShared* shared = nullptr;
  ParallelContext* pcxt = Prepare("dsa.forgetful", false, &shared, nullptr);
  dsa_area* area = dsa_create();
  shared->handle = dsa_get_handle(area);
  LaunchParallelWorkers(pcxt);
  const std::optional<Error> e = CatchError([&] { WaitForParallelWorkersToFinish(pcxt); });
  ASSERT_FALSE(e.has_value()) << e->Format();
  std::vector<int> leaks(kWorkers, 0);
  for (const ErrorData& d : capture.reports) {
    ASSERT_EQ(d.elevel, WARNING) << d.Format();
    ASSERT_EQ(d.message.rfind(kLeakPrefix, 0), 0u) << d.Format();
    ASSERT_FALSE(d.context.empty());
    for (int n = 0; n < kWorkers; ++n)
      if (d.context.back() == "parallel worker " + std::to_string(n)) ++leaks[n];
  }
  for (int n = 0; n < kWorkers; ++n) EXPECT_GE(leaks[n], 1) << "worker " << n << "\n" << capture.All();
  VerifyAndFree(area, shared);  // released attachments, intact objects
  DestroyParallelContext(pcxt);
  dsa_detach(area);
  EXPECT_EQ(NamesWithoutRecycled(), before_) << "the area's segments are left";
}

INSTANTIATE_TEST_SUITE_P(Modes, ParallelDsaTest, AllLaunchModes(), LaunchModeName);

using ParallelDsaTiedTest = ParallelDsaTest;

TEST_P(ParallelDsaTiedTest, AreaInPlaceTiedToTheWorkersSegment) { RunInPlace("dsa.in_place_tied"); }

INSTANTIATE_TEST_SUITE_P(Modes, ParallelDsaTiedTest,
                         ::testing::Values(ParallelLaunchMode::kProcess, ParallelLaunchMode::kPool), LaunchModeName);
// Thread workers are handed the leader's dsm_segment, and
// dsa_attach_in_place(place, seg) registers an on_dsm_detach callback on it
// from several threads at once: the segment's callback list must take its
// lock (it once did not, and the heap was corrupted within ~20 runs).
INSTANTIATE_TEST_SUITE_P(Thread, ParallelDsaTiedTest, ::testing::Values(ParallelLaunchMode::kThread), LaunchModeName);

}  // namespace
}  // namespace grove::test
