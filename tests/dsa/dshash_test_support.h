// Helpers for the dshash suites (dshash_test.cc: one process, misuse;
// dshash_process_test.cc: several processes): the entry types and parameters
// the tables are created with, reading and writing an entry whole, the
// table's invariant check and an expected ERROR as expectations, and the
// fixture both suites' cases run in (DshashTest), which detaches what a
// failed case still holds.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dsa_test_support.h"
#include "grove/dsa/dsa.h"
#include "grove/dsa/dshash.h"

namespace grove::test {

// --- entries ---------------------------------------------------------------------------------------

/// The entry of the integer-keyed tables most cases use: a 64-bit key, a
/// value, and a check word that Get() verifies.
struct IntEntry {
  std::uint64_t key;
  std::uint64_t value;
  std::uint64_t check;  // key ^ value ^ kCheck: a torn or misplaced entry shows
};
inline constexpr std::uint64_t kCheck = 0x5bd1e9955bd1e995ULL;

inline dshash_parameters IntParams() {
  return {sizeof(std::uint64_t), sizeof(IntEntry), dshash_memcmp, dshash_memhash, dshash_memcpy};
}

/// Sets an IntEntry's value and its check word; Sound() says whether an
/// entry's check word still matches its key and value.
inline void SetValue(IntEntry* e, std::uint64_t value) {
  e->value = value;
  e->check = e->key ^ value ^ kCheck;
}
inline bool Sound(const IntEntry* e) { return e->check == (e->key ^ e->value ^ kCheck); }

// --- reading and writing --------------------------------------------------------------------------

/// Inserts key → value (or overwrites) through find_or_insert.
inline void Put(dshash_table* t, std::uint64_t key, std::uint64_t value, bool* was_there = nullptr) {
  bool found = false;
  auto* e = static_cast<IntEntry*>(dshash_find_or_insert(t, &key, &found));
  SetValue(e, value);
  dshash_release_lock(t, e);
  if (was_there != nullptr) *was_there = found;
}

/// The value of key, or nullopt (0xdeadbeef for an entry that is not sound).
inline std::optional<std::uint64_t> Get(dshash_table* t, std::uint64_t key, bool exclusive = false) {
  auto* e = static_cast<IntEntry*>(dshash_find(t, &key, exclusive));
  if (e == nullptr) return std::nullopt;
  const bool sound = Sound(e) && e->key == key;
  const std::uint64_t v = e->value;
  dshash_release_lock(t, e);
  if (!sound) return std::uint64_t{0xdeadbeef};  // never a stored value in these tests
  return v;
}

/// dshash_verify, for EXPECT_TABLE_CONSISTENT.
inline bool Verify(dshash_table* t, std::string* why) { return dshash_verify(t, why); }

// --- expectations ---------------------------------------------------------------------------------

/// The table's invariants hold (dshash_verify); if not, the failure says
/// which one is broken.
#define EXPECT_TABLE_CONSISTENT(t)                \
  do {                                            \
    std::string why_;                             \
    EXPECT_TRUE(Verify((t), &why_)) << why_;      \
  } while (0)

/// `stmt` raises an ERROR whose message contains `text`.
#define EXPECT_ERROR_CONTAINING(stmt, text)                                                    \
  do {                                                                                         \
    auto err_ = CatchError([&] { stmt; });                                                     \
    EXPECT_TRUE(err_.has_value()) << #stmt " must be an ERROR";                                \
    if (err_) {                                                                                \
      EXPECT_TRUE(Contains(err_->message(), text)) << #stmt ": " << err_->message();           \
    }                                                                                          \
  } while (0)

// --- fixture --------------------------------------------------------------------------------------

/// The fixture of every dshash case: tables and areas are created and
/// attached through it (Create, Attach, NewArea, AttachArea) and let go
/// through it (Destroy, Detach, DetachArea). It detaches, after a failure,
/// the tables and areas a case still holds, so that the fixture's leftover
/// check is about the failure only. EndChild is for the cases with children.
class DshashTest : public DsmTest {
 protected:
  void TearDown() override {
    for (dshash_table* t : tables_) {
      if (!HasFailure()) ADD_FAILURE() << "a dshash_table was still attached at the end of the test";
      dshash_detach(t);
    }
    tables_.clear();
    for (dsa_area* a : areas_) {
      if (!HasFailure()) ADD_FAILURE() << "an area was still attached at the end of the test";
      dsa_detach(a);
    }
    areas_.clear();
    DsmTest::TearDown();
  }

  dsa_area* NewArea() { return areas_.emplace_back(dsa_create()); }
  dsa_area* AttachArea(dsa_handle h) { return areas_.emplace_back(dsa_attach(h)); }
  void DetachArea(dsa_area* a) {
    std::erase(areas_, a);
    dsa_detach(a);
  }
  dshash_table* Create(dsa_area* a, const dshash_parameters& p) { return tables_.emplace_back(dshash_create(a, &p, nullptr)); }
  dshash_table* Attach(dsa_area* a, const dshash_parameters& p, dshash_table_handle h) {
    return tables_.emplace_back(dshash_attach(a, &p, h, nullptr));
  }
  void Detach(dshash_table* t) {
    std::erase(tables_, t);
    dshash_detach(t);
  }
  void Destroy(dshash_table* t) {
    std::erase(tables_, t);
    dshash_destroy(t);
  }

  /// Waits for a child to end, removes what dead processes left in
  /// /dev/shm, reaps it; returns its wait status.
  int EndChild(pid_t pid) {
    const int status = WaitZombie(pid);
    dsm_cleanup_orphans();
    Reap(pid);
    return status;
  }

  std::vector<dshash_table*> tables_;
  std::vector<dsa_area*> areas_;
};

}  // namespace grove::test
