// A float32 matrix product of our own for processors with AVX2 and FMA, on the calling thread:
//
//   C (rows, cols) = op(A) op(B)   or   C += op(A) op(B)      (matrix_product.hpp's contract)
//
// Eigen's product, built for AVX2, ran at about half of such a core's multiply-add rate at the
// linear layers' and the chunkwise kernel's shapes, well behind oneDNN's sgemm (bench/README.md,
// "A packed product for AVX2"). This one blocks as BLIS does: op(B) in blocks of depth_block x
// col_block packed into panels 16 columns wide (one panel stays in the first-level cache), op(A) in
// blocks of row_block x depth_block packed into panels 6 rows high (the block stays in the
// second-level cache), and a 6 x 16 register tile (12 accumulators of 8 floats) updated by 12 FMAs
// per step of the depth. Partial panels are padded with zeros, and partial tiles go through a local
// tile, so every shape and stride takes the one kernel.
//
// Every element of C is summed over the depth in increasing order with fused multiply-adds, in
// blocks of depth_block, whatever the thread count or the other operands' shapes; its rounding
// differs from Eigen's (tests/test_matrix_product.cpp holds each element to the classic float32
// bound of a sum of products). A processor without AVX2 and FMA, or a build whose Eigen already
// vectorizes with AVX-512, keeps Eigen's product (uses_packed_product()).
#pragma once

#include <algorithm>
#include <vector>

#include "mlstm/detail/matrix_operand.hpp"
#include "mlstm/detail/x86_kernels.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::detail {

inline constexpr Index packed_tile_rows = 6;
inline constexpr Index packed_tile_cols = 16;
inline constexpr Index packed_depth_block = 256;
inline constexpr Index packed_row_block = 72;
inline constexpr Index packed_col_block = 1024;
static_assert(packed_row_block % packed_tile_rows == 0 && packed_col_block % packed_tile_cols == 0,
              "blocks hold whole panels");

inline Index round_up_to(Index n, Index multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

// Rows [row0, row0 + count) and depths [k0, k0 + depth) of op(M) into panels `Height` rows
// high: panel p holds, depth by depth, rows Height p .. Height p + Height - 1 (zeros past count).
// op(A) goes in panels of 6 rows; op(B) in panels of 16 columns, which are the same panels of
// op(B)^T's rows (transpose_operand).
template <Index Height>
void pack_panels(const MatrixOperand<float>& m, Index row0, Index count, Index k0, Index depth,
                 float* packed) {
  for (Index panel = 0; panel < count; panel += Height) {
    const Index height = std::min(Height, count - panel);
    float* out = packed + panel * depth;
    if (height < Height) std::fill(out, out + Height * depth, 0.0f);
    if (m.transposed) {
      // op(M)[i][k] = M[k][i]: the panel's rows are a contiguous run at each depth.
      for (Index k = 0; k < depth; ++k) {
        const float* source = m.data + (k0 + k) * m.stride + row0 + panel;
        std::copy(source, source + height, out + k * Height);
      }
    } else {
      // Each row is a contiguous run over the depth: read side by side so that the writes are
      // in order.
      const float* rows[Height];
      for (Index r = 0; r < height; ++r) rows[r] = m.data + (row0 + panel + r) * m.stride + k0;
      for (Index k = 0; k < depth; ++k)
        for (Index r = 0; r < height; ++r) out[k * Height + r] = rows[r][k];
    }
  }
}

// op(M)^T as an operand: the same storage, the other way round.
inline MatrixOperand<float> transpose_operand(const MatrixOperand<float>& m) {
  return {m.data, m.stride, !m.transposed};
}

#if MLSTM_DETAIL_X86_KERNELS
// Whether the processor runs AVX2 with FMA and the build's Eigen does not already use AVX-512.
inline bool uses_packed_product() {
#ifdef __AVX512F__
  return false;
#else
  return processor_has_avx2_fma();
#endif
}
#else
inline bool uses_packed_product() { return false; }
#endif

#if MLSTM_DETAIL_X86_KERNELS

// One row of the tile at one depth: both accumulators += a * the panel's 16 values.
__attribute__((target("avx2,fma"), always_inline)) inline void update_tile_row(const float& a,
                                                                               __m256 b0, __m256 b1,
                                                                               __m256& low,
                                                                               __m256& high) {
  const __m256 broadcast = _mm256_broadcast_ss(&a);
  low = _mm256_fmadd_ps(broadcast, b0, low);
  high = _mm256_fmadd_ps(broadcast, b1, high);
}

// Row r of a tile: (add ? row : 0) + the two accumulators.
__attribute__((target("avx2,fma"), always_inline)) inline void store_tile_row(float* row,
                                                                              __m256 low,
                                                                              __m256 high,
                                                                              bool add) {
  if (add) {
    low = _mm256_add_ps(low, _mm256_loadu_ps(row));
    high = _mm256_add_ps(high, _mm256_loadu_ps(row + 8));
  }
  _mm256_storeu_ps(row, low);
  _mm256_storeu_ps(row + 8, high);
}

// The 6 x 16 tile: tile (6, 16, row stride `stride`) = (add ? tile : 0) + a_panel b_panel over
// `depth`. The twelve accumulators are named, not an array, so that they stay in registers.
__attribute__((target("avx2,fma"))) inline void packed_tile_kernel(const float* a_panel,
                                                                   const float* b_panel,
                                                                   Index depth, float* tile,
                                                                   Index stride, bool add) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (Index k = 0; k < depth; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b_panel);
    const __m256 b1 = _mm256_loadu_ps(b_panel + 8);
    update_tile_row(a_panel[0], b0, b1, c00, c01);
    update_tile_row(a_panel[1], b0, b1, c10, c11);
    update_tile_row(a_panel[2], b0, b1, c20, c21);
    update_tile_row(a_panel[3], b0, b1, c30, c31);
    update_tile_row(a_panel[4], b0, b1, c40, c41);
    update_tile_row(a_panel[5], b0, b1, c50, c51);
    a_panel += packed_tile_rows;
    b_panel += packed_tile_cols;
  }
  store_tile_row(tile, c00, c01, add);
  store_tile_row(tile + stride, c10, c11, add);
  store_tile_row(tile + 2 * stride, c20, c21, add);
  store_tile_row(tile + 3 * stride, c30, c31, add);
  store_tile_row(tile + 4 * stride, c40, c41, add);
  store_tile_row(tile + 5 * stride, c50, c51, add);
}

// C (rows, cols, row stride c_stride) = (add ? C : 0) + the product of packed operands over
// `depth`: panels of op(A)'s rows, 6 high, by panels of op(B)'s columns, 16 wide (pack_panels).
inline void packed_panels_product(const float* a_packed, Index rows, const float* b_packed,
                                  Index cols, Index depth, float* c, Index c_stride, bool add) {
  float edge[packed_tile_rows * packed_tile_cols];
  for (Index j = 0; j < cols; j += packed_tile_cols) {
    const float* b_panel = b_packed + j * depth;
    const Index width = std::min(packed_tile_cols, cols - j);
    for (Index i = 0; i < rows; i += packed_tile_rows) {
      const float* a_panel = a_packed + i * depth;
      const Index height = std::min(packed_tile_rows, rows - i);
      float* target = c + i * c_stride + j;
      if (height == packed_tile_rows && width == packed_tile_cols) {
        packed_tile_kernel(a_panel, b_panel, depth, target, c_stride, add);
        continue;
      }
      packed_tile_kernel(a_panel, b_panel, depth, edge, packed_tile_cols, false);
      for (Index r = 0; r < height; ++r)
        for (Index s = 0; s < width; ++s)
          target[r * c_stride + s] =
              (add ? target[r * c_stride + s] : 0.0f) + edge[r * packed_tile_cols + s];
    }
  }
}

// C (rows, cols, row stride c_stride) = op(A) op(B), or C += op(A) op(B), over `depth`.
inline void packed_product(Index rows, Index cols, Index depth, const MatrixOperand<float>& a,
                           const MatrixOperand<float>& b, float* c, Index c_stride,
                           Accumulate accumulate) {
  const bool add = accumulate == Accumulate::yes;
  if (depth < 1) {
    if (!add)
      for (Index i = 0; i < rows; ++i) std::fill(c + i * c_stride, c + i * c_stride + cols, 0.0f);
    return;
  }
  // Kept by each thread from call to call, grown to the largest blocks it has packed (at most
  // packed_row_block x packed_depth_block and packed_col_block x packed_depth_block floats).
  thread_local std::vector<float> a_packed, b_packed;
  const Index depth_block = std::min(depth, packed_depth_block);
  const auto grow = [](std::vector<float>& buffer, Index size) {
    if (buffer.size() < static_cast<std::size_t>(size))
      buffer.resize(static_cast<std::size_t>(size));
  };
  grow(a_packed, round_up_to(std::min(rows, packed_row_block), packed_tile_rows) * depth_block);
  grow(b_packed, round_up_to(std::min(cols, packed_col_block), packed_tile_cols) * depth_block);
  for (Index col0 = 0; col0 < cols; col0 += packed_col_block) {
    const Index col_count = std::min(packed_col_block, cols - col0);
    for (Index k0 = 0; k0 < depth; k0 += packed_depth_block) {
      const Index k_count = std::min(packed_depth_block, depth - k0);
      pack_panels<packed_tile_cols>(transpose_operand(b), col0, col_count, k0, k_count,
                                    b_packed.data());
      for (Index row0 = 0; row0 < rows; row0 += packed_row_block) {
        const Index row_count = std::min(packed_row_block, rows - row0);
        pack_panels<packed_tile_rows>(a, row0, row_count, k0, k_count, a_packed.data());
        packed_panels_product(a_packed.data(), row_count, b_packed.data(), col_count, k_count,
                              c + row0 * c_stride + col0, c_stride, add || k0 > 0);
      }
    }
  }
}
#endif

}  // namespace mlstm::detail
