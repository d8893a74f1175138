// Layer norms of the model, the reference's LayerNorm and MultiHeadLayerNorm.
//
// The reference stores a norm's weight as an offset from one ("residual weight"): the scale
// applied is 1 + weight, so that the zero-initialised parameter starts as the identity scale
// and weight decay pulls the scale towards one. Every norm of the mLSTM model has a weight and
// no bias, and eps = 1e-5.
//
//   layer_norm_forward:             x (..., D), weight (D) [, bias (D)] -> y (..., D)
//     y = (x - mean(x)) / sqrt(var(x) + eps) * (1 + weight) + bias   over the last axis,
//     var the biased variance (divided by D).
//   multi_head_layer_norm_forward:  h (B, NH, S, DH), weight (NH * DH) [, bias] -> (B, NH, S, DH)
//     the same per (b, head, s) over the DH features of the head, with the head's slice
//     weight[head * DH .. head * DH + DH) (the reference's group norm with NH groups over
//     the (B * S, NH * DH) layout).
//
// Statistics are accumulated in double, also for float inputs.
//
// Backward (layer_norm_row_backward, multi_head_layer_norm_backward), per row of D features,
// with xhat = (x - mean) / sqrt(var + eps) and scale = 1 + weight (or weight):
//
//   dxhat = dy * scale
//   dx    = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sqrt(var + eps)
//   dweight += dy * xhat,   dbias += dy
//
// The forward keeps only its input x; the statistics are recomputed from it.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/lane_sum.hpp"
#include "mlstm/detail/thread_pool.hpp"
#include "mlstm/layers/linear.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

struct LayerNormOptions {
  double eps = 1e-5;            // added to the variance; finite and > 0
  bool residual_weight = true;  // scale by 1 + weight (the reference's default); false: weight
};

namespace detail {

// One row of `dim` features. bias may be null.
// The mean and 1 / sqrt(variance + eps) of one row, summed in double.
struct RowMoments {
  double mean;
  double inverse_std;
};

template <typename T>
RowMoments row_moments(const T* x, Index dim, double eps) {
  const double mean =
      lane_sum(dim, [x](Index j) { return static_cast<double>(x[j]); }) / static_cast<double>(dim);
  const double squares = lane_sum(dim, [x, mean](Index j) {
    const double centered = static_cast<double>(x[j]) - mean;
    return centered * centered;
  });
  return {mean, 1.0 / std::sqrt(squares / static_cast<double>(dim) + eps)};
}

template <typename T>
void layer_norm_row(const T* x, Index dim, const T* weight, const T* bias, bool residual_weight,
                    double eps, T* y) {
  const auto [mean, inverse_std] = row_moments(x, dim, eps);
  const T offset = residual_weight ? T(1) : T(0);
  for (Index j = 0; j < dim; ++j) {
    const T normalized = static_cast<T>((static_cast<double>(x[j]) - mean) * inverse_std);
    y[j] = normalized * (offset + weight[j]) + (bias != nullptr ? bias[j] : T(0));
  }
}

// layer_norm_row for `rows` consecutive rows of x and y, on up to `threads` threads.
template <typename T>
void layer_norm_rows(const T* x, Index rows, Index dim, const T* weight, const T* bias,
                     bool residual_weight, double eps, T* y, int threads) {
  parallel_rows(rows, 32, threads, 32.0 * static_cast<double>(dim), [&](Index begin, Index end) {
    for (Index row = begin; row < end; ++row)
      layer_norm_row(x + row * dim, dim, weight, bias, residual_weight, eps, y + row * dim);
  });
}

// Backward of layer_norm_row for one row whose moments (row_moments of x) are given: dx written;
// dweight and dbias (may be null) accumulated.
template <typename T>
void layer_norm_row_backward(const T* x, Index dim, const RowMoments& moments, const T* weight,
                             bool residual_weight, const T* dy, T* dx, T* dweight, T* dbias) {
  // Named copies, not a structured binding: a C++17 lambda may not capture a binding's names.
  const double mean = moments.mean, inverse_std = moments.inverse_std;
  const double offset = residual_weight ? 1.0 : 0.0;
  const auto xhat = [&](Index j) { return (static_cast<double>(x[j]) - mean) * inverse_std; };
  const auto dxhat = [&](Index j) {
    return static_cast<double>(dy[j]) * (offset + static_cast<double>(weight[j]));
  };
  // The two row sums in lane_sum's running sums (one running sum each was a chain of dependent
  // additions), then the parameters' gradients and dx in loops the compiler vectorizes.
  const double dxhat_mean = lane_sum(dim, dxhat) / static_cast<double>(dim);
  const double dxhat_xhat_mean =
      lane_sum(dim, [&](Index j) { return dxhat(j) * xhat(j); }) / static_cast<double>(dim);
  if (dweight != nullptr)
    for (Index j = 0; j < dim; ++j)
      dweight[j] += static_cast<T>(static_cast<double>(dy[j]) * xhat(j));
  if (dbias != nullptr)
    for (Index j = 0; j < dim; ++j) dbias[j] += dy[j];
  for (Index j = 0; j < dim; ++j)
    dx[j] = static_cast<T>((dxhat(j) - dxhat_mean - xhat(j) * dxhat_xhat_mean) * inverse_std);
}

// Backward of layer_norm_row for one row: dx written; dweight and dbias (may be null) accumulated.
template <typename T>
void layer_norm_row_backward(const T* x, Index dim, const T* weight, bool residual_weight,
                             double eps, const T* dy, T* dx, T* dweight, T* dbias) {
  layer_norm_row_backward(x, dim, row_moments(x, dim, eps), weight, residual_weight, dy, dx,
                          dweight, dbias);
}

// layer_norm_row_backward for `rows` consecutive rows of x, dy and dx, on up to `threads`
// threads: dx by blocks of rows, then dweight and dbias (may be null) by blocks of columns, each
// column's sum taken over the rows in row order as the row-by-row loop takes it, so the result is
// that loop's whatever the thread count.
template <typename T>
void layer_norm_rows_backward(const T* x, Index rows, Index dim, const T* weight,
                              bool residual_weight, double eps, const T* dy, T* dx, T* dweight,
                              T* dbias, int threads) {
  std::vector<RowMoments> moments(static_cast<std::size_t>(rows));
  parallel_rows(rows, 32, threads, 64.0 * static_cast<double>(dim), [&](Index begin, Index end) {
    for (Index row = begin; row < end; ++row) {
      const RowMoments& row_moment = moments[static_cast<std::size_t>(row)] =
          row_moments(x + row * dim, dim, eps);
      layer_norm_row_backward(x + row * dim, dim, row_moment, weight, residual_weight,
                              dy + row * dim, dx + row * dim, static_cast<T*>(nullptr),
                              static_cast<T*>(nullptr));
    }
  });
  if (dweight == nullptr && dbias == nullptr) return;
  parallel_rows(dim, 16, threads, 8.0 * static_cast<double>(rows), [&](Index begin, Index end) {
    for (Index row = 0; row < rows; ++row) {
      const auto [mean, inverse_std] = moments[static_cast<std::size_t>(row)];
      const T* x_row = x + row * dim;
      const T* dy_row = dy + row * dim;
      for (Index j = begin; j < end; ++j) {
        const double xhat = (static_cast<double>(x_row[j]) - mean) * inverse_std;
        if (dweight != nullptr) dweight[j] += static_cast<T>(static_cast<double>(dy_row[j]) * xhat);
        if (dbias != nullptr) dbias[j] += dy_row[j];
      }
    }
  });
}

// Rows of h (B, NH, S, DH) normalized per head; the result is written in the layout
// (B, S, NH * DH) when `sequence_major`, else (B, NH, S, DH) like h. Runs on up to `threads`
// threads.
template <typename T>
void multi_head_layer_norm(const T* h, Index batch, Index heads, Index seq_len, Index head_dim,
                           const T* weight, const T* bias, const LayerNormOptions& options,
                           bool sequence_major, T* y, int threads = 1) {
  // Rows in h's order: row = (b * heads + head) * seq_len + t.
  const auto rows = [&](Index begin, Index end) {
    for (Index row = begin; row < end; ++row) {
      const Index t = row % seq_len, head = (row / seq_len) % heads, b = row / seq_len / heads;
      const Index target =
          sequence_major ? ((b * seq_len + t) * heads + head) * head_dim : row * head_dim;
      layer_norm_row(h + row * head_dim, head_dim, weight + head * head_dim,
                     bias != nullptr ? bias + head * head_dim : nullptr, options.residual_weight,
                     options.eps, y + target);
    }
  };
  parallel_rows(batch * heads * seq_len, 32, threads, 32.0 * static_cast<double>(head_dim), rows);
}

// Backward of multi_head_layer_norm: dy in the layout the forward wrote (`sequence_major`), dh
// (B, NH, S, DH) written; dweight (NH * DH) and dbias (may be null) accumulated. Heads run on up
// to `threads` threads, each head's slice of dweight and dbias summed by one thread in the order
// (b, t), so the result does not depend on the thread count.
template <typename T>
void multi_head_layer_norm_backward(const T* h, Index batch, Index heads, Index seq_len,
                                    Index head_dim, const T* weight,
                                    const LayerNormOptions& options, bool sequence_major,
                                    const T* dy, T* dh, T* dweight, T* dbias, int threads = 1) {
  const double flops = 64.0 * static_cast<double>(batch * heads * seq_len * head_dim);
  parallel_for(heads, threads_for_work(threads, heads, flops), [&](Index head) {
    for (Index b = 0; b < batch; ++b)
      for (Index t = 0; t < seq_len; ++t) {
        const Index source = ((b * heads + head) * seq_len + t) * head_dim;
        const Index target =
            sequence_major ? ((b * seq_len + t) * heads + head) * head_dim : source;
        const Index slice = head * head_dim;
        layer_norm_row_backward(h + source, head_dim, weight + slice, options.residual_weight,
                                options.eps, dy + target, dh + source,
                                dweight != nullptr ? dweight + slice : nullptr,
                                dbias != nullptr ? dbias + slice : nullptr);
      }
  });
}

template <typename X, typename W>
Tensor<ScalarOf<X>, traits_of<X>::rank> layer_norm_checked(const X& x, const W& weight,
                                                           const ScalarOf<X>* bias,
                                                           const LayerNormOptions& options) {
  constexpr int rank = traits_of<X>::rank;
  using T = ScalarOf<X>;
  const Index dim = x.dimension(rank - 1);
  Tensor<T, rank> y(x.dimensions());
  layer_norm_rows(x.data(), leading_rows(x), dim, weight.data(), bias, options.residual_weight,
                  options.eps, y.data(), get_num_threads());
  return y;
}

template <typename X>
void check_layer_norm_options(const X& x, const LayerNormOptions& options) {
  expect_valid_eps(options.eps, "options.eps");
  constexpr int rank = traits_of<X>::rank;
  if (x.dimension(rank - 1) < 1)
    throw ShapeError("x", "the normalized (last) axis must have at least 1 feature, got " +
                              shape_string(x.dimensions()));
}

}  // namespace detail

// x (..., D), weight (D) -> (..., D), normalized over the last axis.
template <typename X, typename W>
Tensor<ScalarOf<X>, rank_of<X>> layer_norm_forward(const X& x, const W& weight,
                                                   const LayerNormOptions& options = {}) {
  detail::require_same_scalar<X, W>();
  static_assert(rank_of<X> >= 1, "layer_norm_forward: x needs a feature axis");
  constexpr int rank = rank_of<X>;
  detail::check_layer_norm_options(x, options);
  const auto weight_view = detail::const_view<1>(weight, "weight", "(D)");
  detail::expect_shape<ScalarOf<X>, 1>(weight_view, {x.dimension(rank - 1)}, "weight", "(D) of x");
  return detail::layer_norm_checked(x, weight_view, nullptr, options);
}

// x (..., D), weight (D), bias (D) -> (..., D).
template <typename X, typename W, typename Bias>
Tensor<ScalarOf<X>, rank_of<X>> layer_norm_forward(const X& x, const W& weight, const Bias& bias,
                                                   const LayerNormOptions& options = {}) {
  detail::require_same_scalar<X, W, Bias>();
  static_assert(rank_of<X> >= 1, "layer_norm_forward: x needs a feature axis");
  constexpr int rank = rank_of<X>;
  using T = ScalarOf<X>;
  detail::check_layer_norm_options(x, options);
  const auto weight_view = detail::const_view<1>(weight, "weight", "(D)");
  const auto bias_view = detail::const_view<1>(bias, "bias", "(D)");
  detail::expect_shape<T, 1>(weight_view, {x.dimension(rank - 1)}, "weight", "(D) of x");
  detail::expect_shape<T, 1>(bias_view, {x.dimension(rank - 1)}, "bias", "(D) of x");
  return detail::layer_norm_checked(x, weight_view, bias_view.data(), options);
}

namespace detail {

template <typename T>
Tensor<T, 4> multi_head_layer_norm_checked(const ConstTensorMap<T, 4>& h, const T* weight,
                                           const T* bias, const LayerNormOptions& options) {
  Tensor<T, 4> y(h.dimensions());
  multi_head_layer_norm(h.data(), h.dimension(0), h.dimension(1), h.dimension(2), h.dimension(3),
                        weight, bias, options, false, y.data());
  return y;
}

template <typename H>
ConstTensorMap<ScalarOf<H>, 4> multi_head_input(const H& h, const LayerNormOptions& options) {
  const auto in = const_view<4>(h, "h", "(B, NH, S, DH)");
  expect_valid_eps(options.eps, "options.eps");
  if (in.dimension(1) < 1 || in.dimension(3) < 1)
    throw ShapeError(
        "h", "expected (B, NH, S, DH) with NH, DH >= 1, got " + shape_string(in.dimensions()));
  return in;
}

}  // namespace detail

// h (B, NH, S, DH), weight (NH * DH) -> (B, NH, S, DH), each head normalized on its own.
template <typename H, typename W>
Tensor<ScalarOf<H>, 4> multi_head_layer_norm_forward(const H& h, const W& weight,
                                                     const LayerNormOptions& options = {}) {
  detail::require_same_scalar<H, W>();
  const auto in = detail::multi_head_input(h, options);
  const auto weight_view = detail::const_view<1>(weight, "weight", "(NH * DH)");
  detail::expect_shape<ScalarOf<H>, 1>(weight_view, {in.dimension(1) * in.dimension(3)}, "weight",
                                       "(NH * DH) of h");
  return detail::multi_head_layer_norm_checked<ScalarOf<H>>(in, weight_view.data(), nullptr,
                                                            options);
}

// h (B, NH, S, DH), weight (NH * DH), bias (NH * DH) -> (B, NH, S, DH).
template <typename H, typename W, typename Bias>
Tensor<ScalarOf<H>, 4> multi_head_layer_norm_forward(const H& h, const W& weight, const Bias& bias,
                                                     const LayerNormOptions& options = {}) {
  detail::require_same_scalar<H, W, Bias>();
  using T = ScalarOf<H>;
  const auto in = detail::multi_head_input(h, options);
  const auto weight_view = detail::const_view<1>(weight, "weight", "(NH * DH)");
  const auto bias_view = detail::const_view<1>(bias, "bias", "(NH * DH)");
  const Index features = in.dimension(1) * in.dimension(3);
  detail::expect_shape<T, 1>(weight_view, {features}, "weight", "(NH * DH) of h");
  detail::expect_shape<T, 1>(bias_view, {features}, "bias", "(NH * DH) of h");
  return detail::multi_head_layer_norm_checked<T>(in, weight_view.data(), bias_view.data(),
                                                  options);
}

}  // namespace mlstm
