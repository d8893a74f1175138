// The gate side of the parallel and chunkwise kernels: prefix sums of log forget gates, and the
// step that turns a tile of query-key scores into decay-weighted scores.
//
// Within a run of steps with prefix sums cs[t] = sum_{r<=t} logsigmoid(f_r), the log weight of
// column s in row t relative to the row's stabilizer m_t is
//
//   logD[t, s] - m_t = (cs[t] - cs[s] + i_s) - m_t = col[s] - row[t],
//   col[s] = i_s - cs[s],    row[t] = m_t - cs[t].
//
// Both parts are kept as double-doubles (see double_double.hpp), so their difference, rounded
// to T once per element, is as accurate as a sum over the steps between s and t.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <limits>
#include <vector>

#include "mlstm/detail/double_double.hpp"
#include "mlstm/detail/math.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::detail {

// Double-doubles stored as two arrays (hi, lo), so that the per-element loops vectorize.
struct DoubleDoubles {
  std::vector<double> hi, lo;

  void resize(Index size) {
    hi.resize(static_cast<size_t>(size));
    lo.resize(static_cast<size_t>(size));
  }
  void set(Index i, DoubleDouble x) {
    hi[static_cast<size_t>(i)] = x.hi;
    lo[static_cast<size_t>(i)] = x.lo;
  }
  DoubleDouble operator[](Index i) const {
    return {hi[static_cast<size_t>(i)], lo[static_cast<size_t>(i)]};
  }
};

// prefix[t] = sum_{r=0..t} logsigmoid(f_r) for t in [0, length), exact to double-double.
template <typename T>
void log_forget_prefix(const T* fgate, Index length, std::vector<DoubleDouble>& prefix) {
  prefix.resize(static_cast<size_t>(length));
  DoubleDouble sum;
  for (Index t = 0; t < length; ++t) {
    sum = sum + DoubleDouble{static_cast<double>(log_sigmoid(fgate[t])), 0.0};
    prefix[static_cast<size_t>(t)] = sum;
  }
}

// The parts of a tile's exponents: exponent(r, c) = col(c) - row(r), from the first row and
// first column of the tile on.
struct DecayParts {
  const double* row_hi;
  const double* row_lo;
  const double* col_hi;
  const double* col_lo;
};

// The decay below which a weight is exactly 0: T's smallest normal number over its epsilon,
// 2^-103 for float and 2^-970 for double. Such a weight lies 71 (float) or 672 (double) e-folds
// below its row's stabilizer: against the normalizer's eps (1e-6 by default) or the row's own
// largest weight it is far below rounding. Left in, the weights of the few e-folds above T's
// underflow were subnormal numbers, or made the products that read them produce some, and each
// vector instruction on one took the processor's slow path (on an Intel Xeon the parallel form at
// S = 4096 and 8192 ran 3x slower than its work: bench/README.md). Above it, a weight times a
// score or a value stays normal unless the score or the value is itself below epsilon.
template <typename T>
constexpr T negligible_decay() {
  return std::numeric_limits<T>::min() / std::numeric_limits<T>::epsilon();
}

// weight[c] = scale * exp(col(c) - row(r)) for the columns c in [0, count) of row r of a tile,
// each exponent rounded to T once; exactly 0 where exp(col(c) - row(r)) < negligible_decay<T>().
template <typename T>
void decay_weights(const DecayParts& parts, Index r, Index count, T scale, T* weight) {
  using Row = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
  constexpr double ln2 = 0.6931471805599453;
  constexpr int cut_log2 =
      std::numeric_limits<T>::min_exponent + std::numeric_limits<T>::digits - 2;
  if (count < 1) return;
  const double row_hi = parts.row_hi[r], row_lo = parts.row_lo[r];
  for (Index c = 0; c < count; ++c)
    weight[c] = static_cast<T>((parts.col_hi[c] - row_hi) + (parts.col_lo[c] - row_lo));
  Row weights(weight, count);
  // Most rows have no weight within two binades of the cut: one pass, as without it. A row with
  // a NaN or an infinity goes the other way, where it stays NaN or infinite: minCoeff() may miss
  // a low weight beside a NaN, the sum of weight * 0 is 0 only for finite rows. (Both are
  // vectorized to their ends; on short rows minCoeff<PropagateNaN>'s scalar lane merge and ends
  // were most of the test's time.)
  if (weights.minCoeff() >= static_cast<T>((cut_log2 + 2) * ln2) &&
      (weights * T(0)).sum() == T(0)) {
    weights = weights.exp() * scale;
    return;
  }
  // Exponents are raised to ln(negligible_decay / 2) first, so that exp never works where its
  // result is subnormal (Eigen's vectorized exp returns a subnormal number, not 0, even for
  // -inf on some instruction sets); the weights below the cut are then set to 0.
  const T floor = static_cast<T>((cut_log2 - 1) * ln2);
  for (Index c = 0; c < count; ++c) weight[c] = std::max(weight[c], floor);
  weights = weights.exp();
  constexpr T cut = negligible_decay<T>();
  for (Index c = 0; c < count; ++c) weight[c] = weight[c] < cut ? T(0) : weight[c] * scale;
}

// In place on a row-major tile `scores` (rows x cols, row stride `stride`) holding q_t . k_s:
//
//   W[r, c] = scores[r, c] * scale * exp(col(c) - row(r))   if row r sees column c
//   W[r, c] = 0                                              otherwise
//   rowsum[r] += sum_c W[r, c]
//
// Row r sees columns c <= r + diagonal (causal; a diagonal >= cols - 1 means all columns). Only
// visible entries are exponentiated, so an invisible entry's large exponent never matters.
// `decay` is scratch of cols values.
template <typename T>
void apply_causal_decay(T* scores, Index rows, Index cols, Index stride, const DecayParts& parts,
                        Index diagonal, T scale, T* decay, T* rowsum) {
  using Row = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
  for (Index r = 0; r < rows; ++r) {
    const Index visible = std::clamp<Index>(r + diagonal + 1, 0, cols);
    Row row(scores + r * stride, cols);
    if (visible > 0) {
      decay_weights(parts, r, visible, scale, decay);
      row.head(visible) *= Row(decay, visible);
      rowsum[r] += row.head(visible).sum();
    }
    row.tail(cols - visible).setZero();
  }
}

// As apply_causal_decay, with visibility given by a row-major boolean mask: row r sees column c
// where visible[r * visible_stride + c]. Invisible entries are set to 0 afterwards: the exponent
// of one means nothing, and its weight may be any value, inf included.
template <typename T>
void apply_masked_decay(T* scores, Index rows, Index cols, Index stride, const DecayParts& parts,
                        const bool* visible, Index visible_stride, T scale, T* decay, T* rowsum) {
  using Row = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
  for (Index r = 0; r < rows; ++r) {
    Row row(scores + r * stride, cols);
    const bool* sees = visible + r * visible_stride;
    decay_weights(parts, r, cols, scale, decay);
    row *= Row(decay, cols);
    for (Index c = 0; c < cols; ++c)
      if (!sees[c]) row[c] = T(0);
    rowsum[r] += row.sum();
  }
}

}  // namespace mlstm::detail
