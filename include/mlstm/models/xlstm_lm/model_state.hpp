// The state a model carries from one call to the next when it runs a sequence in pieces: a
// prompt prefilled in one call, then generation token by token.
//
// Per block (the reference's step state {"mlstm_state": (c, n, m), "conv_state": (conv,)}):
//   mlstm_state   the cell's c (B, NH, DH, DH), n (B, NH, DH, 1), m (B, NH, 1, 1)
//   conv_state    the causal convolution's last KS inputs, oldest first (B, KS, I)
// A model's state holds one per block, in block order ("block_<i>" in the reference).
//
// The zero state (all zeros, m = 0) is where the reference's step starts, and what
// LanguageModel::initial_state(batch) gives; set_zero() returns a state to it in place, the cheaper
// way to start each of many prompts. States are plain tensors: copy one to branch a
// generation, save one with the safetensors writer, or move one to and from the reference's dict.
#pragma once

#include <vector>

#include "mlstm/kernels/state.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

template <typename T>
struct MLSTMLayerState {
  RecurrentState<T> mlstm_state;  // c (B, NH, DH, DH), n (B, NH, DH, 1), m (B, NH, 1, 1)
  Tensor<T, 3> conv_state;        // (B, KS, I)

  static MLSTMLayerState zeros(Index batch, Index heads, Index head_dim, Index kernel_size,
                               Index inner_dim) {
    MLSTMLayerState state{RecurrentState<T>::zeros(batch, heads, head_dim, head_dim),
                          Tensor<T, 3>(batch, kernel_size, inner_dim)};
    state.conv_state.setZero();
    return state;
  }

  void set_zero() {
    mlstm_state.set_zero();
    conv_state.setZero();
  }
};

template <typename T>
struct ModelState {
  std::vector<MLSTMLayerState<T>> blocks;  // one per block, in order

  // Back to the zero state in place, for the next prompt: no memory is allocated, where a new
  // state's is faulted in by the system on first use (for the 120M model, 28 MB per prompt).
  void set_zero() {
    for (MLSTMLayerState<T>& block : blocks) block.set_zero();
  }

  // The batch size the state is for (0 for a state without blocks).
  Index batch_size() const {
    return blocks.empty() ? 0 : blocks.front().mlstm_state.c.dimension(0);
  }
};

}  // namespace mlstm
