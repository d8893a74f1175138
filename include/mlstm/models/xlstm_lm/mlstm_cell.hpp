// The mLSTM cell of the layer, the reference's mLSTMCell: gates from q, k and v, the kernel over
// heads, and the multi-head norm.
//
//   q, k, v (B, S, I) -> h (B, S, I),  I = NH * DH
//
//   i = [q, k, v] W_i^T + b_i,  f = [q, k, v] W_f^T + b_f      (B, S, NH); [q, k, v] (B, S, 3I)
//   q, k, v, i, f split into heads: (B, NH, S, DH), gates (B, NH, S, 1)
//   h_heads = kernel(q, k, v, i, f)                           (B, NH, S, DH)
//   h = multi-head layer norm of h_heads (weight offset from one, eps 1e-5, no bias), heads
//       concatenated back to (B, S, I)
//
// Whole sequences without a state run the model's forward kernel (the reference: the parallel
// form). With a state, a single step runs the recurrent step in place on it and a longer
// sequence runs the chunkwise kernel from it (kernel_forward, kernels/backend.hpp), replacing it
// by the state after the sequence. Nothing is cached: this is inference code.
#pragma once

#include <algorithm>
#include <array>
#include <string>
#include <type_traits>
#include <utility>

#include <Eigen/Core>

#include "mlstm/kernels/backend.hpp"
#include "mlstm/detail/checks.hpp"
#include "mlstm/layers/layer_norm.hpp"
#include "mlstm/layers/linear.hpp"
#include "mlstm/kernels/recurrent.hpp"
#include "mlstm/kernels/state.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

// Views of the cell's parameters (the reference's names under "mlstm_cell.").
template <typename T>
struct MLSTMCellWeights {
  ConstTensorMap<T, 2> igate_weight;    // igate.weight (NH, 3I)
  ConstTensorMap<T, 1> igate_bias;      // igate.bias (NH)
  ConstTensorMap<T, 2> fgate_weight;    // fgate.weight (NH, 3I)
  ConstTensorMap<T, 1> fgate_bias;      // fgate.bias (NH)
  ConstTensorMap<T, 1> outnorm_weight;  // outnorm.weight (I), offset from one

  Index num_heads() const { return igate_weight.dimension(0); }
  Index inner_dim() const { return outnorm_weight.dimension(0); }
  Index head_dim() const { return inner_dim() / num_heads(); }

  // ShapeError naming the first parameter whose shape does not fit the others; `prefix` is
  // put before the names in the message (e.g. "blocks.0.xlstm.mlstm_cell.").
  void validate(const std::string& prefix = "") const {
    const Index inner = inner_dim(), heads = igate_weight.dimension(0);
    if (inner < 1 || heads < 1 || inner % heads != 0) {
      throw ShapeError(prefix + "igate.weight",
                       "expected (NH, 3I) with NH >= 1 dividing I = " + std::to_string(inner) +
                           " (outnorm.weight's size), got " +
                           shape_string(igate_weight.dimensions()));
    }
    const auto name = [&](const char* parameter) { return prefix + parameter; };
    detail::expect_shape<T, 2>(igate_weight, {heads, 3 * inner}, name("igate.weight").c_str(),
                               "(NH, 3I)");
    detail::expect_shape<T, 1>(igate_bias, {heads}, name("igate.bias").c_str(), "(NH)");
    detail::expect_shape<T, 2>(fgate_weight, {heads, 3 * inner}, name("fgate.weight").c_str(),
                               "(NH, 3I)");
    detail::expect_shape<T, 1>(fgate_bias, {heads}, name("fgate.bias").c_str(), "(NH)");
  }
};

namespace detail {

// gates (rows, NH) = q W[:, 0:I]^T + k W[:, I:2I]^T + v W[:, 2I:3I]^T + b, for q, k, v (rows, I):
// the gate of the concatenation [q, k, v] without building it.
template <typename T>
void gate_preactivations(const T* q, const T* k, const T* v, Index rows, Index inner,
                         const ConstTensorMap<T, 2>& weight, const ConstTensorMap<T, 1>& bias,
                         RowMatrix<T>& gates) {
  const Index heads = weight.dimension(0);
  Eigen::Map<const RowMatrix<T>> w(weight.data(), heads, 3 * inner);
  gates.resize(rows, heads);
  gates.noalias() = Eigen::Map<const RowMatrix<T>>(q, rows, inner) * w.leftCols(inner).transpose();
  gates.noalias() +=
      Eigen::Map<const RowMatrix<T>>(k, rows, inner) * w.middleCols(inner, inner).transpose();
  gates.noalias() +=
      Eigen::Map<const RowMatrix<T>>(v, rows, inner) * w.rightCols(inner).transpose();
  gates.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias.data(), heads);
}

// (B, S, NH * D) -> (B, NH, S, D): the reference's view(B, S, NH, D).transpose(1, 2).
template <typename T>
Tensor<T, 4> split_heads(const T* x, Index batch, Index seq_len, Index heads, Index head_dim) {
  Tensor<T, 4> y(batch, heads, seq_len, head_dim);
  for (Index b = 0; b < batch; ++b)
    for (Index t = 0; t < seq_len; ++t)
      for (Index h = 0; h < heads; ++h) {
        const T* source = x + ((b * seq_len + t) * heads + h) * head_dim;
        std::copy(source, source + head_dim, y.data() + ((b * heads + h) * seq_len + t) * head_dim);
      }
  return y;
}

// The kernel over heads: q, k (B, NH, S, DQK), v (B, NH, S, DV), gates (B, NH, S, 1) -> h
// (B, NH, S, DV). `state` null: options.forward_kernel from the zero state; else one recurrent
// step in place (S = 1) or the chunkwise kernel from *state, which is replaced by the state
// after the sequence (kernel_forward, kernels/backend.hpp).
template <typename T>
Tensor<T, 4> mlstm_kernel_forward(const Tensor<T, 4>& q, const Tensor<T, 4>& k,
                                  const Tensor<T, 4>& v, const Tensor<T, 4>& igate,
                                  const Tensor<T, 4>& fgate, const KernelOptions& options,
                                  RecurrentState<T>* state) {
  return state == nullptr ? kernel_forward(q, k, v, igate, fgate, options)
                          : kernel_forward(q, k, v, igate, fgate, *state, options);
}

// q, k, v (B, S, I) -> h (B, S, I); `state` null: the forward kernel from the zero state, else
// continued from *state, which is replaced by the state after the sequence.
template <typename T>
Tensor<T, 3> mlstm_cell_forward(const MLSTMCellWeights<T>& w, const T* q, const T* k, const T* v,
                                Index batch, Index seq_len, const KernelOptions& options,
                                RecurrentState<T>* state) {
  const Index inner = w.inner_dim(), heads = w.num_heads(), head_dim = inner / heads;
  const Index rows = batch * seq_len;
  RowMatrix<T> igate, fgate;  // (rows, NH)
  gate_preactivations(q, k, v, rows, inner, w.igate_weight, w.igate_bias, igate);
  gate_preactivations(q, k, v, rows, inner, w.fgate_weight, w.fgate_bias, fgate);
  Tensor<T, 4> igate_heads = split_heads(igate.data(), batch, seq_len, heads, 1);
  Tensor<T, 4> fgate_heads = split_heads(fgate.data(), batch, seq_len, heads, 1);
  const Tensor<T, 4> q_heads = split_heads(q, batch, seq_len, heads, head_dim);
  const Tensor<T, 4> k_heads = split_heads(k, batch, seq_len, heads, head_dim);
  const Tensor<T, 4> v_heads = split_heads(v, batch, seq_len, heads, head_dim);

  const Tensor<T, 4> h_heads =
      mlstm_kernel_forward(q_heads, k_heads, v_heads, igate_heads, fgate_heads, options, state);

  Tensor<T, 3> h(batch, seq_len, inner);
  multi_head_layer_norm(h_heads.data(), batch, heads, seq_len, head_dim, w.outnorm_weight.data(),
                        static_cast<const T*>(nullptr), LayerNormOptions{}, true, h.data());
  return h;
}

// c (B, NH, DH, DH), n (B, NH, DH, 1), m (B, NH, 1, 1); `prefix` names the state in messages.
template <typename T>
void check_cell_state(const RecurrentState<T>& state, Index batch, Index heads, Index head_dim,
                      const std::string& prefix) {
  expect_shape<T, 4>(state.c, {batch, heads, head_dim, head_dim}, (prefix + ".c").c_str(),
                     "(B, NH, DH, DH)");
  expect_shape<T, 4>(state.n, {batch, heads, head_dim, 1}, (prefix + ".n").c_str(),
                     "(B, NH, DH, 1)");
  expect_shape<T, 4>(state.m, {batch, heads, 1, 1}, (prefix + ".m").c_str(), "(B, NH, 1, 1)");
}

// q, k, v (B, S, I) with B, S >= 1 and I the cell's inner dimension.
template <typename T, typename Q, typename K, typename V>
std::array<ConstTensorMap<T, 3>, 3> check_cell_inputs(const MLSTMCellWeights<T>& weights,
                                                      const Q& q, const K& k, const V& v) {
  require_same_scalar<Q, K, V>();
  static_assert(std::is_same_v<ScalarOf<Q>, T>, "q, k, v must have the weights' scalar type");
  weights.validate();
  std::array<ConstTensorMap<T, 3>, 3> views{const_view<3>(q, "q", "(B, S, I)"),
                                            const_view<3>(k, "k", "(B, S, I)"),
                                            const_view<3>(v, "v", "(B, S, I)")};
  const Index batch = views[0].dimension(0), seq_len = views[0].dimension(1);
  if (batch < 1 || seq_len < 1) {
    throw ShapeError(
        "q", "expected (B, S, I) with B, S >= 1, got " + shape_string(views[0].dimensions()));
  }
  const char* names[] = {"q", "k", "v"};
  for (int i = 0; i < 3; ++i)
    expect_shape<T, 3>(views[i], {batch, seq_len, weights.inner_dim()}, names[i],
                       "(B, S, I) with I of the cell's weights");
  return views;
}

}  // namespace detail

// q, k, v (B, S, I) -> h (B, S, I), from the zero state, with options.forward_kernel.
template <typename T, typename Q, typename K, typename V>
Tensor<T, 3> mlstm_cell_forward(const MLSTMCellWeights<T>& weights, const Q& q, const K& k,
                                const V& v, const KernelOptions& options = {}) {
  const auto in = detail::check_cell_inputs(weights, q, k, v);
  detail::check_kernel_options(options);
  return detail::mlstm_cell_forward(weights, in[0].data(), in[1].data(), in[2].data(),
                                    in[0].dimension(0), in[0].dimension(1), options,
                                    static_cast<RecurrentState<T>*>(nullptr));
}

// The same continuing from `state` (c (B, NH, DH, DH), n (B, NH, DH, 1), m (B, NH, 1, 1)), which
// is replaced by the state after the sequence: one step (S = 1) in place with the recurrent
// step, a longer sequence with the chunkwise kernel (options.chunk_size).
template <typename T, typename Q, typename K, typename V>
Tensor<T, 3> mlstm_cell_forward(const MLSTMCellWeights<T>& weights, const Q& q, const K& k,
                                const V& v, RecurrentState<T>& state,
                                const KernelOptions& options = {}) {
  const auto in = detail::check_cell_inputs(weights, q, k, v);
  detail::check_kernel_options(options);
  detail::check_cell_state(state, in[0].dimension(0), weights.num_heads(), weights.head_dim(),
                           "state");
  return detail::mlstm_cell_forward(weights, in[0].data(), in[1].data(), in[2].data(),
                                    in[0].dimension(0), in[0].dimension(1), options, &state);
}

}  // namespace mlstm
