// The backward of one recurrent step: what truncated backpropagation through time is built from.
//
//   // forward, keeping the state before every step
//   states[t] = state;  auto out = mlstm::recurrent_step_stabilized(state.c, state.n, state.m,
//                                                                    q_t, k_t, v_t, i_t, f_t);
//   // backward, from the last step to the first
//   auto g = mlstm::recurrent_step_stabilized_backward(states[t], q_t, k_t, v_t, i_t, f_t,
//                                                      dh_t, dstate);
//   dstate = std::move(g.dstate);   // the gradient of the state before step t
//
// Forward of the step, per (b, h) (recurrent.hpp), with the old state (C, n, m):
//
//   a   = logsigmoid(f) + m,     m' = max(a, i)
//   fa  = exp(a - m'),           ia = exp(i - m'),      k~ = k / sqrt(DQK)
//   C'  = fa C + ia k~ v^T,      n' = fa n + ia k~
//   num = C'^T q,                qn = q . n'
//   den = max(|qn|, exp(-m')) + eps,     h = num / den
//
// Backward, given dh and the gradients (dC', dn', dm') of the new state (zero when the new state
// is not used further), the exact derivative as autograd of the reference step computes it:
//
//   dden = -(dh . h) / den
//   dqn  = dden [|qn| branch] sign(qn),    dm' += -exp(-m') dden [exp(-m') branch]
//   dC'  += q (dh / den)^T,                dn' += q dqn
//   dq   = C' dh / den + n' dqn
//   dC   = fa dC',   dn = fa dn'
//   dfa  = <dC', C> + dn' . n,             dia = k~ . (dC' v + dn')
//   dk   = ia (dC' v + dn') / sqrt(DQK),   dv = ia dC'^T k~
//   da   = fa dfa,   di = ia dia,          dm' -= fa dfa + ia dia
//   m' = max(a, i):  da += dm' [a branch],  di += dm' [i branch]     (half each at a == i)
//   dm   = da,       df = da logsigmoid'(f)
//
// The step caches nothing: its backward recomputes C', n' from the old state, O(DQK * DV) per
// head like the step itself. Ties follow autograd (detail/subgradients.hpp).
#pragma once

#include <cmath>
#include <vector>

#include <Eigen/Core>

#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/math.hpp"
#include "mlstm/detail/subgradients.hpp"
#include "mlstm/kernels/gradients.hpp"
#include "mlstm/kernels/recurrent.hpp"
#include "mlstm/kernels/state.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

// dq, dk (B, NH, 1, DQK), dv (B, NH, 1, DV), di, df (B, NH, 1, 1), and the gradients of the
// state before the step.
template <typename T>
struct RecurrentStepGradients : SequenceGradients<T> {
  RecurrentState<T> dstate;  // c, n, m
};

namespace detail {

inline constexpr StateNames new_state_gradient_names{"dc_new", "dn_new", "dm_new"};

// Pointers of one head's step: inputs, the gradients flowing in, the gradients flowing out.
template <typename T>
struct StepHeadBackward {
  const T *c, *n, *q, *k, *v, *dh, *dc_new, *dn_new;
  T m, igate, fgate, dm_new;
  T *dc, *dn, *dm, *dq, *dk, *dv, *di, *df;
};

template <typename T>
void recurrent_step_backward_head(const StepHeadBackward<T>& p, Index qk_dim, Index v_dim, T eps) {
  using Vector = Eigen::Array<T, Eigen::Dynamic, 1>;
  using ConstRow = Eigen::Map<const Vector>;
  using Row = Eigen::Map<Vector>;
  const T scale = T(1) / std::sqrt(static_cast<T>(qk_dim));
  const T log_fgate = log_sigmoid(p.fgate);
  const T a = log_fgate + p.m;
  const T m_new = std::max(a, p.igate);
  const T forget = std::exp(a - m_new);
  const T input = std::exp(p.igate - m_new);
  const ConstRow value(p.v, v_dim), d_hidden(p.dh, v_dim);

  // Recompute q . n' and num = C'^T q.
  Vector numerator = Vector::Zero(v_dim), memory_row(v_dim);
  T q_dot_n = 0;
  for (Index j = 0; j < qk_dim; ++j) {
    q_dot_n += p.q[j] * (forget * p.n[j] + input * scale * p.k[j]);
    memory_row = forget * ConstRow(p.c + j * v_dim, v_dim) + (input * scale * p.k[j]) * value;
    numerator += p.q[j] * memory_row;
  }
  const T inv_den = T(1) / (normalizer(q_dot_n, m_new) + eps);
  const Vector d_numerator = d_hidden * inv_den;
  const T d_den = -(d_hidden * numerator).sum() * inv_den * inv_den;
  const NormalizerGradient<T> norm = normalizer_backward(q_dot_n, m_new, d_den);
  const T d_q_dot_n = norm.d_sum;
  T d_m_new = p.dm_new + norm.d_stabilizer;

  Row d_value(p.dv, v_dim);
  d_value.setZero();
  Vector d_memory_row(v_dim);
  T d_forget = 0, d_input = 0;
  for (Index j = 0; j < qk_dim; ++j) {
    const ConstRow memory(p.c + j * v_dim, v_dim);
    const T key = scale * p.k[j];
    memory_row = forget * memory + (input * key) * value;                         // C'[j, :]
    d_memory_row = ConstRow(p.dc_new + j * v_dim, v_dim) + p.q[j] * d_numerator;  // dC'[j, :]
    const T d_n_row = p.dn_new[j] + p.q[j] * d_q_dot_n;                           // dn'[j]
    p.dq[j] = (memory_row * d_numerator).sum() + (forget * p.n[j] + input * key) * d_q_dot_n;
    Row(p.dc + j * v_dim, v_dim) = forget * d_memory_row;
    p.dn[j] = forget * d_n_row;
    d_forget += (d_memory_row * memory).sum() + d_n_row * p.n[j];
    const T d_key = (d_memory_row * value).sum() + d_n_row;  // (dC' v + dn')[j]
    d_input += key * d_key;
    p.dk[j] = input * d_key * scale;
    d_value += (input * key) * d_memory_row;
  }
  const T d_a_direct = forget * d_forget;
  const T d_igate_direct = input * d_input;
  d_m_new -= d_a_direct + d_igate_direct;
  const T a_share = max_share_of_first(a, p.igate);
  const T d_a = d_a_direct + d_m_new * a_share;
  *p.di = d_igate_direct + d_m_new * (T(1) - a_share);
  *p.dm = d_a;
  *p.df = d_a * log_sigmoid_derivative(p.fgate);
}

}  // namespace detail

// The gradients of the step's loss with respect to its inputs and its old state, given dh
// (B, NH, 1, DV) and the gradients of the new state dc_new (B, NH, DQK, DV), dn_new
// (B, NH, DQK, 1), dm_new (B, NH, 1, 1). Arguments as recurrent_step_stabilized.
template <typename C, typename N, typename M, typename Q, typename K, typename V, typename I,
          typename F, typename DH, typename DC, typename DN, typename DM>
RecurrentStepGradients<ScalarOf<Q>> recurrent_step_stabilized_backward(
    const C& c, const N& n, const M& m, const Q& q, const K& k, const V& v, const I& igate_preact,
    const F& fgate_preact, const DH& dh, const DC& dc_new, const DN& dn_new, const DM& dm_new,
    const RecurrentOptions& options = {}) {
  using T = ScalarOf<Q>;
  detail::require_same_scalar<Q, C, N, M, DH, DC, DN, DM>();
  const auto in = detail::check_step_inputs(q, k, v, igate_preact, fgate_preact);
  const detail::SequenceShape& s = in.shape;
  const auto c_view = detail::const_view<4>(c, "c", "(B, NH, DQK, DV)");
  const auto n_view = detail::const_view<4>(n, "n", "(B, NH, DQK, 1)");
  const auto m_view = detail::const_view<4>(m, "m", "(B, NH, 1, 1)");
  detail::check_state<T>(c_view, n_view, m_view, s, detail::step_state_names);
  const auto dh_view = detail::const_view<4>(dh, "dh", "(B, NH, 1, DV)");
  detail::expect_shape<T, 4>(dh_view, {s.batch, s.heads, 1, s.v_dim}, "dh", "(B, NH, 1, DV)");
  const auto dc_view = detail::const_view<4>(dc_new, "dc_new", "(B, NH, DQK, DV)");
  const auto dn_view = detail::const_view<4>(dn_new, "dn_new", "(B, NH, DQK, 1)");
  const auto dm_view = detail::const_view<4>(dm_new, "dm_new", "(B, NH, 1, 1)");
  detail::check_state<T>(dc_view, dn_view, dm_view, s, detail::new_state_gradient_names);
  detail::expect_valid_eps(static_cast<T>(options.eps), "options.eps");
  const int threads = detail::resolve_num_threads(options.num_threads, "options.num_threads");

  RecurrentStepGradients<T> g{detail::sequence_gradients<T>(s),
                              RecurrentState<T>::zeros(s.batch, s.heads, s.qk_dim, s.v_dim)};
  const Index matrix = s.qk_dim * s.v_dim;
  const Index heads = s.batch * s.heads;
  const double flops = 12.0 * static_cast<double>(heads * matrix);
  detail::parallel_for(heads, detail::threads_for_work(threads, heads, flops), [&](Index head) {
    const detail::StepHeadBackward<T> p{c_view.data() + head * matrix,
                                        n_view.data() + head * s.qk_dim,
                                        in.q.data() + head * s.qk_dim,
                                        in.k.data() + head * s.qk_dim,
                                        in.v.data() + head * s.v_dim,
                                        dh_view.data() + head * s.v_dim,
                                        dc_view.data() + head * matrix,
                                        dn_view.data() + head * s.qk_dim,
                                        m_view.data()[head],
                                        in.igate_preact.data()[head],
                                        in.fgate_preact.data()[head],
                                        dm_view.data()[head],
                                        g.dstate.c.data() + head * matrix,
                                        g.dstate.n.data() + head * s.qk_dim,
                                        g.dstate.m.data() + head,
                                        g.dq.data() + head * s.qk_dim,
                                        g.dk.data() + head * s.qk_dim,
                                        g.dv.data() + head * s.v_dim,
                                        g.di.data() + head,
                                        g.df.data() + head};
    detail::recurrent_step_backward_head(p, s.qk_dim, s.v_dim, static_cast<T>(options.eps));
  });
  return g;
}

// The same with the old state and the new state's gradients as RecurrentState.
template <typename T, typename Q, typename K, typename V, typename I, typename F, typename DH>
RecurrentStepGradients<T> recurrent_step_stabilized_backward(const RecurrentState<T>& state,
                                                             const Q& q, const K& k, const V& v,
                                                             const I& igate_preact,
                                                             const F& fgate_preact, const DH& dh,
                                                             const RecurrentState<T>& dstate_new,
                                                             const RecurrentOptions& options = {}) {
  return recurrent_step_stabilized_backward(state.c, state.n, state.m, q, k, v, igate_preact,
                                            fgate_preact, dh, dstate_new.c, dstate_new.n,
                                            dstate_new.m, options);
}

}  // namespace mlstm
