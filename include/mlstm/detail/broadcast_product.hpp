// y (rows, out) = x (rows, in) W^T (+ bias) for float x and weights W (out, in) in float or
// bfloat16, with an AVX-512 kernel that keeps rows of x in the lanes of the sums and broadcasts
// each weight from where it lies: the weights are neither copied nor packed (Eigen's product
// packs them on every call, and bfloat16 weights would first be widened into a buffer); x is
// packed once per call. A bfloat16 weight is widened as it is broadcast (a shift), so both weight
// types give the same sums for the same values, float sums of exact products.
//
//   per tile of up to `row_tile` rows of x:
//     x packed (in parallel over depth blocks): block b of 64 rows, input k holds 4 vectors of
//     16 rows at (b * in + k) * 64, zeros past the last row;
//     per tile of `output_tile` outputs (in parallel), per block of `depth` inputs, per group of
//     5 outputs, per block of 64 rows: 5 x 4 vectors of sums, kept in a per-task buffer between
//     depth blocks;
//     then the buffer, transposed, plus the bias, is y's tile.
//
// Each output is summed by one thread in a fixed order, so the result does not depend on the
// thread count. linear_product.hpp chooses this kernel where the processor has AVX-512;
// tests/test_linear.cpp checks it against the plain loops.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "mlstm/detail/thread_pool.hpp"
#include "mlstm/detail/x86_kernels.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::detail {

#if MLSTM_DETAIL_X86_KERNELS

struct BroadcastProductTiles {
  Index row_tile = 256;     // rows of x packed at once
  Index output_tile = 96;   // outputs per task
  Index depth_block = 256;  // inputs per depth block: 256 rows' block of x is 256 KB
};

// The kernel's sums: 4 vectors of 16 rows times 5 outputs, 20 of the 32 vector registers,
// beside 5 broadcast weights and a vector of x (3 x 8 and 4 x 4 ran about as fast in scratch
// timings).
inline constexpr int broadcast_row_vectors = 4;
inline constexpr int broadcast_group_outputs = 5;
inline constexpr Index broadcast_lanes = 16;
inline constexpr Index broadcast_block_rows = broadcast_row_vectors * broadcast_lanes;

// Packs rows [0, rows) and inputs [begin, end) of x into `packed` as the header lays it out.
// Input by input, the 64 rows of a block: the stores are consecutive and the rows' cache lines
// serve the next 15 inputs (row by row, each store went to another line: twice the time).
inline void pack_broadcast_rows(const float* x, Index x_stride, Index rows, Index in, Index begin,
                                Index end, float* packed) {
  for (Index block = 0; block * broadcast_block_rows < rows; ++block) {
    const Index block_rows = std::min(broadcast_block_rows, rows - block * broadcast_block_rows);
    const float* x_block = x + block * broadcast_block_rows * x_stride;
    float* block_at = packed + block * in * broadcast_block_rows;
    for (Index k = begin; k < end; ++k) {
      float* at = block_at + k * broadcast_block_rows;
      for (Index lane = 0; lane < block_rows; ++lane) at[lane] = x_block[lane * x_stride + k];
      for (Index lane = block_rows; lane < broadcast_block_rows; ++lane) at[lane] = 0.0f;
    }
  }
}

// A weight in all 16 lanes, as a float (a bfloat16 is the top half of one).
__attribute__((target("avx512f"), always_inline)) inline __m512 broadcast_weight(const float* w) {
  return _mm512_set1_ps(*w);
}
__attribute__((target("avx512f"), always_inline)) inline __m512 broadcast_weight(
    const Eigen::bfloat16* w) {
  const std::uint32_t bits = static_cast<std::uint32_t>(w->value) << 16;
  return _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<std::int32_t>(bits)));
}

// sums[o][v] += the products of inputs [begin, end) of row block `block` (its vector v) and
// weight row o, for Outputs weight rows from `weights` on and RowVectors vectors of 16 rows.
template <typename W, int RowVectors, int Outputs>
__attribute__((target("avx512f"))) void broadcast_kernel(const float* packed, Index block,
                                                         Index begin, Index end, const W* weights,
                                                         Index in, float* sums) {
  __m512 acc[Outputs][RowVectors];
  for (int o = 0; o < Outputs; ++o)
    for (int v = 0; v < RowVectors; ++v)
      acc[o][v] = _mm512_loadu_ps(sums + (o * broadcast_row_vectors + v) * broadcast_lanes);
  const float* x = packed + block * in * broadcast_block_rows;
  const W* rows[Outputs];
  for (int o = 0; o < Outputs; ++o) rows[o] = weights + o * in;
  for (Index k = begin; k < end; ++k) {
    __m512 w[Outputs];
    for (int o = 0; o < Outputs; ++o) w[o] = broadcast_weight(rows[o] + k);
    const float* at = x + k * broadcast_block_rows;
    for (int v = 0; v < RowVectors; ++v) {
      const __m512 x_vector = _mm512_loadu_ps(at + v * broadcast_lanes);
      for (int o = 0; o < Outputs; ++o) acc[o][v] = _mm512_fmadd_ps(x_vector, w[o], acc[o][v]);
    }
  }
  for (int o = 0; o < Outputs; ++o)
    for (int v = 0; v < RowVectors; ++v)
      _mm512_storeu_ps(sums + (o * broadcast_row_vectors + v) * broadcast_lanes, acc[o][v]);
}

// broadcast_kernel<W, row_vectors, outputs> for counts known at run time (1 up to the maximums).
template <typename W, int RowVectors, int... Outputs>
void broadcast_kernel_outputs(int outputs, std::integer_sequence<int, Outputs...>,
                              const float* packed, Index block, Index begin, Index end,
                              const W* weights, Index in, float* sums) {
  static_cast<void>(((outputs == Outputs + 1 && (broadcast_kernel<W, RowVectors, Outputs + 1>(
                                                     packed, block, begin, end, weights, in, sums),
                                                 true)) ||
                     ...));
}

template <typename W, int... RowVectors>
void broadcast_kernel_any(int row_vectors, int outputs, std::integer_sequence<int, RowVectors...>,
                          const float* packed, Index block, Index begin, Index end,
                          const W* weights, Index in, float* sums) {
  static_cast<void>(((row_vectors == RowVectors + 1 &&
                      (broadcast_kernel_outputs<W, RowVectors + 1>(
                           outputs, std::make_integer_sequence<int, broadcast_group_outputs>{},
                           packed, block, begin, end, weights, in, sums),
                       true)) ||
                     ...));
}

// The product the header describes, on up to `threads` threads. Call it only where
// processor_has_avx512().
template <typename W>
void broadcast_product(const float* x, Index x_stride, Index rows, const W* w, Index in, Index out,
                       const float* bias, float* y, Index y_stride, int threads,
                       const BroadcastProductTiles& tiles = {}) {
  if (rows < 1 || out < 1) return;
  const Index row_tile = balanced_tile(rows, tiles.row_tile, broadcast_block_rows);
  const Index output_tile = balanced_tile(out, tiles.output_tile, broadcast_group_outputs);
  const Index output_tiles = (out + output_tile - 1) / output_tile;
  const Index depth_blocks = std::max<Index>(1, (in + tiles.depth_block - 1) / tiles.depth_block);
  const Index row_blocks_max = (row_tile + broadcast_block_rows - 1) / broadcast_block_rows;
  // Every packed value is written before it is read: no zeroing.
  Eigen::Matrix<float, Eigen::Dynamic, 1> packed(
      std::max<Index>(1, row_blocks_max * in * broadcast_block_rows));
  for (Index row_begin = 0; row_begin < rows; row_begin += row_tile) {
    const Index row_count = std::min(row_tile, rows - row_begin);
    const Index row_blocks = (row_count + broadcast_block_rows - 1) / broadcast_block_rows;
    const float* x_rows = x + row_begin * x_stride;
    float* y_rows = y + row_begin * y_stride;
    parallel_rows(in, tiles.depth_block, threads, static_cast<double>(row_count),
                  [&](Index begin, Index end) {
                    pack_broadcast_rows(x_rows, x_stride, row_count, in, begin, end, packed.data());
                  });
    const double flops =
        2.0 * static_cast<double>(row_count) * static_cast<double>(in) * static_cast<double>(out);
    parallel_for(output_tiles, threads_for_work(threads, output_tiles, flops), [&](Index tile) {
      const Index o_begin = tile * output_tile, count = std::min(output_tile, out - o_begin);
      const Index groups = (count + broadcast_group_outputs - 1) / broadcast_group_outputs;
      const Index group_floats = broadcast_group_outputs * broadcast_block_rows;
      std::vector<float> sums(groups * row_blocks * group_floats, 0.0f);
      for (Index depth = 0; depth < depth_blocks; ++depth) {
        const Index begin = depth * tiles.depth_block;
        const Index end = std::min(in, begin + tiles.depth_block);
        for (Index group = 0; group < groups; ++group) {
          const Index o = o_begin + group * broadcast_group_outputs;
          const int outputs =
              static_cast<int>(std::min<Index>(broadcast_group_outputs, o_begin + count - o));
          for (Index block = 0; block < row_blocks; ++block) {
            const Index block_rows = row_count - block * broadcast_block_rows;
            const int vectors = static_cast<int>(std::min<Index>(
                broadcast_row_vectors, (block_rows + broadcast_lanes - 1) / broadcast_lanes));
            broadcast_kernel_any<W>(vectors, outputs,
                                    std::make_integer_sequence<int, broadcast_row_vectors>{},
                                    packed.data(), block, begin, end, w + o * in, in,
                                    sums.data() + (group * row_blocks + block) * group_floats);
          }
        }
      }
      // Row by row, a group's outputs from its 5 runs of sums: y's rows are written in order
      // (column by column, rows a multiple of 4 KB apart fell into one set of the first-level
      // cache).
      const float* tile_bias = bias != nullptr ? bias + o_begin : nullptr;
      for (Index r = 0; r < row_count; ++r) {
        const float* block_sums =
            sums.data() + (r / broadcast_block_rows) * group_floats + r % broadcast_block_rows;
        float* y_row = y_rows + r * y_stride + o_begin;
        for (Index group = 0; group < groups; ++group) {
          const float* source = block_sums + group * row_blocks * group_floats;
          const Index first = group * broadcast_group_outputs;
          const Index outputs = std::min<Index>(broadcast_group_outputs, count - first);
          for (Index o = 0; o < outputs; ++o)
            y_row[first + o] = source[o * broadcast_block_rows] +
                               (tile_bias != nullptr ? tile_bias[first + o] : 0.0f);
        }
      }
    });
  }
}

#endif

}  // namespace mlstm::detail
