// The backward of the chunkwise form: exact gradients at memory linear in S, with the gradients
// of an initial state and a gradient for the final state, so that a long sequence can be trained
// in segments.
//
//   auto g = mlstm::chunkwise_stabilized_backward(q, k, v, i, f, dh, options);
//   // g.dq, g.dk (B, NH, S, DQK), g.dv (B, NH, S, DV), g.di, g.df (B, NH, S, 1)
//
//   // segments: forward A from the zero state, then B from A's final state
//   auto a = mlstm::chunkwise_stabilized(qA, kA, vA, iA, fA, options);
//   auto b = mlstm::chunkwise_stabilized(qB, kB, vB, iB, fB, options, a.state);
//   auto gb = mlstm::chunkwise_stabilized_backward(qB, kB, vB, iB, fB, dhB, options, a.state);
//   auto ga = mlstm::chunkwise_stabilized_backward(qA, kA, vA, iA, fA, dhA, options,
//                                                  std::nullopt, *gb.dinitial_state);
//   // ga and gb are the gradients of the whole sequence processed at once.
//
// The function differentiated is chunkwise_stabilized's (chunkwise.hpp), per chunk of L steps
// with local cum_t = sum_{r<=t} logsigmoid(f_r), total = cum_{L-1}, and the state (C, n, m) at
// the chunk's start. Writing g_s = i_s - cum_s and M_t = max(m, max_{s<=t} g_s):
//
//   m_t   = cum_t + M_t                                  (the recurrent form's stabilizer)
//   W[t,s]= (q_t . k_s / sqrt(DQK)) exp(g_s - M_t)       (s <= t)
//   w_t   = exp(m - M_t)                                 (weight of the carried state)
//   acc_t = sum_s W[t,s] v_s + w_t C^T q_t,   den_t = sum_s W[t,s] + w_t q_t . n
//   h_t   = acc_t / (max(|den_t|, exp(-m_t)) + eps)
//   m'    = total + M_{L-1},   gamma = exp(m - M_{L-1}),   beta_s = exp(g_s - M_{L-1})
//   C'    = gamma C + sum_s beta_s (k_s / sqrt(DQK)) v_s^T,   n' likewise with k_s / sqrt(DQK)
//
// Backward of a chunk, given dh_t and the gradient (dC', dn', dm') of the state at its end:
//
//   dacc_t = dh_t / den~_t (den~ = normalizer + eps),  dnorm_t = -(dh_t . h_t) / den~_t
//   dden_t, dm_t      from the normalizer's branches (detail/subgradients.hpp)
//   dW[t,s] = dacc_t . v_s + dden_t   ->  dv, dq, dk through W;  dlogW = dW W
//   dq_t  += w_t (C dacc_t + dden_t n),   dC += sum_t w_t q_t dacc_t^T,  dn += sum_t w_t dden_t q_t
//   dlogw_t = w_t (q_t . C dacc_t + dden_t q_t . n)
//   state: dC += gamma dC', dn += gamma dn', dk, dv through beta_s k_s v_s^T,
//          dloggamma = gamma (<dC', C> + dn' . n),  dlogbeta_s = beta_s (k~_s^T dC' v_s + k~_s . dn')
//   dM_t  = dm_t - sum_s dlogW[t,s] - dlogw_t  (+ dm' - dloggamma - sum_s dlogbeta_s at t = L-1)
//   dm    = sum_t dlogw_t + dloggamma + sum_t dM_t [m branch of M_t]
//   dg_s  = sum_t dlogW[t,s] + dlogbeta_s + dM_t [g branch] at the first s attaining the max
//   di_s  = dg_s;  dcum_t = dm_t - dg_t (+ dm' at t = L-1);  df_r = logsigmoid'(f_r) sum_{t>=r} dcum_t
//
// and (dC, dn, dm) is the gradient of the state at the chunk's start, handed to the chunk
// before. Ties: the two-way max M_t = max(m, P_t) splits half and half (torch.maximum), the
// prefix max P_t = max_{s<=t} g_s gives all to its first index (torch.max).
//
// Memory: the forward pass over the states is recomputed and the state at every chunk start
// kept, (S / L + 1) (DQK DV + DQK) values per head being processed, plus one chunk's work
// (L x L and L x D); nothing is O(S^2). With L around D that is O(S D). Heads are processed in
// parallel, each by one thread in a fixed order (chunks in reverse), so results do not depend on
// the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include <Eigen/Core>

#include "mlstm/chunkwise.hpp"
#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/math.hpp"
#include "mlstm/detail/subgradients.hpp"
#include "mlstm/state.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

template <typename T>
struct ChunkwiseGradients {
  Tensor<T, 4> dq;  // (B, NH, S, DQK)
  Tensor<T, 4> dk;  // (B, NH, S, DQK)
  Tensor<T, 4> dv;  // (B, NH, S, DV)
  Tensor<T, 4> di;  // (B, NH, S, 1)
  Tensor<T, 4> df;  // (B, NH, S, 1)
  // The gradient of the initial state (c, n, m), when one was given.
  std::optional<RecurrentState<T>> dinitial_state;
};

namespace detail {

// One head's slices and the gradients it writes, all row-major.
template <typename T>
struct ChunkwiseHeadBackward {
  const T *q, *k, *v, *igate, *fgate, *dh;  // (S, DQK) (S, DQK) (S, DV) (S) (S) (S, DV)
  const T *initial_c, *initial_n, *initial_m;  // nullptr: the zero state
  const T *dfinal_c, *dfinal_n, *dfinal_m;     // nullptr: no gradient for the final state
  T *dq, *dk, *dv, *di, *df;
  T *dinitial_c, *dinitial_n, *dinitial_m;  // nullptr: not wanted
};

// The stabilizers of one chunk's rows, from its gates and the carried stabilizer m, as
// chunk_outputs (chunkwise.hpp) computes them; all in double.
struct ChunkStabilizers {
  std::vector<double> g;              // g_s = i_s - cum_s (the column part of the decay exponent)
  std::vector<double> prefix_max;     // P_t = max_{s<=t} g_s
  std::vector<Index> prefix_argmax;   // the first s attaining P_t
  std::vector<double> big_m;          // M_t = max(m, P_t)
  std::vector<double> stabilizer;     // m_t = cum_t + M_t
  std::vector<double> row_log;        // cum_t - m_t: the decay exponent is row_log[t] + g_s
  Eigen::Matrix<double, Eigen::Dynamic, 1> state_weight;  // w_t = exp(cum_t + m - m_t)

  ChunkStabilizers(const ChunkGates& gates, double m) {
    const Index L = gates.length();
    const auto size = static_cast<size_t>(L);
    g.resize(size);
    prefix_max.resize(size);
    prefix_argmax.resize(size);
    big_m.resize(size);
    stabilizer.resize(size);
    row_log.resize(size);
    state_weight.resize(L);
    for (Index t = 0; t < L; ++t) {
      g[t] = gates.igate[t] - gates.cum[t];
      const bool new_max = t == 0 || g[t] > prefix_max[t - 1];
      prefix_max[t] = new_max ? g[t] : prefix_max[t - 1];
      prefix_argmax[t] = new_max ? t : prefix_argmax[t - 1];
      big_m[t] = std::max(m, prefix_max[t]);
      stabilizer[t] = gates.cum[t] + big_m[t];
      row_log[t] = gates.cum[t] - stabilizer[t];
      state_weight[t] = std::exp(gates.cum[t] + m - stabilizer[t]);
    }
  }
};

// The running gradient of a state (C, n, m) between chunks, in double: it is a sum over all
// later chunks, carried through every chunk boundary.
struct StateGradient {
  RowMatrix<double> c;                         // (DQK, DV)
  Eigen::Matrix<double, Eigen::Dynamic, 1> n;  // (DQK)
  double m = 0.0;
};

// Backward of one chunk; `grad` holds the gradient of the state at the chunk's end on entry and
// that of the state at its start on return. Writes the chunk's rows of dq, dk, dv, di, df.
template <typename T>
void chunk_backward(const T* q, const T* k, const T* v, const T* fgate, const T* dh,
                    const ChunkGates& gates, const T* c, const T* n, double m, Index qk_dim,
                    Index v_dim, T eps, StateGradient& grad, T* dq, T* dk, T* dv, T* di,
                    T* df) {
  using Matrix = RowMatrix<T>;
  using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  const Index L = gates.length();
  const T scale = T(1) / std::sqrt(static_cast<T>(qk_dim));
  Eigen::Map<const Matrix> queries(q, L, qk_dim), keys(k, L, qk_dim), values(v, L, v_dim),
      d_hidden(dh, L, v_dim), memory(c, qk_dim, v_dim);
  Eigen::Map<const Vector> norm_state(n, qk_dim);
  Eigen::Map<Matrix> d_queries(dq, L, qk_dim), d_keys(dk, L, qk_dim), d_values(dv, L, v_dim);

  const ChunkStabilizers stab(gates, m);
  const Index last = L - 1;

  // Recompute the chunk's forward: decay (scale exp(g_s - M_t), lower triangle), W, acc, den.
  Matrix decay = Matrix::Ones(L, L), weights(L, L);
  Vector rowsum = Vector::Zero(L), exponent(L);
  apply_causal_decay(decay.data(), L, L, L, stab.row_log.data(), stab.g.data(), Index(0),
                     scale, exponent.data(), rowsum.data());
  weights.noalias() = queries * keys.transpose();
  weights.array() *= decay.array();
  const Vector state_weight = stab.state_weight.template cast<T>();
  const Matrix weighted_queries = state_weight.asDiagonal() * queries;
  Matrix acc(L, v_dim);
  acc.noalias() = weights * values;
  acc.noalias() += weighted_queries * memory;
  const Vector den = weights.rowwise().sum() + weighted_queries * norm_state;

  // Through the normalizer.
  Matrix d_acc(L, v_dim);
  Vector d_den(L);
  std::vector<double> d_big_m(static_cast<size_t>(L)), d_cum(static_cast<size_t>(L), 0.0);
  for (Index t = 0; t < L; ++t) {
    const T m_t = static_cast<T>(stab.stabilizer[t]);
    const T inv = T(1) / (normalizer(den[t], m_t) + eps);
    d_acc.row(t) = d_hidden.row(t) * inv;
    const T d_norm = -d_hidden.row(t).dot(acc.row(t)) * inv * inv;
    const NormalizerGradient<T> g = normalizer_backward(den[t], m_t, d_norm);
    d_den[t] = g.d_sum;
    d_big_m[t] = g.d_stabilizer;  // m_t = cum_t + M_t
    d_cum[t] = g.d_stabilizer;
  }

  // Intra-chunk part: dW, then dlogW = dW W and d(q.k) = dW decay (decay holds the scale).
  Matrix d_weights(L, L);
  d_weights.noalias() = d_acc * values.transpose();
  d_weights.colwise() += d_den;
  d_values.noalias() = weights.transpose() * d_acc;
  // dlogW is summed in double: its row sums (to M_t) and column sums (to g_s) reach df as a
  // difference, which must not carry the rounding of two separate float sums.
  const RowMatrix<double> grad_log = d_weights.cwiseProduct(weights).template cast<double>();
  d_weights.array() *= decay.array();
  d_queries.noalias() = d_weights * keys;
  d_keys.noalias() = d_weights.transpose() * queries;
  std::vector<double> d_g(static_cast<size_t>(L));
  Eigen::Map<Eigen::Matrix<double, 1, Eigen::Dynamic>>(d_g.data(), L) = grad_log.colwise().sum();
  Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, 1>>(d_big_m.data(), L) -=
      grad_log.rowwise().sum();

  // The carried state's part: w_t C^T q_t and w_t q_t . n.
  Matrix c_dacc(L, qk_dim);  // rows: C dacc_t
  c_dacc.noalias() = d_acc * memory.transpose();
  double d_m = 0.0;
  for (Index t = 0; t < L; ++t) {
    const T d_w = queries.row(t).dot(c_dacc.row(t)) + queries.row(t).dot(norm_state) * d_den[t];
    const double d_log_w = static_cast<double>(d_w) * stab.state_weight[t];
    d_m += d_log_w;
    d_big_m[t] -= d_log_w;
  }
  d_queries.noalias() += state_weight.asDiagonal() * (c_dacc + d_den * norm_state.transpose());
  Matrix d_c_prev(qk_dim, v_dim);
  d_c_prev.noalias() = weighted_queries.transpose() * d_acc;
  Vector d_n_prev = weighted_queries.transpose() * d_den;

  // The state at the chunk's end: C' = gamma C + sum_s beta_s k~_s v_s^T, n' likewise.
  const double gamma = std::exp(m - stab.big_m[last]);
  Vector beta(L);
  for (Index s = 0; s < L; ++s) beta[s] = static_cast<T>(std::exp(stab.g[s] - stab.big_m[last]));
  const Matrix d_c_next = grad.c.template cast<T>();
  const Vector d_n_next = grad.n.template cast<T>();
  Matrix keys_dc(L, v_dim);  // rows: k~_s^T dC'
  keys_dc.noalias() = (keys * scale) * d_c_next;
  Matrix dc_v(L, qk_dim);  // rows: dC' v_s + dn'
  dc_v.noalias() = values * d_c_next.transpose();
  dc_v.rowwise() += d_n_next.transpose();
  double d_log_beta_sum = 0.0;
  for (Index s = 0; s < L; ++s) {
    const T d_beta = keys_dc.row(s).dot(values.row(s)) + (keys.row(s) * scale).dot(d_n_next);
    const double d_log_beta = static_cast<double>(d_beta * beta[s]);
    d_g[s] += d_log_beta;
    d_log_beta_sum += d_log_beta;
  }
  d_keys.noalias() += (beta * scale).asDiagonal() * dc_v;
  d_values.noalias() += beta.asDiagonal() * keys_dc;
  const double d_log_gamma =
      gamma * ((grad.c.array() * memory.template cast<double>().array()).sum() +
               grad.n.dot(norm_state.template cast<double>()));
  d_m += d_log_gamma;
  d_big_m[last] += grad.m - d_log_gamma - d_log_beta_sum;
  d_cum[last] += grad.m;  // m' = total + M_{L-1}, total = cum_{L-1}

  // M_t = max(m, P_t), P_t = g at the first index attaining the prefix maximum.
  for (Index t = 0; t < L; ++t) {
    const double share = max_share_of_first(m, stab.prefix_max[t]);
    d_m += d_big_m[t] * share;
    d_g[static_cast<size_t>(stab.prefix_argmax[t])] += d_big_m[t] * (1.0 - share);
  }
  // g_s = i_s - cum_s; cum_t = sum_{r<=t} lf_r.
  double d_log_forget = 0.0;
  for (Index r = L - 1; r >= 0; --r) {
    di[r] = static_cast<T>(d_g[r]);
    d_log_forget += d_cum[r] - d_g[r];
    df[r] = static_cast<T>(d_log_forget) * log_sigmoid_derivative(fgate[r]);
  }

  // Hand the gradient of the state at the chunk's start to the chunk before.
  grad.c = gamma * grad.c + d_c_prev.template cast<double>();
  grad.n = gamma * grad.n + d_n_prev.template cast<double>();
  grad.m = d_m;
}

// The chunkwise backward of one head: the states at every chunk start by the forward's own
// recurrence, then the chunks in reverse.
template <typename T>
void chunkwise_backward_head(const ChunkwiseHeadBackward<T>& p, Index seq_len, Index qk_dim,
                             Index v_dim, Index chunk_size, T eps) {
  const Index chunks = (seq_len + chunk_size - 1) / chunk_size;
  const Index c_stride = padded_size<T>(qk_dim * v_dim), n_stride = padded_size<T>(qk_dim);
  std::vector<ChunkGates> gates(static_cast<size_t>(chunks));
  Eigen::Matrix<T, Eigen::Dynamic, 1> state_c(chunks * c_stride), state_n(chunks * n_stride);
  std::vector<double> state_m(static_cast<size_t>(chunks));
  RowMatrix<T> kv(qk_dim, v_dim), next_c(qk_dim, v_dim);
  Eigen::Matrix<T, Eigen::Dynamic, 1> ksum(qk_dim), next_n(qk_dim);

  state_c.setZero();
  state_n.setZero();
  if (p.initial_c != nullptr) {
    std::copy_n(p.initial_c, qk_dim * v_dim, state_c.data());
    std::copy_n(p.initial_n, qk_dim, state_n.data());
  }
  state_m[0] = p.initial_m != nullptr ? static_cast<double>(*p.initial_m) : 0.0;
  for (Index j = 0; j < chunks; ++j) {
    const Index begin = j * chunk_size, length = std::min(chunk_size, seq_len - begin);
    ChunkGates& g = gates[static_cast<size_t>(j)];
    g.compute(p.igate + begin, p.fgate + begin, length);
    if (j + 1 == chunks) break;  // the final state is not needed
    chunk_state_contribution(p.k + begin * qk_dim, p.v + begin * v_dim, g, qk_dim, v_dim,
                             kv.data(), ksum.data());
    advance_chunk_state(state_c.data() + j * c_stride, state_n.data() + j * n_stride,
                        state_m[static_cast<size_t>(j)], kv.data(), ksum.data(), g, qk_dim,
                        v_dim, state_c.data() + (j + 1) * c_stride,
                        state_n.data() + (j + 1) * n_stride, state_m[static_cast<size_t>(j + 1)]);
  }

  StateGradient grad;
  grad.c = RowMatrix<double>::Zero(qk_dim, v_dim);
  grad.n = Eigen::Matrix<double, Eigen::Dynamic, 1>::Zero(qk_dim);
  if (p.dfinal_c != nullptr) {
    grad.c = Eigen::Map<const RowMatrix<T>>(p.dfinal_c, qk_dim, v_dim).template cast<double>();
    grad.n = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(p.dfinal_n, qk_dim)
                 .template cast<double>();
    grad.m = static_cast<double>(*p.dfinal_m);
  }
  for (Index j = chunks - 1; j >= 0; --j) {
    const Index begin = j * chunk_size;
    chunk_backward(p.q + begin * qk_dim, p.k + begin * qk_dim, p.v + begin * v_dim,
                   p.fgate + begin, p.dh + begin * v_dim, gates[static_cast<size_t>(j)],
                   state_c.data() + j * c_stride, state_n.data() + j * n_stride,
                   state_m[static_cast<size_t>(j)], qk_dim, v_dim, eps, grad,
                   p.dq + begin * qk_dim, p.dk + begin * qk_dim, p.dv + begin * v_dim,
                   p.di + begin, p.df + begin);
  }
  if (p.dinitial_c != nullptr) {
    Eigen::Map<RowMatrix<T>>(p.dinitial_c, qk_dim, v_dim) = grad.c.template cast<T>();
    Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>(p.dinitial_n, qk_dim) =
        grad.n.template cast<T>();
    *p.dinitial_m = static_cast<T>(grad.m);
  }
}

// A state argument's views, checked against the problem's shape.
template <typename T>
void check_state_argument(const RecurrentState<T>& state, const SequenceShape& s,
                          const StateNames& names) {
  check_state<T>(ConstTensorMap<T, 4>(state.c.data(), state.c.dimensions()),
                 ConstTensorMap<T, 4>(state.n.data(), state.n.dimensions()),
                 ConstTensorMap<T, 4>(state.m.data(), state.m.dimensions()), s, names);
}

inline constexpr StateNames final_state_gradient_names{"dfinal_state.c", "dfinal_state.n",
                                                       "dfinal_state.m"};

}  // namespace detail

// The gradients of sum(h * dh) + <dfinal_state, final state> with respect to q, k, v,
// igate_preact, fgate_preact (and the initial state, when given), where h and the final state
// are chunkwise_stabilized's for these inputs, options and initial state (nullopt: the zero
// state). dh (B, NH, S, DV); dfinal_state in the state's shapes (nullopt: zero).
template <typename Q, typename K, typename V, typename I, typename F, typename DH>
ChunkwiseGradients<detail::scalar_of<Q>> chunkwise_stabilized_backward(
    const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact,
    const DH& dh, const ChunkwiseOptions& options = {},
    const std::optional<RecurrentState<detail::scalar_of<Q>>>& initial_state = std::nullopt,
    const std::optional<RecurrentState<detail::scalar_of<Q>>>& dfinal_state = std::nullopt) {
  using T = detail::scalar_of<Q>;
  detail::require_same_scalar<Q, DH>();
  const auto in = detail::check_sequence_inputs(q, k, v, igate_preact, fgate_preact);
  const detail::SequenceShape& s = in.shape;
  const auto dh_view = detail::check_output_gradient(dh, s, "dh");
  if (initial_state) detail::check_state_argument(*initial_state, s, detail::initial_state_names);
  if (dfinal_state) {
    detail::check_state_argument(*dfinal_state, s, detail::final_state_gradient_names);
  }
  detail::expect_valid_chunk_size(options.chunk_size);
  detail::expect_valid_eps(static_cast<T>(options.eps), "options.eps");
  const int threads = detail::resolve_num_threads(options.num_threads, "options.num_threads");

  ChunkwiseGradients<T> g{Tensor<T, 4>(s.batch, s.heads, s.seq_len, s.qk_dim),
                          Tensor<T, 4>(s.batch, s.heads, s.seq_len, s.qk_dim),
                          Tensor<T, 4>(s.batch, s.heads, s.seq_len, s.v_dim),
                          Tensor<T, 4>(s.batch, s.heads, s.seq_len, 1),
                          Tensor<T, 4>(s.batch, s.heads, s.seq_len, 1),
                          std::nullopt};
  if (initial_state) {
    g.dinitial_state = RecurrentState<T>::zeros(s.batch, s.heads, s.qk_dim, s.v_dim);
  }
  const Index heads = s.batch * s.heads, matrix = s.qk_dim * s.v_dim;
  const double flops = 10.0 * static_cast<double>(heads * s.seq_len) *
                       static_cast<double>(options.chunk_size + s.qk_dim) *
                       static_cast<double>(s.qk_dim + s.v_dim);
  detail::parallel_for(heads, detail::threads_for_work(threads, heads, flops), [&](Index head) {
    const Index row = head * s.seq_len;
    const auto at = [&](const auto& state_part, Index stride) {
      return state_part.data() + head * stride;
    };
    detail::ChunkwiseHeadBackward<T> p{
        in.q.data() + row * s.qk_dim, in.k.data() + row * s.qk_dim,
        in.v.data() + row * s.v_dim, in.igate_preact.data() + row,
        in.fgate_preact.data() + row, dh_view.data() + row * s.v_dim,
        initial_state ? at(initial_state->c, matrix) : nullptr,
        initial_state ? at(initial_state->n, s.qk_dim) : nullptr,
        initial_state ? at(initial_state->m, 1) : nullptr,
        dfinal_state ? at(dfinal_state->c, matrix) : nullptr,
        dfinal_state ? at(dfinal_state->n, s.qk_dim) : nullptr,
        dfinal_state ? at(dfinal_state->m, 1) : nullptr,
        g.dq.data() + row * s.qk_dim, g.dk.data() + row * s.qk_dim,
        g.dv.data() + row * s.v_dim, g.di.data() + row, g.df.data() + row,
        g.dinitial_state ? g.dinitial_state->c.data() + head * matrix : nullptr,
        g.dinitial_state ? g.dinitial_state->n.data() + head * s.qk_dim : nullptr,
        g.dinitial_state ? g.dinitial_state->m.data() + head : nullptr};
    detail::chunkwise_backward_head(p, s.seq_len, s.qk_dim, s.v_dim, options.chunk_size,
                                    static_cast<T>(options.eps));
  });
  return g;
}

}  // namespace mlstm
