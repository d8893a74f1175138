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
// What the forward keeps: h and the row sums b_t (they decide the normalizer's branch and sign
// before any column is visited), and its options (eps, stabilize_rowwise, and a copy of the
// mask when it is not the causal one), which the backward checks against its own. The backward
// recomputes the gate pass of the forward (parallel.hpp: m_t, the entry it is taken from, and
// the decay exponents, O(S) per head under the causal mask), then S, D and Ct by column panels
// of parallel_panel_columns(S) columns over the rows that see them: memory beyond inputs and
// outputs is O(S * panel) per head being processed, never (S, S). Heads are processed in
// parallel, each by one thread in a fixed order, so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "mlstm/detail/assert.hpp"
#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/gate_decay.hpp"
#include "mlstm/detail/math.hpp"
#include "mlstm/detail/matrix_product.hpp"
#include "mlstm/detail/subgradients.hpp"
#include "mlstm/kernels/gradients.hpp"
#include "mlstm/kernels/mask.hpp"
#include "mlstm/kernels/parallel.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

// What the parallel forward keeps for its backward.
template <typename T>
struct ParallelCache {
  Tensor<T, 4> row_sum;  // (B, NH, S, 1): b_t = sum_s Ct[t, s]
  // The forward's options, checked by the backward: stabilize_rowwise, eps, and the mask it
  // applied (nullopt: causal, however it was given; else the (S, S) mask).
  bool stabilize_rowwise = true;
  double eps = 1e-6;
  std::optional<Mask> mask;
};

template <typename T>
struct ParallelForward {
  Tensor<T, 4> h;  // (B, NH, S, DV)
  ParallelCache<T> cache;
};

template <typename T>
using ParallelGradients = SequenceGradients<T>;

namespace detail {

// One head's slices for the backward, row-major: q, k, v and their gradients with rows the
// input's stride apart (each gradient as its input lies), the others contiguous.
template <typename T>
struct ParallelHeadBackward {
  const T *q, *k, *v, *igate, *fgate;  // (S, DQK) (S, DQK) (S, DV) (S) (S)
  const T *h, *dh, *row_sum;           // (S, DV) (S, DV) (S)
  T *dq, *dk, *dv, *di, *df;
  Index q_stride, k_stride, v_stride;
};

// Where the parallel backward writes: dq, dk, dv by head rows, laid out as the inputs q, k, v
// they belong to (the same strides), di and df (B, NH, S).
template <typename T>
struct ParallelGradientRows {
  HeadRows<T> dq, dk, dv;
  T* di;
  T* df;
};

// Backward of one head, by column panels; see the file comment.
template <typename T>
void parallel_backward_head(const ParallelHeadBackward<T>& p, const SequenceShape& s,
                            const SequenceMask& mask, bool stabilize_rowwise, T eps) {
  using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Row = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
  const Index S = s.seq_len;
  const T scale = T(1) / std::sqrt(static_cast<T>(s.qk_dim));
  using Strided = Eigen::Map<Matrix, 0, Eigen::OuterStride<>>;
  Eigen::Map<const Matrix> hidden(p.h, S, s.v_dim), d_hidden(p.dh, S, s.v_dim);
  Strided d_queries(p.dq, S, s.qk_dim, Eigen::OuterStride<>(p.q_stride)),
      d_keys(p.dk, S, s.qk_dim, Eigen::OuterStride<>(p.k_stride)),
      d_values(p.dv, S, s.v_dim, Eigen::OuterStride<>(p.v_stride));
  d_queries.setZero();

  ParallelHeadGates gates;
  parallel_head_gates(p.igate, p.fgate, S, mask, stabilize_rowwise, gates);
  const auto empty = [&](Index t) { return gates.source[t] < 0; };

  // Per row: 1 / den_t, db_t, and the lower bound's share of dm_t.
  std::vector<T> inv_den(S, T(0)), d_sum(S, T(0));
  // Eigen's vectors, aligned to its vector width: G's column sums, evaluated into misaligned
  // memory, took the first few columns in another order, so df moved with the heap's addresses
  // on the threads (vector_pieces.hpp).
  using Doubles = Eigen::Matrix<double, Eigen::Dynamic, 1>;
  std::vector<double> d_stabilizer(S, 0.0);
  Doubles grad_row_sum = Doubles::Zero(S), grad_col_sum = Doubles::Zero(S);
  for (Index t = 0; t < S; ++t) {
    if (empty(t)) continue;
    const T m_t = static_cast<T>(gates.stabilizer[t]);
    inv_den[t] = T(1) / (normalizer(p.row_sum[t], m_t) + eps);
    const T d_den = -d_hidden.row(t).dot(hidden.row(t)) * inv_den[t];
    const NormalizerGradient<T> g = normalizer_backward(p.row_sum[t], m_t, d_den);
    d_sum[t] = g.d_sum;
    d_stabilizer[t] = static_cast<double>(g.d_stabilizer);
  }

  const Index panel = parallel_panel_columns(S);
  const Index width = std::min(panel, S);
  Matrix scores(S, width), d_scores(S, width), grad_log_decay(S, width);
  Eigen::Matrix<T, 1, Eigen::Dynamic> decay(width);
  for (Index c0 = 0; c0 < S; c0 += panel) {
    const Index cols = std::min(panel, S - c0);
    if (!mask.causal() && !mask.any_visible(0, S, c0, c0 + cols)) {  // no row sees these columns
      d_values.middleRows(c0, cols).setZero();
      d_keys.middleRows(c0, cols).setZero();
      continue;
    }
    const Index r0 = mask.causal() ? c0 : 0;  // the first row that sees the panel
    const Index rows = S - r0;
    auto score = scores.topLeftCorner(rows, cols);         // S, then Ct / den
    auto d_score = d_scores.topLeftCorner(rows, cols);     // dh . v, then dS / sqrt(DQK)
    auto grad = grad_log_decay.topLeftCorner(rows, cols);  // G
    const T* q_rows = p.q + r0 * p.q_stride;
    const T* dh_rows = p.dh + r0 * s.v_dim;
    const T* k_cols = p.k + c0 * p.k_stride;
    // Under the causal mask the panel's first row is step c0: score and d_score are lower
    // triangular, and the products by them and their transposes skip the rest
    // (matrix_product.hpp).
    const bool causal = mask.causal();
    const Triangle lower = causal ? Triangle::lower_a : Triangle::none;
    const Triangle upper = causal ? Triangle::upper_a : Triangle::none;
    const Triangle seen = causal ? Triangle::lower_result : Triangle::none;
    matrix_product<T>(rows, cols, s.qk_dim, {q_rows, p.q_stride}, {k_cols, p.k_stride, true},
                      score.data(), width, Accumulate::no, seen);  // Q_rows K_cols^T
    matrix_product<T>(rows, cols, s.v_dim, {dh_rows, s.v_dim},
                      {p.v + c0 * p.v_stride, p.v_stride, true}, d_score.data(), width,
                      Accumulate::no, seen);  // dH_rows V_cols^T
    const DecayParts parts{gates.row.hi.data() + r0, gates.row.lo.data() + r0,
                           gates.col.hi.data() + c0, gates.col.lo.data() + c0};
    for (Index r = 0; r < rows; ++r) {
      const Index t = r0 + r;
      if (empty(t)) {
        score.row(r).setZero();
        d_score.row(r).setZero();
        grad.row(r).setZero();
        continue;
      }
      // scale * D[t, c0 + j], 0 where (t, c0 + j) is hidden.
      const Index visible = mask.causal() ? std::min(cols, t - c0 + 1) : cols;
      decay_weights(parts, r, visible, scale, decay.data());
      Row(decay.data() + visible, cols - visible).setZero();
      if (!mask.causal())
        for (Index j = 0; j < cols; ++j)
          if (!mask.allows(t, c0 + j)) decay[j] = T(0);
      const auto row_decay = decay.head(cols).array();
      score.row(r).array() *= row_decay;                                        // Ct
      d_score.row(r).array() = d_score.row(r).array() * inv_den[t] + d_sum[t];  // dCt
      grad.row(r).array() = d_score.row(r).array() * score.row(r).array();
      d_score.row(r).array() *= row_decay;
      score.row(r) *= inv_den[t];
    }
    // G's sums in double: the rows' and the columns' reach df as a difference.
    const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> grad_double =
        grad.template cast<double>();
    grad_row_sum.segment(r0, rows) += grad_double.rowwise().sum();
    grad_col_sum.segment(c0, cols) = grad_double.colwise().sum().transpose();
    matrix_product<T>(cols, s.v_dim, rows, {score.data(), width, true}, {dh_rows, s.v_dim},
                      p.dv + c0 * p.v_stride, p.v_stride, Accumulate::no,
                      upper);  // dV_cols = score^T dH_rows
    matrix_product<T>(cols, s.qk_dim, rows, {d_score.data(), width, true}, {q_rows, p.q_stride},
                      p.dk + c0 * p.k_stride, p.k_stride, Accumulate::no,
                      upper);  // dK_cols = dscore^T Q_rows
    matrix_product<T>(rows, s.qk_dim, cols, {d_score.data(), width}, {k_cols, p.k_stride},
                      p.dq + r0 * p.q_stride, p.q_stride, Accumulate::yes,
                      lower);  // dQ_rows += dscore K_cols
  }

  // m_t = logD[source_t]: its gradient joins G at that entry. Then logD[t, s] = prefix_t -
  // prefix_s + i_s: di_s = sum_t G[t, s], dprefix_t = sum_s G[t, s] - di_t.
  Doubles d_prefix = grad_row_sum;
  for (Index t = 0; t < S; ++t) {
    if (empty(t)) continue;
    const double d_m = d_stabilizer[t] - grad_row_sum[t];
    d_prefix[gates.source[t] / S] += d_m;
    grad_col_sum[gates.source[t] % S] += d_m;
  }
  double d_log_forget = 0.0;  // sum_{t >= r} dprefix_t
  for (Index r = S - 1; r >= 0; --r) {
    p.di[r] = static_cast<T>(grad_col_sum[r]);
    d_log_forget += d_prefix[r] - grad_col_sum[r];
    p.df[r] = static_cast<T>(d_log_forget) * log_sigmoid_derivative(p.fgate[r]);
  }
}

// Threads for `products` matrix products of (S, S) by (S, D) per head (half of it, causal).
inline int parallel_threads(const SequenceShape& s, Index heads, int num_threads, int products) {
  const double flops = static_cast<double>(products) * static_cast<double>(heads) *
                       static_cast<double>(s.seq_len) * static_cast<double>(s.seq_len) *
                       static_cast<double>(s.qk_dim + s.v_dim);
  return threads_for_work(num_threads, heads, flops);
}

// The mask a forward applied, as its cache keeps it: nullopt for the causal mask.
inline std::optional<Mask> applied_mask(const SequenceMask& mask) {
  if (mask.causal()) return std::nullopt;
  Mask copy(mask.seq_len, mask.seq_len);
  std::copy_n(mask.visible, copy.size(), copy.data());
  return copy;
}

inline bool same_mask(const std::optional<Mask>& cached, const SequenceMask& mask) {
  if (!cached || mask.causal()) return !cached && mask.causal();
  return std::equal(mask.visible, mask.visible + cached->size(), cached->data());
}

// The cache must come from a forward with these inputs and options.
template <typename T>
void check_parallel_forward(const ParallelForward<T>& forward, const SequenceShape& s,
                            const ParallelOptions& options, const SequenceMask& mask) {
  expect_shape<T, 4>(forward.h, {s.batch, s.heads, s.seq_len, s.v_dim}, "forward.h",
                     "(B, NH, S, DV) of v");
  expect_shape<T, 4>(forward.cache.row_sum, {s.batch, s.heads, s.seq_len, 1},
                     "forward.cache.row_sum", "(B, NH, S, 1) of q");
  if (forward.cache.stabilize_rowwise != options.stabilize_rowwise) {
    throw ValueError("options.stabilize_rowwise",
                     std::string("expected the forward's value ") +
                         (forward.cache.stabilize_rowwise ? "true" : "false") + ", got " +
                         (options.stabilize_rowwise ? "true" : "false"));
  }
  if (forward.cache.eps != options.eps) {
    std::ostringstream text;
    text << "expected the forward's value " << forward.cache.eps << ", got " << options.eps;
    throw ValueError("options.eps", text.str());
  }
  if (!same_mask(forward.cache.mask, mask)) {
    throw ValueError("options.mask", std::string("expected the mask the forward applied (") +
                                         (forward.cache.mask ? "a given one" : "causal") +
                                         "), got " +
                                         (mask.causal() ? "the causal mask" : "another mask"));
  }
}

// The forward on `in` under `mask` with its cache written into `out`, whose tensors are resized
// (a no-op when their sizes are unchanged: a training loop passes the same one again).
template <typename T>
void parallel_forward_with_cache(const ParallelOperands<T>& in, const SequenceMask& mask,
                                 int threads, const ParallelOptions& options,
                                 ParallelForward<T>& out) {
  const SequenceShape& s = in.shape;
  out.h.resize(s.batch, s.heads, s.seq_len, s.v_dim);
  out.cache.row_sum.resize(s.batch, s.heads, s.seq_len, 1);
  out.cache.stabilize_rowwise = options.stabilize_rowwise;
  out.cache.eps = options.eps;
  out.cache.mask = applied_mask(mask);
  parallel_forward(in, mask, options.stabilize_rowwise, static_cast<T>(options.eps), threads,
                   out.h.data(), out.cache.row_sum.data());
}

template <typename T>
ParallelForward<T> parallel_forward_with_cache(const ParallelCall<T>& call,
                                               const ParallelOptions& options) {
  ParallelForward<T> out;
  parallel_forward_with_cache(operands_of(call.in), call.mask, call.threads, options, out);
  return out;
}

// The gradients for dh (B, NH, S, DV) written to `out`, from the forward's cache on `in` under
// `mask`.
template <typename T>
void parallel_backward(const ParallelOperands<T>& in, const SequenceMask& mask, int threads,
                       const T* dh, const ParallelForward<T>& forward,
                       const ParallelOptions& options, const ParallelGradientRows<T>& out) {
  const SequenceShape& s = in.shape;
  MLSTM_ASSERT(out.dq.row_stride == in.q.row_stride && out.dk.row_stride == in.k.row_stride &&
                   out.dv.row_stride == in.v.row_stride,
               "the gradients lie as their inputs");
  const Index heads = s.batch * s.heads;
  parallel_for(heads, parallel_threads(s, heads, threads, 5), [&](Index head) {
    const Index row = head * s.seq_len;
    const ParallelHeadBackward<T> p{in.q.head(head, s.heads),
                                    in.k.head(head, s.heads),
                                    in.v.head(head, s.heads),
                                    in.igate_preact + row,
                                    in.fgate_preact + row,
                                    forward.h.data() + row * s.v_dim,
                                    dh + row * s.v_dim,
                                    forward.cache.row_sum.data() + row,
                                    out.dq.head(head, s.heads),
                                    out.dk.head(head, s.heads),
                                    out.dv.head(head, s.heads),
                                    out.di + row,
                                    out.df + row,
                                    in.q.row_stride,
                                    in.k.row_stride,
                                    in.v.row_stride};
    parallel_backward_head(p, s, mask, options.stabilize_rowwise, static_cast<T>(options.eps));
  });
}

// The gradients written into `grads`, resized like parallel_forward_with_cache's `out`.
template <typename T>
void parallel_backward(const ParallelCall<T>& call, const ConstTensorMap<T, 4>& dh,
                       const ParallelForward<T>& forward, const ParallelOptions& options,
                       ParallelGradients<T>& grads) {
  const SequenceShape& s = call.in.shape;
  resize_sequence_gradients(s, grads);
  const ParallelGradientRows<T> out{
      rows_by_head(grads.dq.data(), s, s.qk_dim), rows_by_head(grads.dk.data(), s, s.qk_dim),
      rows_by_head(grads.dv.data(), s, s.v_dim), grads.di.data(), grads.df.data()};
  parallel_backward(operands_of(call.in), call.mask, call.threads, dh.data(), forward, options,
                    out);
}

template <typename T>
ParallelGradients<T> parallel_backward(const ParallelCall<T>& call, const ConstTensorMap<T, 4>& dh,
                                       const ParallelForward<T>& forward,
                                       const ParallelOptions& options) {
  ParallelGradients<T> grads;
  parallel_backward(call, dh, forward, options, grads);
  return grads;
}

// parallel_stabilized_backward (below) with the cached forward, its gradients written into
// `grads` (resized like parallel_forward_with_cache's `out`).
template <typename Q, typename K, typename V, typename I, typename F, typename DH>
void parallel_stabilized_backward(const Q& q, const K& k, const V& v, const I& igate_preact,
                                  const F& fgate_preact, const DH& dh,
                                  const ParallelForward<ScalarOf<Q>>& forward,
                                  const ParallelOptions& options,
                                  ParallelGradients<ScalarOf<Q>>& grads) {
  require_same_scalar<Q, DH>();
  const auto call = check_parallel_call(q, k, v, igate_preact, fgate_preact, options);
  const auto dh_view = check_output_gradient(dh, call.in.shape, "dh", call.threads);
  check_parallel_forward(forward, call.in.shape, options, call.mask);
  parallel_backward(call, dh_view, forward, options, grads);
}

}  // namespace detail

// The parallel form's forward (parallel_stabilized, the same computation) that also returns
// what its backward needs: h (B, NH, S, DV) and the row sums b_t.
template <typename Q, typename K, typename V, typename I, typename F>
ParallelForward<ScalarOf<Q>> parallel_stabilized_forward_with_cache(
    const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact,
    const ParallelOptions& options = {}) {
  return detail::parallel_forward_with_cache(
      detail::check_parallel_call(q, k, v, igate_preact, fgate_preact, options), options);
}

// The gradients of sum(h * dh) with respect to q, k, v, igate_preact and fgate_preact, where h
// is the parallel form's output for these inputs and options, given the cached forward.
// dh (B, NH, S, DV). `forward` must be the result of parallel_stabilized_forward_with_cache on
// the same inputs and options (shapes, eps, stabilize_rowwise and the mask are checked).
template <typename Q, typename K, typename V, typename I, typename F, typename DH>
ParallelGradients<ScalarOf<Q>> parallel_stabilized_backward(
    const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact, const DH& dh,
    const ParallelForward<ScalarOf<Q>>& forward, const ParallelOptions& options = {}) {
  ParallelGradients<ScalarOf<Q>> grads;
  detail::parallel_stabilized_backward(q, k, v, igate_preact, fgate_preact, dh, forward, options,
                                       grads);
  return grads;
}

// The same gradients without a cached forward: runs the forward first.
template <typename Q, typename K, typename V, typename I, typename F, typename DH>
ParallelGradients<ScalarOf<Q>> parallel_stabilized_backward(const Q& q, const K& k, const V& v,
                                                            const I& igate_preact,
                                                            const F& fgate_preact, const DH& dh,
                                                            const ParallelOptions& options = {}) {
  detail::require_same_scalar<Q, DH>();
  const auto call = detail::check_parallel_call(q, k, v, igate_preact, fgate_preact, options);
  const auto dh_view = detail::check_output_gradient(dh, call.in.shape, "dh", call.threads);
  return detail::parallel_backward(call, dh_view,
                                   detail::parallel_forward_with_cache(call, options), options);
}

}  // namespace mlstm
