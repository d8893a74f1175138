// RMS norm, the xLSTM-Large reference's RMSNorm (like torch.nn.RMSNorm):
//
//   rms_norm_forward:  x (..., D), weight (D) [, bias (D)] -> y (..., D)
//     y = x / sqrt(mean(x^2) + eps) * weight + bias      over the last axis
//
// The weight is the scale itself (it starts at one), unlike the mLSTM model's layer norms whose
// weight is an offset from one. The mean of squares is accumulated in double, also for float
// inputs (the reference reduces in float32 at least).
#pragma once

#include <cmath>
#include <string>

#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/lane_sum.hpp"
#include "mlstm/layers/linear.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

struct RMSNormOptions {
  double eps = 1e-6;  // added to the mean of squares; finite and > 0
};

namespace detail {

// One row of `dim` features; bias may be null. y may alias x.
template <typename T>
void rms_norm_row(const T* x, Index dim, const T* weight, const T* bias, double eps, T* y) {
  const double squares = sum_of_squares(x, dim);
  const double inverse_rms = 1.0 / std::sqrt(squares / static_cast<double>(dim) + eps);
  for (Index j = 0; j < dim; ++j) {
    const T normalized = static_cast<T>(static_cast<double>(x[j]) * inverse_rms);
    y[j] = normalized * weight[j] + (bias != nullptr ? bias[j] : T(0));
  }
}

template <typename X, typename W>
Tensor<ScalarOf<X>, traits_of<X>::rank> rms_norm_checked(const X& x, const W& weight,
                                                         const ScalarOf<X>* bias,
                                                         const RMSNormOptions& options) {
  constexpr int rank = traits_of<X>::rank;
  expect_valid_eps(options.eps, "options.eps");
  const Index dim = x.dimension(rank - 1);
  if (dim < 1)
    throw ShapeError("x", "the normalized (last) axis must have at least 1 feature, got " +
                              shape_string(x.dimensions()));
  expect_shape<ScalarOf<X>, 1>(weight, {dim}, "weight", "(D) of x");
  Tensor<ScalarOf<X>, rank> y(x.dimensions());
  const Index rows = leading_rows(x);
  for (Index row = 0; row < rows; ++row)
    rms_norm_row(x.data() + row * dim, dim, weight.data(), bias, options.eps, y.data() + row * dim);
  return y;
}

}  // namespace detail

// x (..., D), weight (D) -> (..., D), normalized over the last axis.
template <typename X, typename W>
Tensor<ScalarOf<X>, rank_of<X>> rms_norm_forward(const X& x, const W& weight,
                                                 const RMSNormOptions& options = {}) {
  detail::require_same_scalar<X, W>();
  static_assert(rank_of<X> >= 1, "rms_norm_forward: x needs a feature axis");
  return detail::rms_norm_checked(x, detail::const_view<1>(weight, "weight", "(D)"), nullptr,
                                  options);
}

// x (..., D), weight (D), bias (D) -> (..., D).
template <typename X, typename W, typename Bias>
Tensor<ScalarOf<X>, rank_of<X>> rms_norm_forward(const X& x, const W& weight, const Bias& bias,
                                                 const RMSNormOptions& options = {}) {
  detail::require_same_scalar<X, W, Bias>();
  static_assert(rank_of<X> >= 1, "rms_norm_forward: x needs a feature axis");
  constexpr int rank = rank_of<X>;
  const auto bias_view = detail::const_view<1>(bias, "bias", "(D)");
  detail::expect_shape<ScalarOf<X>, 1>(bias_view, {x.dimension(rank - 1)}, "bias", "(D) of x");
  return detail::rms_norm_checked(x, detail::const_view<1>(weight, "weight", "(D)"),
                                  bias_view.data(), options);
}

}  // namespace mlstm
