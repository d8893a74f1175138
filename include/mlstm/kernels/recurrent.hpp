// The mLSTM cell in recurrent form: one step, an in-place step, and a whole sequence of steps.
//
// Per (batch b, head h), with state (C in R^{DQK x DV}, n in R^DQK, scalar m):
//
//   m'  = max(logsigmoid(f) + m, i)
//   fa  = exp(logsigmoid(f) + m - m'),   ia = exp(i - m')
//   C'  = fa C + ia (k / sqrt(DQK)) v^T
//   n'  = fa n + ia  k / sqrt(DQK)
//   h   = (q^T C') / (max(|q . n'|, exp(-m')) + eps)
//
// Shapes: c (B, NH, DQK, DV), n (B, NH, DQK, 1), m (B, NH, 1, 1); per step q, k (B, NH, 1, DQK),
// v (B, NH, 1, DV), igate_preact, fgate_preact (B, NH, 1, 1); h (B, NH, 1, DV).
// Every function takes num_threads last (0: the library default, see threading.hpp); batch-heads
// are spread over the threads, and a step too small to be worth it runs on the calling thread.
// The reference's zero state (c = 0, n = 0, m = 0) is RecurrentState<T>::zeros(...).
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/math.hpp"
#include "mlstm/kernels/state.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

// h of a step or a sequence, and the state after it (in float when h is bfloat16).
template <typename T, typename StateT = T>
struct HiddenAndState {
  Tensor<T, 4> h;                // (B, NH, S, DV)
  RecurrentState<StateT> state;  // c (B, NH, DQK, DV), n (B, NH, DQK, 1), m (B, NH, 1, 1)
};

namespace detail {

// Columns [col, col + Width) of one step: C' = forget C + key v^T on those columns, row by row,
// and h = q^T C' on them. The block's slice of v and its accumulator of h stay in registers
// while the rows stream by, so C is read and written once and nothing else touches memory.
template <int Width, typename T>
inline void step_column_block(T* c, const T* q, const T* k, const T* v, T forget,
                              T input_scaled, Index qk_dim, Index v_dim, Index col, T* h) {
  using Block = Eigen::Array<T, Width, 1>;
  const Block value = Eigen::Map<const Block>(v + col);
  Block acc = Block::Zero();
  for (Index row = 0; row < qk_dim; ++row) {
    Eigen::Map<Block> memory(c + row * v_dim + col);
    const Block updated = forget * memory + (input_scaled * k[row]) * value;
    memory = updated;
    acc += q[row] * updated;
  }
  Eigen::Map<Block>(h + col) = acc;
}

// One step of one head, in place on (c, n, m); writes h (DV). The rank-1 update of C and the
// readout q^T C' are fused (step_column_block), so C is read once per step.
template <typename T>
inline void recurrent_step_head(T* c, T* n, T& m, const T* q, const T* k, const T* v, T igate,
                                T fgate, T* h, Index qk_dim, Index v_dim, T eps) {
  const T log_fgate = log_sigmoid(fgate);
  const T m_new = std::max(log_fgate + m, igate);
  const T forget = std::exp(log_fgate + m - m_new);
  const T input_scaled = std::exp(igate - m_new) / std::sqrt(static_cast<T>(qk_dim));

  T q_dot_n = 0;
  for (Index row = 0; row < qk_dim; ++row) {
    n[row] = forget * n[row] + input_scaled * k[row];
    q_dot_n += q[row] * n[row];
  }
  constexpr int wide = 32, narrow = 8;
  Index col = 0;
  for (; col + wide <= v_dim; col += wide)
    step_column_block<wide>(c, q, k, v, forget, input_scaled, qk_dim, v_dim, col, h);
  for (; col + narrow <= v_dim; col += narrow)
    step_column_block<narrow>(c, q, k, v, forget, input_scaled, qk_dim, v_dim, col, h);
  for (; col < v_dim; ++col)
    step_column_block<1>(c, q, k, v, forget, input_scaled, qk_dim, v_dim, col, h);

  const T denominator = normalizer(q_dot_n, m_new) + eps;
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(h, v_dim) /= denominator;
  m = m_new;
}

// Validated inputs of one step: the sequence checks with S = 1.
template <typename Q, typename K, typename V, typename I, typename F>
SequenceInputs<scalar_of<Q>> check_step_inputs(const Q& q, const K& k, const V& v,
                                               const I& igate_preact, const F& fgate_preact) {
  auto in = check_sequence_inputs(q, k, v, igate_preact, fgate_preact);
  if (in.shape.seq_len != 1) {
    throw ShapeError("q", "a recurrent step takes one time step: expected (B, NH, 1, DQK), got " +
                              shape_string(in.q.dimensions(), 4));
  }
  return in;
}

// Runs the steps t = 0..S-1 of every (b, h) on a state already holding the initial values,
// writing h (B, NH, S, DV). Batch-heads are spread over up to `num_threads` threads; a call too
// small to be worth waking a worker runs on the calling thread and allocates nothing.
template <typename T>
void recurrent_steps(const SequenceInputs<T>& in, T* c, T* n, T* m, T* h, T eps,
                     int num_threads) {
  const SequenceShape& s = in.shape;
  const Index heads = s.batch * s.heads;
  const double flops = 4.0 * static_cast<double>(heads * s.seq_len * s.qk_dim * s.v_dim);
  parallel_for(heads, threads_for_work(num_threads, heads, flops), [&](Index head) {
    T* c_head = c + head * s.qk_dim * s.v_dim;
    T* n_head = n + head * s.qk_dim;
    for (Index t = 0; t < s.seq_len; ++t) {
      const Index row = head * s.seq_len + t;
      recurrent_step_head(c_head, n_head, m[head], in.q.data() + row * s.qk_dim,
                          in.k.data() + row * s.qk_dim, in.v.data() + row * s.v_dim,
                          in.igate_preact.data()[row], in.fgate_preact.data()[row],
                          h + row * s.v_dim, s.qk_dim, s.v_dim, eps);
    }
  });
}

template <typename T>
RecurrentState<T> copy_state(const ConstTensorMap<T, 4>& c, const ConstTensorMap<T, 4>& n,
                             const ConstTensorMap<T, 4>& m) {
  return RecurrentState<T>{Tensor<T, 4>(c), Tensor<T, 4>(n), Tensor<T, 4>(m)};
}

}  // namespace detail

// One step in place: updates the caller's state (c, n, m) and writes h (B, NH, 1, DV).
// Allocates nothing. Inputs are validated first; on error nothing is written.
// (Enabled for tensor arguments only, so that a call on a RecurrentState with eps and
// num_threads picks the overload below.)
template <typename C, typename N, typename M, typename Q, typename K, typename V, typename I,
          typename F, typename H,
          typename = std::enable_if_t<detail::traits_of<C>::is_tensor &&
                                      detail::traits_of<H>::is_tensor>>
void recurrent_step_stabilized_inplace(C&& c, N&& n, M&& m, const Q& q, const K& k, const V& v,
                                       const I& igate_preact, const F& fgate_preact, H&& h,
                                       double eps = 1e-6, int num_threads = 0) {
  using T = detail::scalar_of<Q>;
  detail::require_same_scalar<Q, C, N, M, H>();
  const auto in = detail::check_step_inputs(q, k, v, igate_preact, fgate_preact);
  auto c_view = detail::mutable_view<4>(c, "c", "(B, NH, DQK, DV)");
  auto n_view = detail::mutable_view<4>(n, "n", "(B, NH, DQK, 1)");
  auto m_view = detail::mutable_view<4>(m, "m", "(B, NH, 1, 1)");
  auto h_view = detail::mutable_view<4>(h, "h", "(B, NH, 1, DV)");
  const detail::SequenceShape& s = in.shape;
  detail::check_state<T>(c_view, n_view, m_view, s, detail::step_state_names);
  detail::expect_shape<T, 4>(h_view, {s.batch, s.heads, 1, s.v_dim}, "h", "(B, NH, 1, DV)");
  detail::expect_valid_eps(static_cast<T>(eps));
  detail::recurrent_steps(in, c_view.data(), n_view.data(), m_view.data(), h_view.data(),
                          static_cast<T>(eps),
                          detail::resolve_num_threads(num_threads, "num_threads"));
}

// In-place step on a RecurrentState.
template <typename T, typename Q, typename K, typename V, typename I, typename F, typename H>
void recurrent_step_stabilized_inplace(RecurrentState<T>& state, const Q& q, const K& k,
                                       const V& v, const I& igate_preact, const F& fgate_preact,
                                       H&& h, double eps = 1e-6, int num_threads = 0) {
  recurrent_step_stabilized_inplace(state.c, state.n, state.m, q, k, v, igate_preact,
                                    fgate_preact, h, eps, num_threads);
}

// One step, as the reference's recurrent_step_stabilized_simple: returns h (B, NH, 1, DV) and
// the new state; the given state is not modified.
template <typename C, typename N, typename M, typename Q, typename K, typename V, typename I,
          typename F>
HiddenAndState<detail::scalar_of<Q>> recurrent_step_stabilized(
    const C& c, const N& n, const M& m, const Q& q, const K& k, const V& v, const I& igate_preact,
    const F& fgate_preact, double eps = 1e-6, int num_threads = 0) {
  using T = detail::scalar_of<Q>;
  detail::require_same_scalar<Q, C, N, M>();
  const auto in = detail::check_step_inputs(q, k, v, igate_preact, fgate_preact);
  const auto c_view = detail::const_view<4>(c, "c", "(B, NH, DQK, DV)");
  const auto n_view = detail::const_view<4>(n, "n", "(B, NH, DQK, 1)");
  const auto m_view = detail::const_view<4>(m, "m", "(B, NH, 1, 1)");
  detail::check_state<T>(c_view, n_view, m_view, in.shape, detail::step_state_names);
  detail::expect_valid_eps(static_cast<T>(eps));
  HiddenAndState<T> out{Tensor<T, 4>(in.shape.batch, in.shape.heads, 1, in.shape.v_dim),
                        detail::copy_state<T>(c_view, n_view, m_view)};
  detail::recurrent_steps(in, out.state.c.data(), out.state.n.data(), out.state.m.data(),
                          out.h.data(), static_cast<T>(eps),
                          detail::resolve_num_threads(num_threads, "num_threads"));
  return out;
}

// The recurrent form over a whole sequence: runs the step for t = 0..S-1 from `initial_state`
// (q, k (B, NH, S, DQK), v (B, NH, S, DV), gates (B, NH, S, 1)); returns h (B, NH, S, DV) and the
// final state. Any S works: there is no context length in the recurrent form.
template <typename Q, typename K, typename V, typename I, typename F>
HiddenAndState<detail::scalar_of<Q>> recurrent_sequence(
    const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact,
    const RecurrentState<detail::scalar_of<Q>>& initial_state, double eps = 1e-6,
    int num_threads = 0) {
  using T = detail::scalar_of<Q>;
  const auto in = detail::check_sequence_inputs(q, k, v, igate_preact, fgate_preact);
  const ConstTensorMap<T, 4> c_view(initial_state.c.data(), initial_state.c.dimensions());
  const ConstTensorMap<T, 4> n_view(initial_state.n.data(), initial_state.n.dimensions());
  const ConstTensorMap<T, 4> m_view(initial_state.m.data(), initial_state.m.dimensions());
  detail::check_state<T>(c_view, n_view, m_view, in.shape, detail::initial_state_names);
  detail::expect_valid_eps(static_cast<T>(eps));
  const detail::SequenceShape& s = in.shape;
  HiddenAndState<T> out{Tensor<T, 4>(s.batch, s.heads, s.seq_len, s.v_dim),
                        detail::copy_state<T>(c_view, n_view, m_view)};
  detail::recurrent_steps(in, out.state.c.data(), out.state.n.data(), out.state.m.data(),
                          out.h.data(), static_cast<T>(eps),
                          detail::resolve_num_threads(num_threads, "num_threads"));
  return out;
}

// The recurrent form over a whole sequence from the zero state.
template <typename Q, typename K, typename V, typename I, typename F>
HiddenAndState<detail::scalar_of<Q>> recurrent_sequence(const Q& q, const K& k, const V& v,
                                                        const I& igate_preact,
                                                        const F& fgate_preact, double eps = 1e-6,
                                                        int num_threads = 0) {
  using T = detail::scalar_of<Q>;
  const auto in = detail::check_sequence_inputs(q, k, v, igate_preact, fgate_preact);
  const auto zero = RecurrentState<T>::zeros(in.shape.batch, in.shape.heads, in.shape.qk_dim,
                                             in.shape.v_dim);
  return recurrent_sequence(q, k, v, igate_preact, fgate_preact, zero, eps, num_threads);
}

}  // namespace mlstm
