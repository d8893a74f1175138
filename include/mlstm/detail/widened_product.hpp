// y (rows, out) = x (rows, in) W^T (+ bias) for float x and bfloat16 weights W (out, in), with
// a float matrix-product kernel on operands packed here:
//
//   for each tile of up to `row_tile` rows of x:
//     x's rows packed once per depth block of `depth_block` inputs (in parallel), shared by
//     every tile of outputs;
//     per tile of `output_tile` outputs (in parallel): y's tile set to the bias (or zero), then
//     per depth block: the weights widened to float, packed, and the kernel adds their product.
//
// The kernel is matrix_product's: packed_product's tiles where it runs (AVX2 and FMA; its 8 x 32
// tile with AVX-512), else Eigen's gebp, on Eigen 3.4's internal packing (the classes its
// general_matrix_matrix_product uses). Eigen's own product (linear_product's float path) packs
// its right-hand operand again for each tile of outputs; with the tiles small enough that the
// widened weights stay in a core's cache, that repacking of x took a sixth of xLSTM-Large's
// prefill (bench/README.md). Each output is summed by one thread in a fixed order of depth
// blocks, so the result does not depend on the thread count; tests/test_linear.cpp checks this
// product against the plain loops.
#pragma once

#include <Eigen/Core>
#include <algorithm>

#include "mlstm/detail/bfloat16.hpp"
#include "mlstm/detail/packed_product.hpp"
#include "mlstm/detail/thread_pool.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::detail {

struct WidenedProductTiles {
  Index row_tile = 256;     // rows of x packed at once (at most 256 x in floats)
  Index depth_block = 256;  // inputs per packed block: a 256 x 4 panel of x is 4 KB
  Index output_tile = 96;   // outputs per task: 96 x 256 widened weights are 96 KB
};

// The product's kernel: Eigen's gebp on Eigen's packing, the default.
struct GebpWidenedKernel {
  using Traits = Eigen::internal::gebp_traits<float, float>;
  using WeightMapper = Eigen::internal::const_blas_data_mapper<float, Index, Eigen::RowMajor>;
  using InputMapper = Eigen::internal::const_blas_data_mapper<float, Index, Eigen::ColMajor>;
  using OutputMapper =
      Eigen::internal::blas_data_mapper<float, Index, Eigen::ColMajor, Eigen::Unaligned, 1>;
  using Buffer = Eigen::Matrix<float, Eigen::Dynamic, 1>;  // aligned as Eigen's kernels load it
  static constexpr Index output_multiple = Traits::mr;

  // Floats of packed x per input of a tile of `rows` rows.
  static Index packed_rows(Index rows) { return rows; }
  // Inputs [k, k + depth) of x's rows (rows, row stride x_stride), transposed.
  static void pack_x(const float* x_rows, Index x_stride, Index rows, Index k, Index depth,
                     float* packed) {
    Eigen::internal::gemm_pack_rhs<float, Index, InputMapper, Traits::nr, Eigen::ColMajor> pack;
    pack(packed, InputMapper(x_rows + k, x_stride), depth, rows);
  }
  // y (rows, count) += x's packed block times the widened weights (count, depth)^T.
  static void add_product(const float* widened, Index count, Index depth, const float* packed_x,
                          Index rows, float* y, Index y_stride, Buffer& packed_weights) {
    Eigen::internal::gemm_pack_lhs<float, Index, WeightMapper, Traits::mr, Traits::LhsProgress,
                                   typename Traits::LhsPacket4Packing, Eigen::RowMajor>
        pack;
    Eigen::internal::gebp_kernel<float, float, Index, OutputMapper, Traits::mr, Traits::nr> kernel;
    pack(packed_weights.data(), WeightMapper(widened, depth), depth, count);
    kernel(OutputMapper(y, y_stride), packed_weights.data(), packed_x, count, depth, rows, 1.0f);
  }
};

#if MLSTM_DETAIL_X86_KERNELS
// The product's kernel where matrix_product's is packed_product: its panels and Tile's tiles.
template <typename Tile>
struct PackedWidenedKernel {
  using Buffer = Eigen::Matrix<float, Eigen::Dynamic, 1>;
  static constexpr Index output_multiple = Tile::cols;

  static Index packed_rows(Index rows) { return round_up_to(rows, Tile::rows); }
  static void pack_x(const float* x_rows, Index x_stride, Index rows, Index k, Index depth,
                     float* packed) {
    pack_panels<Tile::rows>({x_rows, x_stride}, 0, rows, k, depth, packed);
  }
  static void add_product(const float* widened, Index count, Index depth, const float* packed_x,
                          Index rows, float* y, Index y_stride, Buffer& packed_weights) {
    // The widened weights (count, depth) are op(B)^T's rows.
    pack_panels<Tile::cols>({widened, depth}, 0, count, 0, depth, packed_weights.data());
    panels_product<Tile>(packed_panels(packed_x, depth, Tile::rows), rows,
                         packed_panels(packed_weights.data(), depth, Tile::cols), count, depth, y,
                         y_stride, true);
  }
};
#endif

template <typename Kernel>
void widened_product_with(const float* x, Index x_stride, Index rows, const Eigen::bfloat16* w,
                          Index in, Index out, const float* bias, float* y, Index y_stride,
                          int threads, const WidenedProductTiles& tiles) {
  using Buffer = typename Kernel::Buffer;
  const Index row_tile = balanced_tile(rows, tiles.row_tile, 1);
  const Index output_tile = balanced_tile(out, tiles.output_tile, Kernel::output_multiple);
  const Index output_tiles = (out + output_tile - 1) / output_tile;
  Buffer packed_x(std::max<Index>(1, in * Kernel::packed_rows(row_tile)));
  for (Index row_begin = 0; row_begin < rows; row_begin += row_tile) {
    const Index row_count = std::min(row_tile, rows - row_begin);
    const Index packed_rows = Kernel::packed_rows(row_count);
    const float* x_rows = x + row_begin * x_stride;
    float* y_rows = y + row_begin * y_stride;
    // Depth block k of x's rows starts at k * packed_rows.
    parallel_rows(in, tiles.depth_block, threads, static_cast<double>(row_count),
                  [&](Index k, Index end) {
                    Kernel::pack_x(x_rows, x_stride, row_count, k, end - k,
                                   packed_x.data() + k * packed_rows);
                  });
    const double flops =
        2.0 * static_cast<double>(row_count) * static_cast<double>(in) * static_cast<double>(out);
    parallel_for(output_tiles, threads_for_work(threads, output_tiles, flops), [&](Index tile) {
      const Index o = tile * output_tile, count = std::min(output_tile, out - o);
      for (Index r = 0; r < row_count; ++r) {
        float* y_row = y_rows + r * y_stride + o;
        if (bias != nullptr) {
          std::copy(bias + o, bias + o + count, y_row);
        } else {
          std::fill(y_row, y_row + count, 0.0f);
        }
      }
      const Index padded = round_up_to(count, Kernel::output_multiple);
      Buffer widened(count * tiles.depth_block), packed_weights(padded * tiles.depth_block);
      for (Index k = 0; k < in; k += tiles.depth_block) {
        const Index depth = std::min(tiles.depth_block, in - k);
        for (Index j = 0; j < count; ++j) {
          const Eigen::bfloat16* source = w + (o + j) * in + k;
          std::transform(source, source + depth, widened.data() + j * depth,
                         [](Eigen::bfloat16 value) { return widen(value); });
        }
        Kernel::add_product(widened.data(), count, depth, packed_x.data() + k * packed_rows,
                            row_count, y_rows + o, y_stride, packed_weights);
      }
    });
  }
}

inline void widened_product(const float* x, Index x_stride, Index rows, const Eigen::bfloat16* w,
                            Index in, Index out, const float* bias, float* y, Index y_stride,
                            int threads, const WidenedProductTiles& tiles = {}) {
  if (rows < 1 || out < 1) return;
#if MLSTM_DETAIL_X86_KERNELS
  if (uses_packed_product()) {
    with_packed_tile([&](auto tile) {
      widened_product_with<PackedWidenedKernel<decltype(tile)>>(x, x_stride, rows, w, in, out, bias,
                                                                y, y_stride, threads, tiles);
    });
    return;
  }
#endif
  widened_product_with<GebpWidenedKernel>(x, x_stride, rows, w, in, out, bias, y, y_stride, threads,
                                          tiles);
}

}  // namespace mlstm::detail
