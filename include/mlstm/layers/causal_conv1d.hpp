// The causal depthwise convolution of the mLSTM layer, the reference's CausalConv1d (one filter
// of KS taps per feature, no mixing across features, output t sees inputs t-KS+1 .. t):
//
//   x (B, S, D), weight (D, 1, KS) (nn.Conv1d's layout, as in the state dict), bias (D)
//   y[b, t, d] = bias[d] + sum_{j=0..KS-1} weight[d, 0, j] * x[b, t - (KS-1) + j, d]
//
// Inputs before the start are the conv state's (zero without one). The state is the
// reference's step state: (B, KS, D), the last KS inputs, oldest first. Only its last KS-1 rows
// reach the next output (the oldest row drops out before it is used), but the layout is kept so
// that states move between this library and the reference unchanged. Running the sequence in
// one call or in pieces, down to one token at a time, gives the same outputs and state.
//
// Backward from a zero history (causal_conv1d_backward), given dy (B, S, D):
//   dx[b, t - (KS-1) + j, d] += weight[d, 0, j] * dy[b, t, d]      (inputs inside the sequence)
//   dweight[d, 0, j]         += sum_{b,t} dy[b, t, d] * x[b, t - (KS-1) + j, d]
//   dbias[d]                 += sum_{b,t} dy[b, t, d]
// What the forward keeps for it: its input x.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "mlstm/detail/assert.hpp"
#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/thread_pool.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {
namespace detail {

// y (B, S, D) from x (B, S, D), weight (D, KS), bias (D). `state` (B, KS, D), if not null,
// holds the previous inputs and is advanced past x after y is written. Runs on up to `threads`
// threads; the result does not depend on the count.
template <typename T>
void causal_conv1d(const T* x, Index batch, Index seq_len, Index dim, const T* weight, Index kernel,
                   const T* bias, T* state, T* y, int threads = 1) {
  // The taps as (KS, D), so that the sums over features run along contiguous memory.
  std::vector<T> taps_by_feature(static_cast<size_t>(kernel * dim));
  for (Index d = 0; d < dim; ++d)
    for (Index j = 0; j < kernel; ++j) taps_by_feature[j * dim + d] = weight[d * kernel + j];
  const auto output_rows = [&](Index begin, Index end) {
    for (Index row = begin; row < end; ++row) {
      const Index b = row / seq_len, t = row % seq_len;
      const T* inputs = x + b * seq_len * dim;
      const T* history = state != nullptr ? state + b * kernel * dim : nullptr;
      T* out = y + row * dim;
      std::copy(bias, bias + dim, out);
      for (Index j = 0; j < kernel; ++j) {
        // The input row at time t - (KS-1) + j, or none (zero) before the start.
        const Index time = t - (kernel - 1) + j;
        const T* tap = time >= 0 ? inputs + time * dim
                                 : (history != nullptr ? history + (kernel + time) * dim : nullptr);
        if (tap == nullptr) continue;
        const T* w = taps_by_feature.data() + j * dim;
        for (Index d = 0; d < dim; ++d) out[d] += w[d] * tap[d];
      }
    }
  };
  parallel_rows(batch * seq_len, 16, threads, 4.0 * static_cast<double>(kernel * dim), output_rows);
  if (state == nullptr) return;
  for (Index b = 0; b < batch; ++b) {
    // The new state: the last KS rows of (old state, x).
    const T* inputs = x + b * seq_len * dim;
    T* rows = state + b * kernel * dim;
    const Index kept = std::max<Index>(kernel - seq_len, 0);
    std::copy(rows + (kernel - kept) * dim, rows + kernel * dim, rows);
    std::copy(inputs + (seq_len - (kernel - kept)) * dim, inputs + seq_len * dim,
              rows + kept * dim);
  }
}

// Backward of causal_conv1d from a zero history: dx (B, S, D) written, its rows dx_stride apart
// (D or more: a gradient buffer wider than the input); dweight (D, KS) and dbias (D) accumulated.
// Runs on up to `threads` threads over blocks of rows; the weights' sums are kept per block and
// added in block order, so the result does not depend on the count.
template <typename T>
void causal_conv1d_backward(const T* x, Index batch, Index seq_len, Index dim, const T* weight,
                            Index kernel, const T* dy, T* dx, Index dx_stride, T* dweight, T* dbias,
                            int threads = 1) {
  MLSTM_ASSERT(dx_stride >= dim, "dx's rows hold the input's");
  // The taps as (KS, D), so that the loops over features run along contiguous memory.
  std::vector<T> taps(static_cast<size_t>(kernel * dim));
  for (Index d = 0; d < dim; ++d)
    for (Index j = 0; j < kernel; ++j)
      taps[static_cast<size_t>(j * dim + d)] = weight[d * kernel + j];
  constexpr Index rows_per_block = 64;
  const Index rows = batch * seq_len, blocks = (rows + rows_per_block - 1) / rows_per_block;
  const Index sums_per_block = (kernel + 1) * dim;  // dweight as (KS, D), then dbias
  std::vector<T> sums(static_cast<size_t>(blocks * sums_per_block), T(0));
  const double cost_per_row = 8.0 * static_cast<double>(kernel * dim);
  parallel_rows(rows, rows_per_block, threads, cost_per_row, [&](Index begin, Index end) {
    T* block_dweight = sums.data() + begin / rows_per_block * sums_per_block;
    T* block_dbias = block_dweight + kernel * dim;
    for (Index row = begin; row < end; ++row) {
      const Index b = row / seq_len, t = row % seq_len;
      const T* gradient = dy + row * dim;
      T* out = dx + row * dx_stride;
      std::fill(out, out + dim, T(0));
      for (Index d = 0; d < dim; ++d) block_dbias[d] += gradient[d];
      for (Index j = 0; j < kernel; ++j) {
        // Through tap j, x at time t feeds y at t + (KS-1) - j, and y at t reads x at
        // t - (KS-1) + j.
        const Index later = t + (kernel - 1) - j, earlier = t - (kernel - 1) + j;
        const T* w = taps.data() + j * dim;
        if (later < seq_len) {
          const T* later_gradient = dy + (b * seq_len + later) * dim;
          for (Index d = 0; d < dim; ++d) out[d] += w[d] * later_gradient[d];
        }
        if (earlier >= 0) {
          const T* input = x + (b * seq_len + earlier) * dim;
          T* tap_sums = block_dweight + j * dim;
          for (Index d = 0; d < dim; ++d) tap_sums[d] += gradient[d] * input[d];
        }
      }
    }
  });
  for (Index block = 0; block < blocks; ++block) {
    const T* block_dweight = sums.data() + block * sums_per_block;
    for (Index j = 0; j < kernel; ++j)
      for (Index d = 0; d < dim; ++d) dweight[d * kernel + j] += block_dweight[j * dim + d];
    for (Index d = 0; d < dim; ++d) dbias[d] += block_dweight[kernel * dim + d];
  }
}

struct ConvShape {
  Index batch, seq_len, dim, kernel;
};

template <typename T>
ConvShape check_conv_inputs(const ConstTensorMap<T, 3>& x, const ConstTensorMap<T, 3>& weight,
                            const ConstTensorMap<T, 1>& bias) {
  const ConvShape shape{x.dimension(0), x.dimension(1), x.dimension(2), weight.dimension(2)};
  if (weight.dimension(0) != shape.dim || weight.dimension(1) != 1 || shape.kernel < 1) {
    throw ShapeError("weight", "expected (D, 1, KS) with D = " + std::to_string(shape.dim) +
                                   " (the last axis of x) and KS >= 1, got " +
                                   shape_string(weight.dimensions()));
  }
  expect_shape<T, 1>(bias, {shape.dim}, "bias", "(D) of x");
  return shape;
}

}  // namespace detail

// x (B, S, D), weight (D, 1, KS), bias (D) -> y (B, S, D), from a zero history.
template <typename X, typename W, typename Bias>
Tensor<ScalarOf<X>, 3> causal_conv1d_forward(const X& x, const W& weight, const Bias& bias) {
  detail::require_same_scalar<X, W, Bias>();
  using T = ScalarOf<X>;
  const auto x_view = detail::const_view<3>(x, "x", "(B, S, D)");
  const auto shape =
      detail::check_conv_inputs<T>(x_view, detail::const_view<3>(weight, "weight", "(D, 1, KS)"),
                                   detail::const_view<1>(bias, "bias", "(D)"));
  Tensor<T, 3> y(shape.batch, shape.seq_len, shape.dim);
  detail::causal_conv1d<T>(x_view.data(), shape.batch, shape.seq_len, shape.dim, weight.data(),
                           shape.kernel, bias.data(), nullptr, y.data());
  return y;
}

// The same continuing from `state` (B, KS, D), which is advanced past x in place.
template <typename X, typename W, typename Bias, typename State>
Tensor<ScalarOf<X>, 3> causal_conv1d_forward(const X& x, const W& weight, const Bias& bias,
                                             State&& state) {
  detail::require_same_scalar<X, W, Bias, State>();
  using T = ScalarOf<X>;
  const auto x_view = detail::const_view<3>(x, "x", "(B, S, D)");
  const auto shape =
      detail::check_conv_inputs<T>(x_view, detail::const_view<3>(weight, "weight", "(D, 1, KS)"),
                                   detail::const_view<1>(bias, "bias", "(D)"));
  auto state_view = detail::mutable_view<3>(state, "state", "(B, KS, D)");
  detail::expect_shape<T, 3>(state_view, {shape.batch, shape.kernel, shape.dim}, "state",
                             "(B, KS, D) of x and weight");
  Tensor<T, 3> y(shape.batch, shape.seq_len, shape.dim);
  detail::causal_conv1d<T>(x_view.data(), shape.batch, shape.seq_len, shape.dim, weight.data(),
                           shape.kernel, bias.data(), state_view.data(), y.data());
  return y;
}

}  // namespace mlstm
