// The mLSTM block, the reference's mLSTMBlock (an xLSTMBlock with an mLSTM layer and no
// feed-forward part): pre-norm and residual around the layer.
//
//   x (B, S, E) -> x + mlstm_layer(layer_norm(x))     layer_norm: weight offset from one,
//                                                      no bias, eps 1e-5
//
// Training: the forward from the zero state can keep an MLSTMBlockCache (the norm's output and
// the layer's cache; the norm's input is the block's input). The backward, given dy:
//   dx = dy + layer_norm_backward(x, mlstm_layer_backward(dy))
// with the norm's and the layer's parameter gradients accumulated.
#pragma once

#include <string>

#include "mlstm/detail/elementwise.hpp"
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

template <typename T>
struct MLSTMBlockCache {
  Tensor<T, 3> normed;  // (B, S, E): the norm's output, the layer's input
  MLSTMLayerCache<T> xlstm;
};

// The block backward's intermediate gradients (see MLSTMLayerBackwardBuffers).
template <typename T>
struct MLSTMBlockBackwardBuffers {
  Tensor<T, 3> dnormed;  // (B, S, E): the layer's input gradient
  MLSTMLayerBackwardBuffers<T> xlstm;
};

template <typename T>
struct MLSTMBlockGradients {
  T* xlstm_norm_weight;
  MLSTMLayerGradients<T> xlstm;
};

namespace detail {

// x (B, S, E) -> y = x + layer(norm(x)), y resized (a no-op when its size is unchanged) and
// written; `state` as in mlstm_layer_forward. The activations go to `activations` as in
// mlstm_cell_forward; with Keep::for_backward (only without a state) they are what
// mlstm_block_backward needs.
template <typename T>
void mlstm_block_forward(const MLSTMBlockWeights<T>& w, const T* x, Index batch, Index seq_len,
                         const KernelOptions& options, MLSTMLayerState<T>* state,
                         MLSTMBlockCache<T>& activations, Keep keep, Tensor<T, 3>& y) {
  const Index E = w.xlstm.embedding_dim();
  const int threads = resolve_num_threads(options.num_threads, "options.num_threads");
  Tensor<T, 3>& normed = activations.normed;
  normed.resize(batch, seq_len, E);
  layer_norm_rows(x, batch * seq_len, E, w.xlstm_norm_weight.data(), static_cast<const T*>(nullptr),
                  true, LayerNormOptions{}.eps, normed.data(), threads);
  mlstm_layer_forward(w.xlstm, normed.data(), batch, seq_len, options, state, activations.xlstm,
                      keep, y);
  add_rows(x, batch * seq_len, E, y.data(), threads);
}

// Backward of the block's training forward on x (B * S, E): dx (B * S, E) written, the
// parameters' gradients accumulated into `grads`; `buffers` holds the intermediate gradients.
template <typename T>
void mlstm_block_backward(const MLSTMBlockWeights<T>& w, const MLSTMBlockGradients<T>& grads,
                          const T* x, Index batch, Index seq_len, const KernelOptions& options,
                          const MLSTMBlockCache<T>& cache, const T* dy, T* dx,
                          MLSTMBlockBackwardBuffers<T>& buffers) {
  const Index E = w.xlstm.embedding_dim(), rows = batch * seq_len;
  Tensor<T, 3>& dnormed = buffers.dnormed;
  dnormed.resize(batch, seq_len, E);
  mlstm_layer_backward(w.xlstm, grads.xlstm, cache.normed.data(), batch, seq_len, options,
                       cache.xlstm, dy, dnormed.data(), buffers.xlstm);
  const int threads = resolve_num_threads(options.num_threads, "options.num_threads");
  layer_norm_rows_backward(x, rows, E, w.xlstm_norm_weight.data(), true, LayerNormOptions{}.eps,
                           dnormed.data(), dx, grads.xlstm_norm_weight, static_cast<T*>(nullptr),
                           threads);
  add_rows(dy, rows, E, dx, threads);
}

}  // namespace detail

// x (B, S, E) -> y (B, S, E), from the zero state, with options.forward_kernel.
template <typename T, typename X>
Tensor<T, 3> mlstm_block_forward(const MLSTMBlockWeights<T>& weights, const X& x,
                                 const KernelOptions& options = {}) {
  weights.validate();
  const auto in = detail::check_layer_input(weights.xlstm, x);
  detail::check_kernel_options(options);
  Tensor<T, 3> y;
  MLSTMBlockCache<T> activations;
  detail::mlstm_block_forward(weights, in.data(), in.dimension(0), in.dimension(1), options,
                              static_cast<MLSTMLayerState<T>*>(nullptr), activations,
                              detail::Keep::none, y);
  return y;
}

// The same continuing from `state`, which is advanced past x.
template <typename T, typename X>
Tensor<T, 3> mlstm_block_forward(const MLSTMBlockWeights<T>& weights, const X& x,
                                 MLSTMLayerState<T>& state, const KernelOptions& options = {}) {
  weights.validate();
  const auto in = detail::check_layer_input(weights.xlstm, x);
  detail::check_kernel_options(options);
  detail::check_layer_state(state, weights.xlstm, in.dimension(0), "state");
  Tensor<T, 3> y;
  MLSTMBlockCache<T> activations;
  detail::mlstm_block_forward(weights, in.data(), in.dimension(0), in.dimension(1), options, &state,
                              activations, detail::Keep::none, y);
  return y;
}

}  // namespace mlstm
