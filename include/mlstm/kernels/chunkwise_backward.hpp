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
// the chunk's start. Writing g_s = i_s - cum_s (ChunkGates::col) and M_t = max(m, P_t),
// P_t = max_{s<=t} g_s (ChunkRows::row):
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
//          dloggamma = gamma (<dC', C> + dn' . n),
//          dlogbeta_s = beta_s (k~_s^T dC' v_s + k~_s . dn')
//   dM_t  = dm_t - sum_s dlogW[t,s] - dlogw_t  (+ dm' - dloggamma - sum_s dlogbeta_s at t = L-1)
//   dm    = sum_t dlogw_t + dloggamma + sum_t dM_t [m branch of M_t]
//   dg_s  = sum_t dlogW[t,s] + dlogbeta_s + sum_t dM_t [P_t branch of M_t, s the argmax of P_t]
//   di_s  = dg_s;  dcum_t = dm_t - dg_t (+ dm' at t = L-1)
//   df_r  = logsigmoid'(f_r) sum_{t>=r} dcum_t
//
// and (dC, dn, dm) is the gradient of the state at the chunk's start, handed to the chunk
// before. Ties: the two-way max M_t = max(m, P_t) splits half and half (torch.maximum), the
// prefix max P_t = max_{s<=t} g_s gives all to its first index (torch.max).
//
// What is recomputed: the forward's pass over the chunk states (detail/chunk_steps.hpp's
// chunk_state_contribution and advance_chunk_state), keeping the state at every chunk start, and
// per chunk its outputs' parts (ChunkRows, chunk_forward), the same functions the forward runs.
// Nothing is cached by the forward. Memory: (S / L + 1) (DQK DV + DQK) values per head being
// processed, plus one chunk's work (L x L and L x D); nothing is O(S^2), and with L around D it
// is O(S D). The running state gradient is kept in double (it sums over all later chunks);
// d(logW)'s row and column sums are taken in double (they reach df as a difference).
//
// Threads: heads are processed in parallel, each by one thread in a fixed order (chunks in
// reverse), so results do not depend on the thread count; a single head runs on one thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <optional>
#include <vector>

#include <Eigen/Core>

#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/chunk_steps.hpp"
#include "mlstm/detail/lane_sum.hpp"
#include "mlstm/detail/math.hpp"
#include "mlstm/detail/matrix_product.hpp"
#include "mlstm/detail/subgradients.hpp"
#include "mlstm/kernels/chunkwise.hpp"
#include "mlstm/kernels/gradients.hpp"
#include "mlstm/kernels/state.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

template <typename T>
struct ChunkwiseGradients : SequenceGradients<T> {
  // The gradient of the initial state (c, n, m), when one was given.
  std::optional<RecurrentState<T>> dinitial_state;
};

namespace detail {

// One head's slices and the gradients it writes, all row-major.
template <typename T>
struct ChunkwiseHeadBackward {
  const T *q, *k, *v, *igate, *fgate, *dh;     // (S, DQK) (S, DQK) (S, DV) (S) (S) (S, DV)
  const T *initial_c, *initial_n, *initial_m;  // nullptr: the zero state
  const T *dfinal_c, *dfinal_n, *dfinal_m;     // nullptr: no gradient for the final state
  T *dq, *dk, *dv, *di, *df;
  T *dinitial_c, *dinitial_n, *dinitial_m;  // nullptr: not wanted
};

// The running gradient of a state (C, n, m) between chunks, in double: it is a sum over all
// later chunks, carried through every chunk boundary.
struct StateGradient {
  RowMatrix<double> c;                         // (DQK, DV)
  Eigen::Matrix<double, Eigen::Dynamic, 1> n;  // (DQK)
  double m = 0.0;
};

// One chunk's work matrices, reused from chunk to chunk of a head: allocated per chunk they cost
// a third of the backward's time at S = 8192 (measured), in page faults, as the freed memory went
// back to the system and came back as fresh pages.
template <typename T>
struct ChunkBackwardWork {
  ChunkForward<T> forward;
  RowMatrix<T> d_acc, d_weights, c_dacc, d_c_here, d_c_next, keys_dc, dc_v;
  RowMatrix<double> grad_log;
};

// Backward of one chunk; `grad` holds the gradient of the state at the chunk's end on entry and
// that of the state (c, n, m) at its start on return. Writes the chunk's rows of dq, dk, dv, di,
// df. q, k (L, DQK), v, dh (L, DV) row-major; `work` is scratch.
template <typename T>
void chunk_backward(const T* q, const T* k, const T* v, const T* fgate, const T* dh,
                    const ChunkGates& gates, const T* c, const T* n, double m, Index qk_dim,
                    Index v_dim, T eps, StateGradient& grad, T* dq, T* dk, T* dv, T* di, T* df,
                    ChunkBackwardWork<T>& work) {
  using Matrix = RowMatrix<T>;
  using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  using Doubles = Eigen::Matrix<double, Eigen::Dynamic, 1>;
  const Index L = gates.length(), last = L - 1;
  const T scale = T(1) / std::sqrt(static_cast<T>(qk_dim));
  Eigen::Map<const Matrix> queries(q, L, qk_dim), keys(k, L, qk_dim), values(v, L, v_dim),
      d_hidden(dh, L, v_dim);
  Eigen::Map<const Vector> norm_state(n, qk_dim);
  Eigen::Map<Matrix> d_queries(dq, L, qk_dim), d_keys(dk, L, qk_dim), d_values(dv, L, v_dim);

  // The chunk's forward, as chunk_outputs computes it.
  const ChunkRows rows(gates, m);
  ChunkForward<T>& f = work.forward;
  chunk_forward(q, k, v, gates, rows, c, n, qk_dim, v_dim, f);
  const Vector state_weight =
      Eigen::Map<const Doubles>(rows.state_weight.data(), L).template cast<T>();

  // Through the normalizer. d_big_m[t]: the gradient of M_t; d_cum[t]: of cum[t] (m_t =
  // cum[t] + M_t); d_g[s]: of col[s] = i_s - cum[s].
  Matrix& d_acc = work.d_acc;
  d_acc.resize(L, v_dim);
  Vector d_den(L);
  // Eigen's vectors, aligned to its vector width: grad_log's column sums, evaluated into
  // misaligned memory, took the first few columns in another order, and moved with the heap's
  // addresses (vector_pieces.hpp).
  Doubles d_big_m(L), d_cum = Doubles::Zero(L), d_g(L);
  for (Index t = 0; t < L; ++t) {
    const T m_t = static_cast<T>(rows.stabilizer[t]);
    const T inv = T(1) / (normalizer(f.denominator[t], m_t) + eps);
    d_acc.row(t) = d_hidden.row(t) * inv;
    const T d_norm = -d_hidden.row(t).dot(f.acc.row(t)) * inv * inv;
    const NormalizerGradient<T> g = normalizer_backward(f.denominator[t], m_t, d_norm);
    d_den[t] = g.d_sum;
    d_big_m[t] = d_cum[t] = static_cast<double>(g.d_stabilizer);
  }

  // Within the chunk: dW = dacc V^T + dden, dlogW = dW W (summed in double: its row sums, to
  // M_t, and column sums, to col, reach df as a difference), d(q.k) = dW decay. W and decay are
  // lower triangular, so only dW's lower triangle matters, and the products by W, dW decay and
  // their transposes skip the zero triangles (matrix_product.hpp).
  Matrix& d_weights = work.d_weights;
  d_weights.resize(L, L);
  matrix_product<T>(L, L, v_dim, {d_acc.data(), v_dim}, {v, v_dim, true}, d_weights.data(), L,
                    Accumulate::no, Triangle::lower_result);
  d_weights.colwise() += d_den;
  matrix_product<T>(L, v_dim, L, {f.weights.data(), L, true}, {d_acc.data(), v_dim}, dv, v_dim,
                    Accumulate::no, Triangle::upper_a);
  RowMatrix<double>& grad_log = work.grad_log;
  grad_log = d_weights.cwiseProduct(f.weights).template cast<double>();
  d_g = grad_log.colwise().sum().transpose();
  d_big_m -= grad_log.rowwise().sum();
  d_weights.array() *= f.decay.array();
  matrix_product<T>(L, qk_dim, L, {d_weights.data(), L}, {k, qk_dim}, dq, qk_dim, Accumulate::no,
                    Triangle::lower_a);
  matrix_product<T>(L, qk_dim, L, {d_weights.data(), L, true}, {q, qk_dim}, dk, qk_dim,
                    Accumulate::no, Triangle::upper_a);

  // The carried state's part: w_t (C^T q_t) and w_t (q_t . n), w_t = exp(m - M_t).
  Matrix& c_dacc = work.c_dacc;  // rows: C dacc_t
  c_dacc.resize(L, qk_dim);
  matrix_product<T>(L, qk_dim, v_dim, {d_acc.data(), v_dim}, {c, v_dim, true}, c_dacc.data(),
                    qk_dim);
  const Vector q_dot_n = queries * norm_state;
  double d_m = 0.0;
  for (Index t = 0; t < L; ++t) {
    const T d_w = queries.row(t).dot(c_dacc.row(t)) + q_dot_n[t] * d_den[t];
    const double d_log_w = static_cast<double>(d_w) * rows.state_weight[t];
    d_m += d_log_w;
    d_big_m[t] -= d_log_w;
  }
  c_dacc.noalias() += d_den * norm_state.transpose();
  d_queries.noalias() += state_weight.asDiagonal() * c_dacc;
  Matrix& d_c_here = work.d_c_here;
  d_c_here.resize(qk_dim, v_dim);
  matrix_product<T>(qk_dim, v_dim, L, {f.weighted_queries.data(), qk_dim, true},
                    {d_acc.data(), v_dim}, d_c_here.data(), v_dim);
  const Vector d_n_here = f.weighted_queries.transpose() * d_den;

  // The state at the chunk's end: C' = gamma C + sum_s beta_s k~_s v_s^T, n' likewise, with
  // gamma = exp(m - M_{L-1}), beta_s = exp(col[s] - M_{L-1}), m' = total + M_{L-1}.
  const DoubleDouble end_row = rows.row[last];
  const double gamma = std::exp((DoubleDouble{m, 0.0} - end_row).value());
  Vector beta(L);
  for (Index s = 0; s < L; ++s)
    beta[s] = static_cast<T>(std::exp((gates.col[s] - end_row).value()));
  Matrix& d_c_next = work.d_c_next;
  d_c_next = grad.c.template cast<T>();
  const Vector d_n_next = grad.n.template cast<T>();
  Matrix& keys_dc = work.keys_dc;  // rows: k~_s^T dC'
  keys_dc.resize(L, v_dim);
  matrix_product<T>(L, v_dim, qk_dim, {k, qk_dim}, {d_c_next.data(), v_dim}, keys_dc.data(), v_dim);
  keys_dc *= scale;
  Matrix& dc_v = work.dc_v;  // rows: dC' v_s + dn'
  dc_v.resize(L, qk_dim);
  matrix_product<T>(L, qk_dim, v_dim, {v, v_dim}, {d_c_next.data(), v_dim, true}, dc_v.data(),
                    qk_dim);
  dc_v.rowwise() += d_n_next.transpose();
  double d_log_beta_sum = 0.0;
  for (Index s = 0; s < L; ++s) {
    const T d_beta = keys_dc.row(s).dot(values.row(s)) + scale * keys.row(s).dot(d_n_next);
    const double d_log_beta = static_cast<double>(d_beta * beta[s]);
    d_g[s] += d_log_beta;
    d_log_beta_sum += d_log_beta;
  }
  d_keys.noalias() += (beta * scale).asDiagonal() * dc_v;
  d_values.noalias() += beta.asDiagonal() * keys_dc;
  // In lane_sum's running sums: Eigen's sum over the float state widened to double was one
  // chain of dependent additions, half of this function's own time at DQK = DV = 128.
  const double d_log_gamma =
      gamma * (lane_sum(qk_dim * v_dim,
                        [&](Index j) { return grad.c.data()[j] * static_cast<double>(c[j]); }) +
               lane_sum(qk_dim, [&](Index j) { return grad.n[j] * static_cast<double>(n[j]); }));
  d_m += d_log_gamma;
  d_big_m[last] += grad.m - d_log_gamma - d_log_beta_sum;
  d_cum[last] += grad.m;  // total = cum[L-1]

  // M_t = max(m, P_t), P_t = max_{s<=t} col[s] (its first index takes the gradient).
  const DoubleDouble state_log{m, 0.0};
  Index argmax = 0;
  for (Index t = 0; t < L; ++t) {
    if (gates.col[argmax] < gates.col[t]) argmax = t;
    const DoubleDouble prefix_max = gates.col[argmax];
    const double share = state_log < prefix_max ? 0.0 : (prefix_max < state_log ? 1.0 : 0.5);
    d_m += d_big_m[t] * share;
    d_g[argmax] += d_big_m[t] * (1.0 - share);
  }
  // col[s] = i_s - cum[s]; cum[t] = sum_{r<=t} logsigmoid(f_r).
  double d_log_forget = 0.0;
  for (Index r = L - 1; r >= 0; --r) {
    di[r] = static_cast<T>(d_g[r]);
    d_log_forget += d_cum[r] - d_g[r];
    df[r] = static_cast<T>(d_log_forget) * log_sigmoid_derivative(fgate[r]);
  }

  // Hand the gradient of the state at the chunk's start to the chunk before.
  grad.c = gamma * grad.c + d_c_here.template cast<double>();
  grad.n = gamma * grad.n + d_n_here.template cast<double>();
  grad.m = d_m;
}

// The chunkwise backward of one head: the states at every chunk start by the forward's own
// recurrence, then the chunks in reverse. Each chunk's inputs are scanned for non-finite values
// as the walks reach them (k, v and the gates in the first walk, before they enter a state; q and
// dh in the second), so that the scans read from cache what the chunk's products read next (a
// scan of the whole inputs before the walks read them from memory once more; bench/README.md).
// Returns false, with the gradients unspecified, at the first chunk with a non-finite value;
// nothing is computed from such a value.
template <typename T>
[[nodiscard]] bool chunkwise_backward_head(const ChunkwiseHeadBackward<T>& p, Index seq_len,
                                           Index qk_dim, Index v_dim, Index chunk_size, T eps) {
  const Index chunks = (seq_len + chunk_size - 1) / chunk_size;
  const Index c_stride = padded_size<T>(qk_dim * v_dim), n_stride = padded_size<T>(qk_dim);
  std::vector<ChunkGates> gates(static_cast<size_t>(chunks));
  Eigen::Matrix<T, Eigen::Dynamic, 1> state_c(chunks * c_stride), state_n(chunks * n_stride);
  std::vector<double> state_m(static_cast<size_t>(chunks));
  RowMatrix<T> kv(qk_dim, v_dim), weighted_keys;
  Eigen::Matrix<T, Eigen::Dynamic, 1> ksum(qk_dim);

  state_m[0] = load_initial_state(p.initial_c, p.initial_n, p.initial_m, 0, qk_dim, v_dim,
                                  state_c.data(), state_n.data());
  for (Index j = 0; j < chunks; ++j) {
    const Index begin = j * chunk_size, length = std::min(chunk_size, seq_len - begin);
    if (!(all_finite(p.k + begin * qk_dim, length * qk_dim) &&
          all_finite(p.v + begin * v_dim, length * v_dim) && all_finite(p.igate + begin, length) &&
          all_finite(p.fgate + begin, length)))
      return false;
    ChunkGates& g = gates[static_cast<size_t>(j)];
    g.compute(p.igate + begin, p.fgate + begin, length);
    if (j + 1 == chunks) break;  // the final state is not needed
    chunk_state_contribution(p.k + begin * qk_dim, p.v + begin * v_dim, g, qk_dim, v_dim, kv.data(),
                             ksum.data(), weighted_keys);
    advance_chunk_state(state_c.data() + j * c_stride, state_n.data() + j * n_stride,
                        state_m[static_cast<size_t>(j)], kv.data(), ksum.data(), g, qk_dim, v_dim,
                        state_c.data() + (j + 1) * c_stride, state_n.data() + (j + 1) * n_stride,
                        state_m[static_cast<size_t>(j + 1)]);
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
  ChunkBackwardWork<T> work;
  for (Index j = chunks - 1; j >= 0; --j) {
    const Index begin = j * chunk_size, length = std::min(chunk_size, seq_len - begin);
    if (!(all_finite(p.q + begin * qk_dim, length * qk_dim) &&
          all_finite(p.dh + begin * v_dim, length * v_dim)))
      return false;
    // The chunk before this one is the next to be read (chunk_forward fetches it).
    const Index before = std::max<Index>(begin - chunk_size, 0);
    work.forward.ahead = {p.q + before * qk_dim, p.k + before * qk_dim, p.v + before * v_dim,
                          j > 0 ? chunk_size : 0};
    chunk_backward(p.q + begin * qk_dim, p.k + begin * qk_dim, p.v + begin * v_dim, p.fgate + begin,
                   p.dh + begin * v_dim, gates[static_cast<size_t>(j)],
                   state_c.data() + j * c_stride, state_n.data() + j * n_stride,
                   state_m[static_cast<size_t>(j)], qk_dim, v_dim, eps, grad, p.dq + begin * qk_dim,
                   p.dk + begin * qk_dim, p.dv + begin * v_dim, p.di + begin, p.df + begin, work);
  }
  if (p.dinitial_c != nullptr) {
    Eigen::Map<RowMatrix<T>>(p.dinitial_c, qk_dim, v_dim) = grad.c.template cast<T>();
    Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>(p.dinitial_n, qk_dim) =
        grad.n.template cast<T>();
    *p.dinitial_m = static_cast<T>(grad.m);
  }
  return true;
}

inline constexpr StateNames final_state_gradient_names{"dfinal_state.c", "dfinal_state.n",
                                                       "dfinal_state.m"};

}  // namespace detail

// The gradients of sum(h * dh) + <dfinal_state, final state> with respect to q, k, v,
// igate_preact, fgate_preact (and the initial state, when given), where h and the final state
// are chunkwise_stabilized's for these inputs, options and initial state (nullopt: the zero
// state). dh (B, NH, S, DV); dfinal_state in the state's shapes (nullopt: zero).
template <typename Q, typename K, typename V, typename I, typename F, typename DH>
ChunkwiseGradients<ScalarOf<Q>> chunkwise_stabilized_backward(
    const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact, const DH& dh,
    const ChunkwiseOptions& options = {},
    const std::optional<RecurrentState<ScalarOf<Q>>>& initial_state = std::nullopt,
    const std::optional<RecurrentState<ScalarOf<Q>>>& dfinal_state = std::nullopt) {
  using T = ScalarOf<Q>;
  detail::require_same_scalar<Q, DH>();
  const int threads = detail::resolve_num_threads(options.num_threads, "options.num_threads");
  const auto in = detail::check_sequence_shapes(q, k, v, igate_preact, fgate_preact);
  const detail::SequenceShape& s = in.shape;
  const auto dh_view = detail::check_output_gradient_shape(dh, s, "dh");
  if (initial_state) detail::check_state_argument(*initial_state, s, detail::initial_state_names);
  if (dfinal_state) {
    detail::check_state_argument(*dfinal_state, s, detail::final_state_gradient_names);
  }
  const Index chunk_size = detail::effective_chunk_size(options.chunk_size, s.seq_len);
  detail::expect_valid_eps(static_cast<T>(options.eps), "options.eps");

  ChunkwiseGradients<T> g{detail::sequence_gradients<T>(s), std::nullopt};
  if (initial_state) {
    g.dinitial_state = RecurrentState<T>::zeros(s.batch, s.heads, s.qk_dim, s.v_dim);
  }
  const Index heads = s.batch * s.heads, matrix = s.qk_dim * s.v_dim;
  const double flops = 10.0 * static_cast<double>(heads * s.seq_len) *
                       static_cast<double>(chunk_size + s.qk_dim) *
                       static_cast<double>(s.qk_dim + s.v_dim);
  std::atomic<bool> finite{true};
  detail::parallel_for(heads, detail::threads_for_work(threads, heads, flops), [&](Index head) {
    if (!finite.load(std::memory_order_relaxed)) return;
    const Index row = head * s.seq_len;
    const auto at = [&](const auto& state_part, Index stride) {
      return state_part.data() + head * stride;
    };
    detail::ChunkwiseHeadBackward<T> p{
        in.q.data() + row * s.qk_dim,
        in.k.data() + row * s.qk_dim,
        in.v.data() + row * s.v_dim,
        in.igate_preact.data() + row,
        in.fgate_preact.data() + row,
        dh_view.data() + row * s.v_dim,
        initial_state ? at(initial_state->c, matrix) : nullptr,
        initial_state ? at(initial_state->n, s.qk_dim) : nullptr,
        initial_state ? at(initial_state->m, 1) : nullptr,
        dfinal_state ? at(dfinal_state->c, matrix) : nullptr,
        dfinal_state ? at(dfinal_state->n, s.qk_dim) : nullptr,
        dfinal_state ? at(dfinal_state->m, 1) : nullptr,
        g.dq.data() + row * s.qk_dim,
        g.dk.data() + row * s.qk_dim,
        g.dv.data() + row * s.v_dim,
        g.di.data() + row,
        g.df.data() + row,
        g.dinitial_state ? g.dinitial_state->c.data() + head * matrix : nullptr,
        g.dinitial_state ? g.dinitial_state->n.data() + head * s.qk_dim : nullptr,
        g.dinitial_state ? g.dinitial_state->m.data() + head : nullptr};
    if (!detail::chunkwise_backward_head(p, s.seq_len, s.qk_dim, s.v_dim, chunk_size,
                                         static_cast<T>(options.eps)))
      finite = false;
  });
  if (!finite) {
    // Names the first non-finite value, as the other kernels' check before they start does.
    detail::expect_sequence_inputs_finite(in, threads);
    detail::expect_finite<T, 4>(dh_view, "dh", threads);
    throw InternalError(
        "chunkwise_stabilized_backward: a chunk's inputs were not all finite, but the scan of the "
        "whole inputs found every value finite");
  }
  return g;
}

}  // namespace mlstm
