// One xLSTM-Large block, the reference's mLSTMBlock: pre-norm residual mLSTM layer, then
// pre-norm residual SwiGLU feed-forward.
//
//   x (B, S, E) -> x + mlstm_layer(rms_norm(x)) = x'  -> x' + ffn(rms_norm(x'))
//
// The mLSTM layer (the reference's mLSTMLayer):
//   q = x W_q^T, k = x W_k^T           (B, S, qk_dim) -> heads (B, NH, S, DQK)
//   v = x W_v^T, o = x W_o^T           (B, S, v_dim)  -> v heads (B, NH, S, DV)
//   i = soft_cap(x W_i^T + b_i), f = soft_cap(x W_f^T + b_f)      (B, S, NH), cap gate_soft_cap
//   h = mlstm kernel(q, k, v, i, f)    (B, NH, S, DV); exponential input gate, eps config.eps
//   h = per-head layer norm of h (weight and bias used as they are, eps norm_eps), heads
//       concatenated to (B, S, v_dim)
//   y = (sigmoid(o) * h) W_out^T       (B, S, E)
// No convolution, skip or up-projection (unlike the xLSTM language model's layer). Biases of the
// q, k, v, o, out and FFN maps and of the norms exist with use_bias.
#pragma once

#include <Eigen/Core>

#include "mlstm/detail/elementwise.hpp"
#include "mlstm/kernels/state.hpp"
#include "mlstm/layers/layer_norm.hpp"
#include "mlstm/layers/linear.hpp"
#include "mlstm/layers/rms_norm.hpp"
#include "mlstm/layers/soft_cap.hpp"
#include "mlstm/layers/swiglu.hpp"
#include "mlstm/models/xlstm_large/config.hpp"
#include "mlstm/models/xlstm_large/parameters.hpp"
#include "mlstm/models/xlstm_lm/mlstm_cell.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {
namespace detail {

// y (rows, out) = x (rows, in) W^T + b for a bound linear map; `rounding` as in
// detail/linear_product.hpp.
template <typename T, typename W>
void linear_view_rows(const T* x, Index rows, const LinearView<T, W>& map, T* y, int threads,
                      InputRounding rounding) {
  linear_rows(x, rows, map.in, map.weight, map.out, map.bias, y, threads, rounding);
}

// y (B, S, map.out), resized, = x (B * S, map.in) W^T + b.
template <typename T, typename W>
void linear_view_forward(const T* x, Index batch, Index seq_len, const LinearView<T, W>& map,
                         Tensor<T, 3>& y, int threads, InputRounding rounding) {
  y.resize(batch, seq_len, map.out);
  linear_view_rows(x, batch * seq_len, map, y.data(), threads, rounding);
}

template <typename T>
void rms_norm_rows(const T* x, Index rows, Index dim, const NormView<T>& norm, double eps, T* y) {
  for (Index r = 0; r < rows; ++r)
    rms_norm_row(x + r * dim, dim, norm.weight, norm.bias, eps, y + r * dim);
}

}  // namespace detail

// One block's activations, which an inference call's blocks use in turn (resized to each call's
// shapes, a no-op when unchanged).
template <typename T>
struct XLSTMLargeBlockActivations {
  Tensor<T, 3> normed;        // (B, S, E): either norm's output
  Tensor<T, 3> q, k, v, o;    // (B, S, qk_dim or v_dim)
  Tensor<T, 3> igate, fgate;  // (B, S, NH)
  Tensor<T, 4> q_heads, k_heads, v_heads, igate_heads, fgate_heads;  // (B, NH, S, ...)
  Tensor<T, 3> h;                 // (B, S, v_dim): the normed heads, gated
  Tensor<T, 3> residual;          // (B, S, E): the layer's or the feed-forward's output
  Tensor<T, 2> ffn_gate, ffn_up;  // (B * S, F)
};

namespace detail {

// x (B, S, E) -> the mLSTM layer's output a.residual (B, S, E) for the normed input a.normed;
// `state` as in mlstm_kernel_forward; `rounding` for every linear map.
template <typename T, typename W>
void xlstm_large_layer_forward(const XLSTMLargeBlockWeights<T, W>& w,
                               const XLSTMLargeConfig& config, Index batch, Index seq_len,
                               const KernelOptions& options, InputRounding rounding,
                               RecurrentState<T>* state, XLSTMLargeBlockActivations<T>& a) {
  const int threads = resolve_num_threads(options.num_threads, "options.num_threads");
  const Index heads = config.num_heads, rows = batch * seq_len;
  const Index qk_head = config.qk_head_dim(), v_head = config.v_head_dim();
  const T* normed = a.normed.data();
  linear_view_forward(normed, batch, seq_len, w.q, a.q, threads, rounding);
  linear_view_forward(normed, batch, seq_len, w.k, a.k, threads, rounding);
  linear_view_forward(normed, batch, seq_len, w.v, a.v, threads, rounding);
  linear_view_forward(normed, batch, seq_len, w.igate, a.igate, threads, rounding);
  linear_view_forward(normed, batch, seq_len, w.fgate, a.fgate, threads, rounding);
  if (config.gate_soft_cap) {
    soft_cap_inplace(a.igate.data(), a.igate.size(), static_cast<T>(*config.gate_soft_cap));
    soft_cap_inplace(a.fgate.data(), a.fgate.size(), static_cast<T>(*config.gate_soft_cap));
  }
  split_heads(a.q.data(), batch, seq_len, heads, qk_head, a.q_heads, threads);
  split_heads(a.k.data(), batch, seq_len, heads, qk_head, a.k_heads, threads);
  split_heads(a.v.data(), batch, seq_len, heads, v_head, a.v_heads, threads);
  split_heads(a.igate.data(), batch, seq_len, heads, Index{1}, a.igate_heads);
  split_heads(a.fgate.data(), batch, seq_len, heads, Index{1}, a.fgate_heads);
  const Tensor<T, 4> h_heads = mlstm_kernel_forward(a.q_heads, a.k_heads, a.v_heads, a.igate_heads,
                                                    a.fgate_heads, options, state);

  LayerNormOptions norm_options;
  norm_options.eps = config.norm_eps;
  norm_options.residual_weight = false;
  Tensor<T, 3>& h = a.h;
  h.resize(batch, seq_len, config.v_dim());
  multi_head_layer_norm(h_heads.data(), batch, heads, seq_len, v_head, w.multihead_norm.weight,
                        w.multihead_norm.bias, norm_options, true, h.data());
  // The output gate, sigmoid(o) * h, folded into h (in vector registers, Eigen's exp).
  linear_view_forward(normed, batch, seq_len, w.ogate, a.o, threads, rounding);
  using Values = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
  Values(h.data(), h.size()) *= (T(1) + (-Values(a.o.data(), a.o.size())).exp()).inverse();
  a.residual.resize(batch, seq_len, config.embedding_dim);
  linear_view_rows(h.data(), rows, w.out_proj, a.residual.data(), threads, rounding);
}

// x (B, S, E) advanced in place through the block; `state` as in mlstm_kernel_forward;
// `rounding` for every linear map; the activations in `a`.
template <typename T, typename W>
void xlstm_large_block_forward(const XLSTMLargeBlockWeights<T, W>& w,
                               const XLSTMLargeConfig& config, T* x, Index batch, Index seq_len,
                               const KernelOptions& options, InputRounding rounding,
                               RecurrentState<T>* state, XLSTMLargeBlockActivations<T>& a) {
  const Index E = config.embedding_dim, rows = batch * seq_len;
  const int threads = resolve_num_threads(options.num_threads, "options.num_threads");
  a.normed.resize(batch, seq_len, E);
  rms_norm_rows(x, rows, E, w.norm_mlstm, config.norm_eps, a.normed.data());
  xlstm_large_layer_forward(w, config, batch, seq_len, options, rounding, state, a);
  add_rows(a.residual.data(), rows, E, x, threads);

  rms_norm_rows(x, rows, E, w.norm_ffn, config.norm_eps, a.normed.data());
  swiglu_rows(a.normed.data(), rows, E, w.ffn_gate.out, w.ffn_gate.weight, w.ffn_gate.bias,
              w.ffn_up.weight, w.ffn_up.bias, w.ffn_down.weight, w.ffn_down.bias, a.residual.data(),
              a.ffn_gate, a.ffn_up, threads, rounding);
  add_rows(a.residual.data(), rows, E, x, threads);
}

}  // namespace detail
}  // namespace mlstm
