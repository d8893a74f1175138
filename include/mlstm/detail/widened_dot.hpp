// The step's products with bfloat16 weights: y (rows, columns) = x (rows, size) w^T (+ bias) for
// a few rows of float x (a generation step has one per sequence) and bfloat16 weights w
// (columns, size) read where they lie. Each weight is read once, so these kernels stream the
// weights from memory at the speed of a sum; every sum is in float.
//
// - dot_widened_rows_portable: any processor; groups of 8 weight rows widened by the compiler's
//   vectorizer.
// - dot_pairs_rows with an AVX-512 or an AVX2 dot (paired_dot_kernel() chooses by processor):
//   one weight row after the other, each dotted with every row of x while it is in the
//   first-level cache, on x arranged in the weights' pair order once per product.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstring>

#include "mlstm/detail/bfloat16.hpp"
#include "mlstm/detail/prefetch.hpp"
#include "mlstm/detail/x86_kernels.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::detail {

// sums[c] = sum_k x[k] * w[c * size + k] in float for `Columns` bfloat16 weight rows. Written
// for the compiler's vectorizer: each weight row has `lanes` partial sums (a vector register),
// independent of each other, so nothing is reordered; the rows share each load of x, copied to a
// local array first (read through the pointer, GCC 12 assembled it from 16 scalar loads). Each
// row's weights are prefetched 1 KB ahead: the hardware's prefetchers alone fell behind with 8
// streams 8 KB apart (bench_linear's BM_linear_step against BM_read_bandwidth; bench/README.md).
template <int Columns>
void dot_widened(const float* x, const Eigen::bfloat16* w, Index size, float* sums) {
  constexpr int lanes = 16;
  constexpr Index prefetch_ahead = 512;  // weights (1 KB)
  constexpr Index line = 32;             // weights in a 64-byte cache line
  float partial[Columns][lanes] = {};
  Index k = 0;
  for (; k + lanes <= size; k += lanes) {
    float inputs[lanes];
    std::memcpy(inputs, x + k, sizeof inputs);
    if (k % line == 0)
      for (int col = 0; col < Columns; ++col) prefetch(w + col * size + k, prefetch_ahead);
    for (int col = 0; col < Columns; ++col)
      for (int lane = 0; lane < lanes; ++lane)
        partial[col][lane] += inputs[lane] * widen(w[col * size + k + lane]);
  }
  for (int col = 0; col < Columns; ++col) {
    float sum = 0.0f;
    for (Index rest = k; rest < size; ++rest) sum += x[rest] * widen(w[col * size + rest]);
    for (int lane = 0; lane < lanes; ++lane) sum += partial[col][lane];
    sums[col] = sum;
  }
}

// y (rows, columns) = x (rows, size) w^T (+ bias) for bfloat16 weights w (columns, size); rows of
// x and y are `x_stride` and `y_stride` apart; bias is null or has `columns` values. Any
// processor: dot_widened's groups of 8 weight rows.
inline void dot_widened_rows_portable(const float* x, Index x_stride, Index rows,
                                      const Eigen::bfloat16* w, Index columns, Index size,
                                      const float* bias, float* y, Index y_stride) {
  constexpr int group = 8;
  for (Index row = 0; row < rows; ++row) {
    const float* x_row = x + row * x_stride;
    float* y_row = y + row * y_stride;
    Index col = 0;
    for (; col + group <= columns; col += group)
      dot_widened<group>(x_row, w + col * size, size, y_row + col);
    for (; col < columns; ++col) dot_widened<1>(x_row, w + col * size, size, y_row + col);
    if (bias != nullptr)
      for (col = 0; col < columns; ++col) y_row[col] += bias[col];
  }
}

// The paired kernels read bfloat16 weights as pairs in 32-bit lanes (32 weights are 64 bytes: one
// AVX-512 vector, two AVX2 ones) and widen them where they lie: the lower weight of each pair by
// a shift, the upper one by clearing the bits below it. No weight moves across lanes (a zero
// extension per 16 weights did, and read slower). The inputs are put in the same order once per
// product: in each group of 32, the 16 of even index, then the 16 of odd index; the rest
// (size % 32) in order. An AVX2 vector of 16 weights holds the pairs of 8 consecutive even and 8
// consecutive odd inputs: a half of each half of the group.
inline constexpr Index pair_group = 32;

// How far ahead of its use each paired kernel prefetches each cache line of weights, across the
// end of a row into the next one, which it reads next (bench/README.md). AVX-512: 4 KB (0.94 of a
// plain read's rate at rows of 10944 weights without it, 0.99 to 1.02 with it). AVX2, on the
// AVX2 EPYC: 1 KB (0.85 to 0.97 of a plain read; 4 KB 0.78 to 0.90, none 0.79 to 0.89).
inline constexpr Index paired_prefetch_ahead_avx512 = 2048;  // weights
inline constexpr Index paired_prefetch_ahead_avx2 = 512;

// x (rows, size), rows `x_stride` apart, into `paired` (rows, size) in the order above.
inline void arrange_pairs(const float* x, Index x_stride, Index rows, Index size, float* paired,
                          Index paired_stride) {
  constexpr Index half = pair_group / 2;
  for (Index row = 0; row < rows; ++row) {
    const float* from = x + row * x_stride;
    float* to = paired + row * paired_stride;
    Index k = 0;
    for (; k + pair_group <= size; k += pair_group)
      for (Index j = 0; j < half; ++j) {
        to[k + j] = from[k + 2 * j];
        to[k + half + j] = from[k + 2 * j + 1];
      }
    std::copy(from + k, from + size, to + k);
  }
}

#if MLSTM_DETAIL_X86_KERNELS
// The lower and the upper weight of 16 bfloat16 pairs as 16 floats each. (The zero-masked shift
// with a full mask is the plain one; GCC 12 warns inside the unmasked one's header.)
__attribute__((target("avx512f"), always_inline)) inline __m512 lower_of_pairs(__m512i pairs) {
  return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(__mmask16(0xffff), pairs, 16));
}
__attribute__((target("avx512f"), always_inline)) inline __m512 upper_of_pairs(__m512i pairs) {
  return _mm512_castsi512_ps(
      _mm512_and_si512(pairs, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}

// sum_k x[k] * w[k] in float for one row of `size` bfloat16 weights and x arranged in pairs: 4
// vectors of 16 partial sums, then the rest one by one.
__attribute__((target("avx512f"))) inline float dot_pairs_avx512(const float* paired_x,
                                                                 const Eigen::bfloat16* w,
                                                                 Index size) {
  __m512 sum0 = _mm512_setzero_ps(), sum1 = sum0, sum2 = sum0, sum3 = sum0;
  Index k = 0;
  for (; k + 2 * pair_group <= size; k += 2 * pair_group) {
    prefetch(w + k, paired_prefetch_ahead_avx512);
    prefetch(w + k + pair_group, paired_prefetch_ahead_avx512);
    const __m512i first = _mm512_loadu_si512(w + k),
                  second = _mm512_loadu_si512(w + k + pair_group);
    sum0 = _mm512_fmadd_ps(_mm512_loadu_ps(paired_x + k), lower_of_pairs(first), sum0);
    sum1 = _mm512_fmadd_ps(_mm512_loadu_ps(paired_x + k + 16), upper_of_pairs(first), sum1);
    sum2 = _mm512_fmadd_ps(_mm512_loadu_ps(paired_x + k + 32), lower_of_pairs(second), sum2);
    sum3 = _mm512_fmadd_ps(_mm512_loadu_ps(paired_x + k + 48), upper_of_pairs(second), sum3);
  }
  if (k + pair_group <= size) {
    const __m512i pairs = _mm512_loadu_si512(w + k);
    sum0 = _mm512_fmadd_ps(_mm512_loadu_ps(paired_x + k), lower_of_pairs(pairs), sum0);
    sum1 = _mm512_fmadd_ps(_mm512_loadu_ps(paired_x + k + 16), upper_of_pairs(pairs), sum1);
    k += pair_group;
  }
  float lanes[16];
  _mm512_storeu_ps(lanes, _mm512_add_ps(_mm512_add_ps(sum0, sum1), _mm512_add_ps(sum2, sum3)));
  float sum = 0.0f;
  for (; k < size; ++k) sum += paired_x[k] * widen(w[k]);
  for (const float lane : lanes) sum += lane;
  return sum;
}

// The lower and the upper weight of 8 bfloat16 pairs as 8 floats each.
__attribute__((target("avx2,fma"), always_inline)) inline __m256 lower_of_pairs(__m256i pairs) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(pairs, 16));
}
__attribute__((target("avx2,fma"), always_inline)) inline __m256 upper_of_pairs(__m256i pairs) {
  return _mm256_castsi256_ps(
      _mm256_and_si256(pairs, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}

// As dot_pairs_avx512 with AVX2: each group of 32 weights is two vectors of 8 pairs, the first
// dotted with inputs 0-7 (even) and 16-23 (odd) of the arranged group, the second with 8-15 and
// 24-31. Two groups a step into eight vectors of partial sums, so that no sum waits for the
// previous multiply-add; then a last group, then the rest one by one.
__attribute__((target("avx2,fma"), always_inline)) inline void add_pair_group(
    const float* paired_x, const Eigen::bfloat16* w, __m256& sum0, __m256& sum1, __m256& sum2,
    __m256& sum3) {
  const __m256i first = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  const __m256i second = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16));
  sum0 = _mm256_fmadd_ps(_mm256_loadu_ps(paired_x), lower_of_pairs(first), sum0);
  sum1 = _mm256_fmadd_ps(_mm256_loadu_ps(paired_x + 16), upper_of_pairs(first), sum1);
  sum2 = _mm256_fmadd_ps(_mm256_loadu_ps(paired_x + 8), lower_of_pairs(second), sum2);
  sum3 = _mm256_fmadd_ps(_mm256_loadu_ps(paired_x + 24), upper_of_pairs(second), sum3);
}

__attribute__((target("avx2,fma"))) inline float dot_pairs_avx2(const float* paired_x,
                                                                const Eigen::bfloat16* w,
                                                                Index size) {
  __m256 sum0 = _mm256_setzero_ps(), sum1 = sum0, sum2 = sum0, sum3 = sum0;
  __m256 sum4 = sum0, sum5 = sum0, sum6 = sum0, sum7 = sum0;
  Index k = 0;
  for (; k + 2 * pair_group <= size; k += 2 * pair_group) {
    prefetch(w + k, paired_prefetch_ahead_avx2);
    prefetch(w + k + pair_group, paired_prefetch_ahead_avx2);
    add_pair_group(paired_x + k, w + k, sum0, sum1, sum2, sum3);
    add_pair_group(paired_x + k + pair_group, w + k + pair_group, sum4, sum5, sum6, sum7);
  }
  if (k + pair_group <= size) {
    add_pair_group(paired_x + k, w + k, sum0, sum1, sum2, sum3);
    k += pair_group;
  }
  sum0 = _mm256_add_ps(_mm256_add_ps(sum0, sum4), _mm256_add_ps(sum1, sum5));
  sum2 = _mm256_add_ps(_mm256_add_ps(sum2, sum6), _mm256_add_ps(sum3, sum7));
  float lanes[8];
  _mm256_storeu_ps(lanes, _mm256_add_ps(sum0, sum2));
  float sum = 0.0f;
  for (; k < size; ++k) sum += paired_x[k] * widen(w[k]);
  for (const float lane : lanes) sum += lane;
  return sum;
}
#endif

// A paired dot: sum_k x[k] * w[k] for one row of `size` bfloat16 weights, x arranged in pairs.
using PairedDot = float (*)(const float* paired_x, const Eigen::bfloat16* w, Index size);

// The paired dot this processor runs (AVX-512, else AVX2 with FMA), or null: then the step takes
// dot_widened_rows_portable.
inline PairedDot paired_dot_kernel() {
#if MLSTM_DETAIL_X86_KERNELS
  if (processor_has_avx512()) return dot_pairs_avx512;
  if (processor_has_avx2_fma()) return dot_pairs_avx2;
#endif
  return nullptr;
}

// As dot_widened_rows_portable, by a paired dot on x arranged in pairs (arrange_pairs): weight
// row by weight row, each dotted with every row of x while it is in the first-level cache. One
// stream of weights in memory order per thread kept the hardware's prefetchers ahead where 8
// streams (the portable kernel's) did not (BM_linear_step in bench_linear; bench/README.md).
inline void dot_pairs_rows(PairedDot dot, const float* paired_x, Index x_stride, Index rows,
                           const Eigen::bfloat16* w, Index columns, Index size, const float* bias,
                           float* y, Index y_stride) {
  for (Index col = 0; col < columns; ++col) {
    for (Index row = 0; row < rows; ++row) {
      float sum = dot(paired_x + row * x_stride, w + col * size, size);
      if (bias != nullptr) sum += bias[col];
      y[row * y_stride + col] = sum;
    }
  }
}

}  // namespace mlstm::detail
