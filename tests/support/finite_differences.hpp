// Central finite differences in double, for checking backward passes.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>

#include <mlstm/tensor.hpp>

namespace mlstm::test {

// Relative step of the central differences: truncation ~ step^2, rounding ~ 1e-16 / step.
inline constexpr double finite_difference_step = 1e-6;

// d loss / d values[i] for every i < size, by central differences, written to `gradient`;
// the values are restored afterwards. `loss` reads the values and returns a scalar.
inline void finite_difference_gradient(double* values, Index size,
                                       const std::function<double()>& loss, double* gradient) {
  for (Index flat = 0; flat < size; ++flat) {
    const double saved = values[flat];
    const double step = finite_difference_step * std::max(1.0, std::abs(saved));
    values[flat] = saved + step;
    const double above = loss();
    values[flat] = saved - step;
    const double below = loss();
    values[flat] = saved;
    gradient[flat] = (above - below) / (2 * step);
  }
}

// d loss / d x for every element of x (any rank), by central differences; x is restored.
template <int Rank>
Tensor<double, Rank> finite_difference_gradient(Tensor<double, Rank>& x,
                                                const std::function<double()>& loss) {
  Tensor<double, Rank> gradient(x.dimensions());
  finite_difference_gradient(x.data(), x.size(), loss, gradient.data());
  return gradient;
}

// sum(a * b) over all elements.
template <int Rank>
double dot(const Tensor<double, Rank>& a, const Tensor<double, Rank>& b) {
  double sum = 0;
  for (Index flat = 0; flat < a.size(); ++flat) sum += a.data()[flat] * b.data()[flat];
  return sum;
}

}  // namespace mlstm::test
