// The dense linear map of the model, the reference's nn.Linear:
//
//   y = x W^T + b          x (..., in), weight W (out, in), bias b (out) or none -> y (..., out)
//
// The leading axes of x are flattened into rows, so a (B, S, in) activation is one matrix
// product. Used for the up- and down-projections and the head. Runs on up to
// mlstm::get_num_threads() threads; the result does not depend on the thread count.
#pragma once

#include <algorithm>
#include <array>
#include <string>

#include <Eigen/Core>

#include "mlstm/detail/checks.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {
namespace detail {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// y (rows, out) = x (rows, in) W^T + b, W (out, in) row-major; bias may be null.
//
// Threads: the product is cut into tiles of up to `row_tile` rows by `column_tile` outputs,
// fixed sizes independent of the thread count, so the result does not depend on it. Tiles are
// large enough for the product's packing of W and x to be amortized (each tile packs its own
// slices of both).
template <typename T>
void linear_rows(const T* x, Index rows, Index in, const T* weight, Index out, const T* bias, T* y,
                 int threads) {
  constexpr Index row_tile = 256, column_tile = 512;
  const Index row_tiles = (rows + row_tile - 1) / row_tile;
  const Index column_tiles = (out + column_tile - 1) / column_tile;
  const Index tiles = row_tiles * column_tiles;
  const double flops =
      2.0 * static_cast<double>(rows) * static_cast<double>(in) * static_cast<double>(out);
  using Strided = Eigen::OuterStride<>;
  parallel_for(tiles, threads_for_work(threads, tiles, flops), [&](Index item) {
    const Index row_begin = (item / column_tiles) * row_tile;
    const Index col_begin = (item % column_tiles) * column_tile;
    const Index row_count = std::min(row_tile, rows - row_begin);
    const Index col_count = std::min(column_tile, out - col_begin);
    Eigen::Map<const RowMatrix<T>> inputs(x + row_begin * in, row_count, in);
    Eigen::Map<const RowMatrix<T>> weights(weight + col_begin * in, col_count, in);
    Eigen::Map<RowMatrix<T>, 0, Strided> outputs(y + row_begin * out + col_begin, row_count,
                                                 col_count, Strided(out));
    outputs.noalias() = inputs * weights.transpose();
    if (bias != nullptr)
      outputs.rowwise() +=
          Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias + col_begin, col_count);
  });
}

// The dimensions of x with the last one replaced by `last`.
template <int Rank, typename Dims>
std::array<Index, Rank> with_last_dimension(const Dims& dims, Index last) {
  std::array<Index, Rank> result{};
  for (int axis = 0; axis < Rank; ++axis) result[axis] = dims[axis];
  result[Rank - 1] = last;
  return result;
}

// Rows of a tensor whose last axis is the feature axis: the product of the other axes.
template <typename X>
Index leading_rows(const X& x) {
  Index rows = 1;
  for (int axis = 0; axis + 1 < traits_of<X>::rank; ++axis) rows *= x.dimension(axis);
  return rows;
}

template <typename X, typename W>
void check_linear_weight(const X& x, const W& weight, const char* weight_name) {
  constexpr int rank = traits_of<X>::rank;
  if (weight.dimension(1) != x.dimension(rank - 1)) {
    throw ShapeError(weight_name,
                     "expected (out, in) with in = " + std::to_string(x.dimension(rank - 1)) +
                         " (the last axis of x), got " + shape_string(weight.dimensions(), 2));
  }
}

template <typename X, typename W>
Tensor<scalar_of<X>, traits_of<X>::rank> linear_checked(const X& x, const W& weight,
                                                        const scalar_of<X>* bias) {
  constexpr int rank = traits_of<X>::rank;
  using T = scalar_of<X>;
  const Index out = weight.dimension(0);
  Tensor<T, rank> y(with_last_dimension<rank>(x.dimensions(), out));
  linear_rows(x.data(), leading_rows(x), x.dimension(rank - 1), weight.data(), out, bias, y.data(),
              get_num_threads());
  return y;
}

}  // namespace detail

// y = x W^T: x (..., in) of rank >= 1, weight (out, in) -> y (..., out).
template <typename X, typename W>
Tensor<detail::scalar_of<X>, detail::traits_of<X>::rank> linear_forward(const X& x,
                                                                        const W& weight) {
  detail::require_same_scalar<X, W>();
  static_assert(detail::traits_of<X>::rank >= 1, "linear_forward: x needs a feature axis");
  const auto weight_view = detail::const_view<2>(weight, "weight", "(out, in)");
  detail::check_linear_weight(x, weight_view, "weight");
  return detail::linear_checked(x, weight_view, nullptr);
}

// y = x W^T + b: x (..., in), weight (out, in), bias (out) -> y (..., out).
template <typename X, typename W, typename Bias>
Tensor<detail::scalar_of<X>, detail::traits_of<X>::rank> linear_forward(const X& x, const W& weight,
                                                                        const Bias& bias) {
  detail::require_same_scalar<X, W, Bias>();
  static_assert(detail::traits_of<X>::rank >= 1, "linear_forward: x needs a feature axis");
  const auto weight_view = detail::const_view<2>(weight, "weight", "(out, in)");
  const auto bias_view = detail::const_view<1>(bias, "bias", "(out)");
  detail::check_linear_weight(x, weight_view, "weight");
  detail::expect_shape<detail::scalar_of<X>, 1>(bias_view, {weight_view.dimension(0)}, "bias",
                                                "(out) of weight");
  return detail::linear_checked(x, weight_view, bias_view.data());
}

}  // namespace mlstm
