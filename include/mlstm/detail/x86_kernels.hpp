// Whether the x86 kernels (AVX2 + FMA, AVX-512) are compiled (MLSTM_DETAIL_X86_KERNELS: GCC or
// Clang on x86) and whether the processor runs them. The kernels carry their own target
// attribute, so a portable build (no -march) still has them and chooses at run time.
#pragma once

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define MLSTM_DETAIL_X86_KERNELS 1
#else
#define MLSTM_DETAIL_X86_KERNELS 0
#endif

namespace mlstm::detail {

#if MLSTM_DETAIL_X86_KERNELS
// Whether the processor (and the operating system) run AVX-512 code.
inline bool processor_has_avx512() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return has;
}

// Whether the processor runs AVX2 code with fused multiply-adds.
inline bool processor_has_avx2_fma() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("fma") != 0;
  }();
  return has;
}
#endif

}  // namespace mlstm::detail
