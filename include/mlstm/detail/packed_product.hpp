// A float32 matrix product of our own for processors with AVX2 and FMA, on the calling thread:
//
//   C (rows, cols) = op(A) op(B)   or   C += op(A) op(B)      (matrix_product.hpp's contract)
//
// Eigen's product, built for AVX2, ran at about half of such a core's multiply-add rate at the
// linear layers' and the chunkwise kernel's shapes, well behind oneDNN's sgemm (bench/README.md,
// "A packed product for AVX2"). This one blocks as BLIS does: op(B) in blocks of depth_block x
// col_block packed into panels a tile wide (one panel stays in the first-level cache), op(A) in
// blocks of row_block x depth_block packed into panels a tile high (the block stays in the
// second-level cache), and a register tile updated by one FMA per accumulator per step of the
// depth: 6 x 16 with AVX2 (12 accumulators of 8 floats), 8 x 32 where the processor has AVX-512
// (16 of 16 floats). Partial panels are padded with zeros, and partial tiles go through a local
// tile, so every shape and stride takes the one kernel. An operand whose panel rows run along the
// depth (a linear layer's weights, op(A) = x) is transposed eight by eight in vector registers
// while packed: packed one value at a time, it took a sixth of a 128-row linear layer.
//
// Both tiles also read operands where they lie, unpacked, when they are small (the chunkwise
// form's chunks, the parallel form's panels) or read only once (fits_in_place): packing the small
// ones took a fifth to a third of those products (bench/README.md, "The AVX-512 tile, reading
// small operands in place", and "The AVX2 tile reads in place too").
//
// Every element of C is summed over the depth in increasing order with fused multiply-adds, in
// blocks of depth_block, whatever the thread count, the tile, or whether an operand was packed;
// its rounding differs from Eigen's (tests/test_matrix_product.cpp holds each element to the
// classic float32 bound of a sum of products and the two tiles to the same bits). One exception:
// a triangular op(A)'s zeros (Triangle::lower_a, upper_a) are skipped tile by tile, so which of
// them a sum meets depends on the tile's height; with finite op(B) that changes nothing, but
// 0 * inf is NaN. A processor without AVX2 and FMA keeps Eigen's product (uses_packed_product()).
#pragma once

#include <algorithm>
#include <vector>

#include "mlstm/detail/matrix_operand.hpp"
#include "mlstm/detail/x86_kernels.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::detail {

inline constexpr Index packed_depth_block = 256;
inline constexpr Index packed_row_block = 72;
inline constexpr Index packed_col_block = 1024;

// The register tiles: AVX2's 6 x 16 (twelve accumulators of 8 floats) and AVX-512's 8 x 32
// (sixteen of 16), each a Rows x Cols block of C summed in registers over the depth. Each kernel
// takes its operands packed or where they lie (OperandPanels with the operand's own strides).
struct Avx2Tile {
  static constexpr Index rows = 6, cols = 16;
};
struct Avx512Tile {
  static constexpr Index rows = 8, cols = 32;
};
static_assert(packed_row_block % Avx2Tile::rows == 0 && packed_row_block % Avx512Tile::rows == 0 &&
                  packed_col_block % Avx2Tile::cols == 0 &&
                  packed_col_block % Avx512Tile::cols == 0,
              "blocks hold whole panels");

#if MLSTM_DETAIL_X86_KERNELS
// Eight depths of eight rows, transposed: depth d of rows[0..7] goes to out + d * out_stride.
// Stores are whole vectors, so with out_stride < 8 each depth's last lanes spill into the next
// depth's, which its own store then overwrites.
__attribute__((target("avx2"), always_inline)) inline void transpose_8x8(const float* const* rows,
                                                                         Index k, float* out,
                                                                         Index out_stride) {
  const __m256 first[4] = {_mm256_loadu_ps(rows[0] + k), _mm256_loadu_ps(rows[1] + k),
                           _mm256_loadu_ps(rows[2] + k), _mm256_loadu_ps(rows[3] + k)};
  const __m256 second[4] = {_mm256_loadu_ps(rows[4] + k), _mm256_loadu_ps(rows[5] + k),
                            _mm256_loadu_ps(rows[6] + k), _mm256_loadu_ps(rows[7] + k)};
  // Rows 0-3 (and 4-7) of one depth in each 128-bit half: depths d | d + 4.
  __m256 low[4], high[4];
  transpose_4x4_halves(first, low);
  transpose_4x4_halves(second, high);
  // In depth order: a store's spill must come before the next depth's store.
  for (int d = 0; d < 4; ++d)
    _mm256_storeu_ps(out + d * out_stride, _mm256_permute2f128_ps(low[d], high[d], 0x20));
  for (int d = 0; d < 4; ++d)
    _mm256_storeu_ps(out + (d + 4) * out_stride, _mm256_permute2f128_ps(low[d], high[d], 0x31));
}

// A full panel of 6 rows or a multiple of 8, each a contiguous run over the depth, into the
// panel's layout (depth by depth, Height values each), eight depths at a time; returns the depths
// done. A panel of 6 transposes rows 0-5 with row 5 again in lanes 6 and 7, whose spill the next
// depth's store overwrites: so it stops while a depth is left for the caller.
template <Index Height>
__attribute__((target("avx2"))) Index pack_full_panel_avx2(const float* const* rows, Index depth,
                                                           float* out) {
  static_assert(Height == 6 || Height % 8 == 0, "panels of the packed product");
  Index k = 0;
  if constexpr (Height % 8 == 0) {
    for (; k + 8 <= depth; k += 8)
      for (Index group = 0; group < Height; group += 8)
        transpose_8x8(rows + group, k, out + k * Height + group, Height);
  } else {
    const float* const eight[8] = {rows[0], rows[1], rows[2], rows[3],
                                   rows[4], rows[5], rows[5], rows[5]};
    for (; k + 8 < depth; k += 8) transpose_8x8(eight, k, out + k * Height, Height);
  }
  return k;
}

// A full panel of 6 rows or a multiple of 8 that lie side by side at each depth (`stride` apart
// from depth to depth) into the panel's layout, in vector moves: std::copy of 6 or 16 values per
// depth had compiled to a call of memmove each, a tenth of the chunkwise form's time.
template <Index Height>
__attribute__((target("avx2"))) void copy_full_panel_avx2(const float* source, Index stride,
                                                          Index depth, float* out) {
  static_assert(Height == 6 || Height % 8 == 0, "panels of the packed product");
  for (Index k = 0; k < depth; ++k, source += stride, out += Height) {
    if constexpr (Height % 8 == 0) {
      for (Index group = 0; group < Height; group += 8)
        _mm256_storeu_ps(out + group, _mm256_loadu_ps(source + group));
    } else {
      _mm_storeu_ps(out, _mm_loadu_ps(source));
      _mm_storel_pi(reinterpret_cast<__m64*>(out + 4),
                    _mm_loadl_pi(_mm_setzero_ps(), reinterpret_cast<const __m64*>(source + 4)));
    }
  }
}
#endif

// Rows [row0, row0 + count) and depths [k0, k0 + depth) of op(M) into panels `Height` rows
// high: panel p holds, depth by depth, rows Height p .. Height p + Height - 1 (zeros past count).
// op(A) goes in panels of a tile's rows; op(B) in panels of its columns, which are the same panels
// of op(B)^T's rows (transpose_operand). Called where the packed product runs (AVX2).
template <Index Height>
void pack_panels(const MatrixOperand<float>& m, Index row0, Index count, Index k0, Index depth,
                 float* packed) {
  for (Index panel = 0; panel < count; panel += Height) {
    const Index height = std::min(Height, count - panel);
    float* out = packed + panel * depth;
    if (height < Height) std::fill(out, out + Height * depth, 0.0f);
    if (m.transposed) {
      // op(M)[i][k] = M[k][i]: the panel's rows are a contiguous run at each depth.
      const float* source = m.data + k0 * m.stride + row0 + panel;
#if MLSTM_DETAIL_X86_KERNELS
      if (height == Height) {
        copy_full_panel_avx2<Height>(source, m.stride, depth, out);
        continue;
      }
#endif
      for (Index k = 0; k < depth; ++k, source += m.stride)
        std::copy(source, source + height, out + k * Height);
    } else {
      // Each row is a contiguous run over the depth: transposed eight by eight where the panel
      // is full, the rest read side by side so that the writes are in order.
      const float* rows[Height];
      for (Index r = 0; r < height; ++r) rows[r] = m.data + (row0 + panel + r) * m.stride + k0;
      Index k = 0;
#if MLSTM_DETAIL_X86_KERNELS
      if (height == Height) k = pack_full_panel_avx2<Height>(rows, depth, out);
#endif
      for (; k < depth; ++k)
        for (Index r = 0; r < height; ++r) out[k * Height + r] = rows[r][k];
    }
  }
}

// op(M)^T as an operand: the same storage, the other way round.
inline MatrixOperand<float> transpose_operand(const MatrixOperand<float>& m) {
  return {m.data, m.stride, !m.transposed};
}

#if MLSTM_DETAIL_X86_KERNELS
// Whether the processor runs AVX2 with FMA (and so at least the 6 x 16 tile).
inline bool uses_packed_product() { return processor_has_avx2_fma(); }
#else
inline bool uses_packed_product() { return false; }
#endif

// Where a block's panels lie: the panel of op(A)'s rows from i (or of op(B)'s columns from j) at
// depth k starts at origin + i * index_step + k * depth_step, and its row (column) r is row_step
// further on. Packed panels (pack_panels) have index_step = the block's depth, row_step = 1 and
// depth_step = the panel's height; an operand read where it lies has its own strides.
struct OperandPanels {
  const float* origin;
  Index index_step, row_step, depth_step;

  const float* at(Index i, Index k) const { return origin + i * index_step + k * depth_step; }
};

// Packed panels of a block of `depth` depths, `height` high.
inline OperandPanels packed_panels(const float* packed, Index depth, Index height) {
  return {packed, depth, 1, height};
}

// Where an operand's block is read in place: op(M)'s rows [row0, ...) and depths [k0, ...).
inline OperandPanels panels_in_place(const MatrixOperand<float>& m, Index row0, Index k0) {
  const float* origin = m.data + (m.transposed ? k0 * m.stride + row0 : row0 * m.stride + k0);
  return m.transposed ? OperandPanels{origin, 1, 1, m.stride}
                      : OperandPanels{origin, m.stride, m.stride, 1};
}

#if MLSTM_DETAIL_X86_KERNELS

// The 6 x 16 tile: tile (6, 16, row stride `stride`) = (add ? tile : 0) + op(A)'s 6 rows times
// op(B)'s 16 columns over `depth`, each of the twelve accumulators (two of 8 floats per row)
// summing its element over the depth in order with fused multiply-adds. op(A)'s row r at depth k
// is a[r * a_row_step + k * a_depth_step] (rows past `height` read row height - 1 again, so that
// a partial panel read in place stays inside its operand), op(B)'s 16 columns at depth k start at
// b + k * b_depth_step: packed panels or the operands where they lie. The loops over the rows are
// unrolled whole, so the accumulators stay in registers.
__attribute__((target("avx2,fma"))) inline void strided_tile_kernel(
    Avx2Tile, const float* a, Index a_row_step, Index a_depth_step, Index height, const float* b,
    Index b_depth_step, Index depth, float* tile, Index stride, bool add) {
  constexpr int rows = static_cast<int>(Avx2Tile::rows);
  const float* row_of_a[rows];
  __m256 low[rows], high[rows];
#pragma GCC unroll 6
  for (int r = 0; r < rows; ++r) {
    row_of_a[r] = a + std::min<Index>(r, height - 1) * a_row_step;
    low[r] = high[r] = _mm256_setzero_ps();
  }
  Index a_offset = 0;
  for (Index k = 0; k < depth; ++k, a_offset += a_depth_step, b += b_depth_step) {
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
    for (int r = 0; r < rows; ++r) {
      const __m256 value = _mm256_broadcast_ss(row_of_a[r] + a_offset);
      low[r] = _mm256_fmadd_ps(value, b0, low[r]);
      high[r] = _mm256_fmadd_ps(value, b1, high[r]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < rows; ++r) {
    float* row = tile + r * stride;
    if (add) {
      low[r] = _mm256_add_ps(low[r], _mm256_loadu_ps(row));
      high[r] = _mm256_add_ps(high[r], _mm256_loadu_ps(row + 8));
    }
    _mm256_storeu_ps(row, low[r]);
    _mm256_storeu_ps(row + 8, high[r]);
  }
}

// The 8 x 32 tile: the 6 x 16 tile's loops in 16-lane registers (sixteen accumulators).
__attribute__((target("avx512f"))) inline void strided_tile_kernel(
    Avx512Tile, const float* a, Index a_row_step, Index a_depth_step, Index height, const float* b,
    Index b_depth_step, Index depth, float* tile, Index stride, bool add) {
  constexpr int rows = static_cast<int>(Avx512Tile::rows);
  const float* row_of_a[rows];
  __m512 low[rows], high[rows];
#pragma GCC unroll 8
  for (int r = 0; r < rows; ++r) {
    row_of_a[r] = a + std::min<Index>(r, height - 1) * a_row_step;
    low[r] = high[r] = _mm512_setzero_ps();
  }
  Index a_offset = 0;
  for (Index k = 0; k < depth; ++k, a_offset += a_depth_step, b += b_depth_step) {
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 8
    for (int r = 0; r < rows; ++r) {
      const __m512 value = _mm512_set1_ps(row_of_a[r][a_offset]);
      low[r] = _mm512_fmadd_ps(value, b0, low[r]);
      high[r] = _mm512_fmadd_ps(value, b1, high[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < rows; ++r) {
    float* row = tile + r * stride;
    if (add) {
      low[r] = _mm512_add_ps(low[r], _mm512_loadu_ps(row));
      high[r] = _mm512_add_ps(high[r], _mm512_loadu_ps(row + 16));
    }
    _mm512_storeu_ps(row, low[r]);
    _mm512_storeu_ps(row + 16, high[r]);
  }
}

// One tile of `depth` depths from the panels' depth `begin`: the tile's panels of op(A) from row
// i (`height` of them real) and of op(B) from column j.
template <typename Tile>
void tile_product(const OperandPanels& a, const OperandPanels& b, Index i, Index j, Index begin,
                  Index depth, Index height, float* tile, Index stride, bool add) {
  strided_tile_kernel(Tile{}, a.at(i, begin), a.row_step, a.depth_step, height, b.at(j, begin),
                      b.depth_step, depth, tile, stride, add);
}

// Where a block of a product lies in the whole product (its first row, column and depth), for
// the triangles (Triangle) that are stated in the whole product's indices.
struct BlockOrigin {
  Index row = 0, col = 0, depth = 0;
};

// C (rows, cols, row stride c_stride) = (add ? C : 0) + the product of a block's panels over
// `depth`: panels of op(A)'s rows, Tile::rows high, by panels of op(B)'s columns, Tile::cols wide
// (packed by pack_panels, or where they lie). With a triangle, the block's place in the whole
// product decides per tile: lower_result skips the tiles wholly above the diagonal and keeps a
// straddling tile's upper entries at (add ? C : 0); lower_a stops each tile at the depth past its
// last row, upper_a starts it at its first row.
template <typename Tile>
void panels_product(const OperandPanels& a, Index rows, const OperandPanels& b, Index cols,
                    Index depth, float* c, Index c_stride, bool add,
                    Triangle triangle = Triangle::none, BlockOrigin origin = {}) {
  float edge[Tile::rows * Tile::cols];
  for (Index j = 0; j < cols; j += Tile::cols) {
    const Index width = std::min(Tile::cols, cols - j);
    for (Index i = 0; i < rows; i += Tile::rows) {
      const Index height = std::min(Tile::rows, rows - i);
      float* target = c + i * c_stride + j;
      // The tile's first row and column in the whole product; how many of its columns lie on or
      // below the diagonal in each row (all of them unless lower_result); its depths [begin, end).
      const Index row = origin.row + i, col = origin.col + j;
      const auto kept_width = [&](Index r) {
        return triangle == Triangle::lower_result ? std::clamp(row + r - col + 1, Index(0), width)
                                                  : width;
      };
      const Index begin =
          triangle == Triangle::upper_a ? std::clamp(row - origin.depth, Index(0), depth) : 0;
      const Index end = triangle == Triangle::lower_a
                            ? std::clamp(row + Tile::rows - origin.depth, Index(0), depth)
                            : depth;
      if (kept_width(height - 1) == 0 || begin >= end) {
        if (!add)
          for (Index r = 0; r < height; ++r) std::fill_n(target + r * c_stride, width, 0.0f);
        continue;
      }
      if (height == Tile::rows && width == Tile::cols && kept_width(0) == width) {
        tile_product<Tile>(a, b, i, j, begin, end - begin, height, target, c_stride, add);
        continue;
      }
      tile_product<Tile>(a, b, i, j, begin, end - begin, height, edge, Tile::cols, false);
      for (Index r = 0; r < height; ++r) {
        const Index kept = kept_width(r);
        float* out = target + r * c_stride;
        for (Index s = 0; s < kept; ++s) out[s] = (add ? out[s] : 0.0f) + edge[r * Tile::cols + s];
        if (!add) std::fill(out + kept, out + width, 0.0f);
      }
    }
  }
}

// Whether an operand of `stored_rows` rows (its storage's) is read where it lies rather than
// packed: when its rows are less than a page apart (rows a page apart share the first-level
// cache's sets) and it is small enough to stay in the second-level cache, or is read only once
// (`read_once`: each of its panels meets a single panel of the other operand), where packing
// would only copy it. Packing such operands took a fifth to a third of the chunkwise and parallel
// forms' products (64 to 256 rows, depth 64 to 256), which then ran at Eigen's rate.
inline bool fits_in_place(const MatrixOperand<float>& m, Index stored_rows, bool read_once) {
  constexpr Index max_floats = Index(1) << 16, max_stride = 1024;
  return m.stride < max_stride && (read_once || stored_rows * m.stride <= max_floats);
}

// C (rows, cols, row stride c_stride) = op(A) op(B), or C += op(A) op(B), over `depth`, with
// what `triangle` lets it skip (matrix_operand.hpp), on Tile's registers.
template <typename Tile>
void packed_product_with(Index rows, Index cols, Index depth, const MatrixOperand<float>& a,
                         const MatrixOperand<float>& b, float* c, Index c_stride,
                         Accumulate accumulate, Triangle triangle = Triangle::none) {
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
  grow(a_packed, round_up_to(std::min(rows, packed_row_block), Tile::rows) * depth_block);
  grow(b_packed, round_up_to(std::min(cols, packed_col_block), Tile::cols) * depth_block);
  // op(A)'s panels are read once when op(B) is one panel wide, and op(B)'s when op(A) is one
  // panel high (the gates' weight gradients, 8 rows over a batch's positions, on the 8 x 32
  // tile; the 6 x 16 tile takes them in two panels and packs op(B)).
  const bool a_in_place = fits_in_place(a, a.transposed ? depth : rows, cols <= Tile::cols);
  // op(B)'s columns are read as whole vectors: in place only when they run along its rows and
  // every panel is full.
  const bool b_in_place =
      !b.transposed && cols % Tile::cols == 0 && fits_in_place(b, depth, rows <= Tile::rows);
  for (Index col0 = 0; col0 < cols; col0 += packed_col_block) {
    const Index col_count = std::min(packed_col_block, cols - col0);
    for (Index k0 = 0; k0 < depth; k0 += packed_depth_block) {
      const Index k_count = std::min(packed_depth_block, depth - k0);
      if (!b_in_place)
        pack_panels<Tile::cols>(transpose_operand(b), col0, col_count, k0, k_count,
                                b_packed.data());
      const OperandPanels b_panels = b_in_place
                                         ? panels_in_place(transpose_operand(b), col0, k0)
                                         : packed_panels(b_packed.data(), k_count, Tile::cols);
      for (Index row0 = 0; row0 < rows; row0 += packed_row_block) {
        const Index row_count = std::min(packed_row_block, rows - row0);
        if (!a_in_place) pack_panels<Tile::rows>(a, row0, row_count, k0, k_count, a_packed.data());
        const OperandPanels a_panels = a_in_place
                                           ? panels_in_place(a, row0, k0)
                                           : packed_panels(a_packed.data(), k_count, Tile::rows);
        panels_product<Tile>(a_panels, row_count, b_panels, col_count, k_count,
                             c + row0 * c_stride + col0, c_stride, add || k0 > 0, triangle,
                             {row0, col0, k0});
      }
    }
  }
}

// Calls f(Tile{}) with the widest tile the processor runs (where uses_packed_product()).
template <typename F>
decltype(auto) with_packed_tile(F&& f) {
  if (processor_has_avx512()) return f(Avx512Tile{});
  return f(Avx2Tile{});
}

// packed_product_with on the widest tile the processor runs.
inline void packed_product(Index rows, Index cols, Index depth, const MatrixOperand<float>& a,
                           const MatrixOperand<float>& b, float* c, Index c_stride,
                           Accumulate accumulate, Triangle triangle = Triangle::none) {
  with_packed_tile([&](auto tile) {
    packed_product_with<decltype(tile)>(rows, cols, depth, a, b, c, c_stride, accumulate, triangle);
  });
}
#endif

}  // namespace mlstm::detail
