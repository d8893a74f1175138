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
//   weights stream from memory once at the speed of a sum (widened_dot.hpp);
// - more rows (a prefill): where the processor has AVX-512, each weight is broadcast from where
//   it lies (widened as it is, for bfloat16) and multiplied with 16 rows of x at a time
//   (broadcast_product.hpp; float weights too, except the many rows by few inputs of a training
//   step, where matrix_product's packed product is faster, and not in a MLSTM_GEMM=oneDNN build,
//   where they go to oneDNN's sgemm). Elsewhere bfloat16 weights are widened block by block into
//   Eigen's packed layout and multiplied by its matrix-product kernel, with x packed once
//   (widened_product.hpp), or with MLSTM_GEMM=oneDNN each tile of the weights is widened into a
//   float buffer once per tile of rows and multiplied by oneDNN's sgemm.
//
// With InputRounding::bfloat16 (bfloat16 weights only), x is rounded to bfloat16 first, as a
// bfloat16 model in PyTorch rounds its activations: where the processor has AMX-BF16, a product
// of more than a few rows runs on its tile unit (amx_product.hpp), many times the rate of the
// float kernels; elsewhere a rounded copy of x takes the paths above.
//
// Threads: the product is cut into tiles (a block, up to `row_tile` rows, up to a column tile of
// outputs) whose sizes depend on the shapes only, so the result does not depend on the thread
// count; no sum is split across tiles.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <memory>
#include <type_traits>
#include <vector>

#include "mlstm/detail/aligned_array.hpp"
#include "mlstm/detail/amx_product.hpp"
#include "mlstm/detail/bfloat16.hpp"
#include "mlstm/detail/broadcast_product.hpp"
#include "mlstm/detail/matrix_product.hpp"
#include "mlstm/detail/thread_pool.hpp"
#include "mlstm/detail/widened_dot.hpp"
#include "mlstm/detail/widened_product.hpp"
#include "mlstm/detail/x86_kernels.hpp"
#include "mlstm/layers/input_rounding.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::detail {

// The weight scalars a linear layer takes for activations in T: T itself, or bfloat16 for float
// activations (stored in bfloat16, summed in float).
template <typename T, typename W>
inline constexpr bool is_linear_weight_scalar = std::is_same_v<W, T> ||
                                                (std::is_same_v<W, Eigen::bfloat16> &&
                                                 std::is_same_v<T, float>);

// Rows up to which bfloat16 weights are dotted row by row (the step's path) rather than
// widened into a buffer tile by tile.
inline constexpr Index widened_dot_max_rows = 4;

// Float weights of at most packed_float_weights_max_inputs inputs go to the packed product
// (matrix_product) rather than the broadcast kernel from packed_float_weights_min_rows rows on:
// the small training model's maps (2048 rows, 256 and 512 inputs) ran 1.1 to 1.5x faster there,
// while wider inputs (the 120M model's 768, the 7B model's 4096) ran as fast or faster broadcast
// (bench/README.md, "The AVX-512 tile, reading small operands in place").
inline constexpr Index packed_float_weights_min_rows = 512;
inline constexpr Index packed_float_weights_max_inputs = 512;

// Whether a product of `rows` rows by weights in W of `inputs` inputs goes to broadcast_product:
// float activations, more than a few rows, the processor's instructions, and for float weights
// not a product the packed product takes (above); float weights in a MLSTM_GEMM=oneDNN build go
// to oneDNN's sgemm instead.
template <typename T, typename W>
bool uses_broadcast_product(Index rows, Index inputs) {
#if MLSTM_DETAIL_X86_KERNELS
  if constexpr (std::is_same_v<T, float>) {
    if constexpr (std::is_same_v<W, float>) {
#ifdef MLSTM_USE_ONEDNN
      return false;
#endif
      if (rows >= packed_float_weights_min_rows && inputs <= packed_float_weights_max_inputs)
        return false;
    }
    return rows > widened_dot_max_rows && processor_has_avx512();
  }
#endif
  static_cast<void>(rows);
  static_cast<void>(inputs);
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
// compile time: the model's q/k/v projections use 4 x 4), y's rows y_stride apart, each output
// written or added to y (after its sum and the bias). A matrix product per block would spend its
// time packing operands of a few numbers (measured 20 to 40x slower at 4 x 4); plain loops of
// fixed length vectorize.
template <int Size, typename T, typename W>
void small_square_blocks(const T* x, const W* weight, const T* bias, T* y, Index y_stride,
                         Accumulate mode, Index blocks, Index row_begin, Index row_end) {
  const Index width = blocks * Size;
  for (Index row = row_begin; row < row_end; ++row) {
    const T* x_row = x + row * width;
    T* y_row = y + row * y_stride;
    for (Index block = 0; block < blocks; ++block) {
      const T* inputs = x_row + block * Size;
      const W* weights = weight + block * Size * Size;
      for (int out = 0; out < Size; ++out) {
        T sum = T(0);
        for (int in = 0; in < Size; ++in)
          sum += inputs[in] * weight_value<T>(weights[out * Size + in]);
        if (bias != nullptr) sum += bias[block * Size + out];
        T& target = y_row[block * Size + out];
        target = mode == Accumulate::yes ? target + sum : sum;
      }
    }
  }
}

#if MLSTM_DETAIL_X86_KERNELS
// The weight columns of a head-wise map of 4 x 4 blocks, two blocks side by side: the 8 floats at
// (pair * 4 + i) * 8 are input i's weights for block 2 pair's four outputs, then block
// 2 pair + 1's, so that one load gives a vector of both blocks' terms of input i.
inline std::vector<float> square_blocks4_pair_columns(const float* weight, Index blocks) {
  std::vector<float> columns(static_cast<std::size_t>(blocks * 16));
  for (Index block = 0; block < blocks; ++block)
    for (Index i = 0; i < 4; ++i)
      for (Index o = 0; o < 4; ++o)
        columns[static_cast<std::size_t>(((block / 2) * 4 + i) * 8 + (block % 2) * 4 + o)] =
            weight[block * 16 + o * 4 + i];
  return columns;
}

// small_square_blocks<4> in float for an even number of blocks, with AVX2: a vector holds two
// blocks' four values, one block in each 128-bit half, so that input i broadcast within each half
// (a permute) times both blocks' weight columns i (square_blocks4_pair_columns) adds its term to
// their eight outputs. Row after row, each row's pairs in order: x and y stream through memory.
// Each output is summed over its inputs in order, each product rounded (no fused multiply-add),
// then the bias added: the plain loop's bits in a build without FMA, whose rounding the training
// tests' ten AdamW steps are held to. y's rows are y_stride apart; with Accumulate::yes each
// output is added to y after its sum.
__attribute__((target("avx2"))) inline void square_blocks4_avx2(
    const float* x, const float* columns, const float* bias, float* y, Index y_stride,
    Accumulate mode, Index blocks, Index row_begin, Index row_end) {
  const Index width = blocks * 4;
  for (Index row = row_begin; row < row_end; ++row) {
    const float* x_row = x + row * width;
    float* y_row = y + row * y_stride;
    for (Index pair = 0; pair < blocks / 2; ++pair) {
      const float* column = columns + pair * 32;
      const __m256 inputs = _mm256_loadu_ps(x_row + pair * 8);
      __m256 sum = _mm256_mul_ps(_mm256_permute_ps(inputs, 0x00), _mm256_loadu_ps(column));
      sum = _mm256_add_ps(
          sum, _mm256_mul_ps(_mm256_permute_ps(inputs, 0x55), _mm256_loadu_ps(column + 8)));
      sum = _mm256_add_ps(
          sum, _mm256_mul_ps(_mm256_permute_ps(inputs, 0xAA), _mm256_loadu_ps(column + 16)));
      sum = _mm256_add_ps(
          sum, _mm256_mul_ps(_mm256_permute_ps(inputs, 0xFF), _mm256_loadu_ps(column + 24)));
      if (bias != nullptr) sum = _mm256_add_ps(sum, _mm256_loadu_ps(bias + pair * 8));
      float* target = y_row + pair * 8;
      if (mode == Accumulate::yes) sum = _mm256_add_ps(_mm256_loadu_ps(target), sum);
      _mm256_storeu_ps(target, sum);
    }
  }
}
#endif

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

// small_square_blocks for all `rows` of x (rows, blocks * size), by items of 64 rows on up to
// `threads` threads; each output is one thread's, so the result does not depend on the count.
template <typename T, typename W>
void small_square_blocks_product(const T* x, const W* weight, const T* bias, T* y, Index y_stride,
                                 Accumulate mode, Index rows, Index blocks, Index size,
                                 int threads) {
  constexpr Index rows_per_item = 64;
  const Index items = (rows + rows_per_item - 1) / rows_per_item;
  const double flops = 2.0 * static_cast<double>(rows * blocks * size * size);
#if MLSTM_DETAIL_X86_KERNELS
  if constexpr (std::is_same_v<T, float> && std::is_same_v<W, float>) {
    if (size == 4 && blocks % 2 == 0 && processor_has_avx2_fma()) {
      const std::vector<float> columns = square_blocks4_pair_columns(weight, blocks);
      parallel_for(items, threads_for_work(threads, items, flops), [&](Index item) {
        const Index begin = item * rows_per_item, end = std::min(rows, begin + rows_per_item);
        square_blocks4_avx2(x, columns.data(), bias, y, y_stride, mode, blocks, begin, end);
      });
      return;
    }
  }
#endif
  parallel_for(items, threads_for_work(threads, items, flops), [&](Index item) {
    const Index begin = item * rows_per_item, end = std::min(rows, begin + rows_per_item);
    with_small_square_size(size, [&](auto fixed) {
      small_square_blocks<decltype(fixed)::value>(x, weight, bias, y, y_stride, mode, blocks, begin,
                                                  end);
    });
  });
}

// y (rows, cols) = x (rows, depth) w^T for row-major operands with the given row strides
// (w (cols, depth) contiguous), on the calling thread (matrix_product.hpp: oneDNN's sgemm with
// MLSTM_GEMM=oneDNN, else the packed product where the processor has AVX2 and FMA, else Eigen's).
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
                    int threads, InputRounding rounding = InputRounding::none) {
  static_assert(is_linear_weight_scalar<T, W>,
                "mlstm: linear weights are in the activations' scalar, or bfloat16 for float");
  constexpr bool widened = !std::is_same_v<W, T>;
  const Index rows = shape.rows, blocks = shape.blocks, in = shape.in, out = shape.out;
  const Index x_stride = blocks * in, y_stride = blocks * out;
  if (rows < 1 || out < 1) return;
  const double flops = 2.0 * static_cast<double>(rows) * static_cast<double>(in) *
                       static_cast<double>(out) * static_cast<double>(blocks);

  // A product per block of the block-diagonal map, by `product` (x, y and the bias offset).
  auto per_block = [&](const auto& product) {
    for (Index block = 0; block < blocks; ++block)
      product(x + block * in, weight + block * out * in,
              bias != nullptr ? bias + block * out : nullptr, y + block * out);
  };
  if constexpr (widened) {
    if (rounding == InputRounding::bfloat16) {
#if MLSTM_DETAIL_AMX_KERNELS
      if (rows > widened_dot_max_rows && !has_small_square_blocks(blocks, in, out) &&
          processor_has_amx_bf16()) {
        per_block(
            [&](const float* x_block, const W* w_block, const float* b_block, float* y_block) {
              amx_product(x_block, x_stride, rows, w_block, in, out, b_block, y_block, y_stride,
                          threads);
            });
        return;
      }
#endif
      std::vector<float> rounded(static_cast<std::size_t>(rows * x_stride));
      std::transform(x, x + rows * x_stride, rounded.begin(),
                     [](float value) { return widen(Eigen::bfloat16(value)); });
      linear_product(rounded.data(), weight, bias, y, shape, threads, InputRounding::none);
      return;
    }
  }

  if (has_small_square_blocks(blocks, in, out)) {
    small_square_blocks_product(x, weight, bias, y, y_stride, Accumulate::no, rows, blocks, in,
                                threads);
    return;
  }

#if MLSTM_DETAIL_X86_KERNELS
  if constexpr (std::is_same_v<T, float>) {
    if (uses_broadcast_product<T, W>(rows, in)) {
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
  // The step's paired kernels take x arranged in pairs, once per product (each block's inputs
  // from the block's first), its rows on 64-byte boundaries: every load of x is then whole
  // cache lines (on malloc's 16-byte boundary most loads spanned two, and the step read slower
  // when the memory was fast; bench/README.md).
  const PairedDot paired_dot =
      widened && rows <= widened_dot_max_rows ? paired_dot_kernel() : nullptr;
  const bool paired_step = paired_dot != nullptr;
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
        if (paired_step) {
          dot_pairs_rows(paired_dot, paired_x.data() + row_begin * paired_stride + block * in,
                         paired_stride, row_count, weights, col_count, in, tile_bias, outputs,
                         y_stride);
          return;
        }
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
