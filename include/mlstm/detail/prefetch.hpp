// Hints that ask the cache for memory ahead of its use. They change no result: the processor may
// drop a hint, and where neither the instruction nor the compiler's builtin is at hand a hint does
// nothing.
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
#if defined(__SSE__)
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

// Asks the cache for every line that holds some of the `count` elements from `data` (the first
// line from its start, so that the last line is asked for too when `data` lies inside a line).
template <typename T>
void prefetch_range(const T* data, Index count) {
  constexpr Index line = 64;
  if (count < 1) return;
  const char* first = reinterpret_cast<const char*>(data);
  const Index into_line = static_cast<Index>(reinterpret_cast<std::uintptr_t>(first) % line);
  const Index bytes = count * static_cast<Index>(sizeof(T));
  for (Index offset = -into_line; offset < bytes; offset += line) prefetch(first, offset);
}

}  // namespace mlstm::detail
