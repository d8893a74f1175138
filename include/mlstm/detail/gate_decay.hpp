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
#include <cmath>
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

// The log decay below which a weight is taken as exactly 0: ln(T's smallest normal number / its
// epsilon), about -71.4 for float and -672 for double. A weight there lies that many e-folds
// below its row's stabilizer, far below the rounding of any sum it joins. Left in, the weights
// of the 10 or so e-folds above T's underflow were subnormal numbers, or made the products that
// read them produce some, and every vector operation on one took the processor's slow path (on
// an Intel Xeon the parallel form at S = 4096 and 8192 ran 3x slower than its work). From this
// cut on, exp(exponent) times a scale and a score, or a weight times a value, stays normal
// unless the score or the value is below epsilon.
template <typename T>
double negligible_log_decay() {
  static const double cut = std::log(static_cast<double>(std::numeric_limits<T>::min()) /
                                     static_cast<double>(std::numeric_limits<T>::epsilon()));
  return cut;
}

// exponent[c] = col(c) - row(r) for the columns c in [0, count) of row r of a tile, each rounded
// to T once; -inf (a weight of 0) below negligible_log_decay<T>().
template <typename T>
void decay_exponents(const DecayParts& parts, Index r, Index count, T* exponent) {
  const double row_hi = parts.row_hi[r], row_lo = parts.row_lo[r];
  for (Index c = 0; c < count; ++c)
    exponent[c] = static_cast<T>((parts.col_hi[c] - row_hi) + (parts.col_lo[c] - row_lo));
  // A second pass in T: both loops vectorize, where one with the comparison in double did not.
  const T cut = static_cast<T>(negligible_log_decay<T>());
  for (Index c = 0; c < count; ++c)
    exponent[c] = exponent[c] < cut ? minus_infinity<T> : exponent[c];
}

// In place on a row-major tile `scores` (rows x cols, row stride `stride`) holding q_t . k_s:
//
//   W[r, c] = scores[r, c] * scale * exp(col(c) - row(r))   if row r sees column c
//   W[r, c] = 0                                              otherwise
//   rowsum[r] += sum_c W[r, c]
//
// Row r sees columns c <= r + diagonal (causal; a diagonal >= cols - 1 means all columns). Only
// visible entries are exponentiated, so an invisible entry's large exponent never matters.
// `exponent` is scratch of cols values.
template <typename T>
void apply_causal_decay(T* scores, Index rows, Index cols, Index stride, const DecayParts& parts,
                        Index diagonal, T scale, T* exponent, T* rowsum) {
  using Row = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
  for (Index r = 0; r < rows; ++r) {
    const Index visible = std::clamp<Index>(r + diagonal + 1, 0, cols);
    Row row(scores + r * stride, cols);
    if (visible > 0) {
      decay_exponents(parts, r, visible, exponent);
      row.head(visible) *= Row(exponent, visible).exp() * scale;
      rowsum[r] += row.head(visible).sum();
    }
    row.tail(cols - visible).setZero();
  }
}

// As apply_causal_decay, with visibility given by a row-major boolean mask: row r sees column c
// where visible[r * visible_stride + c]. Invisible entries are set to 0 (Eigen's vectorized exp
// gives a tiny positive number, not 0, for an exponent of -inf).
template <typename T>
void apply_masked_decay(T* scores, Index rows, Index cols, Index stride, const DecayParts& parts,
                        const bool* visible, Index visible_stride, T scale, T* exponent,
                        T* rowsum) {
  using Row = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
  for (Index r = 0; r < rows; ++r) {
    Row row(scores + r * stride, cols);
    const bool* sees = visible + r * visible_stride;
    decay_exponents(parts, r, cols, exponent);
    row *= Row(exponent, cols).exp() * scale;
    for (Index c = 0; c < cols; ++c)
      if (!sees[c]) row[c] = T(0);
    rowsum[r] += row.sum();
  }
}

}  // namespace mlstm::detail
