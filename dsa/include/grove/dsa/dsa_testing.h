// Hooks for tests of the dynamic shared area: take its locks by hand (to
// kill a process holding one) and verify its invariants.
#pragma once

#include <cstddef>
#include <string>

#include "grove/dsa/dsa.h"

namespace grove::dsa_testing {

/// Takes the area lock (segments, free pages) and returns; the caller ends
/// with UnlockArea or by dying.
void LockArea(dsa_area* area);
void UnlockArea(dsa_area* area);
/// Takes the lock of the size class serving `size` bytes.
void LockSizeClass(dsa_area* area, std::size_t size);
void UnlockSizeClass(dsa_area* area, std::size_t size);

/// Verifies every segment's free pages and page map, every span list and
/// count. Returns false and describes the first violation in `why`. Takes
/// the locks itself.
bool Check(dsa_area* area, std::string* why);

/// Objects in this attachment's caches, all classes.
std::size_t CachedObjects(dsa_area* area);

/// The size class index (0-based) serving `size`, and the object size of a
/// class; -1 for sizes above the largest class.
int SizeClassOf(std::size_t size);
std::size_t SizeClassObjectSize(int size_class);
int SizeClassCount();

}  // namespace grove::dsa_testing
