// The dense linear map of the model, the reference's nn.Linear:
//
//   y = x W^T + b          x (..., in), weight W (out, in), bias b (out) or none -> y (..., out)
//
// Backward, given dy (..., out): dx = dy W, dW = dy^T x, db = sum of dy over the rows. What the
// forward keeps for it: its input x.
//
// The leading axes of x are flattened into rows, so a (B, S, in) activation is one matrix
// product. Used for the up- and down-projections and the head. Weights may be stored in bfloat16
// for float activations (see detail/linear_product.hpp). Runs on up to
// mlstm::get_num_threads() threads; the result does not depend on the thread count.
#pragma once

#include <algorithm>
#include <array>
#include <string>

#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/linear_product.hpp"
#include "mlstm/detail/linear_product_backward.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {
namespace detail {

// y (rows, out) = x (rows, in) W^T + b, W (out, in) row-major in T or bfloat16; bias may be
// null; `rounding` as in detail/linear_product.hpp. Runs on up to `threads` threads; the result
// does not depend on the count.
template <typename T, typename W>
void linear_rows(const T* x, Index rows, Index in, const W* weight, Index out, const T* bias, T* y,
                 int threads, InputRounding rounding = InputRounding::none) {
  linear_product(x, weight, bias, y, LinearShape{rows, 1, in, out}, threads, rounding);
}

// Backward of linear_rows for dy (rows, out): dx (rows, in) = dy W, written when not null;
// dweight (out, in) += dy^T x and dbias (out) += sum of dy's rows, accumulated when not null (so
// that micro-batches and tied parameters add up). Runs on up to `threads` threads; the result
// does not depend on the count.
template <typename T>
void linear_rows_backward(const T* x, Index rows, Index in, const T* weight, Index out, const T* dy,
                          T* dx, T* dweight, T* dbias, int threads) {
  linear_product_backward(x, weight, dy, dx, dweight, dbias, LinearShape{rows, 1, in, out},
                          threads);
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

// x and the bias share a scalar; the weight is in it too or, for float x, in bfloat16.
template <typename X, typename W, typename... Bias>
constexpr void require_linear_scalars() {
  require_same_scalar<X, Bias...>();
  require_argument_type<W>();
  static_assert(is_linear_weight_scalar<ScalarOf<X>, ScalarOf<W>>,
                "mlstm: a linear weight has x's scalar type, or bfloat16 when x is float");
}

template <typename X, typename W>
void check_linear_weight(const X& x, const W& weight, const char* weight_name) {
  constexpr int rank = traits_of<X>::rank;
  if (weight.dimension(1) != x.dimension(rank - 1)) {
    throw ShapeError(weight_name,
                     "expected (out, in) with in = " + std::to_string(x.dimension(rank - 1)) +
                         " (the last axis of x), got " + shape_string(weight.dimensions()));
  }
}

template <typename X, typename W>
Tensor<ScalarOf<X>, traits_of<X>::rank> linear_checked(const X& x, const W& weight,
                                                       const ScalarOf<X>* bias) {
  constexpr int rank = traits_of<X>::rank;
  using T = ScalarOf<X>;
  const Index out = weight.dimension(0);
  Tensor<T, rank> y(with_last_dimension<rank>(x.dimensions(), out));
  linear_rows(x.data(), leading_rows(x), x.dimension(rank - 1), weight.data(), out, bias, y.data(),
              get_num_threads());
  return y;
}

}  // namespace detail

// y = x W^T: x (..., in) of rank >= 1, weight (out, in) -> y (..., out). The weight is in x's
// scalar or, for float x, in bfloat16 (summed in float; a map into a memory-mapped file is
// used in place).
template <typename X, typename W>
Tensor<ScalarOf<X>, rank_of<X>> linear_forward(const X& x, const W& weight) {
  detail::require_linear_scalars<X, W>();
  static_assert(rank_of<X> >= 1, "linear_forward: x needs a feature axis");
  const auto weight_view = detail::const_view<2>(weight, "weight", "(out, in)");
  detail::check_linear_weight(x, weight_view, "weight");
  return detail::linear_checked(x, weight_view, nullptr);
}

// y = x W^T + b: x (..., in), weight (out, in), bias (out) -> y (..., out).
template <typename X, typename W, typename Bias>
Tensor<ScalarOf<X>, rank_of<X>> linear_forward(const X& x, const W& weight, const Bias& bias) {
  detail::require_linear_scalars<X, W, Bias>();
  static_assert(rank_of<X> >= 1, "linear_forward: x needs a feature axis");
  const auto weight_view = detail::const_view<2>(weight, "weight", "(out, in)");
  const auto bias_view = detail::const_view<1>(bias, "bias", "(out)");
  detail::check_linear_weight(x, weight_view, "weight");
  detail::expect_shape<ScalarOf<X>, 1>(bias_view, {weight_view.dimension(0)}, "bias",
                                       "(out) of weight");
  return detail::linear_checked(x, weight_view, bias_view.data());
}

// The gradients of sum(y * dy) for y = linear_forward(x, weight[, bias]).
template <typename T, int Rank>
struct LinearGradients {
  Tensor<T, Rank> dx;    // x's shape
  Tensor<T, 2> dweight;  // (out, in)
  Tensor<T, 1> dbias;    // (out): what a bias would get (the sum of dy's rows)
};

// x (..., in), weight (out, in), dy (..., out) -> dx, dweight, dbias.
template <typename X, typename W, typename DY>
LinearGradients<ScalarOf<X>, detail::traits_of<X>::rank> linear_backward(const X& x,
                                                                         const W& weight,
                                                                         const DY& dy) {
  detail::require_same_scalar<X, W, DY>();
  using T = ScalarOf<X>;
  constexpr int rank = detail::traits_of<X>::rank;
  static_assert(rank >= 1 && detail::traits_of<DY>::rank == rank,
                "linear_backward: x and dy have one rank with a feature axis");
  const auto weight_view = detail::const_view<2>(weight, "weight", "(out, in)");
  detail::check_linear_weight(x, weight_view, "weight");
  const Index in = weight_view.dimension(1), out = weight_view.dimension(0);
  const auto dy_view = detail::const_view<rank>(dy, "dy", "(..., out)");
  detail::expect_shape<T, rank>(dy_view, detail::with_last_dimension<rank>(x.dimensions(), out),
                                "dy", "x's shape with the last axis out");
  LinearGradients<T, rank> g{Tensor<T, rank>(x.dimensions()), Tensor<T, 2>(out, in),
                             Tensor<T, 1>(out)};
  g.dweight.setZero();
  g.dbias.setZero();
  detail::linear_rows_backward(x.data(), detail::leading_rows(x), in, weight_view.data(), out,
                               dy_view.data(), g.dx.data(), g.dweight.data(), g.dbias.data(),
                               get_num_threads());
  return g;
}

}  // namespace mlstm
