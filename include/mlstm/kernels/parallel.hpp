// The mLSTM cell in parallel form (the reference's parallel_stabilized_simple).
//
// Shapes: q, k (B, NH, S, DQK); v (B, NH, S, DV); igate_preact, fgate_preact (B, NH, S, 1);
// returns h (B, NH, S, DV). Scalars: float, double, or Eigen::bfloat16 (computed in float).
// Per (b, h), for rows t and columns s allowed by the mask:
//
//   F[t,s]    = sum_{r=s+1..t} logsigmoid(f_r)
//   logD[t,s] = F[t,s] + i_s
//   m_t       = max_s logD[t,s]        (stabilize_rowwise; else one max over all t, s)
//   Ct[t,s]   = (q_t . k_s / sqrt(DQK)) * exp(logD[t,s] - m_t)
//   h_t       = sum_s Ct[t,s] v_s / (max(|sum_s Ct[t,s]|, exp(-m_t)) + eps)
//
// For a given mask that shows row t a later column s > t, F[t,s] is what the difference of
// prefix sums gives, -sum_{r=t+1..s} logsigmoid(f_r) (as in the reference), not -inf.
// F is a difference of prefix sums of logsigmoid(f) held in double-double (gate_decay.hpp), so
// each exponent is as accurate as a direct sum over r. A row that the mask leaves empty gives
// h_t = 0 (the limit of the formula; the reference gives NaN there).
//
// How it is computed: no (S, S) matrix is ever formed. A first pass over the gates alone finds
// m_t for every row (O(S) per head for the causal mask, from the prefix maximum of
// i_s - prefix_s; a pass over the mask for a given one), so every exponent is taken once,
// relative to its row's final stabilizer, and nothing is rescaled later. Then each tile of rows
// [t0, t1) walks tiles of columns: scores = Q_rows K_cols^T (one matrix product), weights
// = scores * exp(logD - m) elementwise, acc += weights V_cols (one matrix product), row sums
// alongside. Column tiles right of the diagonal are skipped, and so are the rows of a diagonal
// tile above it (with a given mask: the tiles it hides entirely).
// Memory beyond inputs and output: O(S) per head for the gates, one tile per thread.
// Threads take (batch-head, row tile) items, largest first; each item is computed by one thread
// in a fixed order, so h does not depend on the thread count.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "mlstm/detail/bfloat16.hpp"
#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/gate_decay.hpp"
#include "mlstm/detail/math.hpp"
#include "mlstm/detail/matrix_product.hpp"
#include "mlstm/kernels/mask.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

struct ParallelOptions {
  bool stabilize_rowwise = true;  // one stabilizer per row; false: one per (batch, head)
  double eps = 1e-6;              // added to the normalizer; finite and > 0
  std::optional<Mask> mask;       // (L, L); see mask.hpp for the rule
  int num_threads = 0;            // 0: the library default (mlstm::set_num_threads)
};

namespace detail {

// Tile sizes of the parallel kernel: rows x columns of the weight tile, also the column panels of
// the backward. Under the causal mask the panel that meets the diagonal holds a square of which
// only the lower half is used. The packed product skips the upper half tile by tile
// (matrix_product.hpp); Eigen's and oneDNN's compute most of it: panel / S of the work is wasted.
// Panels of 64 columns keep that small for short sequences (S = 256: 25% instead of 50%); from
// S = 2048 on, where 128 columns waste at most 1/16, the wider products run faster
// (bench/README.md).
inline constexpr Index parallel_tile_rows = 256;
inline constexpr Index parallel_wide_panel_min_length = 2048;
inline Index parallel_panel_columns(Index seq_len) {
  return seq_len >= parallel_wide_panel_min_length ? 128 : 64;
}

// The gate quantities of one head (see gate_decay.hpp), with prefix[t] = sum_{r<=t} lf_r:
//   col[s]        = i_s - prefix[s]
//   row[t]        = m_t - prefix[t]     (+inf for a row that sees nothing)
//   stabilizer[t] = m_t                 (-inf for a row that sees nothing)
//   source[t]     = t' * S + s', the entry logD[t', s'] that m_t is (-1 for a row that sees
//                   nothing): the first maximal column of the row, or with one max per head the
//                   first maximal entry in row-major order, as torch.max picks it. The backward
//                   (parallel_backward.hpp) sends m_t's gradient there.
struct ParallelHeadGates {
  DoubleDoubles col, row;
  std::vector<double> stabilizer;
  std::vector<Index> source;
};

// m_t = max over the visible s of prefix[t] - prefix[s] + i_s = prefix[t] + max_s col[s], or,
// when not rowwise, the maximum of that over all rows (for every row that sees something).
// Under the causal mask max_{s<=t} col[s] is a prefix maximum: O(S); a given mask is scanned.
template <typename T>
void parallel_head_gates(const T* igate, const T* fgate, Index seq_len, const SequenceMask& mask,
                         bool stabilize_rowwise, ParallelHeadGates& gates) {
  std::vector<DoubleDouble> prefix;
  log_forget_prefix(fgate, seq_len, prefix);
  std::vector<DoubleDouble> col(static_cast<size_t>(seq_len)), row(col.size());
  std::vector<Index> argmax(col.size(), -1);  // the column of row[t]
  for (Index s = 0; s < seq_len; ++s)
    col[s] = DoubleDouble{static_cast<double>(igate[s]), 0.0} - prefix[s];
  DoubleDouble running = dd_minus_infinity;
  Index running_argmax = -1;
  for (Index t = 0; t < seq_len; ++t) {
    if (mask.causal()) {
      if (running_argmax < 0 || running < col[t]) {
        running = col[t];
        running_argmax = t;
      }
      row[t] = running;
      argmax[t] = running_argmax;
    } else {
      row[t] = dd_minus_infinity;
      for (Index s = 0; s < seq_len; ++s) {
        if (mask.allows(t, s) && (argmax[t] < 0 || row[t] < col[s])) {
          row[t] = col[s];
          argmax[t] = s;
        }
      }
    }
  }
  // So far row[t] = max_s col[s]; m_t = prefix[t] + row[t]. Make row[t] = m_t - prefix[t].
  auto empty = [&](Index t) { return argmax[t] < 0; };
  DoubleDouble global_max = dd_minus_infinity;
  Index global_row = -1;
  for (Index t = 0; t < seq_len; ++t) {
    if (!empty(t) && (global_row < 0 || global_max < prefix[t] + row[t])) {
      global_max = prefix[t] + row[t];
      global_row = t;
    }
  }
  gates.col.resize(seq_len);
  gates.row.resize(seq_len);
  gates.stabilizer.resize(static_cast<size_t>(seq_len));
  gates.source.resize(static_cast<size_t>(seq_len));
  for (Index t = 0; t < seq_len; ++t) {
    gates.col.set(t, col[t]);
    if (empty(t)) {
      gates.row.set(t, dd_plus_infinity);
      gates.stabilizer[t] = minus_infinity<double>;
      gates.source[t] = -1;
    } else if (stabilize_rowwise) {
      gates.row.set(t, row[t]);
      gates.stabilizer[t] = (prefix[t] + row[t]).value();
      gates.source[t] = t * seq_len + argmax[t];
    } else {
      gates.row.set(t, global_max - prefix[t]);
      gates.stabilizer[t] = global_max.value();
      gates.source[t] = global_row * seq_len + argmax[global_row];
    }
  }
}

// Where the rows of q, k or v lie, head by head: step t of head h of batch b at
// data + b * batch_stride + h * head_stride + t * row_stride. The kernels' (B, NH, S, D) tensors
// keep a head's rows together (D apart); the model's (B, S, NH * D) activations are read where
// they lie, a head's rows NH * D apart, instead of being copied into heads first.
template <typename T>
struct HeadRows {
  T* data = nullptr;
  Index batch_stride = 0, head_stride = 0, row_stride = 0;

  // The first row of head `index` = b * heads + h.
  T* head(Index index, Index heads) const {
    return data + (index / heads) * batch_stride + (index % heads) * head_stride;
  }
};

// (B, NH, S, D) at `data`.
template <typename T>
HeadRows<T> rows_by_head(T* data, const SequenceShape& s, Index dim) {
  return {data, s.heads * s.seq_len * dim, s.seq_len * dim, dim};
}

// (B, S, NH * D) at `data`.
template <typename T>
HeadRows<T> rows_by_position(T* data, const SequenceShape& s, Index dim) {
  return {data, s.seq_len * s.heads * dim, dim, s.heads * dim};
}

// The parallel form's operands: q, k (DQK), v (DV) by head rows, the gates' pre-activations
// (B, NH, S).
template <typename T>
struct ParallelOperands {
  SequenceShape shape;
  HeadRows<const T> q, k, v;
  const T* igate_preact;
  const T* fgate_preact;
};

template <typename T>
ParallelOperands<T> operands_of(const SequenceInputs<T>& in) {
  const SequenceShape& s = in.shape;
  return {s,
          rows_by_head(in.q.data(), s, s.qk_dim),
          rows_by_head(in.k.data(), s, s.qk_dim),
          rows_by_head(in.v.data(), s, s.v_dim),
          in.igate_preact.data(),
          in.fgate_preact.data()};
}

// Pointers to one head's slices: q, k (S, DQK), v (S, DV) with their row strides, h (S, DV)
// contiguous.
template <typename T>
struct HeadSlices {
  const T* q;
  const T* k;
  const T* v;
  T* h;
  Index q_stride, k_stride, v_stride;
};

// h for rows [t0, t1) of one head (see the file comment); the row sums sum_s Ct[t, s] go to
// row_sum[t0, t1) when row_sum is not null.
template <typename T>
void parallel_row_tile(const HeadSlices<T>& head, const ParallelHeadGates& gates,
                       const SequenceShape& s, const SequenceMask& mask, Index t0, Index t1, T eps,
                       T* row_sum) {
  using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  const Index rows = t1 - t0;
  const std::vector<double>& m = gates.stabilizer;
  const T scale = T(1) / std::sqrt(static_cast<T>(s.qk_dim));

  const Index panel = parallel_panel_columns(s.seq_len);
  Matrix weights(rows, panel);  // row stride panel
  Matrix acc = Matrix::Zero(rows, s.v_dim);
  Vector rowsum = Vector::Zero(rows), decay(panel);

  const Index column_end = mask.causal() ? t1 : s.seq_len;
  for (Index c0 = 0; c0 < column_end; c0 += panel) {
    const Index c1 = std::min(c0 + panel, column_end);
    const Index cols = c1 - c0;
    if (!mask.causal() && !mask.any_visible(t0, t1, c0, c1)) continue;
    // Under the causal mask, rows above c0 see nothing of this tile: leave them out.
    const Index first = mask.causal() ? std::max<Index>(0, c0 - t0) : 0;
    const Index active = rows - first;
    auto tile = weights.block(first, 0, active, cols);
    // A causal tile from c0 >= t0 on starts on the diagonal (its row `first` is step c0): only
    // its lower triangle is seen, so both products skip the rest (matrix_product.hpp).
    const Triangle triangle = mask.causal() && c0 >= t0 ? Triangle::lower_result : Triangle::none;
    // tile = Q[t0 + first, ...] K[c0, ...]^T
    matrix_product<T>(active, cols, s.qk_dim,
                      {head.q + (t0 + first) * head.q_stride, head.q_stride},
                      {head.k + c0 * head.k_stride, head.k_stride, true}, tile.data(),
                      weights.outerStride(), Accumulate::no, triangle);
    if (mask.causal()) {
      const Index t = t0 + first;
      const DecayParts parts{gates.row.hi.data() + t, gates.row.lo.data() + t,
                             gates.col.hi.data() + c0, gates.col.lo.data() + c0};
      apply_causal_decay(tile.data(), active, cols, weights.outerStride(), parts, t - c0, scale,
                         decay.data(), rowsum.data() + first);
    } else {
      const DecayParts parts{gates.row.hi.data() + t0, gates.row.lo.data() + t0,
                             gates.col.hi.data() + c0, gates.col.lo.data() + c0};
      apply_masked_decay(tile.data(), rows, cols, weights.outerStride(), parts,
                         mask.visible + t0 * s.seq_len + c0, s.seq_len, scale, decay.data(),
                         rowsum.data());
    }
    // acc[first, ...] += tile V[c0, ...]
    matrix_product<T>(active, s.v_dim, cols, {tile.data(), weights.outerStride()},
                      {head.v + c0 * head.v_stride, head.v_stride}, acc.data() + first * s.v_dim,
                      s.v_dim, Accumulate::yes,
                      triangle == Triangle::lower_result ? Triangle::lower_a : Triangle::none);
  }

  Eigen::Map<Matrix> hidden(head.h + t0 * s.v_dim, rows, s.v_dim);
  for (Index r = 0; r < rows; ++r) {
    const double m_t = m[t0 + r];
    if (m_t == minus_infinity<double>) {  // nothing visible from this row
      hidden.row(r).setZero();
      continue;
    }
    hidden.row(r) = acc.row(r) / (normalizer(rowsum[r], static_cast<T>(m_t)) + eps);
  }
  if (row_sum != nullptr) Eigen::Map<Vector>(row_sum + t0, rows) = rowsum;
}

// The parallel form on validated inputs; writes h (B, NH, S, DV), and the row sums
// sum_s Ct[t, s] (B, NH, S) when row_sum is not null.
template <typename T>
void parallel_forward(const ParallelOperands<T>& in, const SequenceMask& mask,
                      bool stabilize_rowwise, T eps, int num_threads, T* h, T* row_sum = nullptr) {
  const SequenceShape& s = in.shape;
  const Index heads = s.batch * s.heads;
  const double flops = 2.0 * static_cast<double>(heads) * static_cast<double>(s.seq_len) *
                       static_cast<double>(s.seq_len) * static_cast<double>(s.qk_dim + s.v_dim);

  // The gate pass costs a log-sigmoid (some tens of operations) per step, and with a given mask
  // a look at every (t, s).
  const double gate_work = static_cast<double>(heads) * static_cast<double>(s.seq_len) *
                           (mask.causal() ? 50.0 : static_cast<double>(s.seq_len));
  std::vector<ParallelHeadGates> gates(static_cast<size_t>(heads));
  parallel_for(heads, threads_for_work(num_threads, heads, gate_work), [&](Index head) {
    const Index row = head * s.seq_len;
    parallel_head_gates(in.igate_preact + row, in.fgate_preact + row, s.seq_len, mask,
                        stabilize_rowwise, gates[static_cast<size_t>(head)]);
  });

  // Items run the largest row tiles (the last ones, under a causal mask) first.
  const Index row_tiles = (s.seq_len + parallel_tile_rows - 1) / parallel_tile_rows;
  const Index items = heads * row_tiles;
  parallel_for(items, threads_for_work(num_threads, items, flops), [&](Index item) {
    const Index head = item % heads;
    const Index tile = row_tiles - 1 - item / heads;
    const Index row = head * s.seq_len;
    const HeadSlices<T> slices{in.q.head(head, s.heads), in.k.head(head, s.heads),
                               in.v.head(head, s.heads), h + row * s.v_dim,
                               in.q.row_stride,          in.k.row_stride,
                               in.v.row_stride};
    const Index t0 = tile * parallel_tile_rows;
    parallel_row_tile(slices, gates[static_cast<size_t>(head)], s, mask, t0,
                      std::min(t0 + parallel_tile_rows, s.seq_len), eps,
                      row_sum == nullptr ? nullptr : row_sum + row);
  });
}

// A parallel-form call's validated arguments: the inputs, the mask it applies and its thread count.
template <typename T>
struct ParallelCall {
  SequenceInputs<T> in;
  SequenceMask mask;
  int threads;
};

template <typename Q, typename K, typename V, typename I, typename F>
ParallelCall<ScalarOf<Q>> check_parallel_call(const Q& q, const K& k, const V& v,
                                              const I& igate_preact, const F& fgate_preact,
                                              const ParallelOptions& options) {
  const int threads = resolve_num_threads(options.num_threads, "options.num_threads");
  auto in = check_sequence_inputs(q, k, v, igate_preact, fgate_preact, threads);
  expect_valid_eps(static_cast<ScalarOf<Q>>(options.eps), "options.eps");
  const SequenceMask mask = resolve_mask(options.mask, in.shape.seq_len);
  return {std::move(in), mask, threads};
}

}  // namespace detail

// q, k (B, NH, S, DQK), v (B, NH, S, DV), igate_preact, fgate_preact (B, NH, S, 1) -> h
// (B, NH, S, DV), the parallel form of the file comment.
template <typename Q, typename K, typename V, typename I, typename F>
Tensor<ScalarOf<Q>, 4> parallel_stabilized(const Q& q, const K& k, const V& v,
                                           const I& igate_preact, const F& fgate_preact,
                                           const ParallelOptions& options = {}) {
  using T = ScalarOf<Q>;
  if constexpr (detail::is_bfloat16<T>) {
    detail::require_same_scalar<Q, K, V, I, F>();
    return detail::to_bfloat16<4>(parallel_stabilized(
        detail::to_float<4>(q, "q", "(B, NH, S, DQK)"),
        detail::to_float<4>(k, "k", "(B, NH, S, DQK)"),
        detail::to_float<4>(v, "v", "(B, NH, S, DV)"),
        detail::to_float<4>(igate_preact, "igate_preact", "(B, NH, S, 1)"),
        detail::to_float<4>(fgate_preact, "fgate_preact", "(B, NH, S, 1)"), options));
  } else {
    const auto call = detail::check_parallel_call(q, k, v, igate_preact, fgate_preact, options);
    const detail::SequenceShape& s = call.in.shape;
    Tensor<T, 4> h(s.batch, s.heads, s.seq_len, s.v_dim);
    detail::parallel_forward(detail::operands_of(call.in), call.mask, options.stabilize_rowwise,
                             static_cast<T>(options.eps), call.threads, h.data());
    return h;
  }
}

}  // namespace mlstm
