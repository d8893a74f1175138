// The head-wise (block-diagonal) linear map of the model, the reference's LinearHeadwiseExpand,
// which makes q, k and v from the inner activations:
//
//   x (..., NPH * din), weight (NPH, dout, din), bias (NPH * dout) or none -> y (..., NPH * dout)
//   y[..., p * dout + o] = sum_d x[..., p * din + d] * weight[p, o, d]  (+ bias[p * dout + o])
//
// Each of the NPH projection heads maps its own slice of the features; nothing mixes across
// slices. NPH is the layer's inner dimension / qkv_proj_blocksize, not the cell's head count.
// The weight is in x's scalar or, for float x, in bfloat16 (as for linear_forward).
//
// Backward, given dy (..., NPH * dout), per head p: dx_p = dy_p weight[p], dweight[p] = dy_p^T x_p,
// dbias = sum of dy over the rows. What the forward keeps for it: its input x.
#pragma once

#include <string>

#include "mlstm/detail/checks.hpp"
#include "mlstm/layers/linear.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {
namespace detail {

// y (rows, NPH * dout) from x (rows, NPH * din) and weight (NPH, dout, din) in T or bfloat16;
// bias may be null. Runs on up to `threads` threads; the result does not depend on the count.
template <typename T, typename W>
void linear_headwise_rows(const T* x, Index rows, Index heads, Index in_per_head, const W* weight,
                          Index out_per_head, const T* bias, T* y, int threads) {
  linear_product(x, weight, bias, y, LinearShape{rows, heads, in_per_head, out_per_head}, threads);
}

// Backward of linear_headwise_rows for dy (rows, NPH * dout): dx (rows, NPH * din) written, or
// added to, as InputGradient says (linear_product_backward.hpp), when its data is not null;
// dweight (NPH, dout, din) and dbias (NPH * dout) accumulated when not null. Runs on up to
// `threads` threads; the result does not depend on the count.
template <typename T>
void linear_headwise_rows_backward(const T* x, Index rows, Index heads, Index in_per_head,
                                   const T* weight, Index out_per_head, const T* dy,
                                   const InputGradientParameter<T>& dx, T* dweight, T* dbias,
                                   int threads) {
  linear_product_backward(x, weight, dy, dx, dweight, dbias,
                          LinearShape{rows, heads, in_per_head, out_per_head}, threads);
}

template <typename X, typename W>
void check_headwise_weight(const X& x, const W& weight) {
  constexpr int rank = traits_of<X>::rank;
  const Index features = x.dimension(rank - 1);
  if (weight.dimension(0) < 1 || weight.dimension(1) < 1 || weight.dimension(2) < 1 ||
      weight.dimension(0) * weight.dimension(2) != features) {
    throw ShapeError("weight",
                     "expected (NPH, dout, din) with NPH * din = " + std::to_string(features) +
                         " (the last axis of x), got " + shape_string(weight.dimensions()));
  }
}

template <typename X, typename W>
Tensor<ScalarOf<X>, traits_of<X>::rank> linear_headwise_checked(const X& x, const W& weight,
                                                                const ScalarOf<X>* bias) {
  constexpr int rank = traits_of<X>::rank;
  const Index heads = weight.dimension(0), out_per_head = weight.dimension(1);
  Tensor<ScalarOf<X>, rank> y(with_last_dimension<rank>(x.dimensions(), heads * out_per_head));
  linear_headwise_rows(x.data(), leading_rows(x), heads, weight.dimension(2), weight.data(),
                       out_per_head, bias, y.data(), get_num_threads());
  return y;
}

}  // namespace detail

// x (..., NPH * din), weight (NPH, dout, din) -> y (..., NPH * dout).
template <typename X, typename W>
Tensor<ScalarOf<X>, rank_of<X>> linear_headwise_forward(const X& x, const W& weight) {
  detail::require_linear_scalars<X, W>();
  static_assert(rank_of<X> >= 1, "linear_headwise_forward: x needs a feature axis");
  const auto weight_view = detail::const_view<3>(weight, "weight", "(NPH, dout, din)");
  detail::check_headwise_weight(x, weight_view);
  return detail::linear_headwise_checked(x, weight_view, nullptr);
}

// x (..., NPH * din), weight (NPH, dout, din), bias (NPH * dout) -> y (..., NPH * dout).
template <typename X, typename W, typename Bias>
Tensor<ScalarOf<X>, rank_of<X>> linear_headwise_forward(const X& x, const W& weight,
                                                        const Bias& bias) {
  detail::require_linear_scalars<X, W, Bias>();
  static_assert(rank_of<X> >= 1, "linear_headwise_forward: x needs a feature axis");
  const auto weight_view = detail::const_view<3>(weight, "weight", "(NPH, dout, din)");
  const auto bias_view = detail::const_view<1>(bias, "bias", "(NPH * dout)");
  detail::check_headwise_weight(x, weight_view);
  detail::expect_shape<ScalarOf<X>, 1>(bias_view,
                                       {weight_view.dimension(0) * weight_view.dimension(1)},
                                       "bias", "(NPH * dout) of weight");
  return detail::linear_headwise_checked(x, weight_view, bias_view.data());
}

}  // namespace mlstm
