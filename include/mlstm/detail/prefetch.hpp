// Hints that ask the cache for memory ahead of its use. They change no result: a hint may be
// dropped, and where the compiler has no such builtin it does nothing.
#pragma once

#include <cstdint>

#include "mlstm/tensor.hpp"

namespace mlstm::detail {

// Asks the cache for the line `ahead` elements past `at`. The address is computed as an integer:
// near the end of an array it lies past the end, which the hint may (it never faults) and pointer
// arithmetic may not.
template <typename T>
void prefetch(const T* at, Index ahead) {
#if defined(__GNUC__) || defined(__clang__)
  const std::uintptr_t address =
      reinterpret_cast<std::uintptr_t>(at) + static_cast<std::uintptr_t>(ahead) * sizeof(T);
#if defined(__x86_64__) || defined(__i386__)
  // The instruction itself, which the compiler keeps: GCC 12 deleted __builtin_prefetch from a
  // loop of nothing else behind a branch (prefetch_range in ChunkInputsAhead::fetch_row).
  asm volatile("prefetcht0 %0" : : "m"(*reinterpret_cast<const char*>(address)));
#else
  __builtin_prefetch(reinterpret_cast<const void*>(address));
#endif
#else
  static_cast<void>(at);
  static_cast<void>(ahead);
#endif
}

// Asks the cache for every line of the `count` elements from `data`.
template <typename T>
void prefetch_range(const T* data, Index count) {
  constexpr Index line = 64;
  const Index bytes = count * static_cast<Index>(sizeof(T));
  for (Index offset = 0; offset < bytes; offset += line)
    prefetch(reinterpret_cast<const char*>(data), offset);
}

}  // namespace mlstm::detail
