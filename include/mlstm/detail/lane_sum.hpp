// Long sums in double that run in vector registers.
#pragma once

#include "mlstm/tensor.hpp"

namespace mlstm::detail {

// sum_j term(j) for j in [0, count), in double, over eight interleaved partial sums (term j in
// sum j % 8; the last count % 8 terms in a ninth), added in a fixed order. One running sum is a
// chain of dependent additions, four cycles each; eight independent ones run side by side in
// vector registers (the compiler may not reorder one sum into several by itself).
template <typename Term>
double lane_sum(Index count, const Term& term) {
  constexpr int lanes = 8;
  double partial[lanes] = {};
  const Index whole = count - count % lanes;
  for (Index j = 0; j < whole; j += lanes)
    for (int lane = 0; lane < lanes; ++lane) partial[lane] += term(j + lane);
  double sum = 0.0;
  for (Index j = whole; j < count; ++j) sum += term(j);
  for (int lane = 0; lane < lanes; ++lane) sum += partial[lane];
  return sum;
}

// The sum of squares of values [0, count) in double, in lane_sum's running sums.
template <typename T>
double sum_of_squares(const T* values, Index count) {
  return lane_sum(count, [values](Index j) {
    const double value = static_cast<double>(values[j]);
    return value * value;
  });
}

}  // namespace mlstm::detail
