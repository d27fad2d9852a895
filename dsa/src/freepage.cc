// The free-page manager (see freepage.h for the design).
//
// Per page, a tag: for the first page of a free run, kHead | length and its
// list links; for the last page, kTail | length (one page is both).
// Interior free pages and pages in use have tag 0. So a freed run finds a
// free left neighbour by looking at the tag of the page before it (a tail),
// and a free right neighbour at the page after it (a head).
#include "grove/dsa/freepage.h"

#include <bit>
#include <cstring>

#include "grove/base/error.h"

namespace grove {

namespace {

constexpr std::uint32_t kNone = UINT32_MAX;
constexpr int kExactLists = 128;          // runs of 1…128 pages
constexpr int kNumLists = kExactLists + 1;  // + one list of longer runs
constexpr std::uint32_t kHead = 1u << 31;
constexpr std::uint32_t kTail = 1u << 30;
constexpr std::uint32_t kLengthMask = kTail - 1;
constexpr std::size_t kMaxPages = kLengthMask;  // lengths must fit the tag

struct PageTag {
  std::uint32_t tag;   // kHead/kTail | run length, or 0
  std::uint32_t next;  // list links, valid on a run's head page
  std::uint32_t prev;
};

inline int ListOf(std::size_t npages) { return npages > kExactLists ? kExactLists : static_cast<int>(npages) - 1; }

}  // namespace

struct FreePageManager {
  std::uint64_t npages;
  std::uint64_t free_pages;
  std::uint32_t heads[kNumLists];
  std::uint64_t nonempty[(kNumLists + 63) / 64];  // bit i: list i has runs
  PageTag tags[1];                                // really npages of them
};

namespace {

void ListPush(FreePageManager* fpm, std::uint32_t first, std::size_t len) {
  const int list = ListOf(len);
  PageTag& t = fpm->tags[first];
  t.prev = kNone;
  t.next = fpm->heads[list];
  if (t.next != kNone) fpm->tags[t.next].prev = first;
  fpm->heads[list] = first;
  fpm->nonempty[list / 64] |= std::uint64_t{1} << (list % 64);
}

void ListRemove(FreePageManager* fpm, std::uint32_t first, std::size_t len) {
  const int list = ListOf(len);
  PageTag& t = fpm->tags[first];
  if (t.prev != kNone)
    fpm->tags[t.prev].next = t.next;
  else
    fpm->heads[list] = t.next;
  if (t.next != kNone) fpm->tags[t.next].prev = t.prev;
  if (fpm->heads[list] == kNone) fpm->nonempty[list / 64] &= ~(std::uint64_t{1} << (list % 64));
}

// Marks [first, first+len) as one free run and lists it.
void AddRun(FreePageManager* fpm, std::size_t first, std::size_t len) {
  const std::uint32_t l = static_cast<std::uint32_t>(len);
  if (len == 1) {
    fpm->tags[first].tag = kHead | kTail | l;  // a one-page run is its own head and tail
  } else {
    fpm->tags[first].tag = kHead | l;
    fpm->tags[first + len - 1].tag = kTail | l;
  }
  ListPush(fpm, static_cast<std::uint32_t>(first), len);
}

// Unlists the free run starting at `first` and clears its boundary tags.
void RemoveRun(FreePageManager* fpm, std::size_t first, std::size_t len) {
  ListRemove(fpm, static_cast<std::uint32_t>(first), len);
  fpm->tags[first].tag = 0;
  fpm->tags[first + len - 1].tag = 0;
}

// The first list at or after `list` that has runs, or -1.
int FirstNonEmpty(const FreePageManager* fpm, int list) {
  for (int word = list / 64; word < static_cast<int>(sizeof fpm->nonempty / sizeof fpm->nonempty[0]); ++word) {
    std::uint64_t bits = fpm->nonempty[word];
    if (word == list / 64) bits &= ~std::uint64_t{0} << (list % 64);
    if (bits != 0) return word * 64 + std::countr_zero(bits);
  }
  return -1;
}

[[noreturn]] void BadRange(const FreePageManager* fpm, std::size_t first, std::size_t npages, const char* why) {
  ereport(ERROR, errcode(ERRCODE_INTERNAL_ERROR),
          errmsg("cannot free pages %zu..%zu of a free-page manager of %llu pages: %s", first,
                 first + npages - 1, static_cast<unsigned long long>(fpm->npages), why));
  __builtin_unreachable();
}

}  // namespace

std::size_t FreePageManagerSize(std::size_t npages) {
  return offsetof(FreePageManager, tags) + sizeof(PageTag) * (npages == 0 ? 1 : npages);
}

FreePageManager* FreePageManagerInitialize(void* at, std::size_t npages) {
  if (npages == 0 || npages > kMaxPages)
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE),
            errmsg("a free-page manager manages 1 to %zu pages, not %zu", kMaxPages, npages));
  auto* fpm = static_cast<FreePageManager*>(at);
  fpm->npages = npages;
  fpm->free_pages = 0;
  for (auto& head : fpm->heads) head = kNone;
  std::memset(fpm->nonempty, 0, sizeof fpm->nonempty);
  std::memset(fpm->tags, 0, sizeof(PageTag) * npages);
  return fpm;
}

void FreePageManagerPut(FreePageManager* fpm, std::size_t first, std::size_t npages) {
  if (npages == 0) return;
  if (first >= fpm->npages || npages > fpm->npages - first) BadRange(fpm, first, npages, "out of range");
  if (fpm->tags[first].tag != 0 || fpm->tags[first + npages - 1].tag != 0)
    BadRange(fpm, first, npages, "they are already free");
  std::size_t start = first;
  std::size_t len = npages;
  // A free run ending just before: its tail tag is on page start - 1.
  if (start > 0 && (fpm->tags[start - 1].tag & kTail)) {
    const std::size_t left_len = fpm->tags[start - 1].tag & kLengthMask;
    const std::size_t left_start = start - left_len;
    RemoveRun(fpm, left_start, left_len);
    start = left_start;
    len += left_len;
  }
  // A free run starting just after: its head tag is on page first + npages.
  const std::size_t after = first + npages;
  if (after < fpm->npages && (fpm->tags[after].tag & kHead)) {
    const std::size_t right_len = fpm->tags[after].tag & kLengthMask;
    RemoveRun(fpm, after, right_len);
    len += right_len;
  }
  AddRun(fpm, start, len);
  fpm->free_pages += npages;
}

bool FreePageManagerGet(FreePageManager* fpm, std::size_t npages, std::size_t* first) {
  if (npages == 0 || npages > fpm->free_pages) return false;
  std::uint32_t run = kNone;
  std::size_t run_len = 0;
  const int list = FirstNonEmpty(fpm, ListOf(npages));
  if (list < 0) return false;
  if (list < kExactLists) {
    run = fpm->heads[list];  // every run here has list + 1 >= npages pages: the best fit
    run_len = static_cast<std::size_t>(list) + 1;
  } else {
    // Longer runs are not sorted: the best fit is the shortest that suffices.
    for (std::uint32_t r = fpm->heads[kExactLists]; r != kNone; r = fpm->tags[r].next) {
      const std::size_t len = fpm->tags[r].tag & kLengthMask;
      if (len >= npages && (run == kNone || len < run_len)) {
        run = r;
        run_len = len;
        if (len == npages) break;
      }
    }
    if (run == kNone) return false;
  }
  RemoveRun(fpm, run, run_len);
  if (run_len > npages) AddRun(fpm, run + npages, run_len - npages);
  fpm->free_pages -= npages;
  *first = run;
  return true;
}

std::size_t FreePageManagerFreePages(const FreePageManager* fpm) { return fpm->free_pages; }
std::size_t FreePageManagerTotalPages(const FreePageManager* fpm) { return fpm->npages; }

std::size_t FreePageManagerLargestRun(const FreePageManager* fpm) {
  std::size_t largest = 0;
  for (std::uint32_t r = fpm->heads[kExactLists]; r != kNone; r = fpm->tags[r].next)
    largest = std::max<std::size_t>(largest, fpm->tags[r].tag & kLengthMask);
  if (largest != 0) return largest;
  for (int list = kExactLists - 1; list >= 0; --list)
    if (fpm->heads[list] != kNone) return static_cast<std::size_t>(list) + 1;
  return 0;
}

bool FreePageManagerCheck(const FreePageManager* fpm, const char** why) {
  std::size_t listed_pages = 0;
  for (int list = 0; list < kNumLists; ++list) {
    const bool bit = (fpm->nonempty[list / 64] >> (list % 64)) & 1;
    if (bit != (fpm->heads[list] != kNone)) return *why = "non-empty bitmap disagrees with a list head", false;
    std::uint32_t prev = kNone;
    for (std::uint32_t r = fpm->heads[list]; r != kNone; r = fpm->tags[r].next) {
      if (r >= fpm->npages) return *why = "a list holds a page out of range", false;
      const std::uint32_t tag = fpm->tags[r].tag;
      if (!(tag & kHead)) return *why = "a listed run has no head tag", false;
      const std::size_t len = tag & kLengthMask;
      if (len == 0 || r + len > fpm->npages) return *why = "a run's length is out of range", false;
      if (ListOf(len) != list) return *why = "a run is in the wrong list", false;
      if (fpm->tags[r].prev != prev) return *why = "a list's back link is wrong", false;
      const std::uint32_t tail = fpm->tags[r + len - 1].tag;
      if (!(tail & kTail) || (tail & kLengthMask) != len) return *why = "a run's tail tag is wrong", false;
      for (std::size_t p = r + 1; p + 1 < r + len; ++p)
        if (fpm->tags[p].tag != 0) return *why = "a run's interior page is tagged", false;
      if (r > 0 && (fpm->tags[r - 1].tag & kTail)) return *why = "two free runs touch (not merged)", false;
      listed_pages += len;
      prev = r;
    }
  }
  if (listed_pages != fpm->free_pages) return *why = "free page count disagrees with the lists", false;
  return true;
}

}  // namespace grove
