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

// Transposes the 4 x 4 block in each 128-bit half of rows[0..3]: lane j of a half of rows[i]
// goes to lane i of the same half of columns[j]. Unpacking pairs rows 0 and 1 (2 and 3) at
// lanes 0 1 and 2 3; shuffling takes each lane's pair of pairs.
__attribute__((target("avx2"), always_inline)) inline void transpose_4x4_halves(
    const __m256 (&rows)[4], __m256 (&columns)[4]) {
  const __m256 rows01_low = _mm256_unpacklo_ps(rows[0], rows[1]);
  const __m256 rows01_high = _mm256_unpackhi_ps(rows[0], rows[1]);
  const __m256 rows23_low = _mm256_unpacklo_ps(rows[2], rows[3]);
  const __m256 rows23_high = _mm256_unpackhi_ps(rows[2], rows[3]);
  constexpr int even = _MM_SHUFFLE(1, 0, 1, 0), odd = _MM_SHUFFLE(3, 2, 3, 2);
  columns[0] = _mm256_shuffle_ps(rows01_low, rows23_low, even);
  columns[1] = _mm256_shuffle_ps(rows01_low, rows23_low, odd);
  columns[2] = _mm256_shuffle_ps(rows01_high, rows23_high, even);
  columns[3] = _mm256_shuffle_ps(rows01_high, rows23_high, odd);
}
#endif

}  // namespace mlstm::detail
