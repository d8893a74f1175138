// The backward of linear_product (linear_product.hpp), behind the linear layers' backwards: for
// the block-diagonal y = x W^T + b, given dy,
//
//   x (rows, blocks * in), weight (blocks, out, in), dy (rows, blocks * out)
//   dx[:, b]     = dy[:, b] W[b]               (rows, in) per block, written or added to dx
//   dweight[b]  += dy[:, b]^T x[:, b]          (out, in) per block, accumulated
//   dbias       += the sum of dy's rows         (blocks * out), accumulated
//
// Threads: dx is cut into tiles of rows and input columns, dweight into tiles of output rows,
// each computed by one thread with every sum over the full range in a fixed order, so the result
// does not depend on the thread count. For small square blocks (the model's 4 x 4 q/k/v maps) dx
// runs the forward's plain loops of fixed length with each block transposed, and dweight loops
// of its own, since a matrix product per block would spend its time packing operands of a few
// numbers (measured 7x the forward's time for dweight's products; bench_train's qkv_backward).
#pragma once

#include <algorithm>
#include <type_traits>
#include <vector>

#include "mlstm/detail/assert.hpp"
#include "mlstm/detail/linear_product.hpp"
#include "mlstm/detail/matrix_product.hpp"
#include "mlstm/detail/x86_kernels.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm::detail {

// Where a backward puts the gradient of its input: rows `stride` apart (0: the input's row
// length), written, or added to what is there (small square blocks add each value once, after
// its sum; the matrix products as C += op(A) op(B)), so that a caller whose input feeds several
// maps, or whose gradient buffer is wider than the input, needs no pass of its own to sum or
// copy them.
template <typename T>
struct InputGradient {
  InputGradient(T* data, Index stride = 0, Accumulate mode = Accumulate::no)
      : data(data), stride(stride), mode(mode) {}
  T* data;
  Index stride;
  Accumulate mode;
};

// InputGradient<T> as a parameter that takes no part in deducing T, so that a caller may pass a
// plain pointer (written, rows the input's length apart).
template <typename T>
using InputGradientParameter = typename std::common_type<InputGradient<T>>::type;

#if MLSTM_DETAIL_X86_KERNELS
// small_square_blocks_dweight<4> in float for `pairs` pairs of blocks (x's and dy's rows `width`
// apart), with AVX2: lane 4 h + i of sums' vector o of pair p (the 8 floats at (p * 4 + o) * 8)
// is block 2 p + h's (o, i), and each row adds dy's output o, broadcast within its half (a
// permute), times the pair's inputs. The rows go in passes of 32, each pass through all the
// pairs with their sums in registers, so that a pass reads whole lines of the rows' runs rather
// than one line of every row (which left the loop waiting for memory). Each sum runs over the
// rows in order, each product rounded (no fused multiply-add): the plain loop's bits in a build
// without FMA.
__attribute__((target("avx2"))) inline void square_blocks4_dweight_avx2(const float* x,
                                                                        const float* dy, Index rows,
                                                                        Index width, Index pairs,
                                                                        float* sums) {
  constexpr Index rows_per_pass = 32;
  for (Index first = 0; first < rows; first += rows_per_pass) {
    const Index last = std::min(rows, first + rows_per_pass);
    for (Index pair = 0; pair < pairs; ++pair) {
      float* pair_sums = sums + pair * 32;
      __m256 sum[4];
      for (int o = 0; o < 4; ++o) sum[o] = _mm256_loadu_ps(pair_sums + o * 8);
      for (Index row = first; row < last; ++row) {
        const __m256 inputs = _mm256_loadu_ps(x + row * width + pair * 8);
        const __m256 gradients = _mm256_loadu_ps(dy + row * width + pair * 8);
        sum[0] = _mm256_add_ps(sum[0], _mm256_mul_ps(_mm256_permute_ps(gradients, 0x00), inputs));
        sum[1] = _mm256_add_ps(sum[1], _mm256_mul_ps(_mm256_permute_ps(gradients, 0x55), inputs));
        sum[2] = _mm256_add_ps(sum[2], _mm256_mul_ps(_mm256_permute_ps(gradients, 0xAA), inputs));
        sum[3] = _mm256_add_ps(sum[3], _mm256_mul_ps(_mm256_permute_ps(gradients, 0xFF), inputs));
      }
      for (int o = 0; o < 4; ++o) _mm256_storeu_ps(pair_sums + o * 8, sum[o]);
    }
  }
}
#endif

// dweight[b] += dy[:, b]^T x[:, b] for the blocks [block_begin, block_end) of a head-wise map of
// Size x Size blocks: each row's outer products summed into local sums, row after row, then added
// to dweight (the same order on any thread count).
template <int Size, typename T>
void small_square_blocks_dweight(const T* x, const T* dy, T* dweight, Index rows, Index blocks,
                                 Index block_begin, Index block_end) {
  const Index width = blocks * Size;
#if MLSTM_DETAIL_X86_KERNELS
  if constexpr (Size == 4 && std::is_same_v<T, float>) {
    const Index pairs = (block_end - block_begin) / 2;
    if (processor_has_avx2_fma() && pairs > 0) {
      std::vector<float> sums(static_cast<std::size_t>(pairs * 32), 0.0f);
      square_blocks4_dweight_avx2(x + block_begin * 4, dy + block_begin * 4, rows, width, pairs,
                                  sums.data());
      for (Index pair = 0; pair < pairs; ++pair)
        for (Index o = 0; o < 4; ++o)
          for (Index half = 0; half < 2; ++half)
            for (Index i = 0; i < 4; ++i)
              dweight[(block_begin + 2 * pair + half) * 16 + o * 4 + i] +=
                  sums[static_cast<std::size_t>((pair * 4 + o) * 8 + half * 4 + i)];
      block_begin += 2 * pairs;
    }
  }
#endif
  const Index count = block_end - block_begin;
  if (count < 1) return;
  std::vector<T> sums(static_cast<std::size_t>(count * Size * Size), T(0));
  for (Index row = 0; row < rows; ++row) {
    const T* x_row = x + row * width + block_begin * Size;
    const T* dy_row = dy + row * width + block_begin * Size;
    for (Index block = 0; block < count; ++block) {
      T* block_sums = sums.data() + block * Size * Size;
      for (int out = 0; out < Size; ++out) {
        const T gradient = dy_row[block * Size + out];
        for (int in = 0; in < Size; ++in)
          block_sums[out * Size + in] += gradient * x_row[block * Size + in];
      }
    }
  }
  T* destination = dweight + block_begin * Size * Size;
  for (std::size_t j = 0; j < sums.size(); ++j) destination[j] += sums[j];
}

// dx (as `input_gradient` says, when its data is not null), dweight and dbias (accumulated when
// not null) of linear_product for dy, on up to `threads` threads; the result does not depend on
// the count.
template <typename T>
void linear_product_backward(const T* x, const T* weight, const T* dy,
                             const InputGradientParameter<T>& input_gradient, T* dweight, T* dbias,
                             const LinearShape& shape, int threads) {
  const Index rows = shape.rows, blocks = shape.blocks, in = shape.in, out = shape.out;
  const Index x_stride = blocks * in, y_stride = blocks * out;
  T* dx = input_gradient.data;
  const Index dx_stride = input_gradient.stride > 0 ? input_gradient.stride : x_stride;
  MLSTM_ASSERT(dx_stride >= x_stride, "dx's rows hold the input's");
  if (rows < 1 || out < 1 || in < 1) return;
  if (dbias != nullptr) {
    Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(dbias, y_stride) +=
        Eigen::Map<const RowMatrix<T>>(dy, rows, y_stride).colwise().sum();
  }
  if (dweight != nullptr && has_small_square_blocks(blocks, in, out)) {
    constexpr Index blocks_per_item = 32;
    const Index items = (blocks + blocks_per_item - 1) / blocks_per_item;
    const double flops = 2.0 * static_cast<double>(rows) * static_cast<double>(blocks * in * out);
    parallel_for(items, threads_for_work(threads, items, flops), [&](Index item) {
      const Index begin = item * blocks_per_item, end = std::min(blocks, begin + blocks_per_item);
      with_small_square_size(in, [&](auto size) {
        small_square_blocks_dweight<decltype(size)::value>(x, dy, dweight, rows, blocks, begin,
                                                           end);
      });
    });
    dweight = nullptr;
  }
  if (dx != nullptr && has_small_square_blocks(blocks, in, out)) {
    // dx is the forward's fixed-size loops with each block transposed.
    std::vector<T> transposed(static_cast<std::size_t>(blocks * out * in));
    for (Index b = 0; b < blocks; ++b)
      for (Index o = 0; o < out; ++o)
        for (Index d = 0; d < in; ++d)
          transposed[static_cast<std::size_t>((b * in + d) * out + o)] =
              weight[(b * out + o) * in + d];
    small_square_blocks_product(dy, transposed.data(), static_cast<const T*>(nullptr), dx,
                                dx_stride, input_gradient.mode, rows, blocks, in, threads);
    dx = nullptr;
  }

  constexpr Index row_tile = 256, in_tile = 256;
  const Index out_tile = balanced_tile(out, 256, 16);
  const Index row_tiles = (rows + row_tile - 1) / row_tile, in_tiles = (in + in_tile - 1) / in_tile;
  const Index out_tiles = (out + out_tile - 1) / out_tile;
  const Index dx_items = dx != nullptr ? blocks * row_tiles * in_tiles : 0;
  const Index dweight_items = dweight != nullptr ? blocks * out_tiles : 0;
  const double flops = 2.0 * static_cast<double>(rows) * static_cast<double>(in) *
                       static_cast<double>(out) * static_cast<double>(blocks) *
                       ((dx != nullptr ? 1 : 0) + (dweight != nullptr ? 1 : 0));
  // dweight's items (sums over every row) are handed out first: each is larger than a tile of
  // dx, and taken last one of them had left the other threads waiting (proj_down's backward
  // ran 1.33x faster on 2 threads than on 1; the head's 1.41x).
  parallel_for(
      dx_items + dweight_items, threads_for_work(threads, dx_items + dweight_items, flops),
      [&](Index item) {
        if (item < dweight_items) {
          const Index block = item / out_tiles, out_begin = (item % out_tiles) * out_tile;
          const Index count = std::min(out_tile, out - out_begin);
          matrix_product<T>(count, in, rows, {dy + block * out + out_begin, y_stride, true},
                            {x + block * in, x_stride}, dweight + (block * out + out_begin) * in,
                            in, Accumulate::yes);
        } else {
          const Index tile = item - dweight_items;
          const Index block = tile / (row_tiles * in_tiles),
                      position = tile % (row_tiles * in_tiles);
          const Index row_begin = (position / in_tiles) * row_tile,
                      col_begin = (position % in_tiles) * in_tile;
          const Index row_count = std::min(row_tile, rows - row_begin),
                      col_count = std::min(in_tile, in - col_begin);
          matrix_product<T>(
              row_count, col_count, out, {dy + row_begin * y_stride + block * out, y_stride},
              {weight + block * out * in + col_begin, in},
              dx + row_begin * dx_stride + block * in + col_begin, dx_stride, input_gradient.mode);
        }
      });
}

}  // namespace mlstm::detail
