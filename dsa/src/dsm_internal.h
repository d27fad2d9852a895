// Internal to dsa/: segment names, process liveness, and the registry of the
// segments a process created.
#pragma once

#include <cstddef>
#include <string>
#include <sys/types.h>

#include "grove/dsa/dsm.h"

namespace grove::dsm_internal {

/// "/grove.<pid>.<low 32 bits as hex>": the creator's pid is the high half
/// of the handle, so any process can name a segment from its handle alone.
std::string SegmentName(dsm_handle handle);
pid_t CreatorOf(dsm_handle handle);

/// Whether `pid` is a running process (a zombie counts as dead). When
/// `start_time` is nonzero it must also match /proc/<pid>/stat's start time,
/// so that a reused pid is not mistaken for the creator.
bool ProcessAlive(pid_t pid, unsigned long long start_time);
unsigned long long ProcessStartTime(pid_t pid);

/// Records a handle this process is about to create. Returns false if the
/// registry is full even after dropping entries whose segments are gone.
bool RegistryAdd(dsm_handle handle);
/// Records a handle this process is about to create on behalf of `owner`
/// (named after it, removed at its exit). kOwnerGone if `owner` has no
/// registry or is not running.
enum class RegistryAddResult { kAdded, kFull, kOwnerGone };
RegistryAddResult RegistryAddFor(pid_t owner, dsm_handle handle);
/// Forgets a handle (its segment was destroyed or never created); in the
/// owner's registry when this process has it mapped.
void RegistryRemove(dsm_handle handle);
/// Number of registered handles whose segments still exist.
std::size_t RegistryLiveCount();
/// Removes this process's segments and registry (at exit).
void RemoveOwnAtExit();
/// After fork(): the child has no registry of its own yet.
void RegistryForgetAfterFork();

/// Removes what dead grove processes left in /dev/shm. Returns segments removed.
std::size_t CleanupOrphans();

}  // namespace grove::dsm_internal
