// The mLSTM block, the reference's mLSTMBlock (an xLSTMBlock with an mLSTM layer and no
// feed-forward part): pre-norm and residual around the layer.
//
//   x (B, S, E) -> x + mlstm_layer(layer_norm(x))     layer_norm: weight offset from one,
//                                                      no bias, eps 1e-5
#pragma once

#include <string>

#include "mlstm/layers/layer_norm.hpp"
#include "mlstm/models/xlstm_lm/mlstm_layer.hpp"
#include "mlstm/models/xlstm_lm/model_state.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

// Views of the block's parameters (the reference's names under "blocks.<i>.").
template <typename T>
struct MLSTMBlockWeights {
  ConstTensorMap<T, 1> xlstm_norm_weight;  // xlstm_norm.weight (E), offset from one
  MLSTMLayerWeights<T> xlstm;              // xlstm.*

  void validate(const std::string& prefix = "") const {
    xlstm.validate(prefix + "xlstm.");
    detail::expect_shape<T, 1>(xlstm_norm_weight, {xlstm.embedding_dim()},
                               (prefix + "xlstm_norm.weight").c_str(), "(E)");
  }
};

namespace detail {

// x (B, S, E) -> x + layer(norm(x)); `state` as in mlstm_layer_forward.
template <typename T>
Tensor<T, 3> mlstm_block_forward(const MLSTMBlockWeights<T>& w, const T* x, Index batch,
                                 Index seq_len, const KernelOptions& options,
                                 MLSTMLayerState<T>* state) {
  const Index E = w.xlstm.embedding_dim();
  Tensor<T, 3> normed(batch, seq_len, E);
  for (Index r = 0; r < batch * seq_len; ++r)
    layer_norm_row(x + r * E, E, w.xlstm_norm_weight.data(), static_cast<const T*>(nullptr), true,
                   LayerNormOptions{}.eps, normed.data() + r * E);
  Tensor<T, 3> y = mlstm_layer_forward(w.xlstm, normed.data(), batch, seq_len, options, state);
  for (Index i = 0; i < y.size(); ++i) y.data()[i] += x[i];
  return y;
}

}  // namespace detail

// x (B, S, E) -> y (B, S, E), from the zero state, with options.forward_kernel.
template <typename T, typename X>
Tensor<T, 3> mlstm_block_forward(const MLSTMBlockWeights<T>& weights, const X& x,
                                 const KernelOptions& options = {}) {
  weights.validate();
  const auto in = detail::check_layer_input(weights.xlstm, x);
  detail::check_kernel_options(options);
  return detail::mlstm_block_forward(weights, in.data(), in.dimension(0), in.dimension(1), options,
                                     static_cast<MLSTMLayerState<T>*>(nullptr));
}

// The same continuing from `state`, which is advanced past x.
template <typename T, typename X>
Tensor<T, 3> mlstm_block_forward(const MLSTMBlockWeights<T>& weights, const X& x,
                                 MLSTMLayerState<T>& state, const KernelOptions& options = {}) {
  weights.validate();
  const auto in = detail::check_layer_input(weights.xlstm, x);
  detail::check_kernel_options(options);
  detail::check_layer_state(state, weights.xlstm, in.dimension(0), "state");
  return detail::mlstm_block_forward(weights, in.data(), in.dimension(0), in.dimension(1), options,
                                     &state);
}

}  // namespace mlstm
