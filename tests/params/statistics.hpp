// Statistical checks of random initializations, with bounds derived from the sample size.
//
// For n independent draws from a distribution with mean mu and standard deviation sigma:
// - the sample mean has standard error sigma / sqrt(n); we accept |mean - mu| <= 5 sigma / sqrt(n)
//   (a correct generator fails with probability 6e-7);
// - the sample standard deviation has standard error about sigma / sqrt(2 (n - 1)) for a normal
//   sample and sigma * sqrt(0.2 / n) for a uniform one (its kurtosis is 9/5); we accept 5 of
//   those;
// - the Kolmogorov-Smirnov statistic D_n = sup |F_n(x) - F(x)| exceeds c / sqrt(n) with
//   probability alpha for large n, c = sqrt(-ln(alpha / 2) / 2); alpha = 1e-4 gives c = 2.146.
// The generators are seeded, so each test is deterministic; the bounds say how far from the
// distribution a correct implementation could plausibly land, so that a wrong std, a shifted
// mean or a wrong shape (uniform for normal, say) fails.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

namespace mlstm::test {

struct SampleMoments {
  double mean = 0.0;
  double std = 0.0;  // with Bessel's correction
};

template <typename T>
SampleMoments moments(const T* data, long n) {
  double sum = 0.0;
  for (long i = 0; i < n; ++i) sum += static_cast<double>(data[i]);
  SampleMoments result;
  result.mean = sum / static_cast<double>(n);
  double squares = 0.0;
  for (long i = 0; i < n; ++i) {
    const double d = static_cast<double>(data[i]) - result.mean;
    squares += d * d;
  }
  result.std = std::sqrt(squares / static_cast<double>(n - 1));
  return result;
}

inline double mean_bound(double sigma, long n) { return 5.0 * sigma / std::sqrt(double(n)); }

// For a normal sample.
inline double normal_std_bound(double sigma, long n) {
  return 5.0 * sigma / std::sqrt(2.0 * double(n - 1));
}

// For a uniform sample: Var(s^2) = (mu4 - sigma^4 (n-3)/(n-1)) / n with mu4 = 9/5 sigma^4, so the
// standard error of s is about sigma * sqrt(0.8 / n) / 2 = sigma * sqrt(0.2 / n).
inline double uniform_std_bound(double sigma, long n) {
  return 5.0 * sigma * std::sqrt(0.2 / double(n));
}

// Kolmogorov-Smirnov statistic of the sample against the continuous CDF `cdf`.
template <typename T>
double ks_statistic(const T* data, long n, const std::function<double(double)>& cdf) {
  std::vector<double> sorted(data, data + n);
  std::sort(sorted.begin(), sorted.end());
  double d = 0.0;
  for (long i = 0; i < n; ++i) {
    const double f = cdf(sorted[static_cast<std::size_t>(i)]);
    d = std::max({d, f - double(i) / double(n), double(i + 1) / double(n) - f});
  }
  return d;
}

// Critical value of D_n at alpha = 1e-4 (asymptotic; our samples have n >= 10^4).
inline double ks_critical_value(long n) {
  const double alpha = 1e-4;
  return std::sqrt(-std::log(alpha / 2.0) / 2.0) / std::sqrt(double(n));
}

inline double normal_cdf(double x, double mean, double sigma) {
  return 0.5 * std::erfc(-(x - mean) / (sigma * std::sqrt(2.0)));
}

inline double uniform_cdf(double x, double low, double high) {
  return std::clamp((x - low) / (high - low), 0.0, 1.0);
}

}  // namespace mlstm::test
