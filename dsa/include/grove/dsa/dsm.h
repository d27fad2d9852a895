// Dynamic shared memory segments (PostgreSQL's dsm.h, grove's code).
//
// A segment is POSIX shared memory (shm_open under /dev/shm, name
// "grove.<creator pid>.<n>"), sized and *reserved* at creation with
// posix_fallocate, so that a full /dev/shm is an ERROR at dsm_create and
// never a SIGBUS later. Any process can attach it by handle. A reference
// count in the segment itself counts attachments (and pins); the last
// detach destroys it.
//
// Lifetimes:
// * An attachment (dsm_create or dsm_attach) belongs to CurrentResourceOwner
//   when there is one, and is detached when that owner releases (a WARNING
//   if that happens at commit: a leak). dsm_pin_mapping hands it to the
//   process instead; with no owner it belongs to the process from the start.
// * dsm_pin_segment keeps a segment alive with no attachment at all, until
//   dsm_unpin_segment.
// * Every segment a process creates is recorded in that process's registry
//   (a control segment, "grove.<pid>.control"). When the process exits
//   normally, its segments' names are removed — pinned ones too: a segment
//   lives at most as long as the process that created it (processes attached
//   keep their mappings). When it dies without exiting (SIGKILL, a crash), the next
//   grove process to use DSM finds its registry and removes them: nothing
//   stays behind in /dev/shm.
#pragma once

#include <cstddef>
#include <cstdint>
#include <sys/types.h>

#include "grove/base/datum.h"

namespace grove {

/// Identifies a segment across processes. 0 is invalid.
using dsm_handle = std::uint64_t;
inline constexpr dsm_handle DSM_HANDLE_INVALID = 0;

struct dsm_segment;  // a process's attachment to a segment

/// dsm_create flags.
inline constexpr int DSM_CREATE_NULL_IF_MAXSEGMENTS = 0x01;  ///< return nullptr instead of ERROR when out of space or segments

/// How many segments one process can have created and alive at once (the
/// size of its registry); beyond that dsm_create is an ERROR "too many
/// dynamic shared memory segments" (or nullptr with the flag).
inline constexpr std::size_t kMaxCreatedSegments = 4096;

/// Creates and attaches a segment of `size` usable bytes (zeroed). ERROR if
/// /dev/shm cannot hold it or the process has kMaxCreatedSegments alive (or
/// nullptr with DSM_CREATE_NULL_IF_MAXSEGMENTS).
dsm_segment* dsm_create(std::size_t size, int flags = 0);
/// Like dsm_create, but the segment belongs to `owner`'s registry (a running
/// grove process, for instance the creator of a DSA this process grows): it
/// is named after `owner`, removed when `owner` exits (or by the cleanup
/// after its crash), and outlives this process. ERROR if `owner` is not
/// running or has no registry (it has never created a segment).
dsm_segment* dsm_create_owned_by(pid_t owner, std::size_t size, int flags = 0);
/// A segment in this process's own memory (zeroed): every call above and
/// below works on it except that it has no handle (dsm_segment_handle gives
/// DSM_HANDLE_INVALID), cannot be attached or pinned, and is freed by its
/// detach. For memory shared only by threads of one process with code
/// written for segments (a thread-mode parallel context), at none of the
/// cost of creating and removing a shared segment. Owned as dsm_create's.
dsm_segment* dsm_create_private(std::size_t size);
/// Attaches an existing segment. ERROR if it does not exist (any more), or
/// if this process already has it attached (use dsm_find_mapping).
dsm_segment* dsm_attach(dsm_handle handle);
/// Runs the on_dsm_detach callbacks (last registered first), unmaps, and
/// drops the reference; the last reference destroys the segment.
void dsm_detach(dsm_segment* seg);

/// dsm_detach, and removes the segment's name whatever its reference count:
/// for the creator that knows every other user is gone — including ones
/// that died attached, whose references are never dropped (a parallel
/// context after its workers). Mappings elsewhere stay valid.
void dsm_detach_and_remove(dsm_segment* seg);

/// The attachment now lives until dsm_detach or process exit, whatever
/// happens to the resource owner that held it.
void dsm_pin_mapping(dsm_segment* seg);
/// Gives the attachment back to CurrentResourceOwner.
void dsm_unpin_mapping(dsm_segment* seg);
/// Keeps the segment alive even when no process has it attached.
void dsm_pin_segment(dsm_segment* seg);
/// Undoes dsm_pin_segment; destroys the segment if nobody has it attached.
void dsm_unpin_segment(dsm_handle handle);

/// Whether dsm_pin_segment holds the segment.
bool dsm_segment_is_pinned(dsm_segment* seg);
/// Whether the attachment belongs to the process (dsm_pin_mapping, or
/// created with no CurrentResourceOwner) rather than to a resource owner.
bool dsm_mapping_is_pinned(dsm_segment* seg);

void* dsm_segment_address(dsm_segment* seg);
std::size_t dsm_segment_map_length(dsm_segment* seg);
dsm_handle dsm_segment_handle(dsm_segment* seg);
/// This process's attachment to `handle`, or nullptr.
dsm_segment* dsm_find_mapping(dsm_handle handle);

using on_dsm_detach_callback = void (*)(dsm_segment* seg, Datum arg);
/// Registers a callback run when this process detaches (LIFO). Must not throw.
void on_dsm_detach(dsm_segment* seg, on_dsm_detach_callback function, Datum arg);
void cancel_on_dsm_detach(dsm_segment* seg, on_dsm_detach_callback function, Datum arg);
/// Runs the detach callbacks now (last registered first) and forgets them,
/// keeping the attachment: for an attachment reused for successive jobs (a
/// pool worker's, a parallel context's recycled segment) whose callbacks
/// belong to the job that ended. Must not be called from a callback.
void dsm_run_detach_callbacks(dsm_segment* seg);

/// Removes the segments of grove processes that died without cleaning up
/// (their registries, and any "grove.<pid>.*" name of a dead pid). Runs
/// automatically on this process's first DSM call; returns how many
/// segments it removed.
std::size_t dsm_cleanup_orphans();
/// Sets up this process's DSM state (if it is not yet) without that first
/// cleanup: for a worker a leader just forked, whose leader cleaned up at
/// its own start (a directory scan and a /proc read per dead owner's name
/// would cost every short-lived worker more than its job).
void dsm_initialize_without_cleanup();

/// What the process's atexit handler does — removes the segments this
/// process created and its registry — for a process that ends with _exit()
/// (a forked worker). Nothing else of DSM may be used afterwards.
void dsm_process_exit();

/// Names of the segments in /dev/shm that this process created and that
/// still exist (for tests and the CLI).
std::size_t dsm_created_segment_count();

/// RAII: an attachment detached at scope exit (C++ face). It takes the
/// attachment away from the resource owner (dsm_pin_mapping), so that the
/// scope alone decides when it goes and it is never detached twice.
class DsmAttachment {
 public:
  explicit DsmAttachment(dsm_segment* seg) : seg_(seg) {
    if (seg_ != nullptr) dsm_pin_mapping(seg_);
  }
  ~DsmAttachment() {
    if (seg_ != nullptr) dsm_detach(seg_);
  }
  DsmAttachment(const DsmAttachment&) = delete;
  DsmAttachment& operator=(const DsmAttachment&) = delete;
  DsmAttachment(DsmAttachment&& o) noexcept : seg_(o.seg_) { o.seg_ = nullptr; }
  dsm_segment* get() const noexcept { return seg_; }
  dsm_segment* release() noexcept {
    dsm_segment* s = seg_;
    seg_ = nullptr;
    return s;
  }

 private:
  dsm_segment* seg_;
};

}  // namespace grove
