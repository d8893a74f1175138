// One chunk of the chunkwise form (kernels/chunkwise.hpp, whose file comment gives the
// equations): the building blocks that the forward's walks over a sequence and the backward
// (chunkwise_backward.hpp), which recomputes the chunk states, share.
//
//   ChunkGates::compute        a chunk's gate sums (cum, col, total)
//   chunk_state_contribution   what a chunk adds to the state at its end (needs no state)
//   advance_chunk_state        the state across a chunk
//   ChunkRows                  a chunk's stabilizers given the state's m at its start
//   chunk_forward              a chunk's decay, weights and unnormalized outputs (ChunkForward)
//   chunk_outputs              h of a chunk from the state at its start
//
// Each function computes in a fixed order on the calling thread; the walks decide the threads.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <vector>

#include "mlstm/detail/gate_decay.hpp"
#include "mlstm/detail/math.hpp"
#include "mlstm/detail/matrix_product.hpp"
#include "mlstm/detail/prefetch.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::detail {

// The gates of one chunk of `length` steps, with cum[t] = sum_{r=0..t} logsigmoid(f_r) from the
// chunk's first step (see gate_decay.hpp for why these are double-doubles):
//   col[s]  = i_s - cum[s]
//   a_s     = total + col[s]: the log weight of step s's key-value in the state at the chunk's
//             end, total = cum[length - 1]
struct ChunkGates {
  std::vector<DoubleDouble> cum;
  DoubleDoubles col;
  DoubleDouble col_max;  // max_s col[s]
  double total = 0.0;

  template <typename T>
  void compute(const T* igate_preact, const T* fgate_preact, Index length) {
    log_forget_prefix(fgate_preact, length, cum);
    col.resize(length);
    col_max = dd_minus_infinity;
    for (Index s = 0; s < length; ++s) {
      const DoubleDouble value = DoubleDouble{static_cast<double>(igate_preact[s]), 0.0} - cum[s];
      col.set(s, value);
      col_max = std::max(col_max, value);
    }
    total = cum.back().value();
  }

  Index length() const { return static_cast<Index>(cum.size()); }
};

// The chunk's own contribution to the state at its end, stabilized by max_s a_s:
//   kv   (DQK, DV) = sum_s exp(a_s - max a) (k_s / sqrt(DQK)) v_s^T
//   ksum (DQK)     = sum_s exp(a_s - max a)  k_s / sqrt(DQK)
// where a_s - max a = col[s] - col_max.
// k (L, DQK), v (L, DV) row-major; weighted_keys is scratch. Needs no state, so chunks can be
// done in any order.
template <typename T>
void chunk_state_contribution(const T* k, const T* v, const ChunkGates& gates, Index qk_dim,
                              Index v_dim, T* kv, T* ksum, RowMatrix<T>& weighted_keys) {
  const Index length = gates.length();
  const double scale = 1.0 / std::sqrt(static_cast<double>(qk_dim));
  Eigen::Map<const RowMatrix<T>> keys(k, length, qk_dim);
  weighted_keys.resize(length, qk_dim);
  for (Index s = 0; s < length; ++s)
    weighted_keys.row(s) =
        keys.row(s) * static_cast<T>(std::exp((gates.col[s] - gates.col_max).value()) * scale);
  matrix_product<T>(qk_dim, v_dim, length, {weighted_keys.data(), qk_dim, true}, {v, v_dim}, kv,
                    v_dim);
  Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(ksum, qk_dim) = weighted_keys.colwise().sum();
}

// The state across one chunk, from (c, n, m) at its start to (c_next, n_next, m_next) at its end:
//   m_next = max(total + m, max a) = total + max(m, col_max)
//   c_next = exp(total + m - m_next) c + exp(max a - m_next) kv,   n_next likewise with ksum
// One of the two factors is 1; the other is exp(-|m - col_max|), taken from the double-double
// difference. c, c_next (DQK, DV), n, n_next (DQK); they may alias (an in-place update).
template <typename T>
void advance_chunk_state(const T* c, const T* n, double m, const T* kv, const T* ksum,
                         const ChunkGates& gates, Index qk_dim, Index v_dim, T* c_next, T* n_next,
                         double& m_next) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  const DoubleDouble state_log{m, 0.0};
  const bool state_leads = !(state_log < gates.col_max);
  const T carry =
      state_leads ? T(1) : static_cast<T>(std::exp((state_log - gates.col_max).value()));
  const T add = state_leads ? static_cast<T>(std::exp((gates.col_max - state_log).value())) : T(1);
  const double m_new = gates.total + (state_leads ? m : gates.col_max.value());
  const Index size = qk_dim * v_dim;
  Eigen::Map<Array>(c_next, size) =
      carry * Eigen::Map<const Array>(c, size) + add * Eigen::Map<const Array>(kv, size);
  Eigen::Map<Array>(n_next, qk_dim) =
      carry * Eigen::Map<const Array>(n, qk_dim) + add * Eigen::Map<const Array>(ksum, qk_dim);
  m_next = m_new;
}

// The rows of one chunk given the stabilizer m of the state at its start:
//   row[t]          = M_t = max(m, max_{s<=t} col[s])      (so m_t - cum[t], gate_decay.hpp)
//   stabilizer[t]   = m_t = cum[t] + M_t
//   state_weight[t] = exp(cum[t] + m - m_t) = exp(m - M_t)   the carried state's weight
struct ChunkRows {
  DoubleDoubles row;
  std::vector<double> stabilizer;
  std::vector<double> state_weight;

  ChunkRows(const ChunkGates& gates, double m) {
    const Index length = gates.length();
    row.resize(length);
    stabilizer.resize(static_cast<size_t>(length));
    state_weight.resize(static_cast<size_t>(length));
    const DoubleDouble state_log{m, 0.0};
    DoubleDouble running = state_log;
    for (Index t = 0; t < length; ++t) {
      running = std::max(running, gates.col[t]);
      row.set(t, running);
      stabilizer[t] = (gates.cum[t] + running).value();
      state_weight[t] = std::exp((state_log - running).value());
    }
  }
};

// The inputs of the chunk a caller works on next (its q, k and v rows), asked of the cache row
// by row while this chunk's decay is computed (chunk_forward), so that reading them from memory
// overlaps this chunk's arithmetic instead of stalling the next chunk's first reads (the scan for
// finite inputs; bench/README.md). length 0: nothing to fetch.
template <typename T>
struct ChunkInputsAhead {
  const T* q = nullptr;
  const T* k = nullptr;
  const T* v = nullptr;
  Index length = 0;

  void fetch_row(Index t, Index qk_dim, Index v_dim) const {
    if (t >= length) return;
    prefetch_range(q + t * qk_dim, qk_dim);
    prefetch_range(k + t * qk_dim, qk_dim);
    prefetch_range(v + t * v_dim, v_dim);
  }
};

// What a chunk's outputs are made of (see the file comment), shared by the forward and the
// backward (chunkwise_backward.hpp), which recomputes it:
//   decay (L, L)             scale * exp(cum[t] - cum[s] + i_s - m_t) for s <= t, else 0
//   weights (L, L)           (q_t . k_s) * decay[t, s]
//   weighted_queries (L, DQK) exp(cum[t] + m - m_t) q_t
//   acc (L, DV)              weights V + weighted_queries C
//   denominator (L)          row sums of weights + weighted_queries n
// Reused from chunk to chunk (its buffers keep their size), with scratch for
// chunk_state_contribution and the next chunk's inputs to fetch (none unless the caller sets
// them).
template <typename T>
struct ChunkForward {
  RowMatrix<T> decay, weights, weighted_queries, acc, weighted_keys;
  Eigen::Matrix<T, Eigen::Dynamic, 1> denominator;
  ChunkInputsAhead<T> ahead;
};

// q, k (L, DQK), v (L, DV) row-major; c (DQK, DV), n (DQK): the state at the chunk's start.
template <typename T>
void chunk_forward(const T* q, const T* k, const T* v, const ChunkGates& gates,
                   const ChunkRows& rows, const T* c, const T* n, Index qk_dim, Index v_dim,
                   ChunkForward<T>& out) {
  using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  const Index length = gates.length();
  const T scale = T(1) / std::sqrt(static_cast<T>(qk_dim));
  Eigen::Map<const RowMatrix<T>> queries(q, length, qk_dim);
  Eigen::Map<const Vector> normalizer_state(n, qk_dim);

  const DecayParts parts{rows.row.hi.data(), rows.row.lo.data(), gates.col.hi.data(),
                         gates.col.lo.data()};
  out.decay.setZero(length, length);
  for (Index t = 0; t < length; ++t) {
    decay_weights(parts, t, t + 1, scale, out.decay.data() + t * length);
    out.ahead.fetch_row(t, qk_dim, v_dim);
  }
  // The backward's next chunk (the one before) is longer than a partial last chunk.
  for (Index t = length; t < out.ahead.length; ++t) out.ahead.fetch_row(t, qk_dim, v_dim);
  // Only the causal triangle is multiplied (matrix_product.hpp): weights = tril(Q K^T), and
  // W V sums row t over steps s <= t alone.
  out.weights.resize(length, length);
  T* weights = out.weights.data();
  matrix_product<T>(length, length, qk_dim, {q, qk_dim}, {k, qk_dim, true}, weights, length,
                    Accumulate::no, Triangle::lower_result);
  out.weights.array() *= out.decay.array();
  const Vector state_weight =
      Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, 1>>(rows.state_weight.data(), length)
          .template cast<T>();
  out.weighted_queries.noalias() = state_weight.asDiagonal() * queries;
  out.acc.resize(length, v_dim);
  matrix_product<T>(length, v_dim, length, {weights, length}, {v, v_dim}, out.acc.data(), v_dim,
                    Accumulate::no, Triangle::lower_a);
  matrix_product<T>(length, v_dim, qk_dim, {out.weighted_queries.data(), qk_dim}, {c, v_dim},
                    out.acc.data(), v_dim, Accumulate::yes);
  out.denominator = out.weights.rowwise().sum();
  out.denominator.noalias() += out.weighted_queries * normalizer_state;
}

// h of one chunk from the state (c, n, m) at its start (see the file comment): q, k (L, DQK),
// v (L, DV), h (L, DV) row-major; f is scratch.
template <typename T>
void chunk_outputs(const T* q, const T* k, const T* v, const ChunkGates& gates, const T* c,
                   const T* n, double m, Index qk_dim, Index v_dim, T eps, T* h,
                   ChunkForward<T>& f) {
  const Index length = gates.length();
  const ChunkRows rows(gates, m);
  chunk_forward(q, k, v, gates, rows, c, n, qk_dim, v_dim, f);
  Eigen::Map<RowMatrix<T>> hidden(h, length, v_dim);
  for (Index t = 0; t < length; ++t) {
    hidden.row(t) =
        f.acc.row(t) / (normalizer(f.denominator[t], static_cast<T>(rows.stabilizer[t])) + eps);
  }
}

}  // namespace mlstm::detail
