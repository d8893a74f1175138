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
// Every function takes a RecurrentOptions after its tensors (eps, and num_threads: 0 is the
// library default, see threading.hpp); batch-heads are spread over the threads, and a step too
// small to be worth it runs on the calling thread. The reference's zero state (c = 0, n = 0, m = 0)
// is RecurrentState<T>::zeros(...).
#pragma once

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <type_traits>

#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/math.hpp"
#include "mlstm/kernels/state.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

struct RecurrentOptions {
  double eps = 1e-6;    // added to the normalizer; finite and > 0
  int num_threads = 0;  // 0: the library default (mlstm::set_num_threads)
};

// h of a step or a sequence, and the state after it (in float when h is bfloat16).
template <typename T, typename StateT = T>
struct HiddenAndState {
  Tensor<T, 4> h;                // (B, NH, S, DV)
  RecurrentState<StateT> state;  // c (B, NH, DQK, DV), n (B, NH, DQK, 1), m (B, NH, 1, 1)
};

namespace detail {

// One step of one head, in place on (c, n, m); writes h (DV). C is read and written once, row by
// row in memory order: each row is updated (C' = forget C + key v^T) and added into h = q^T C'
// while it is in the first-level cache. (Columns 32 wide down all rows, with h's slice in
// registers, took 1.5x the time: a stream 1.5 KB strided per column block; bench/README.md.)
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
  using Row = Eigen::Array<T, Eigen::Dynamic, 1>;
  const Eigen::Map<const Row> value(v, v_dim);
  Eigen::Map<Row> readout(h, v_dim);
  readout.setZero();
  for (Index row = 0; row < qk_dim; ++row) {
    Eigen::Map<Row> memory(c + row * v_dim, v_dim);
    memory = forget * memory + (input_scaled * k[row]) * value;
    readout += q[row] * memory;
  }

  const T denominator = normalizer(q_dot_n, m_new) + eps;
  readout /= denominator;
  m = m_new;
}

// Validated inputs of one step: the sequence checks with S = 1.
template <typename Q, typename K, typename V, typename I, typename F>
SequenceInputs<ScalarOf<Q>> check_step_inputs(const Q& q, const K& k, const V& v,
                                              const I& igate_preact, const F& fgate_preact) {
  auto in = check_sequence_inputs(q, k, v, igate_preact, fgate_preact);
  if (in.shape.seq_len != 1) {
    throw ShapeError("q", "a recurrent step takes one time step: expected (B, NH, 1, DQK), got " +
                              shape_string(in.q.dimensions()));
  }
  return in;
}

// Runs the steps t = 0..S-1 of every (b, h) on a state already holding the initial values,
// writing h (B, NH, S, DV). Batch-heads are spread over up to `num_threads` threads; a call too
// small to be worth waking a worker runs on the calling thread and allocates nothing.
template <typename T>
void recurrent_steps(const SequenceInputs<T>& in, T* c, T* n, T* m, T* h, T eps, int num_threads) {
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

// A RecurrentState argument checked against the problem's shape; `names` name its parts.
template <typename T>
void check_state_argument(const RecurrentState<T>& state, const SequenceShape& s,
                          const StateNames& names) {
  check_state<T>(state.c, state.n, state.m, s, names);
}

// The step from a checked state (c, n, m) over every time step of `in`: checks the options,
// then returns h (B, NH, S, DV) and the state after the last step. `c` null: the zero state.
template <typename T>
HiddenAndState<T> recurrent_from_state(const SequenceInputs<T>& in, const T* c, const T* n,
                                       const T* m, const RecurrentOptions& options) {
  const SequenceShape& s = in.shape;
  expect_valid_eps(static_cast<T>(options.eps), "options.eps");
  const int threads = resolve_num_threads(options.num_threads, "options.num_threads");
  HiddenAndState<T> out{Tensor<T, 4>(s.batch, s.heads, s.seq_len, s.v_dim),
                        RecurrentState<T>::zeros(s.batch, s.heads, s.qk_dim, s.v_dim)};
  if (c != nullptr) {
    std::copy_n(c, out.state.c.size(), out.state.c.data());
    std::copy_n(n, out.state.n.size(), out.state.n.data());
    std::copy_n(m, out.state.m.size(), out.state.m.data());
  }
  recurrent_steps(in, out.state.c.data(), out.state.n.data(), out.state.m.data(), out.h.data(),
                  static_cast<T>(options.eps), threads);
  return out;
}

// recurrent_sequence from `initial_state`, or from the zero state when it is nullptr.
template <typename Q, typename K, typename V, typename I, typename F>
HiddenAndState<ScalarOf<Q>> recurrent_sequence_call(
    const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact,
    const RecurrentOptions& options, const RecurrentState<ScalarOf<Q>>* initial_state) {
  using T = ScalarOf<Q>;
  const auto in = check_sequence_inputs(q, k, v, igate_preact, fgate_preact);
  if (initial_state == nullptr) {
    return recurrent_from_state<T>(in, nullptr, nullptr, nullptr, options);
  }
  check_state_argument(*initial_state, in.shape, initial_state_names);
  return recurrent_from_state(in, initial_state->c.data(), initial_state->n.data(),
                              initial_state->m.data(), options);
}

}  // namespace detail

// One step in place: updates the caller's state (c, n, m) and writes h (B, NH, 1, DV).
// Allocates nothing. Inputs are validated first; on error nothing is written.
template <typename C, typename N, typename M, typename Q, typename K, typename V, typename I,
          typename F, typename H>
void recurrent_step_stabilized_inplace(C&& c, N&& n, M&& m, const Q& q, const K& k, const V& v,
                                       const I& igate_preact, const F& fgate_preact, H&& h,
                                       const RecurrentOptions& options = {}) {
  using T = ScalarOf<Q>;
  detail::require_same_scalar<Q, C, N, M, H>();
  const auto in = detail::check_step_inputs(q, k, v, igate_preact, fgate_preact);
  auto c_view = detail::mutable_view<4>(c, "c", "(B, NH, DQK, DV)");
  auto n_view = detail::mutable_view<4>(n, "n", "(B, NH, DQK, 1)");
  auto m_view = detail::mutable_view<4>(m, "m", "(B, NH, 1, 1)");
  auto h_view = detail::mutable_view<4>(h, "h", "(B, NH, 1, DV)");
  const detail::SequenceShape& s = in.shape;
  detail::check_state<T>(c_view, n_view, m_view, s, detail::step_state_names);
  detail::expect_shape<T, 4>(h_view, {s.batch, s.heads, 1, s.v_dim}, "h", "(B, NH, 1, DV)");
  detail::expect_valid_eps(static_cast<T>(options.eps), "options.eps");
  detail::recurrent_steps(in, c_view.data(), n_view.data(), m_view.data(), h_view.data(),
                          static_cast<T>(options.eps),
                          detail::resolve_num_threads(options.num_threads, "options.num_threads"));
}

// In-place step on a RecurrentState.
template <typename T, typename Q, typename K, typename V, typename I, typename F, typename H>
void recurrent_step_stabilized_inplace(RecurrentState<T>& state, const Q& q, const K& k, const V& v,
                                       const I& igate_preact, const F& fgate_preact, H&& h,
                                       const RecurrentOptions& options = {}) {
  recurrent_step_stabilized_inplace(state.c, state.n, state.m, q, k, v, igate_preact, fgate_preact,
                                    h, options);
}

// One step, as the reference's recurrent_step_stabilized_simple: returns h (B, NH, 1, DV) and
// the new state; the given state is not modified.
template <typename C, typename N, typename M, typename Q, typename K, typename V, typename I,
          typename F>
HiddenAndState<ScalarOf<Q>> recurrent_step_stabilized(const C& c, const N& n, const M& m,
                                                      const Q& q, const K& k, const V& v,
                                                      const I& igate_preact, const F& fgate_preact,
                                                      const RecurrentOptions& options = {}) {
  using T = ScalarOf<Q>;
  detail::require_same_scalar<Q, C, N, M>();
  const auto in = detail::check_step_inputs(q, k, v, igate_preact, fgate_preact);
  const auto c_view = detail::const_view<4>(c, "c", "(B, NH, DQK, DV)");
  const auto n_view = detail::const_view<4>(n, "n", "(B, NH, DQK, 1)");
  const auto m_view = detail::const_view<4>(m, "m", "(B, NH, 1, 1)");
  detail::check_state<T>(c_view, n_view, m_view, in.shape, detail::step_state_names);
  return detail::recurrent_from_state(in, c_view.data(), n_view.data(), m_view.data(), options);
}

// The step for the same arguments with the state as a RecurrentState.
template <typename T, typename Q, typename K, typename V, typename I, typename F>
HiddenAndState<T> recurrent_step_stabilized(const RecurrentState<T>& state, const Q& q, const K& k,
                                            const V& v, const I& igate_preact,
                                            const F& fgate_preact,
                                            const RecurrentOptions& options = {}) {
  return recurrent_step_stabilized(state.c, state.n, state.m, q, k, v, igate_preact, fgate_preact,
                                   options);
}

// The recurrent form over a whole sequence from the zero state: runs the step for t = 0..S-1
// (q, k (B, NH, S, DQK), v (B, NH, S, DV), gates (B, NH, S, 1)); returns h (B, NH, S, DV) and the
// final state. Any S works: there is no context length in the recurrent form.
template <typename Q, typename K, typename V, typename I, typename F>
HiddenAndState<ScalarOf<Q>> recurrent_sequence(const Q& q, const K& k, const V& v,
                                               const I& igate_preact, const F& fgate_preact,
                                               const RecurrentOptions& options = {}) {
  return detail::recurrent_sequence_call(q, k, v, igate_preact, fgate_preact, options, nullptr);
}

// The same from `initial_state` (c (B, NH, DQK, DV), n (B, NH, DQK, 1), m (B, NH, 1, 1)).
template <typename Q, typename K, typename V, typename I, typename F>
HiddenAndState<ScalarOf<Q>> recurrent_sequence(const Q& q, const K& k, const V& v,
                                               const I& igate_preact, const F& fgate_preact,
                                               const RecurrentOptions& options,
                                               const RecurrentState<ScalarOf<Q>>& initial_state) {
  return detail::recurrent_sequence_call(q, k, v, igate_preact, fgate_preact, options,
                                         &initial_state);
}

// With an optional initial state: nullopt means the zero state.
template <typename Q, typename K, typename V, typename I, typename F>
HiddenAndState<ScalarOf<Q>> recurrent_sequence(
    const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact,
    const RecurrentOptions& options,
    const std::optional<RecurrentState<ScalarOf<Q>>>& initial_state) {
  return detail::recurrent_sequence_call(q, k, v, igate_preact, fgate_preact, options,
                                         initial_state ? &*initial_state : nullptr);
}

}  // namespace mlstm
