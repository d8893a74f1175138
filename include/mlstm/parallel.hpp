// The mLSTM cell in parallel form (the reference's parallel_stabilized_simple).
//
// Shapes: q, k (B, NH, S, DQK); v (B, NH, S, DV); igate_preact, fgate_preact (B, NH, S, 1);
// returns h (B, NH, S, DV). Per (b, h), for rows t and columns s allowed by the mask:
//
//   F[t,s]    = sum_{r=s+1..t} logsigmoid(f_r)
//   logD[t,s] = F[t,s] + i_s
//   m_t       = max_s logD[t,s]        (stabilize_rowwise; else one max over all t, s)
//   Ct[t,s]   = (q_t . k_s / sqrt(DQK)) * exp(logD[t,s] - m_t)
//   h_t       = sum_s Ct[t,s] v_s / (max(|sum_s Ct[t,s]|, exp(-m_t)) + eps)
//
// F is computed as a difference of cumulative sums of logsigmoid(f), accumulated in double.
// A row that the mask leaves empty gives h_t = 0 (the limit of the formula; the reference gives
// NaN there).
#pragma once

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include <Eigen/Core>

#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/math.hpp"
#include "mlstm/mask.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

struct ParallelOptions {
  bool stabilize_rowwise = true;  // one stabilizer per row; false: one per (batch, head)
  double eps = 1e-6;              // added to the normalizer; finite and > 0
  std::optional<Mask> mask;       // (L, L); see mask.hpp for the rule
};

namespace detail {

// Prefix sums of logsigmoid(f) with a leading zero, in double: F[t,s] = cs[t+1] - cs[s+1].
template <typename T>
void log_forget_cumsum(const T* fgate, Index seq_len, std::vector<double>& cumsum) {
  cumsum.resize(static_cast<size_t>(seq_len) + 1);
  cumsum[0] = 0.0;
  for (Index t = 0; t < seq_len; ++t)
    cumsum[t + 1] = cumsum[t] + static_cast<double>(log_sigmoid(fgate[t]));
}

template <typename T>
void parallel_head(const T* q, const T* k, const T* v, const T* igate, const T* fgate, T* h,
                   const SequenceShape& s, const SequenceMask& mask, bool stabilize_rowwise,
                   T eps) {
  using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Index S = s.seq_len;
  Eigen::Map<const Matrix> queries(q, S, s.qk_dim), keys(k, S, s.qk_dim), values(v, S, s.v_dim);
  Eigen::Map<Matrix> hidden(h, S, s.v_dim);

  std::vector<double> cumsum;
  log_forget_cumsum(fgate, S, cumsum);
  Matrix log_decay(S, S);
  for (Index t = 0; t < S; ++t)
    for (Index col = 0; col < S; ++col)
      log_decay(t, col) = mask.allows(t, col)
                              ? static_cast<T>(cumsum[t + 1] - cumsum[col + 1]) + igate[col]
                              : minus_infinity<T>;

  Eigen::Matrix<T, Eigen::Dynamic, 1> stabilizer = log_decay.rowwise().maxCoeff();
  if (!stabilize_rowwise) stabilizer.setConstant(stabilizer.maxCoeff());

  Matrix weights = (queries * keys.transpose()) * (T(1) / std::sqrt(static_cast<T>(s.qk_dim)));
  for (Index t = 0; t < S; ++t) {
    const T m = stabilizer(t);
    if (m == minus_infinity<T>) {  // nothing visible from this row
      weights.row(t).setZero();
      continue;
    }
    T row_sum = 0;
    for (Index col = 0; col < S; ++col) {
      weights(t, col) *= std::exp(log_decay(t, col) - m);
      row_sum += weights(t, col);
    }
    weights.row(t) /= std::max(std::abs(row_sum), std::exp(-m)) + eps;
  }
  hidden.noalias() = weights * values;
}

}  // namespace detail

template <typename Q, typename K, typename V, typename I, typename F>
Tensor<detail::scalar_of<Q>, 4> parallel_stabilized(const Q& q, const K& k, const V& v,
                                                    const I& igate_preact,
                                                    const F& fgate_preact,
                                                    const ParallelOptions& options = {}) {
  using T = detail::scalar_of<Q>;
  const auto in = detail::check_sequence_inputs(q, k, v, igate_preact, fgate_preact);
  detail::expect_valid_eps(static_cast<T>(options.eps), "options.eps");
  const detail::SequenceShape& s = in.shape;
  const detail::SequenceMask mask = detail::resolve_mask(options.mask, s.seq_len);

  Tensor<T, 4> h(s.batch, s.heads, s.seq_len, s.v_dim);
  for (Index head = 0; head < s.batch * s.heads; ++head) {
    const Index row = head * s.seq_len;
    detail::parallel_head(in.q.data() + row * s.qk_dim, in.k.data() + row * s.qk_dim,
                          in.v.data() + row * s.v_dim, in.igate_preact.data() + row,
                          in.fgate_preact.data() + row, h.data() + row * s.v_dim, s, mask,
                          options.stabilize_rowwise, static_cast<T>(options.eps));
  }
  return h;
}

}  // namespace mlstm
