// The gradients a backward pass returns for the five inputs of a kernel.
#pragma once

#include "mlstm/detail/checks.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

template <typename T>
struct SequenceGradients {
  Tensor<T, 4> dq;  // (B, NH, S, DQK)
  Tensor<T, 4> dk;  // (B, NH, S, DQK)
  Tensor<T, 4> dv;  // (B, NH, S, DV)
  Tensor<T, 4> di;  // (B, NH, S, 1)
  Tensor<T, 4> df;  // (B, NH, S, 1)
};

namespace detail {

// Resizes `grads` to the given problem's shape, to be written by a backward pass (a no-op for
// gradients already of that shape, as a training loop passes them again).
template <typename T>
void resize_sequence_gradients(const SequenceShape& s, SequenceGradients<T>& grads) {
  grads.dq.resize(s.batch, s.heads, s.seq_len, s.qk_dim);
  grads.dk.resize(s.batch, s.heads, s.seq_len, s.qk_dim);
  grads.dv.resize(s.batch, s.heads, s.seq_len, s.v_dim);
  grads.di.resize(s.batch, s.heads, s.seq_len, 1);
  grads.df.resize(s.batch, s.heads, s.seq_len, 1);
}

// Gradients of the given problem's shape, to be written by a backward pass.
template <typename T>
SequenceGradients<T> sequence_gradients(const SequenceShape& s) {
  SequenceGradients<T> grads;
  resize_sequence_gradients(s, grads);
  return grads;
}

}  // namespace detail
}  // namespace mlstm
