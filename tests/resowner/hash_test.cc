// The owner's storage: 32 recent entries in an array, then an
// open-addressing hash that doubles. One owner holds 100,000 resources;
// Forget finds each exactly once, in random (seeded) or LIFO order, and
// ResourceOwnerCount follows every step.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "resowner_test_support.h"

namespace grove::test {
namespace {

using HashTest = ResourceOwnerTest;

constexpr std::uint32_t kMany = 100'000;

// Remembers values 1..n of kCountedA, checking the count as it grows.
void FillOwner(ResourceOwner owner, std::uint32_t n) {
  for (std::uint32_t v = 1; v <= n; ++v) {
    RememberCounted(owner, v);
    if (v % 997 == 0 || v <= 70) { ASSERT_EQ(ResourceOwnerCount(owner), v); }
  }
  ASSERT_EQ(ResourceOwnerCount(owner), n);
}

// 100,000 resources, forgotten in a seeded random order: each Forget finds
// its resource (no ERROR), the count drops by one each time, and afterwards
// every one of them is gone (forgetting any again is an ERROR).
TEST_F(HashTest, HundredThousandForgottenInRandomOrder) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "many");
  FillOwner(owner, kMany);
  std::vector<std::uint32_t> order(kMany);
  std::iota(order.begin(), order.end(), 1u);
  std::mt19937_64 rng(20240917);
  std::shuffle(order.begin(), order.end(), rng);

  std::size_t expected = kMany;
  for (std::uint32_t v : order) {
    ForgetCounted(owner, v);
    --expected;
    if (expected % 1009 == 0 || expected < 70) { ASSERT_EQ(ResourceOwnerCount(owner), expected); }
  }
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  EXPECT_TRUE(ResourceOwnerIsEmpty(owner));
  // Forgotten exactly once: none can be forgotten again.
  for (std::uint32_t v : {order.front(), order[kMany / 2], order.back(), 1u, kMany})
    EXPECT_TRUE(CatchError([&] { ResourceOwnerForget(owner, v, &kCountedA); }).has_value()) << v;
  // Nothing is left for release to find.
  const std::size_t released = CountedCounters().released;
  ReleaseAllPhases(owner, true);
  EXPECT_EQ(CountedCounters().released, released);
  ResourceOwnerDelete(owner);
}

// 100,000 resources forgotten last-remembered first (the common pattern).
TEST_F(HashTest, HundredThousandForgottenLifo) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "many-lifo");
  FillOwner(owner, kMany);
  for (std::uint32_t v = kMany; v >= 1; --v) {
    ForgetCounted(owner, v);
    if (v % 1013 == 0 || v < 70) { ASSERT_EQ(ResourceOwnerCount(owner), v - 1); }
  }
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  for (std::uint32_t v : {1u, 2u, kMany / 2, kMany})
    EXPECT_TRUE(CatchError([&] { ResourceOwnerForget(owner, v, &kCountedA); }).has_value()) << v;
  ResourceOwnerDelete(owner);
}

// 100,000 resources forgotten in remembering order (FIFO): the oldest ones
// left the small array long ago and live in the hash.
TEST_F(HashTest, HundredThousandForgottenFifo) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "many-fifo");
  FillOwner(owner, kMany);
  for (std::uint32_t v = 1; v <= kMany; ++v) ForgetCounted(owner, v);
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  ResourceOwnerDelete(owner);
}

// 100,000 resources left to the owner: release finds every one exactly once
// (a tally per value).
TEST_F(HashTest, HundredThousandReleasedExactlyOnce) {
  std::vector<std::uint32_t> tally(kMany + 1, 0);
  CountedTally() = &tally;
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "many-release");
  FillOwner(owner, kMany);
  ReleaseAllPhases(owner, /*isCommit=*/false);
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  EXPECT_EQ(tally[0], 0u);
  std::size_t wrong = 0;
  for (std::uint32_t v = 1; v <= kMany; ++v)
    if (tally[v] != 1) ++wrong;
  EXPECT_EQ(wrong, 0u) << "values released other than exactly once";
  CountedTally() = nullptr;
  ResourceOwnerDelete(owner);
}

// Interleaved Remember and Forget around the array/hash boundary, checked
// against a model: the count is always the model's size, and each value in
// the model can be forgotten while others cannot.
TEST_F(HashTest, RandomRememberForgetAgainstModel) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "model");
  std::mt19937_64 rng(42);
  std::vector<std::uint32_t> held;
  std::uint32_t next = 1;
  for (int step = 0; step < 200'000; ++step) {
    // Drift the size up and down across 0..~3000, crossing 32 and every
    // doubling of the hash many times.
    const bool grow = held.empty() || (rng() % 1000) < (step / 20000 % 2 == 0 ? 600u : 400u);
    if (grow) {
      RememberCounted(owner, next);
      held.push_back(next++);
    } else {
      const std::size_t i = rng() % held.size();
      std::swap(held[i], held.back());
      ForgetCounted(owner, held.back());
      held.pop_back();
    }
    if (step % 4999 == 0) { ASSERT_EQ(ResourceOwnerCount(owner), held.size()) << "step " << step; }
  }
  ASSERT_EQ(ResourceOwnerCount(owner), held.size());
  // A value never remembered, and one already forgotten, are not found.
  EXPECT_TRUE(CatchError([&] { ResourceOwnerForget(owner, next + 1, &kCountedA); }).has_value());
  const std::size_t before = CountedCounters().released;
  ReleaseAllPhases(owner, false);
  EXPECT_EQ(CountedCounters().released - before, held.size());
  ResourceOwnerDelete(owner);
}

// Release with the hash partly filled and the small array full at once: a
// spill without growth (after Forgets thinned the hash) leaves up to
// grow_at - 1 entries in the hash, and the array then refills with 32 more.
// Release must find room for all of them (PostgreSQL sizes the hash's limit
// as min(capacity - 32, 3/4 capacity) for exactly this) and release each
// exactly once.
TEST_F(HashTest, ReleaseWithHashAndFullArray) {
  std::vector<std::uint32_t> tally(200, 0);
  CountedTally() = &tally;
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "spill");
  std::uint32_t v = 1;
  std::vector<std::uint32_t> held;
  // 33 Remembers: the first 32 spill into a 64-slot table at the 33rd.
  for (; v <= 33; ++v) {
    RememberCounted(owner, v);
    held.push_back(v);
  }
  // Thin the table: forget 20 of the spilled ones.
  for (std::uint32_t f = 1; f <= 20; ++f) ForgetCounted(owner, f);
  held.erase(held.begin(), held.begin() + 20);
  // Refill the array (13 in the table, 1 + 31 in the array), spill again
  // without growing (44 < 3/4 of 64), then fill the array once more.
  for (int i = 0; i < 31 + 1 + 31; ++i, ++v) {
    RememberCounted(owner, v);
    held.push_back(v);
  }
  ASSERT_EQ(ResourceOwnerCount(owner), held.size());
  ReleaseAllPhases(owner, /*isCommit=*/false);
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  std::size_t wrong = 0;
  for (std::uint32_t x : held)
    if (tally[x] != 1) ++wrong;
  EXPECT_EQ(wrong, 0u) << "resources not released exactly once";
  CountedTally() = nullptr;
  ResourceOwnerDelete(owner);
}

// The same after ReassignAll filled the table close to its limit: the array
// refills with 32 more before release.
TEST_F(HashTest, ReleaseAfterReassignAndFullArray) {
  std::vector<std::uint32_t> tally(200, 0);
  CountedTally() = &tally;
  ResourceOwner to = ResourceOwnerCreate(nullptr, "to");
  ResourceOwner from = ResourceOwnerCreate(to, "from");
  std::uint32_t v = 1;
  for (; v <= 47; ++v) RememberCounted(from, v);
  ResourceOwnerReassignAll(from, to);
  for (int i = 0; i < 32; ++i, ++v) RememberCounted(to, v);
  ASSERT_EQ(ResourceOwnerCount(to), v - 1);
  ReleaseAllPhases(to, false);
  std::size_t wrong = 0;
  for (std::uint32_t x = 1; x < v; ++x)
    if (tally[x] != 1) ++wrong;
  EXPECT_EQ(wrong, 0u) << "resources not released exactly once";
  CountedTally() = nullptr;
  ResourceOwnerDelete(to);
}

// The same value under two kinds is two resources: forgetting one kind's
// leaves the other's, also beyond the small array.
TEST_F(HashTest, SameValueDifferentKindsAreDistinct) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "kinds");
  constexpr std::uint32_t kN = 500;
  for (std::uint32_t v = 1; v <= kN; ++v) {
    RememberCounted(owner, v, &kCountedA);
    RememberCounted(owner, v, &kCountedB);
  }
  EXPECT_EQ(ResourceOwnerCount(owner), 2 * kN);
  for (std::uint32_t v = 1; v <= kN; ++v) ForgetCounted(owner, v, &kCountedA);
  EXPECT_EQ(ResourceOwnerCount(owner), kN);
  EXPECT_TRUE(CatchError([&] { ResourceOwnerForget(owner, 7, &kCountedA); }).has_value());
  for (std::uint32_t v = kN; v >= 1; --v) ForgetCounted(owner, v, &kCountedB);
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  ResourceOwnerDelete(owner);
}

// Remembering the same resource twice holds it twice (as a cache reference
// taken twice): two Forgets succeed, a third is an ERROR.
TEST_F(HashTest, DuplicatesAreHeldTwice) {
  ResourceOwner owner = ResourceOwnerCreate(nullptr, "dups");
  RememberCounted(owner, 5);
  RememberCounted(owner, 5);
  EXPECT_EQ(ResourceOwnerCount(owner), 2u);
  ForgetCounted(owner, 5);
  ForgetCounted(owner, 5);
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  EXPECT_TRUE(CatchError([&] { ResourceOwnerForget(owner, 5, &kCountedA); }).has_value());
  // And beyond the array: 100 copies of one value.
  for (int i = 0; i < 100; ++i) RememberCounted(owner, 9);
  for (int i = 0; i < 100; ++i) ForgetCounted(owner, 9);
  EXPECT_EQ(ResourceOwnerCount(owner), 0u);
  ResourceOwnerDelete(owner);
}

// Many owners, each grown into the hash and emptied, do not keep memory:
// TopMemoryContext holds what it held after the first round.
TEST_F(HashTest, GrowingAndDeletingOwnersKeepsNoMemory) {
  auto round = [] {
    ResourceOwner owner = ResourceOwnerCreate(nullptr, "round");
    for (std::uint32_t v = 1; v <= 5000; ++v) RememberCounted(owner, v);
    ReleaseAllPhases(owner, false);
    ResourceOwnerDelete(owner);
  };
  round();
  const std::size_t held = MemoryContextMemAllocated(TopMemoryContext, true);
  for (int i = 0; i < 20; ++i) round();
  EXPECT_EQ(MemoryContextMemAllocated(TopMemoryContext, true), held);
}

}  // namespace
}  // namespace grove::test
