// y (rows, out) = x (rows, in) W^T (+ bias) for float x and bfloat16 weights W (out, in), with
// Eigen's matrix-product kernel (gebp) on operands packed here:
//
//   for each tile of up to `row_tile` rows of x:
//     x's rows, transposed, packed once per depth block of `depth_block` inputs (in parallel),
//     shared by every tile of outputs;
//     per tile of `output_tile` outputs (in parallel): y's tile set to the bias (or zero), then
//     per depth block: the weights widened to float, packed, and gebp adds their product.
//
// Eigen's own product (linear_product's float path) packs its right-hand operand again for each
// tile of outputs; with the tiles small enough that the widened weights stay in a core's cache,
// that repacking of x took a sixth of xLSTM-Large's prefill (bench/README.md). Each output is
// summed by one thread in a fixed order of depth blocks, so the result does not depend on the
// thread count. The packing and kernel classes are Eigen 3.4's internals (the ones its
// general_matrix_matrix_product uses); tests/test_linear.cpp checks this product against the
// plain loops.
#pragma once

#include <Eigen/Core>
#include <algorithm>

#include "mlstm/detail/bfloat16.hpp"
#include "mlstm/detail/thread_pool.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::detail {

struct WidenedProductTiles {
  Index row_tile = 256;     // rows of x packed at once (at most 256 x in floats)
  Index depth_block = 256;  // inputs per packed block: a 256 x 4 panel of x is 4 KB
  Index output_tile = 96;   // outputs per task: 96 x 256 widened weights are 96 KB
};

inline void widened_product(const float* x, Index x_stride, Index rows, const Eigen::bfloat16* w,
                            Index in, Index out, const float* bias, float* y, Index y_stride,
                            int threads, const WidenedProductTiles& tiles = {}) {
  namespace ei = Eigen::internal;
  using Traits = ei::gebp_traits<float, float>;
  using WeightMapper = ei::const_blas_data_mapper<float, Index, Eigen::RowMajor>;
  using InputMapper = ei::const_blas_data_mapper<float, Index, Eigen::ColMajor>;
  using OutputMapper = ei::blas_data_mapper<float, Index, Eigen::ColMajor, Eigen::Unaligned, 1>;
  using Buffer = Eigen::Matrix<float, Eigen::Dynamic, 1>;  // aligned as Eigen's kernels load it
  if (rows < 1 || out < 1) return;

  const Index row_tile = balanced_tile(rows, tiles.row_tile, 1);
  const Index output_tile = balanced_tile(out, tiles.output_tile, Traits::mr);
  const Index output_tiles = (out + output_tile - 1) / output_tile;
  Buffer packed_x(std::max<Index>(1, in * row_tile));
  for (Index row_begin = 0; row_begin < rows; row_begin += row_tile) {
    const Index row_count = std::min(row_tile, rows - row_begin);
    const float* x_rows = x + row_begin * x_stride;
    float* y_rows = y + row_begin * y_stride;
    // Depth block k of x's rows, transposed (inputs x rows), starts at k * depth_block * rows.
    parallel_rows(in, tiles.depth_block, threads, static_cast<double>(row_count),
                  [&](Index k, Index end) {
                    ei::gemm_pack_rhs<float, Index, InputMapper, Traits::nr, Eigen::ColMajor> pack;
                    pack(packed_x.data() + k * row_count, InputMapper(x_rows + k, x_stride),
                         end - k, row_count);
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
      Buffer widened(count * tiles.depth_block), packed_weights(count * tiles.depth_block);
      ei::gemm_pack_lhs<float, Index, WeightMapper, Traits::mr, Traits::LhsProgress,
                        typename Traits::LhsPacket4Packing, Eigen::RowMajor>
          pack;
      ei::gebp_kernel<float, float, Index, OutputMapper, Traits::mr, Traits::nr> kernel;
      for (Index k = 0; k < in; k += tiles.depth_block) {
        const Index depth = std::min(tiles.depth_block, in - k);
        for (Index j = 0; j < count; ++j) {
          const Eigen::bfloat16* source = w + (o + j) * in + k;
          std::transform(source, source + depth, widened.data() + j * depth,
                         [](Eigen::bfloat16 value) { return widen(value); });
        }
        pack(packed_weights.data(), WeightMapper(widened.data(), depth), depth, count);
        kernel(OutputMapper(y_rows + o, y_stride), packed_weights.data(),
               packed_x.data() + k * row_count, count, depth, row_count, 1.0f);
      }
    });
  }
}

}  // namespace mlstm::detail
