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

// Gradients of the given problem's shape, to be written by a backward pass.
template <typename T>
SequenceGradients<T> sequence_gradients(const SequenceShape& s) {
  return {Tensor<T, 4>(s.batch, s.heads, s.seq_len, s.qk_dim),
          Tensor<T, 4>(s.batch, s.heads, s.seq_len, s.qk_dim),
          Tensor<T, 4>(s.batch, s.heads, s.seq_len, s.v_dim),
          Tensor<T, 4>(s.batch, s.heads, s.seq_len, 1),
          Tensor<T, 4>(s.batch, s.heads, s.seq_len, 1)};
}

}  // namespace detail
}  // namespace mlstm
