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

#include <cmath>

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

// y (rows, out) = x (rows, in) W^T + b for a bound linear map.
template <typename T, typename W>
void linear_view_rows(const T* x, Index rows, const LinearView<T, W>& map, T* y, int threads) {
  linear_rows(x, rows, map.in, map.weight, map.out, map.bias, y, threads);
}

template <typename T, typename W>
Tensor<T, 3> linear_view_forward(const T* x, Index batch, Index seq_len,
                                 const LinearView<T, W>& map, int threads) {
  Tensor<T, 3> y(batch, seq_len, map.out);
  linear_view_rows(x, batch * seq_len, map, y.data(), threads);
  return y;
}

template <typename T>
void rms_norm_rows(const T* x, Index rows, Index dim, const NormView<T>& norm, double eps, T* y) {
  for (Index r = 0; r < rows; ++r)
    rms_norm_row(x + r * dim, dim, norm.weight, norm.bias, eps, y + r * dim);
}

// x (B, S, E) -> the mLSTM layer's output (B, S, E) for the normed input `normed`; `state` as in
// mlstm_kernel_forward.
template <typename T, typename W>
Tensor<T, 3> xlstm_large_layer_forward(const XLSTMLargeBlockWeights<T, W>& w,
                                       const XLSTMLargeConfig& config, const T* normed, Index batch,
                                       Index seq_len, const KernelOptions& options,
                                       RecurrentState<T>* state) {
  const int threads = resolve_num_threads(options.num_threads, "options.num_threads");
  const Index heads = config.num_heads, rows = batch * seq_len;
  const Index qk_head = config.qk_head_dim(), v_head = config.v_head_dim();
  const Tensor<T, 3> q = linear_view_forward(normed, batch, seq_len, w.q, threads);
  const Tensor<T, 3> k = linear_view_forward(normed, batch, seq_len, w.k, threads);
  const Tensor<T, 3> v = linear_view_forward(normed, batch, seq_len, w.v, threads);
  Tensor<T, 3> igate = linear_view_forward(normed, batch, seq_len, w.igate, threads);
  Tensor<T, 3> fgate = linear_view_forward(normed, batch, seq_len, w.fgate, threads);
  if (config.gate_soft_cap) {
    soft_cap_inplace(igate.data(), igate.size(), static_cast<T>(*config.gate_soft_cap));
    soft_cap_inplace(fgate.data(), fgate.size(), static_cast<T>(*config.gate_soft_cap));
  }
  const Tensor<T, 4> h_heads =
      mlstm_kernel_forward(split_heads(q.data(), batch, seq_len, heads, qk_head),
                           split_heads(k.data(), batch, seq_len, heads, qk_head),
                           split_heads(v.data(), batch, seq_len, heads, v_head),
                           split_heads(igate.data(), batch, seq_len, heads, 1),
                           split_heads(fgate.data(), batch, seq_len, heads, 1), options, state);

  LayerNormOptions norm_options;
  norm_options.eps = config.norm_eps;
  norm_options.residual_weight = false;
  Tensor<T, 3> h(batch, seq_len, config.v_dim());
  multi_head_layer_norm(h_heads.data(), batch, heads, seq_len, v_head, w.multihead_norm.weight,
                        w.multihead_norm.bias, norm_options, true, h.data());
  // The output gate, sigmoid(o) * h, folded into h.
  Tensor<T, 3> o = linear_view_forward(normed, batch, seq_len, w.ogate, threads);
  for (Index i = 0; i < h.size(); ++i) h.data()[i] *= T(1) / (T(1) + std::exp(-o.data()[i]));
  Tensor<T, 3> y(batch, seq_len, config.embedding_dim);
  linear_view_rows(h.data(), rows, w.out_proj, y.data(), threads);
  return y;
}

// x (B, S, E) advanced in place through the block; `state` as in mlstm_kernel_forward.
template <typename T, typename W>
void xlstm_large_block_forward(const XLSTMLargeBlockWeights<T, W>& w,
                               const XLSTMLargeConfig& config, T* x, Index batch, Index seq_len,
                               const KernelOptions& options, RecurrentState<T>* state) {
  const Index E = config.embedding_dim, rows = batch * seq_len;
  const int threads = resolve_num_threads(options.num_threads, "options.num_threads");
  Tensor<T, 3> normed(batch, seq_len, E);
  rms_norm_rows(x, rows, E, w.norm_mlstm, config.norm_eps, normed.data());
  const Tensor<T, 3> layer =
      xlstm_large_layer_forward(w, config, normed.data(), batch, seq_len, options, state);
  for (Index i = 0; i < layer.size(); ++i) x[i] += layer.data()[i];

  rms_norm_rows(x, rows, E, w.norm_ffn, config.norm_eps, normed.data());
  Tensor<T, 3> ffn(batch, seq_len, E);
  swiglu_rows(normed.data(), rows, E, w.ffn_gate.out, w.ffn_gate.weight, w.ffn_gate.bias,
              w.ffn_up.weight, w.ffn_up.bias, w.ffn_down.weight, w.ffn_down.bias, ffn.data(),
              threads);
  for (Index i = 0; i < ffn.size(); ++i) x[i] += ffn.data()[i];
}

}  // namespace detail
}  // namespace mlstm
