// dshash: concurrent hash tables in a dynamic shared area, in one process.
// * Insert/find/delete against a std::unordered_map model (100k keys,
//   random operations), string keys, growth over several doublings,
//   sequential scans (every entry once; deleting the current entry of an
//   exclusive scan), the RAII entry lock, detach releasing a held lock, dump
//   and statistics.
// * Misuse is an ERROR, never a crash or a hang: attaching with other sizes
//   or a handle that is not a table, releasing a lock not held, a second
//   lock on one handle, deleting through a shared lock.
// The cases with several processes are in dshash_process_test.cc; what both
// files use (entries, Put/Get, the fixture) is in dshash_test_support.h.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "dshash_test_support.h"

namespace grove::test {
namespace {

struct NameEntry {
  char name[32];
  std::int64_t value;
};

dshash_parameters NameParams() {
  return {sizeof(NameEntry::name), sizeof(NameEntry), dshash_strcmp, dshash_strhash, dshash_strcpy};
}

// --- one process ---------------------------------------------------------------------------------

// The basic contract: an empty table finds nothing; find_or_insert creates
// (found=false) then finds (found=true); the entry keeps what was written;
// delete_key reports whether there was something; the handle is a valid
// dsa_pointer.
TEST_F(DshashTest, InsertFindDeleteOneKey) {
  dsa_area* area = NewArea();
  dshash_table* t = Create(area, IntParams());
  EXPECT_TRUE(DsaPointerIsValid(dshash_get_hash_table_handle(t)));
  std::uint64_t key = 42;
  EXPECT_EQ(dshash_find(t, &key, false), nullptr);
  bool found = true;
  auto* e = static_cast<IntEntry*>(dshash_find_or_insert(t, &key, &found));
  ASSERT_NE(e, nullptr);
  EXPECT_FALSE(found);
  EXPECT_EQ(e->key, 42u) << "the key is copied into the new entry";
  SetValue(e, 7);
  dshash_release_lock(t, e);
  e = static_cast<IntEntry*>(dshash_find_or_insert(t, &key, &found));
  EXPECT_TRUE(found);
  EXPECT_EQ(e->value, 7u);
  dshash_release_lock(t, e);
  EXPECT_EQ(Get(t, 42), 7u);
  EXPECT_EQ(Get(t, 42, true), 7u);
  EXPECT_EQ(Get(t, 43), std::nullopt);
  EXPECT_TRUE(dshash_delete_key(t, &key));
  EXPECT_FALSE(dshash_delete_key(t, &key));
  EXPECT_EQ(Get(t, 42), std::nullopt);
  EXPECT_EQ(dshash_get_stats(t).entries, 0u);
  EXPECT_TABLE_CONSISTENT(t);
  Destroy(t);
  DetachArea(area);
}

// 100k random keys, then 300k random operations (find present and absent,
// overwrite, delete by key, delete by entry, insert), checked one by one
// against a std::unordered_map; at the end the table holds exactly the
// model, then nothing once every key is deleted.
TEST_F(DshashTest, RandomOperationsMatchAModel) {
  dsa_area* area = NewArea();
  dshash_table* t = Create(area, IntParams());
  std::mt19937_64 rng(20240601);
  std::unordered_map<std::uint64_t, std::uint64_t> model;
  std::vector<std::uint64_t> present;  // the model's keys, for picking one at random
  auto fresh_key = [&] {
    for (;;) {
      const std::uint64_t k = rng();
      if (!model.contains(k)) return k;
    }
  };
  auto insert_new = [&] {
    const std::uint64_t k = fresh_key(), v = rng() >> 1;
    bool was_there = true;
    Put(t, k, v, &was_there);
    ASSERT_FALSE(was_there) << k;
    model.emplace(k, v);
    present.push_back(k);
  };
  auto remove_at = [&](std::size_t i) {
    model.erase(present[i]);
    present[i] = present.back();
    present.pop_back();
  };
  for (int i = 0; i < 100000; ++i) ASSERT_NO_FATAL_FAILURE(insert_new());
  ASSERT_EQ(dshash_get_stats(t).entries, model.size());

  for (int op = 0; op < 300000; ++op) {
    const int kind = static_cast<int>(rng() % 6);
    if (present.empty() && kind != 5) continue;
    const std::size_t i = present.empty() ? 0 : rng() % present.size();
    switch (kind) {
      case 0:  // find a present key
        ASSERT_EQ(Get(t, present[i], rng() & 1), model[present[i]]) << "op " << op;
        break;
      case 1: {  // find an absent key
        const std::uint64_t k = fresh_key();
        ASSERT_EQ(dshash_find(t, &k, false), nullptr) << "op " << op;
        break;
      }
      case 2: {  // overwrite
        const std::uint64_t v = rng() >> 1;
        bool was_there = false;
        Put(t, present[i], v, &was_there);
        ASSERT_TRUE(was_there) << "op " << op;
        model[present[i]] = v;
        break;
      }
      case 3:  // delete by key
        ASSERT_TRUE(dshash_delete_key(t, &present[i])) << "op " << op;
        remove_at(i);
        break;
      case 4: {  // delete through the entry found exclusively
        void* e = dshash_find(t, &present[i], true);
        ASSERT_NE(e, nullptr) << "op " << op;
        dshash_delete_entry(t, e);
        ASSERT_EQ(dshash_find(t, &present[i], false), nullptr) << "op " << op;
        remove_at(i);
        break;
      }
      default:
        ASSERT_NO_FATAL_FAILURE(insert_new());
    }
  }
  EXPECT_EQ(dshash_get_stats(t).entries, model.size());
  EXPECT_TABLE_CONSISTENT(t);
  for (const auto& [k, v] : model) ASSERT_EQ(Get(t, k), v) << k;
  for (const auto& [k, v] : model) ASSERT_TRUE(dshash_delete_key(t, &k)) << k;
  EXPECT_EQ(dshash_get_stats(t).entries, 0u);
  EXPECT_TABLE_CONSISTENT(t);
  Destroy(t);
  DetachArea(area);
}

// String keys: equal strings are equal keys whatever follows the NUL in the
// caller's buffer; a key with no NUL within key_size is an ERROR that leaves
// no lock behind.
TEST_F(DshashTest, StringKeys) {
  dsa_area* area = NewArea();
  dshash_table* t = Create(area, NameParams());
  for (int i = 0; i < 5000; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "relation_%d", i);
    bool found = true;
    auto* e = static_cast<NameEntry*>(dshash_find_or_insert(t, name, &found));
    ASSERT_FALSE(found) << name;
    EXPECT_STREQ(e->name, name);
    e->value = i;
    dshash_release_lock(t, e);
  }
  for (int i = 0; i < 5000; ++i) {
    char name[32];
    std::memset(name, 'x', sizeof name);  // garbage after the NUL must not matter
    std::snprintf(name, 20, "relation_%d", i);
    auto* e = static_cast<NameEntry*>(dshash_find(t, name, false));
    ASSERT_NE(e, nullptr) << name;
    EXPECT_EQ(e->value, i);
    dshash_release_lock(t, e);
  }
  char absent[32] = "relation_5000";
  EXPECT_EQ(dshash_find(t, absent, false), nullptr);

  char unterminated[32];
  std::memset(unterminated, 'a', sizeof unterminated);
  EXPECT_ERROR_CONTAINING(dshash_find(t, unterminated, false), "not terminated");
  bool found;
  EXPECT_ERROR_CONTAINING(dshash_find_or_insert(t, unterminated, &found), "not terminated");
  EXPECT_ERROR_CONTAINING(dshash_delete_key(t, unterminated), "not terminated");
  char first[32] = "relation_0";
  EXPECT_TRUE(dshash_delete_key(t, first)) << "no lock was left held by the errors";
  EXPECT_EQ(dshash_get_stats(t).entries, 4999u);
  EXPECT_TABLE_CONSISTENT(t);
  Destroy(t);
  DetachArea(area);
}

// The bucket array starts with one bucket per partition and doubles as the
// table fills: 50,000 keys take it through at least five doublings, after
// which every key is still found and the invariants hold.
TEST_F(DshashTest, GrowsAcrossSeveralResizes) {
  dsa_area* area = NewArea();
  dshash_table* t = Create(area, IntParams());
  const DshashStats empty = dshash_get_stats(t);
  EXPECT_EQ(empty.size_log2, static_cast<std::size_t>(DSHASH_NUM_PARTITIONS_LOG2));
  EXPECT_EQ(empty.buckets, static_cast<std::size_t>(DSHASH_NUM_PARTITIONS));
  EXPECT_EQ(empty.entries, 0u);
  std::size_t doublings_seen = 0, last_log2 = empty.size_log2;
  for (std::uint64_t k = 0; k < 50000; ++k) {
    Put(t, k, k * 3);
    if (k % 1000 == 999) {
      const DshashStats s = dshash_get_stats(t);
      ASSERT_GE(s.size_log2, last_log2) << "the table never shrinks";
      doublings_seen += s.size_log2 - last_log2;
      last_log2 = s.size_log2;
      ASSERT_EQ(s.entries, k + 1);
      ASSERT_EQ(s.buckets, std::size_t{1} << s.size_log2);
    }
  }
  EXPECT_GE(doublings_seen, 5u);
  const DshashStats s = dshash_get_stats(t);
  // A partition grows the table once it holds more than 3/4 of an entry per
  // bucket: 50,000 keys spread over 128 partitions need more than 2^15
  // buckets, and nowhere near 2^20.
  EXPECT_GE(s.buckets, std::size_t{1} << 15);
  EXPECT_LT(s.buckets, std::size_t{1} << 20);
  EXPECT_TABLE_CONSISTENT(t);
  for (std::uint64_t k = 0; k < 50000; ++k) ASSERT_EQ(Get(t, k), k * 3) << k;
  const std::string dump = dshash_dump_string(t);
  EXPECT_TRUE(Contains(dump, "50000 entries")) << dump.substr(0, 300);
  EXPECT_TRUE(Contains(dump, "partition 127:")) << dump.substr(0, 300);
  Destroy(t);
  DetachArea(area);
}

// A shared scan returns every entry exactly once and nothing else; an
// exclusive scan that deletes every even key as it goes still visits every
// entry once; a later scan sees only the odd keys; an empty table's scan
// ends at once. A finished scan holds no lock.
TEST_F(DshashTest, SeqScanSeesEveryEntryOnce) {
  dsa_area* area = NewArea();
  dshash_table* t = Create(area, IntParams());
  {
    dshash_seq_status scan;
    dshash_seq_init(&scan, t, false);
    EXPECT_EQ(dshash_seq_next(&scan), nullptr) << "empty table";
    dshash_seq_term(&scan);
  }
  constexpr std::uint64_t kKeys = 20000;
  for (std::uint64_t k = 0; k < kKeys; ++k) Put(t, k, k + 1);

  auto scan_keys = [&](bool exclusive, bool delete_even) {
    std::multiset<std::uint64_t> seen;
    dshash_seq_status scan;
    dshash_seq_init(&scan, t, exclusive);
    while (auto* e = static_cast<IntEntry*>(dshash_seq_next(&scan))) {
      EXPECT_TRUE(Sound(e) && e->value == e->key + 1) << e->key;
      seen.insert(e->key);
      if (delete_even && e->key % 2 == 0) dshash_delete_current(&scan);
    }
    dshash_seq_term(&scan);
    return seen;
  };
  std::multiset<std::uint64_t> all = scan_keys(false, false);
  ASSERT_EQ(all.size(), kKeys);
  for (std::uint64_t k = 0; k < kKeys; ++k) ASSERT_EQ(all.count(k), 1u) << k;

  all = scan_keys(true, true);
  ASSERT_EQ(all.size(), kKeys) << "deleting the current entry must not skip or repeat any";
  for (std::uint64_t k = 0; k < kKeys; ++k) ASSERT_EQ(all.count(k), 1u) << k;
  EXPECT_EQ(dshash_get_stats(t).entries, kKeys / 2);

  const std::multiset<std::uint64_t> odd = scan_keys(false, false);
  ASSERT_EQ(odd.size(), kKeys / 2);
  for (std::uint64_t k : odd) ASSERT_EQ(k % 2, 1u);
  for (std::uint64_t k = 0; k < kKeys; k += 2) ASSERT_EQ(Get(t, k), std::nullopt);
  EXPECT_TABLE_CONSISTENT(t);
  Destroy(t);
  DetachArea(area);
}

// Scans and locks on one handle: a running scan's lock blocks other
// operations of that handle (an ERROR, not a self-deadlock); terminating
// early releases it; an ERROR thrown out of a scan loop releases it when
// the status goes out of scope; deleting in a shared scan, twice, or with
// no scan is an ERROR; an uninitialized status is an ERROR.
TEST_F(DshashTest, SeqScanLocksAndMisuse) {
  dsa_area* area = NewArea();
  dshash_table* t = Create(area, IntParams());
  dshash_table* other = Attach(area, IntParams(), dshash_get_hash_table_handle(t));
  for (std::uint64_t k = 0; k < 1000; ++k) Put(t, k, k + 1);
  {
    dshash_seq_status scan;
    dshash_seq_init(&scan, t, false);
    ASSERT_NE(dshash_seq_next(&scan), nullptr);
    std::uint64_t k = 5;
    EXPECT_ERROR_CONTAINING(dshash_find(t, &k, false), "already holds a lock");
    EXPECT_ERROR_CONTAINING(dshash_delete_key(t, &k), "already holds a lock");
    EXPECT_ERROR_CONTAINING(dshash_get_stats(t), "already holds a lock");
    EXPECT_ERROR_CONTAINING(dshash_delete_current(&scan), "not exclusive");
    dshash_seq_status nested;
    dshash_seq_init(&nested, t, false);
    EXPECT_ERROR_CONTAINING(dshash_seq_next(&nested), "already holds a lock");
    EXPECT_ERROR_CONTAINING(dshash_seq_init(&scan, t, false), "still running");
    dshash_seq_term(&scan);
    dshash_seq_term(&scan);  // twice is harmless
    EXPECT_EQ(Get(t, 5), 6u) << "terminated: the handle is free again";
    EXPECT_EQ(Get(other, 5), 6u) << "and so is the partition";
  }
  {
    // An ERROR escaping the loop: the status's destructor ends the scan.
    auto err = CatchError([&] {
      dshash_seq_status scan;
      dshash_seq_init(&scan, t, true);
      while (dshash_seq_next(&scan) != nullptr) elog(ERROR, "failure inside a scan");
    });
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(Get(t, 1), 2u);
    dshash_seq_status scan;
    dshash_seq_init(&scan, other, false);
    std::size_t n = 0;
    while (dshash_seq_next(&scan) != nullptr) ++n;  // would wait forever on a leaked partition 0 lock
    EXPECT_EQ(n, 1000u);
  }
  {
    dshash_seq_status scan;
    dshash_seq_init(&scan, t, true);
    ASSERT_NE(dshash_seq_next(&scan), nullptr);
    dshash_delete_current(&scan);
    EXPECT_ERROR_CONTAINING(dshash_delete_current(&scan), "already deleted");
    while (dshash_seq_next(&scan) != nullptr) {
    }
    EXPECT_ERROR_CONTAINING(dshash_delete_current(&scan), "no scan is running");
    EXPECT_EQ(dshash_seq_next(&scan), nullptr) << "a finished scan stays finished";
  }
  dshash_seq_status never_initialized;
  EXPECT_ERROR_CONTAINING(dshash_seq_next(&never_initialized), "not initialized");
  EXPECT_EQ(dshash_get_stats(t).entries, 999u);
  EXPECT_TABLE_CONSISTENT(t);
  Detach(other);
  Destroy(t);
  DetachArea(area);
}

// DshashEntryLock releases on scope exit, also when an ERROR unwinds, and
// deletes through Delete(); dshash_detach releases a lock its handle still
// holds (and ends its scan), so that a second handle is not blocked.
TEST_F(DshashTest, EntryLockGuardAndDetachRelease) {
  dsa_area* area = NewArea();
  dshash_table* t = Create(area, IntParams());
  const dshash_table_handle h = dshash_get_hash_table_handle(t);
  dshash_table* other = Attach(area, IntParams(), h);
  for (std::uint64_t k = 0; k < 100; ++k) Put(t, k, k + 1);
  std::uint64_t key = 10;
  auto err = CatchError([&] {
    DshashEntryLock lock(t, dshash_find(t, &key, true));
    ASSERT_NE(lock.get(), nullptr);
    SetValue(static_cast<IntEntry*>(lock.get()), 99);
    elog(ERROR, "failure while holding an entry");
  });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(Get(t, 10), 99u) << "the guard released the lock";
  EXPECT_EQ(Get(other, 10), 99u);
  {
    DshashEntryLock lock(t, dshash_find(t, &key, true));
    lock.Delete();
  }
  EXPECT_EQ(Get(other, 10), std::nullopt);

  // Detach with an entry held, then with a scan running.
  dshash_table* third = Attach(area, IntParams(), h);
  key = 11;
  ASSERT_NE(dshash_find(third, &key, true), nullptr);
  Detach(third);
  EXPECT_EQ(Get(other, 11), 12u) << "detach released the entry's partition";
  third = Attach(area, IntParams(), h);
  {
    dshash_seq_status scan;
    dshash_seq_init(&scan, third, false);
    ASSERT_NE(dshash_seq_next(&scan), nullptr);
    Detach(third);  // the scan ends with it; its destructor then does nothing
    EXPECT_ERROR_CONTAINING(dshash_seq_next(&scan), "detached");
  }
  EXPECT_EQ(dshash_get_stats(other).entries, 99u) << "every partition is free";
  Detach(other);
  Destroy(t);
  DetachArea(area);
}

// --- misuse --------------------------------------------------------------------------------------

// Parameters that cannot work are an ERROR at creation and attachment.
TEST_F(DshashTest, BadParametersAreErrors) {
  dsa_area* area = NewArea();
  dshash_parameters p = IntParams();
  p.key_size = 0;
  EXPECT_ERROR_CONTAINING(Create(area, p), "key_size must be positive");
  p = IntParams();
  p.entry_size = 4;
  EXPECT_ERROR_CONTAINING(Create(area, p), "smaller than key_size");
  p = IntParams();
  p.hash_function = nullptr;
  EXPECT_ERROR_CONTAINING(Create(area, p), "must all be set");
  p = IntParams();
  p.entry_size = DSA_MAX_ALLOC_SIZE;
  EXPECT_ERROR_CONTAINING(Create(area, p), "too large");
  EXPECT_ERROR_CONTAINING(dshash_create(nullptr, &p, nullptr), "dsa_area is null");
  EXPECT_ERROR_CONTAINING(dshash_create(area, nullptr, nullptr), "dshash_parameters is null");
  ASSERT_TRUE(tables_.empty());
  DetachArea(area);
}

// Attaching with another key or entry size than the table's is an ERROR
// that names both; the right sizes attach.
TEST_F(DshashTest, AttachWithOtherSizesIsAnError) {
  dsa_area* area = NewArea();
  dshash_table* t = Create(area, IntParams());
  const dshash_table_handle h = dshash_get_hash_table_handle(t);
  dshash_parameters p = IntParams();
  p.entry_size += 8;
  EXPECT_ERROR_CONTAINING(Attach(area, p, h), "do not match the table's");
  p = IntParams();
  p.key_size = 4;
  EXPECT_ERROR_CONTAINING(Attach(area, p, h), "do not match the table's");
  Detach(Attach(area, IntParams(), h));
  Destroy(t);
  DetachArea(area);
}

// A handle that is not a dshash table of this area is an ERROR: invalid,
// another object, inside the control object, outside every segment, and a
// table that was destroyed... is not tested (its memory may be reused).
TEST_F(DshashTest, AttachWithBogusHandleIsAnError) {
  dsa_area* area = NewArea();
  dshash_table* t = Create(area, IntParams());
  const dshash_table_handle h = dshash_get_hash_table_handle(t);
  const dsa_pointer small = dsa_allocate0(area, 100);
  const dsa_pointer big = dsa_allocate0(area, 20000);
  const char* text = "is not the handle of a dshash table";
  EXPECT_ERROR_CONTAINING(Attach(area, IntParams(), DSHASH_HANDLE_INVALID), "invalid dshash table handle");
  EXPECT_ERROR_CONTAINING(Attach(area, IntParams(), small), text);
  EXPECT_ERROR_CONTAINING(Attach(area, IntParams(), big), text);
  EXPECT_ERROR_CONTAINING(Attach(area, IntParams(), h + 64), text);
  EXPECT_ERROR_CONTAINING(Attach(area, IntParams(), h + 3), text);
  EXPECT_ERROR_CONTAINING(Attach(area, IntParams(), h | (std::uint64_t{1000} << 40)), text);  // segment 1000
  EXPECT_ERROR_CONTAINING(Attach(area, IntParams(), ~std::uint64_t{0}), text);
  dsa_free(area, small);
  dsa_free(area, big);
  Destroy(t);
  DetachArea(area);
}

// Releasing a lock the handle does not hold is an ERROR: nothing held, an
// entry released already, another pointer, nullptr, an entry held through
// another handle. A second lock on one handle is an ERROR too (it could
// only deadlock), and leaves the first one held and releasable. Deleting an
// entry found with exclusive=false is an ERROR.
TEST_F(DshashTest, LockMisuseIsAnError) {
  dsa_area* area = NewArea();
  dshash_table* t = Create(area, IntParams());
  dshash_table* other = Attach(area, IntParams(), dshash_get_hash_table_handle(t));
  for (std::uint64_t k = 0; k < 10; ++k) Put(t, k, k);
  std::uint64_t k1 = 1, k2 = 2;
  IntEntry bogus{};
  EXPECT_ERROR_CONTAINING(dshash_release_lock(t, &bogus), "not locked by this dshash_table");
  void* e1 = dshash_find(t, &k1, false);
  ASSERT_NE(e1, nullptr);
  EXPECT_ERROR_CONTAINING(dshash_release_lock(t, &bogus), "not locked by this dshash_table");
  EXPECT_ERROR_CONTAINING(dshash_release_lock(t, nullptr), "not locked by this dshash_table");
  EXPECT_ERROR_CONTAINING(dshash_release_lock(other, e1), "not locked by this dshash_table");
  EXPECT_ERROR_CONTAINING(dshash_find(t, &k2, false), "already holds a lock");
  EXPECT_ERROR_CONTAINING(dshash_find(t, &k1, false), "already holds a lock");
  bool found;
  EXPECT_ERROR_CONTAINING(dshash_find_or_insert(t, &k2, &found), "already holds a lock");
  EXPECT_ERROR_CONTAINING(dshash_delete_entry(t, e1), "exclusive=false");
  dshash_release_lock(t, e1);  // still held after all those errors
  EXPECT_ERROR_CONTAINING(dshash_release_lock(t, e1), "not locked by this dshash_table");
  EXPECT_ERROR_CONTAINING(dshash_delete_entry(t, e1), "not locked by this dshash_table");
  EXPECT_ERROR_CONTAINING(dshash_find_or_insert(t, &k2, nullptr), "found is null");
  EXPECT_ERROR_CONTAINING(dshash_find(t, nullptr, false), "key is null");
  EXPECT_EQ(Get(other, 1), 1u) << "nothing is left locked";
  EXPECT_EQ(dshash_get_stats(t).entries, 10u);
  Detach(other);
  Destroy(t);
  DetachArea(area);
}

}  // namespace
}  // namespace grove::test
