// dshash: concurrent hash tables in a dynamic shared area, shared by
// several processes.
// * A child attaches by handle and inserts, the parent finds; four children
//   insert and delete disjoint and overlapping key ranges at once (the table
//   grows meanwhile), then the parent checks every key and the invariants.
// * A process killed while holding a partition lock: the next access to
//   that partition is an ERROR saying it may be inconsistent; other
//   partitions still work; the table can still be destroyed.
//
// Children end with _exit() (RunChild): what they leave in /dev/shm is removed
// by dsm_cleanup_orphans() once they are dead (EndChild).
//
// The cases in one process are in dshash_test.cc; what both files use
// (entries, Put/Get, the fixture) is in dshash_test_support.h.
#include <sys/wait.h>

#include <csignal>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "dshash_test_support.h"

namespace grove::test {
namespace {

/// The partition a key of an IntParams() table falls in.
std::size_t PartitionOf(std::uint64_t key) {
  return dshash_memhash(&key, sizeof key, nullptr) >> (32 - DSHASH_NUM_PARTITIONS_LOG2);
}

/// In a child: the area and the table attached by handle, detached (in
/// that order: table first) however the body ends.
class ChildTable {
 public:
  ChildTable(dsa_handle area, const dshash_parameters& p, dshash_table_handle table)
      : area_(dsa_attach(area)) {
    try {
      table_ = dshash_attach(area_, &p, table, nullptr);
    } catch (...) {
      dsa_detach(area_);
      throw;
    }
  }
  ~ChildTable() {
    dshash_detach(table_);
    dsa_detach(area_);
  }
  ChildTable(const ChildTable&) = delete;
  ChildTable& operator=(const ChildTable&) = delete;
  dshash_table* get() const { return table_; }

 private:
  dsa_area* area_;
  dshash_table* table_ = nullptr;
};

// --- several processes ---------------------------------------------------------------------------

// A forked child attaches the area and the table by handle, sees the
// parent's keys, inserts its own (growing the table, and the area, from the
// child) and detaches; the parent finds the child's keys.
TEST_F(DshashTest, ChildAttachesByHandleAndInserts) {
  dsa_area* area = NewArea();
  dshash_table* t = Create(area, IntParams());
  for (std::uint64_t k = 0; k < 1000; ++k) Put(t, k, k + 5);
  const dsa_handle ah = dsa_get_handle(area);
  const dshash_table_handle th = dshash_get_hash_table_handle(t);
  const pid_t child = RunChild([&] {
    ChildTable ct(ah, IntParams(), th);
    CHILD_REQUIRE(dshash_get_hash_table_handle(ct.get()) == th);
    for (std::uint64_t k = 0; k < 1000; ++k) CHILD_REQUIRE(Get(ct.get(), k) == k + 5);
    for (std::uint64_t k = 1000; k < 30000; ++k) {
      bool found = true;
      Put(ct.get(), k, k * 7, &found);
      CHILD_REQUIRE(!found);
    }
    std::string why;
    CHILD_REQUIRE(dshash_verify(ct.get(), &why));
    return 0;
  });
  const int status = EndChild(child);
  EXPECT_TRUE(ExitedZero(status)) << DescribeStatus(status);
  for (std::uint64_t k = 0; k < 1000; ++k) ASSERT_EQ(Get(t, k), k + 5) << k;
  for (std::uint64_t k = 1000; k < 30000; ++k) ASSERT_EQ(Get(t, k), k * 7) << k;
  EXPECT_EQ(dshash_get_stats(t).entries, 30000u);
  EXPECT_GT(dshash_get_stats(t).size_log2, 12u) << "the child grew the table";
  EXPECT_TABLE_CONSISTENT(t);
  Destroy(t);
  DetachArea(area);
}

// Four children at once, released together, while the table grows from its
// initial size:
// * a range of their own: insert every key, delete the odd ones (half by
//   key, half by entry);
// * a shared range: find_or_insert and increment a counter in each entry —
//   with the partition lock exclusive, no increment is lost;
// * a shared churn range: random inserts, finds and deletes.
// The parent then checks every key of the first two kinds and the table's
// invariants, and counts the churn range.
TEST_F(DshashTest, ConcurrentChildrenKeepTheTableConsistent) {
  constexpr int kChildren = 4;
  constexpr std::uint64_t kOwn = 20000, kShared = 2000, kChurn = 500;  // kOwn / 7 > kShared: every shared key is used
  constexpr std::uint64_t kSharedBase = 1000000, kChurnBase = 2000000;
  dsa_area* area = NewArea();
  dshash_table* t = Create(area, IntParams());
  const dsa_handle ah = dsa_get_handle(area);
  const dshash_table_handle th = dshash_get_hash_table_handle(t);
  Pipe go;
  std::vector<pid_t> children;
  for (int i = 0; i < kChildren; ++i) {
    children.push_back(RunChild([&, i] {
      go.CloseWrite();
      char c;
      CHILD_REQUIRE(go.Receive(&c));
      ChildTable ct(ah, IntParams(), th);
      dshash_table* ht = ct.get();
      const std::uint64_t base = static_cast<std::uint64_t>(i) * kOwn;
      std::mt19937_64 rng(1000 + i);
      for (std::uint64_t n = 0; n < kOwn; ++n) {
        bool found = true;
        Put(ht, base + n, (base + n) * 3, &found);
        CHILD_REQUIRE(!found);
        // Interleave the shared work with the private one.
        if (n % 7 == 0) {
          const std::uint64_t k = kSharedBase + (n / 7) % kShared;
          bool f;
          auto* e = static_cast<IntEntry*>(dshash_find_or_insert(ht, &k, &f));
          SetValue(e, f ? e->value + 1 : 1);
          dshash_release_lock(ht, e);
        }
        if (n % 3 == 0) {
          const std::uint64_t k = kChurnBase + rng() % kChurn;
          switch (rng() % 3) {
            case 0: Put(ht, k, k); break;
            case 1: dshash_delete_key(ht, &k); break;
            default: {
              const auto v = Get(ht, k, rng() & 1);
              CHILD_REQUIRE(!v || *v == k);
            }
          }
        }
      }
      for (std::uint64_t n = 1; n < kOwn; n += 2) {
        const std::uint64_t k = base + n;
        if (n % 4 == 1) {
          CHILD_REQUIRE(dshash_delete_key(ht, &k));
        } else {
          void* e = dshash_find(ht, &k, true);
          CHILD_REQUIRE(e != nullptr);
          dshash_delete_entry(ht, e);
        }
      }
      return 0;
    }));
  }
  go.CloseRead();
  for (int i = 0; i < kChildren; ++i) ASSERT_TRUE(go.Send('g'));
  for (pid_t c : children) {
    const int status = EndChild(c);
    EXPECT_TRUE(ExitedZero(status)) << "child " << c << " " << DescribeStatus(status);
  }
  ASSERT_FALSE(HasFailure());
  EXPECT_TABLE_CONSISTENT(t);
  for (std::uint64_t k = 0; k < kChildren * kOwn; ++k) {
    if (k % 2 == 0)
      ASSERT_EQ(Get(t, k), k * 3) << k;
    else
      ASSERT_EQ(Get(t, k), std::nullopt) << k;
  }
  // Each child touches shared key (n/7) % kShared for n = 0, 7, 14, … < kOwn.
  std::vector<std::uint64_t> expected(kShared, 0);
  for (std::uint64_t n = 0; n < kOwn; n += 7) ++expected[(n / 7) % kShared];
  for (std::uint64_t s = 0; s < kShared; ++s)
    ASSERT_EQ(Get(t, kSharedBase + s), expected[s] * kChildren) << "shared key " << s << ": an increment was lost";
  std::size_t churn = 0;
  for (std::uint64_t k = kChurnBase; k < kChurnBase + kChurn; ++k) {
    const auto v = Get(t, k);
    if (v) {
      ++churn;
      EXPECT_EQ(*v, k);
    }
  }
  EXPECT_EQ(dshash_get_stats(t).entries, kChildren * kOwn / 2 + kShared + churn);
  Destroy(t);
  DetachArea(area);
}

// A process killed (SIGKILL) while it holds an entry's partition lock: the
// next access to that partition — find either way, find_or_insert,
// delete_key, a scan reaching it, statistics — is an ERROR saying it may be
// inconsistent, never a hang, and stays one; keys of other partitions are
// still found; the table can still be destroyed or detached.
//
// The area is created by a third process: the killed one never drops its
// reference, so the area outlives every detach and goes with its creator's
// registry (dsm_cleanup_orphans, once the creator has exited).
class DshashKilledHolderTest : public DshashTest, public ::testing::WithParamInterface<std::tuple<bool, bool>> {};

TEST_P(DshashKilledHolderTest, NextAccessToThePartitionIsAnError) {
  const auto [parent_kills, destroy_after] = GetParam();
  struct Handles {
    dsa_handle area;
    dshash_table_handle table;
  };
  constexpr std::uint64_t kVictimKey = 7;
  Pipe handles, go, ready, hold;
  const pid_t creator = RunChild([&] {
    handles.CloseRead();
    go.CloseWrite();
    dsa_area* a = dsa_create();
    const dshash_parameters params = IntParams();
    dshash_table* ht = dshash_create(a, &params, nullptr);
    for (std::uint64_t k = 0; k < 1000; ++k) Put(ht, k, k + 1);
    CHILD_REQUIRE(handles.Send(Handles{dsa_get_handle(a), dshash_get_hash_table_handle(ht)}));
    char c;
    const bool told = go.Receive(&c);  // the parent is done with the table
    dshash_detach(ht);
    dsa_detach(a);
    CHILD_REQUIRE(told);
    return 0;
  });
  handles.CloseWrite();
  go.CloseRead();
  Handles h{};
  ASSERT_TRUE(handles.Receive(&h));

  const pid_t holder = RunChild([&] {
    ready.CloseRead();
    hold.CloseWrite();
    ChildTable ct(h.area, IntParams(), h.table);
    std::uint64_t k = kVictimKey;
    auto* e = static_cast<IntEntry*>(dshash_find(ct.get(), &k, true));
    CHILD_REQUIRE(e != nullptr);
    SetValue(e, 1234);  // half-way through an update, as far as anyone knows
    CHILD_REQUIRE(ready.Send('l'));
    if (!parent_kills) raise(SIGKILL);
    char c;
    hold.Receive(&c);  // until killed
    return 2;
  });
  ready.CloseWrite();
  hold.CloseRead();
  char c;
  ASSERT_TRUE(ready.Receive(&c));
  if (parent_kills) {
    ASSERT_EQ(kill(holder, SIGKILL), 0);
  }
  const int status = EndChild(holder);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << DescribeStatus(status);

  dsa_area* area = AttachArea(h.area);
  dshash_table* t = Attach(area, IntParams(), h.table);
  std::uint64_t k = kVictimKey;
  bool found;
  const char* text = "may be inconsistent";
  EXPECT_ERROR_CONTAINING(dshash_find(t, &k, true), text);
  EXPECT_ERROR_CONTAINING(dshash_find(t, &k, false), text);
  EXPECT_ERROR_CONTAINING(dshash_find(t, &k, false), text);  // and stays one
  EXPECT_ERROR_CONTAINING(dshash_find_or_insert(t, &k, &found), text);
  EXPECT_ERROR_CONTAINING(dshash_delete_key(t, &k), text);
  EXPECT_ERROR_CONTAINING(dshash_get_stats(t), text);
  // Other partitions work, and every ERROR above left nothing locked.
  std::size_t others = 0;
  for (std::uint64_t key = 0; key < 1000; ++key) {
    if (PartitionOf(key) == PartitionOf(kVictimKey)) continue;
    ASSERT_EQ(Get(t, key), key + 1) << key;
    ++others;
  }
  EXPECT_GT(others, 900u);
  {
    dshash_seq_status scan;
    dshash_seq_init(&scan, t, false);
    auto err = CatchError([&] {
      while (dshash_seq_next(&scan) != nullptr) {
      }
    });
    ASSERT_TRUE(err.has_value()) << "a scan reaching the partition must be an ERROR";
    EXPECT_TRUE(Contains(err->message(), text)) << err->message();
    EXPECT_ERROR_CONTAINING(dshash_seq_next(&scan), "ended by an earlier error");
  }
  std::uint64_t other_key = 0;
  while (PartitionOf(other_key) == PartitionOf(kVictimKey)) ++other_key;
  EXPECT_EQ(Get(t, other_key), other_key + 1) << "the failed scan released its partition";
  if (destroy_after)
    Destroy(t);
  else
    Detach(t);
  DetachArea(area);
  ASSERT_TRUE(go.Send('d'));
  const int cstatus = EndChild(creator);
  EXPECT_TRUE(ExitedZero(cstatus)) << DescribeStatus(cstatus);
}

INSTANTIATE_TEST_SUITE_P(Dshash, DshashKilledHolderTest,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<std::tuple<bool, bool>>& info) {
                           return std::string(std::get<0>(info.param) ? "KilledByParent" : "KilledItself") +
                                  (std::get<1>(info.param) ? "ThenDestroyed" : "ThenDetached");
                         });

}  // namespace
}  // namespace grove::test
