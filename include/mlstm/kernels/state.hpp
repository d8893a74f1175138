// The recurrent state of the mLSTM cell, per (batch, head):
//   c (B, NH, DQK, DV)  matrix memory        n (B, NH, DQK, 1)  normalizer
//   m (B, NH, 1, 1)     log-space stabilizer
// The stored c and n are scaled by exp(-m): the unstabilized memory is c * exp(m), n * exp(m).
// Two states from different forms are compared unstabilized.
#pragma once

#include "mlstm/tensor.hpp"

namespace mlstm {

template <typename T>
struct RecurrentState {
  Tensor<T, 4> c;
  Tensor<T, 4> n;
  Tensor<T, 4> m;

  // The zero state of the reference (c = 0, n = 0, m = 0) for the given sizes.
  static RecurrentState zeros(Index batch, Index heads, Index qk_dim, Index v_dim) {
    RecurrentState state{Tensor<T, 4>(batch, heads, qk_dim, v_dim),
                         Tensor<T, 4>(batch, heads, qk_dim, 1), Tensor<T, 4>(batch, heads, 1, 1)};
    state.set_zero();
    return state;
  }

  // Back to the zero state in place, keeping the shapes and the memory.
  void set_zero() {
    c.setZero();
    n.setZero();
    m.setZero();
  }
};

}  // namespace mlstm
