// Training the parallel form: a forward that keeps what its backward needs, and the exact backward.
//
//   auto fwd = mlstm::parallel_stabilized_forward_with_cache(q, k, v, i, f, opt);   // fwd.h
//   auto g = mlstm::parallel_stabilized_backward(q, k, v, i, f, dh, fwd, opt);
//   // g.dq, g.dk (B, NH, S, DQK), g.dv (B, NH, S, DV), g.di, g.df (B, NH, S, 1)
//
// or, without keeping the forward, mlstm::parallel_stabilized_backward(q, k, v, i, f, dh, opt)
// (it runs the forward itself). Shapes and options are those of parallel_stabilized.
//
// Forward, per (b, h), rows t and columns s allowed by the mask (causal by default):
//
//   lf_r      = logsigmoid(f_r),   cum_t = sum_{r<=t} lf_r
//   logD[t,s] = cum_t - cum_s + i_s
//   m_t       = max_s logD[t,s]                    (or one max over all (t, s) of the head)
//   D[t,s]    = exp(logD[t,s] - m_t),   S[t,s] = q_t . k_s / sqrt(DQK)
//   Ct[t,s]   = S[t,s] D[t,s],          b_t = sum_s Ct[t,s]
//   n_t       = max(|b_t|, exp(-m_t)),  den_t = n_t + eps
//   h_t       = sum_s Ct[t,s] v_s / den_t
//
// Backward, the derivative of exactly that function (as autograd of the reference computes it),
// given dh_t:
//
//   dden_t    = -(dh_t . h_t) / den_t
//   db_t      = dden_t [|b_t| branch] sign(b_t)              (sign(0) = 0)
//   dm_t     += -exp(-m_t) dden_t [exp(-m_t) branch]          (the lower bound's path to m)
//   dCt[t,s]  = (dh_t . v_s) / den_t + db_t
//   dv_s      = sum_t Ct[t,s] / den_t dh_t
//   dS[t,s]   = dCt[t,s] D[t,s]  ->  dq_t = sum_s dS[t,s] k_s / sqrt(DQK),  dk_s likewise
//   G[t,s]    = dCt[t,s] Ct[t,s]                              (= dL/dlogD through D)
//   dm_t     += -sum_s G[t,s]                                  (through D = exp(logD - m))
//   G[argmax of m_t] += dm_t                                   (m is a max of logD entries)
//   di_s      = sum_t G[t,s],   dcum_t = sum_s G[t,s] - di_t
//   df_r      = logsigmoid'(f_r) sum_{t>=r} dcum_t
//
// The branch weights follow autograd's conventions (detail/subgradients.hpp): at |b_t| ==
// exp(-m_t) half of dden_t goes to each branch, and m_t's gradient goes to the first column (in
// row-major order for the one-max-per-head variant) attaining the max. With rowwise
// stabilization and the |b| branch active, the three m paths cancel: h does not depend on m
// there. When the lower bound is active they do not, and the backward keeps every path (the
// analytic backward of the reference's kernel package drops the lower bound's).
//
// Rows the mask leaves empty give h_t = 0 and zero gradients (the reference gives NaN).
//
// The forward caches per row: m_t, b_t, and where m_t was taken from; with h this is all the
// backward needs besides the inputs. The backward recomputes S, D and Ct panel by panel: column
// panels of width panel_width over the rows that see them, so memory beyond inputs and outputs
// is O(S * panel_width) per head and never (S, S). Heads are independent; each head is computed
// by one thread in a fixed order, so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <Eigen/Core>

#include "mlstm/detail/assert.hpp"
#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/math.hpp"
#include "mlstm/detail/subgradients.hpp"
#include "mlstm/mask.hpp"
#include "mlstm/parallel.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

// What the forward keeps for the backward, per (b, h, t); each (B, NH, S, 1).
template <typename T>
struct ParallelCache {
  Tensor<T, 4> m;            // stabilizer m_t (-inf for a row the mask leaves empty)
  Tensor<T, 4> row_sum;      // b_t = sum_s Ct[t,s]
  Tensor<Index, 4> m_source;  // t' * S + s' of the logD entry m_t is (-1 for an empty row)
  bool stabilize_rowwise = true;  // the options of the forward, checked by the backward
  double eps = 1e-6;
};

template <typename T>
struct ParallelForward {
  Tensor<T, 4> h;  // (B, NH, S, DV)
  ParallelCache<T> cache;
};

template <typename T>
struct ParallelGradients {
  Tensor<T, 4> dq;  // (B, NH, S, DQK)
  Tensor<T, 4> dk;  // (B, NH, S, DQK)
  Tensor<T, 4> dv;  // (B, NH, S, DV)
  Tensor<T, 4> di;  // (B, NH, S, 1)
  Tensor<T, 4> df;  // (B, NH, S, 1)
};

namespace detail {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;
template <typename T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;

// Rows (forward) and columns (backward) processed together: wide enough for efficient matrix
// products, small enough that a panel of S rows stays in cache.
inline constexpr Index parallel_panel_width = 64;

// One head's inputs and the values shared by its forward and backward.
template <typename T>
struct ParallelHead {
  ConstMatrixMap<T> q, k, v;  // (S, DQK), (S, DQK), (S, DV)
  const T* igate;
  const T* fgate;
  std::vector<double> cumsum;  // cs[0] = 0, cs[t+1] = sum_{r<=t} lf_r, in double
  Index seq_len;
  T scale;  // 1 / sqrt(DQK)

  ParallelHead(const SequenceInputs<T>& in, Index head)
      : q(in.q.data() + head * in.shape.seq_len * in.shape.qk_dim, in.shape.seq_len,
          in.shape.qk_dim),
        k(in.k.data() + head * in.shape.seq_len * in.shape.qk_dim, in.shape.seq_len,
          in.shape.qk_dim),
        v(in.v.data() + head * in.shape.seq_len * in.shape.v_dim, in.shape.seq_len,
          in.shape.v_dim),
        igate(in.igate_preact.data() + head * in.shape.seq_len),
        fgate(in.fgate_preact.data() + head * in.shape.seq_len),
        seq_len(in.shape.seq_len),
        scale(T(1) / std::sqrt(static_cast<T>(in.shape.qk_dim))) {
    log_forget_cumsum(fgate, seq_len, cumsum);
  }

  // logD[t, s] for an allowed (t, s), the same expression as in parallel.hpp.
  T log_decay(Index t, Index s) const {
    return static_cast<T>(cumsum[t + 1] - cumsum[s + 1]) + igate[s];
  }
};

// m_t and the flat position t' * S + s' it is taken from, for every row of one head; the first
// maximal column of the row (rowwise) or the first maximal entry in row-major order (one max
// per head), as torch.max reports it. Empty rows get -inf and -1.
template <typename T>
void parallel_stabilizers(const ParallelHead<T>& head, const SequenceMask& mask, bool rowwise,
                          T* m, Index* source) {
  const Index S = head.seq_len;
  for (Index t = 0; t < S; ++t) {
    m[t] = minus_infinity<T>;
    source[t] = -1;
    const Index end = mask.causal() ? t + 1 : S;
    for (Index s = 0; s < end; ++s) {
      if (!mask.allows(t, s)) continue;
      const T value = head.log_decay(t, s);
      if (source[t] < 0 || value > m[t]) {
        m[t] = value;
        source[t] = t * S + s;
      }
    }
  }
  if (rowwise) return;
  Index best = -1;
  for (Index t = 0; t < S; ++t)
    if (source[t] >= 0 && (best < 0 || m[t] > m[best])) best = t;
  for (Index t = 0; t < S; ++t) {
    m[t] = best < 0 ? minus_infinity<T> : m[best];
    source[t] = best < 0 ? -1 : source[best];
  }
}

// D[t, c0 .. c0 + width) = exp(logD - m_t), 0 where the mask hides (t, s). `row` must have
// `width` entries. m_t must be finite.
template <typename T, typename Row>
void decay_row(const ParallelHead<T>& head, const SequenceMask& mask, Index t, Index c0,
               Index width, T m, Row&& row) {
  for (Index j = 0; j < width; ++j) row(j) = head.log_decay(t, c0 + j) - m;
  row.array() = row.array().exp();
  if (mask.causal()) {
    for (Index j = std::max<Index>(t + 1 - c0, 0); j < width; ++j) row(j) = T(0);
  } else {
    for (Index j = 0; j < width; ++j)
      if (!mask.allows(t, c0 + j)) row(j) = T(0);
  }
}

// Forward of one head, by row panels; writes h (S, DV) and the cache rows of this head.
template <typename T>
void parallel_forward_head(const ParallelHead<T>& head, const SequenceMask& mask, bool rowwise,
                           T eps, T* h, T* m, T* row_sum, Index* source) {
  const Index S = head.seq_len;
  MatrixMap<T> hidden(h, S, head.v.cols());
  parallel_stabilizers(head, mask, rowwise, m, source);
  RowMatrix<T> weights(std::min(parallel_panel_width, S), S);
  for (Index r0 = 0; r0 < S; r0 += parallel_panel_width) {
    const Index rows = std::min(parallel_panel_width, S - r0);
    const Index cols = mask.causal() ? r0 + rows : S;  // columns any row of the panel sees
    auto panel = weights.topLeftCorner(rows, cols);
    panel.noalias() = head.q.middleRows(r0, rows) * head.k.topRows(cols).transpose();
    Eigen::Matrix<T, Eigen::Dynamic, 1> decay(cols);
    for (Index r = 0; r < rows; ++r) {
      const Index t = r0 + r;
      if (m[t] == minus_infinity<T>) {  // nothing visible from this row
        panel.row(r).setZero();
        row_sum[t] = T(0);
        continue;
      }
      decay_row(head, mask, t, 0, cols, m[t], decay);
      panel.row(r).array() *= decay.transpose().array() * head.scale;
      row_sum[t] = panel.row(r).sum();
      panel.row(r) /= normalizer(row_sum[t], m[t]) + eps;
    }
    hidden.middleRows(r0, rows).noalias() = panel * head.v.topRows(cols);
  }
}

// Backward of one head, by column panels; writes dq, dk (S, DQK), dv (S, DV), di, df (S).
template <typename T>
void parallel_backward_head(const ParallelHead<T>& head, const SequenceMask& mask, T eps,
                            const T* h, const T* dh, const T* m, const T* row_sum,
                            const Index* source, T* dq, T* dk, T* dv, T* di, T* df) {
  const Index S = head.seq_len, qk_dim = head.q.cols(), v_dim = head.v.cols();
  ConstMatrixMap<T> hidden(h, S, v_dim), d_hidden(dh, S, v_dim);
  MatrixMap<T> d_queries(dq, S, qk_dim), d_keys(dk, S, qk_dim), d_values(dv, S, v_dim);
  d_queries.setZero();

  // Per row: 1 / den_t, db_t, and the lower bound's share of dm_t.
  std::vector<T> inv_den(S), d_sum(S);
  std::vector<double> d_stabilizer(S), grad_row_sum(S, 0.0), grad_col_sum(S, 0.0);
  for (Index t = 0; t < S; ++t) {
    if (m[t] == minus_infinity<T>) {
      inv_den[t] = d_sum[t] = T(0);
      d_stabilizer[t] = 0.0;
      continue;
    }
    inv_den[t] = T(1) / (normalizer(row_sum[t], m[t]) + eps);
    const T d_den = -d_hidden.row(t).dot(hidden.row(t)) * inv_den[t];
    const NormalizerGradient<T> g = normalizer_backward(row_sum[t], m[t], d_den);
    d_sum[t] = g.d_sum;
    d_stabilizer[t] = g.d_stabilizer;
  }

  const Index width = std::min(parallel_panel_width, S);
  RowMatrix<T> scores(S, width), d_scores(S, width), grad_log_decay(S, width);
  Eigen::Matrix<T, 1, Eigen::Dynamic> decay(width);
  for (Index c0 = 0; c0 < S; c0 += parallel_panel_width) {
    const Index cols = std::min(parallel_panel_width, S - c0);
    const Index r0 = mask.causal() ? c0 : 0;  // first row that sees the panel
    const Index rows = S - r0;
    auto score = scores.topLeftCorner(rows, cols);       // S, then Ct / den
    auto d_score = d_scores.topLeftCorner(rows, cols);   // dh.v, then dS / sqrt(DQK)
    auto grad = grad_log_decay.topLeftCorner(rows, cols);  // G
    score.noalias() = head.q.middleRows(r0, rows) * head.k.middleRows(c0, cols).transpose();
    d_score.noalias() = d_hidden.middleRows(r0, rows) * head.v.middleRows(c0, cols).transpose();
    for (Index r = 0; r < rows; ++r) {
      const Index t = r0 + r;
      if (m[t] == minus_infinity<T>) {
        score.row(r).setZero();
        d_score.row(r).setZero();
        grad.row(r).setZero();
        continue;
      }
      auto row_decay = decay.head(cols);
      decay_row(head, mask, t, c0, cols, m[t], row_decay);
      score.row(r).array() *= row_decay.array() * head.scale;                 // Ct
      d_score.row(r).array() = d_score.row(r).array() * inv_den[t] + d_sum[t];  // dCt
      grad.row(r).array() = d_score.row(r).array() * score.row(r).array();
      d_score.row(r).array() *= row_decay.array() * head.scale;
      score.row(r) *= inv_den[t];
      grad_row_sum[t] += static_cast<double>(grad.row(r).sum());
    }
    const auto col_sums = grad.colwise().sum();
    for (Index j = 0; j < cols; ++j) grad_col_sum[c0 + j] = static_cast<double>(col_sums(j));
    d_values.middleRows(c0, cols).noalias() = score.transpose() * d_hidden.middleRows(r0, rows);
    d_keys.middleRows(c0, cols).noalias() = d_score.transpose() * head.q.middleRows(r0, rows);
    d_queries.middleRows(r0, rows).noalias() += d_score * head.k.middleRows(c0, cols);
  }

  // m_t = logD[source_t]: its gradient joins G at that entry.
  std::vector<double> d_cumsum = grad_row_sum;
  for (Index t = 0; t < S; ++t) {
    if (source[t] < 0) continue;
    const double d_m = d_stabilizer[t] - grad_row_sum[t];
    d_cumsum[source[t] / S] += d_m;
    grad_col_sum[source[t] % S] += d_m;
  }
  double d_log_forget = 0.0;  // sum_{t >= r} dcum_t
  for (Index r = S - 1; r >= 0; --r) {
    di[r] = static_cast<T>(grad_col_sum[r]);
    d_log_forget += d_cumsum[r] - grad_col_sum[r];
    df[r] = static_cast<T>(d_log_forget) * log_sigmoid_derivative(head.fgate[r]);
  }
}

// Threads for `products` matrix products of (S, S) by (S, D) per head (half of it, causal).
inline int parallel_threads(const SequenceShape& s, Index heads, const ParallelOptions& options,
                            int products) {
  const double flops = static_cast<double>(products) * static_cast<double>(heads) *
                       static_cast<double>(s.seq_len) * static_cast<double>(s.seq_len) *
                       static_cast<double>(s.qk_dim + s.v_dim);
  return threads_for_work(resolve_num_threads(options.num_threads, "options.num_threads"), heads,
                          flops);
}

template <typename T>
ParallelForward<T> parallel_forward_with_cache(const SequenceInputs<T>& in,
                                               const SequenceMask& mask,
                                               const ParallelOptions& options) {
  const SequenceShape& s = in.shape;
  ParallelForward<T> out{Tensor<T, 4>(s.batch, s.heads, s.seq_len, s.v_dim),
                         {Tensor<T, 4>(s.batch, s.heads, s.seq_len, 1),
                          Tensor<T, 4>(s.batch, s.heads, s.seq_len, 1),
                          Tensor<Index, 4>(s.batch, s.heads, s.seq_len, 1),
                          options.stabilize_rowwise, options.eps}};
  const T eps = static_cast<T>(options.eps);
  const Index heads = s.batch * s.heads;
  parallel_for(heads, parallel_threads(s, heads, options, 2), [&](Index head_index) {
    const ParallelHead<T> head(in, head_index);
    const Index row = head_index * s.seq_len;
    parallel_forward_head(head, mask, options.stabilize_rowwise, eps,
                          out.h.data() + row * s.v_dim, out.cache.m.data() + row,
                          out.cache.row_sum.data() + row, out.cache.m_source.data() + row);
  });
  return out;
}

// The cache must come from a forward with these inputs and options.
template <typename T>
void check_parallel_forward(const ParallelForward<T>& forward, const SequenceShape& s,
                            const ParallelOptions& options) {
  const std::array<Index, 4> per_row{s.batch, s.heads, s.seq_len, 1};
  expect_shape<T, 4>(ConstTensorMap<T, 4>(forward.h.data(), forward.h.dimensions()),
                     {s.batch, s.heads, s.seq_len, s.v_dim}, "forward.h", "(B, NH, S, DV) of v");
  expect_shape<T, 4>(ConstTensorMap<T, 4>(forward.cache.m.data(), forward.cache.m.dimensions()),
                     per_row, "forward.cache.m", "(B, NH, S, 1) of q");
  expect_shape<T, 4>(
      ConstTensorMap<T, 4>(forward.cache.row_sum.data(), forward.cache.row_sum.dimensions()),
      per_row, "forward.cache.row_sum", "(B, NH, S, 1) of q");
  expect_shape<Index, 4>(ConstTensorMap<Index, 4>(forward.cache.m_source.data(),
                                                  forward.cache.m_source.dimensions()),
                         per_row, "forward.cache.m_source", "(B, NH, S, 1) of q");
  if (forward.cache.stabilize_rowwise != options.stabilize_rowwise) {
    throw ValueError("options.stabilize_rowwise",
                     std::string("expected the forward's value ") +
                         (forward.cache.stabilize_rowwise ? "true" : "false") + ", got " +
                         (options.stabilize_rowwise ? "true" : "false"));
  }
  if (forward.cache.eps != options.eps) {
    throw ValueError("options.eps", "expected the forward's value " +
                                        std::to_string(forward.cache.eps) + ", got " +
                                        std::to_string(options.eps));
  }
  const Index* source = forward.cache.m_source.data();
  const Index head_size = s.seq_len * s.seq_len;
  for (Index row = 0; row < forward.cache.m_source.size(); ++row) {
    if (source[row] < -1 || source[row] >= head_size) {
      throw ValueError("forward.cache.m_source",
                       "expected -1 or a position in [0, S * S), got " +
                           std::to_string(source[row]));
    }
  }
}

template <typename T>
ParallelGradients<T> parallel_backward(const SequenceInputs<T>& in, const ConstTensorMap<T, 4>& dh,
                                       const ParallelForward<T>& forward,
                                       const SequenceMask& mask, const ParallelOptions& options) {
  const SequenceShape& s = in.shape;
  ParallelGradients<T> grads{Tensor<T, 4>(s.batch, s.heads, s.seq_len, s.qk_dim),
                             Tensor<T, 4>(s.batch, s.heads, s.seq_len, s.qk_dim),
                             Tensor<T, 4>(s.batch, s.heads, s.seq_len, s.v_dim),
                             Tensor<T, 4>(s.batch, s.heads, s.seq_len, 1),
                             Tensor<T, 4>(s.batch, s.heads, s.seq_len, 1)};
  const T eps = static_cast<T>(options.eps);
  const Index heads = s.batch * s.heads;
  parallel_for(heads, parallel_threads(s, heads, options, 5), [&](Index head_index) {
    const ParallelHead<T> head(in, head_index);
    const Index row = head_index * s.seq_len;
    parallel_backward_head(head, mask, eps, forward.h.data() + row * s.v_dim,
                           dh.data() + row * s.v_dim, forward.cache.m.data() + row,
                           forward.cache.row_sum.data() + row,
                           forward.cache.m_source.data() + row, grads.dq.data() + row * s.qk_dim,
                           grads.dk.data() + row * s.qk_dim, grads.dv.data() + row * s.v_dim,
                           grads.di.data() + row, grads.df.data() + row);
  });
  return grads;
}

}  // namespace detail

// The parallel form's forward (as parallel_stabilized) that also returns the cache its backward
// uses: h (B, NH, S, DV) and per row m_t, b_t and the position of m_t's maximum.
template <typename Q, typename K, typename V, typename I, typename F>
ParallelForward<detail::scalar_of<Q>> parallel_stabilized_forward_with_cache(
    const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact,
    const ParallelOptions& options = {}) {
  using T = detail::scalar_of<Q>;
  const auto in = detail::check_sequence_inputs(q, k, v, igate_preact, fgate_preact);
  detail::expect_valid_eps(static_cast<T>(options.eps), "options.eps");
  const detail::SequenceMask mask = detail::resolve_mask(options.mask, in.shape.seq_len);
  return detail::parallel_forward_with_cache(in, mask, options);
}

// The gradients of sum(h * dh) with respect to q, k, v, igate_preact and fgate_preact, where h
// is the parallel form's output for these inputs and options, given the cached forward.
// dh (B, NH, S, DV). `forward` must be the result of parallel_stabilized_forward_with_cache on
// the same inputs and options (shapes, eps and stabilize_rowwise are checked).
template <typename Q, typename K, typename V, typename I, typename F, typename DH>
ParallelGradients<detail::scalar_of<Q>> parallel_stabilized_backward(
    const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact,
    const DH& dh, const ParallelForward<detail::scalar_of<Q>>& forward,
    const ParallelOptions& options = {}) {
  detail::require_same_scalar<Q, DH>();
  const auto in = detail::check_sequence_inputs(q, k, v, igate_preact, fgate_preact);
  const auto dh_view = detail::check_output_gradient(dh, in.shape, "dh");
  detail::expect_valid_eps(static_cast<detail::scalar_of<Q>>(options.eps), "options.eps");
  const detail::SequenceMask mask = detail::resolve_mask(options.mask, in.shape.seq_len);
  detail::check_parallel_forward(forward, in.shape, options);
  return detail::parallel_backward(in, dh_view, forward, mask, options);
}

// The same gradients without a cached forward: runs the forward first.
template <typename Q, typename K, typename V, typename I, typename F, typename DH>
ParallelGradients<detail::scalar_of<Q>> parallel_stabilized_backward(
    const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact,
    const DH& dh, const ParallelOptions& options = {}) {
  detail::require_same_scalar<Q, DH>();
  const auto in = detail::check_sequence_inputs(q, k, v, igate_preact, fgate_preact);
  const auto dh_view = detail::check_output_gradient(dh, in.shape, "dh");
  detail::expect_valid_eps(static_cast<detail::scalar_of<Q>>(options.eps), "options.eps");
  const detail::SequenceMask mask = detail::resolve_mask(options.mask, in.shape.seq_len);
  return detail::parallel_backward(in, dh_view, detail::parallel_forward_with_cache(in, mask, options),
                                   mask, options);
}

}  // namespace mlstm
