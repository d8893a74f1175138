// Central finite differences in double, for checking backward passes.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>

#include <mlstm/tensor.hpp>

namespace mlstm::test {

// Relative step of the central differences: truncation ~ step^2, rounding ~ 1e-16 / step.
inline constexpr double finite_difference_step = 1e-6;

// d loss / d x for every element of x, by central differences; x is restored afterwards.
// `loss` reads x (by reference) and returns a scalar.
inline Tensor<double, 4> finite_difference_gradient(Tensor<double, 4>& x,
                                                    const std::function<double()>& loss) {
  Tensor<double, 4> gradient(x.dimensions());
  for (Index flat = 0; flat < x.size(); ++flat) {
    const double saved = x.data()[flat];
    const double step = finite_difference_step * std::max(1.0, std::abs(saved));
    x.data()[flat] = saved + step;
    const double above = loss();
    x.data()[flat] = saved - step;
    const double below = loss();
    x.data()[flat] = saved;
    gradient.data()[flat] = (above - below) / (2 * step);
  }
  return gradient;
}

// sum(a * b) over all elements.
inline double dot(const Tensor<double, 4>& a, const Tensor<double, 4>& b) {
  double sum = 0;
  for (Index flat = 0; flat < a.size(); ++flat) sum += a.data()[flat] * b.data()[flat];
  return sum;
}

}  // namespace mlstm::test
