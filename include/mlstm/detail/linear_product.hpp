// The one product loop behind the linear layers (linear.hpp, linear_headwise.hpp): a
// block-diagonal y = x W^T + b, with weights stored in the activations' scalar or in bfloat16.
//
//   x (rows, blocks * in), weight (blocks, out, in), bias (blocks * out) or null
//   y[r, b * out + o] = sum_k x[r, b * in + k] * weight[b, o, k]  (+ bias[b * out + o])
//
// A dense linear map is one block. bfloat16 weights (for float activations) are read where they
// lie (a memory-mapped checkpoint, say) and widened to float as they are used; every sum is in
// float:
// - a few rows (a step): each weight row is read once and dotted with every row of x, so the
//   weights stream from memory once at the speed of a sum (with AVX-512, where the processor has
//   it, one weight row after the other, x put in the weights' pair order once: one stream of
//   weights per thread);
// - more rows (a prefill): where the processor has AVX-512, each weight is broadcast from where
//   it lies (widened as it is, for bfloat16) and multiplied with 16 rows of x at a time
//   (broadcast_product.hpp; float weights too, but not in a MLSTM_GEMM=oneDNN build, where they
//   go to oneDNN's sgemm). Elsewhere bfloat16 weights are widened block by block into Eigen's
//   packed layout and multiplied by its matrix-product kernel, with x packed once
//   (widened_product.hpp), or with MLSTM_GEMM=oneDNN each tile of the weights is widened into a
//   float buffer once per tile of rows and multiplied by oneDNN's sgemm.
//
// Threads: the product is cut into tiles (a block, up to `row_tile` rows, up to a column tile of
// outputs) whose sizes depend on the shapes only, so the result does not depend on the thread
// count; no sum is split across tiles.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>

#include "mlstm/detail/aligned_array.hpp"
#include "mlstm/detail/avx512.hpp"
#include "mlstm/detail/bfloat16.hpp"
#include "mlstm/detail/broadcast_product.hpp"
#include "mlstm/detail/matrix_product.hpp"
#include "mlstm/detail/thread_pool.hpp"
#include "mlstm/detail/widened_product.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::detail {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The weight scalars a linear layer takes for activations in T: T itself, or bfloat16 for float
// activations (stored in bfloat16, summed in float).
template <typename T, typename W>
inline constexpr bool is_linear_weight_scalar = std::is_same_v<W, T> ||
                                                (std::is_same_v<W, Eigen::bfloat16> &&
                                                 std::is_same_v<T, float>);

// Rows up to which bfloat16 weights are dotted row by row (the step's path) rather than
// widened into a buffer tile by tile.
inline constexpr Index widened_dot_max_rows = 4;

// Asks the cache for the line `ahead` elements past `at`, ahead of its use (a hint; no effect
// where the compiler has no such builtin). The address is computed as an integer: near the end of
// an array it lies past the end, which the hint may (it never faults) and pointer arithmetic may
// not.
template <typename T>
void prefetch(const T* at, Index ahead) {
#if defined(__GNUC__) || defined(__clang__)
  const std::uintptr_t address =
      reinterpret_cast<std::uintptr_t>(at) + static_cast<std::uintptr_t>(ahead) * sizeof(T);
  __builtin_prefetch(reinterpret_cast<const void*>(address));
#else
  static_cast<void>(at);
  static_cast<void>(ahead);
#endif
}

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

// The step's AVX-512 kernel reads 32 bfloat16 weights (64 bytes) as 16 pairs in one vector and
// widens them where they lie in the lanes: the lower weight of each pair by a shift, the upper
// one by clearing the bits below it. No weight moves across lanes (a zero extension per 16
// weights did, and read slower). The inputs are put in the same order once per product: in each
// group of 32, the 16 of even index, then the 16 of odd index; the rest (size % 32) in order.
inline constexpr Index pair_group = 32;

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

#if MLSTM_DETAIL_AVX512
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
// vectors of 16 partial sums, then the rest one by one. Each cache line of weights is prefetched
// 4 KB ahead (across the end of the row into the next one, which the tile reads next): with the
// hardware's prefetchers alone it read 0.94 of a plain read's rate at rows of 10944 weights,
// 0.99 to 1.02 with it (bench/README.md).
__attribute__((target("avx512f"))) inline float dot_pairs_avx512(const float* paired_x,
                                                                 const Eigen::bfloat16* w,
                                                                 Index size) {
  constexpr Index prefetch_ahead = 2048;  // weights (4 KB)
  __m512 sum0 = _mm512_setzero_ps(), sum1 = sum0, sum2 = sum0, sum3 = sum0;
  Index k = 0;
  for (; k + 2 * pair_group <= size; k += 2 * pair_group) {
    prefetch(w + k, prefetch_ahead);
    prefetch(w + k + pair_group, prefetch_ahead);
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

// As dot_widened_rows_portable, with AVX-512 and x arranged in pairs (arrange_pairs): weight row
// by weight row, each dotted with every row of x while it is in the first-level cache. One stream
// of weights in memory order per thread kept the hardware's prefetchers ahead where 8 streams
// (the portable kernel's) did not (BM_linear_step in bench_linear; bench/README.md).
__attribute__((target("avx512f"))) inline void dot_pairs_rows_avx512(
    const float* paired_x, Index x_stride, Index rows, const Eigen::bfloat16* w, Index columns,
    Index size, const float* bias, float* y, Index y_stride) {
  for (Index col = 0; col < columns; ++col) {
    for (Index row = 0; row < rows; ++row) {
      float sum = dot_pairs_avx512(paired_x + row * x_stride, w + col * size, size);
      if (bias != nullptr) sum += bias[col];
      y[row * y_stride + col] = sum;
    }
  }
}
#endif

// Whether the step's bfloat16 products run dot_pairs_rows_avx512 (on x arranged in pairs) rather
// than dot_widened_rows_portable.
inline bool uses_paired_step_kernel() {
#if MLSTM_DETAIL_AVX512
  return processor_has_avx512();
#else
  return false;
#endif
}

// Whether a product of `rows` rows with weights in W goes to broadcast_product: float
// activations, more than a few rows, and the processor's instructions; float weights in a
// MLSTM_GEMM=oneDNN build go to oneDNN's sgemm instead.
template <typename T, typename W>
bool uses_broadcast_product(Index rows) {
#if MLSTM_DETAIL_AVX512
  if constexpr (std::is_same_v<T, float>) {
#ifdef MLSTM_USE_ONEDNN
    if constexpr (std::is_same_v<W, float>) return false;
#endif
    return rows > widened_dot_max_rows && processor_has_avx512();
  }
#endif
  static_cast<void>(rows);
  return false;
}

// Floats of widened weights one tile holds at most (4 MB, so that a tile fits in a large cache).
inline constexpr Index widened_tile_floats = Index(1) << 20;

// A weight as the scalar the sums run in.
template <typename T, typename W>
T weight_value(W w) {
  if constexpr (std::is_same_v<W, T>) {
    return w;
  } else {
    return widen(w);
  }
}

// Rows [row_begin, row_end) of a head-wise map of small square blocks (Size x Size, known at
// compile time: the model's q/k/v projections use 4 x 4). A matrix product per block would
// spend its time packing operands of a few numbers (measured 20 to 40x slower at 4 x 4); plain
// loops of fixed length vectorize.
template <int Size, typename T, typename W>
void small_square_blocks(const T* x, const W* weight, const T* bias, T* y, Index blocks,
                         Index row_begin, Index row_end) {
  const Index width = blocks * Size;
  for (Index row = row_begin; row < row_end; ++row) {
    const T* x_row = x + row * width;
    T* y_row = y + row * width;
    for (Index block = 0; block < blocks; ++block) {
      const T* inputs = x_row + block * Size;
      const W* weights = weight + block * Size * Size;
      for (int out = 0; out < Size; ++out) {
        T sum = T(0);
        for (int in = 0; in < Size; ++in)
          sum += inputs[in] * weight_value<T>(weights[out * Size + in]);
        y_row[block * Size + out] = sum;
      }
    }
    if (bias != nullptr)
      for (Index j = 0; j < width; ++j) y_row[j] += bias[j];
  }
}

// Whether a head-wise map's blocks are small and square (2, 4, 8 or 16 numbers a side), which
// small_square_blocks and its backward take in loops of fixed length.
inline bool has_small_square_blocks(Index blocks, Index in, Index out) {
  return blocks > 1 && in == out && (in == 2 || in == 4 || in == 8 || in == 16);
}

// Calls function(std::integral_constant<int, size>{}) for a small square block's size, so that
// the loops inside have their length at compile time.
template <typename Function>
void with_small_square_size(Index size, const Function& function) {
  switch (size) {
    case 2: return function(std::integral_constant<int, 2>{});
    case 4: return function(std::integral_constant<int, 4>{});
    case 8: return function(std::integral_constant<int, 8>{});
    default: return function(std::integral_constant<int, 16>{});
  }
}

// y (rows, cols) = x (rows, depth) w^T for row-major operands with the given row strides
// (w (cols, depth) contiguous), on the calling thread (matrix_product.hpp: oneDNN's sgemm with
// MLSTM_GEMM=oneDNN, else Eigen's).
template <typename T>
void multiply_transposed(const T* x, Index x_stride, const T* w, T* y, Index y_stride, Index rows,
                         Index depth, Index cols) {
  matrix_product<T>(rows, cols, depth, {x, x_stride}, {w, depth, true}, y, y_stride);
}

struct LinearShape {
  Index rows = 0, blocks = 1, in = 0, out = 0;  // in and out per block
};

// y = x W^T + b block by block, as the header describes, on up to `threads` threads.
template <typename T, typename W>
void linear_product(const T* x, const W* weight, const T* bias, T* y, const LinearShape& shape,
                    int threads) {
  static_assert(is_linear_weight_scalar<T, W>,
                "mlstm: linear weights are in the activations' scalar, or bfloat16 for float");
  constexpr bool widened = !std::is_same_v<W, T>;
  const Index rows = shape.rows, blocks = shape.blocks, in = shape.in, out = shape.out;
  const Index x_stride = blocks * in, y_stride = blocks * out;
  if (rows < 1 || out < 1) return;
  const double flops = 2.0 * static_cast<double>(rows) * static_cast<double>(in) *
                       static_cast<double>(out) * static_cast<double>(blocks);

  if (has_small_square_blocks(blocks, in, out)) {
    constexpr Index rows_per_item = 64;
    const Index items = (rows + rows_per_item - 1) / rows_per_item;
    parallel_for(items, threads_for_work(threads, items, flops), [&](Index item) {
      const Index begin = item * rows_per_item, end = std::min(rows, begin + rows_per_item);
      with_small_square_size(in, [&](auto size) {
        small_square_blocks<decltype(size)::value>(x, weight, bias, y, blocks, begin, end);
      });
    });
    return;
  }

  // A product per block of the block-diagonal map, by `product` (x, y and the bias offset).
  auto per_block = [&](const auto& product) {
    for (Index block = 0; block < blocks; ++block)
      product(x + block * in, weight + block * out * in,
              bias != nullptr ? bias + block * out : nullptr, y + block * out);
  };
#if MLSTM_DETAIL_AVX512
  if constexpr (std::is_same_v<T, float>) {
    if (uses_broadcast_product<T, W>(rows)) {
      per_block([&](const float* x_block, const W* w_block, const float* b_block, float* y_block) {
        broadcast_product<W>(x_block, x_stride, rows, w_block, in, out, b_block, y_block, y_stride,
                             threads);
      });
      return;
    }
  }
#endif
#ifndef MLSTM_USE_ONEDNN
  if constexpr (widened) {
    if (rows > widened_dot_max_rows) {
      per_block([&](const float* x_block, const W* w_block, const float* b_block, float* y_block) {
        widened_product(x_block, x_stride, rows, w_block, in, out, b_block, y_block, y_stride,
                        threads);
      });
      return;
    }
  }
#endif

  Index row_tile = 256, column_tile = 512;
  if constexpr (widened) {
    if (rows <= widened_dot_max_rows) {
      row_tile = rows;
      column_tile = 64;
    } else {
      // A multiple of 16 outputs whose widened weights fit the buffer.
      column_tile =
          std::clamp<Index>(widened_tile_floats / std::max<Index>(in, 1) / 16 * 16, 16, 512);
    }
  }
  row_tile = balanced_tile(rows, row_tile, 1);
  column_tile = balanced_tile(out, column_tile, 16);
  const Index row_tiles = (rows + row_tile - 1) / row_tile;
  const Index column_tiles = (out + column_tile - 1) / column_tile;
  const Index tiles_per_block = row_tiles * column_tiles;
  const Index tiles = blocks * tiles_per_block;
  // The step's AVX-512 kernel takes x arranged in pairs, once per product (each block's inputs
  // from the block's first), its rows on 64-byte boundaries: every load of x is then one cache
  // line (on malloc's 16-byte boundary most loads spanned two, and the step read slower when the
  // memory was fast; bench/README.md).
  const bool paired_step = widened && rows <= widened_dot_max_rows && uses_paired_step_kernel();
  constexpr Index line_floats = static_cast<Index>(AlignedArray<float>::alignment / sizeof(float));
  const Index paired_stride = (x_stride + line_floats - 1) / line_floats * line_floats;
  AlignedArray<float> paired_x(paired_step ? rows * paired_stride : 0);
  if constexpr (widened) {
    if (paired_step)
      for (Index block = 0; block < blocks; ++block)
        arrange_pairs(x + block * in, x_stride, rows, in, paired_x.data() + block * in,
                      paired_stride);
  }
  using Strided = Eigen::OuterStride<>;
  parallel_for(tiles, threads_for_work(threads, tiles, flops), [&](Index item) {
    const Index block = item / tiles_per_block, tile = item % tiles_per_block;
    const Index row_begin = (tile / column_tiles) * row_tile;
    const Index col_begin = (tile % column_tiles) * column_tile;
    const Index row_count = std::min(row_tile, rows - row_begin);
    const Index col_count = std::min(column_tile, out - col_begin);
    const T* inputs = x + row_begin * x_stride + block * in;
    const W* weights = weight + (block * out + col_begin) * in;
    T* outputs = y + row_begin * y_stride + block * out + col_begin;
    const T* tile_bias = bias != nullptr ? bias + block * out + col_begin : nullptr;

    if constexpr (widened) {
      if (rows <= widened_dot_max_rows) {
#if MLSTM_DETAIL_AVX512
        if (paired_step) {
          dot_pairs_rows_avx512(paired_x.data() + row_begin * paired_stride + block * in,
                                paired_stride, row_count, weights, col_count, in, tile_bias,
                                outputs, y_stride);
          return;
        }
#endif
        dot_widened_rows_portable(inputs, x_stride, row_count, weights, col_count, in, tile_bias,
                                  outputs, y_stride);
        return;
      }
      RowMatrix<float> widened_weights(col_count, in);
      std::transform(weights, weights + col_count * in, widened_weights.data(),
                     [](Eigen::bfloat16 w) { return widen(w); });
      multiply_transposed(inputs, x_stride, widened_weights.data(), outputs, y_stride, row_count,
                          in, col_count);
    } else {
      multiply_transposed(inputs, x_stride, weights, outputs, y_stride, row_count, in, col_count);
    }
    Eigen::Map<RowMatrix<T>, 0, Strided> result(outputs, row_count, col_count, Strided(y_stride));
    if (tile_bias != nullptr)
      result.rowwise() +=
          Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(tile_bias, col_count);
  });
}

}  // namespace mlstm::detail
