// Datum: a machine word that holds a value or a pointer, as PostgreSQL's.
#pragma once

#include <cstdint>

namespace grove {

using Datum = std::uintptr_t;

inline Datum PointerGetDatum(const void* p) { return reinterpret_cast<Datum>(p); }
template <typename T = void>
inline T* DatumGetPointer(Datum d) {
  return reinterpret_cast<T*>(d);
}

}  // namespace grove
