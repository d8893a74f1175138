// The reference's init functions, on a registry parameter or on any row-major Eigen tensor or
// map of float or double:
//
//   mlstm::Generator gen(0);
//   mlstm::small_init_init_(registry.get("token_embedding.weight"), /*dim=*/128, gen);
//   mlstm::Tensor<float, 1> bias(4);
//   mlstm::bias_linspace_init_(bias, 3.0, 6.0);          // 3, 4, 5, 6
//   mlstm::wang_init_(w.map<2>(), /*dim=*/128, /*num_blocks=*/2, gen);
//
//   bias_linspace_init_(param, start = 3.4, end = 6.0)   1-D only: torch.linspace(start, end, n)
//   small_init_init_(param, dim, gen)                     normal, mean 0, std sqrt(2 / (5 dim))
//   wang_init_(param, dim, num_blocks, gen)               normal, mean 0, std 2 / num_blocks /
//   sqrt(dim) zeros_(param), ones_(param)                           torch.nn.init.zeros_ / ones_
//   normal_(param, mean, std, gen)                        torch.nn.init.normal_
//   uniform_(param, low, high, gen)                       torch.nn.init.uniform_
//
// Random values are drawn in row-major element order, one gen.normal() (or gen.uniform()) per
// element, as mean + std * z (low + (high - low) * u) evaluated in double with a single rounding
// (std::fma, so that no compiler can round it differently) and then rounded to the element type.
// A Tensor and a Parameter of the same shape thus get the same values from the same generator.
// They cannot match PyTorch's values, which come from PyTorch's own generator; the
// distributions are the same (see the statistical tests).
//
// bias_linspace_init_ computes in the element type T, as torch.linspace does for dtype T:
// step = (end - start) / (n - 1); element i = start + i * step for i < n / 2, and
// end - (n - 1 - i) * step otherwise, each with one rounding (fma). That is torch's scalar CPU
// path bit for bit (PyTorch builds for FMA machines contract it so); torch's vectorized path,
// taken for longer outputs, differs from it by at most one unit in the last place of the larger
// endpoint. The first element is start, the last is end, exactly; n = 1 gives start. (The
// reference always builds the linspace in float32 and copies it; a double parameter gets the
// double linspace here.)
//
// Invalid arguments throw before anything is written: mlstm::ShapeError for a bias that is not
// 1-D, mlstm::ValueError for dim or num_blocks < 1, a negative or non-finite std, low > high,
// or non-finite bounds.
#pragma once

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>

#include "mlstm/errors.hpp"
#include "mlstm/params/generator.hpp"
#include "mlstm/params/registry.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

// The standard deviations of the two schemes, as the reference computes them.
inline double small_init_std(Index dim) {
  return std::sqrt(2.0 / (5.0 * static_cast<double>(dim)));
}
inline double wang_init_std(Index dim, Index num_blocks) {
  return 2.0 / static_cast<double>(num_blocks) / std::sqrt(static_cast<double>(dim));
}

// The bounds of PyTorch's default initialization of a linear or convolution layer:
// kaiming_uniform_(weight, a = sqrt(5)), that is U(-b, b) with b = sqrt(3) * sqrt(2 / (1 + a^2))
// / sqrt(fan_in), and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias.
inline double default_weight_init_bound(Index fan_in) {
  const double a = std::sqrt(5.0);
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  return std::sqrt(3.0) * (gain / std::sqrt(static_cast<double>(fan_in)));
}
inline double default_bias_init_bound(Index fan_in) {
  return 1.0 / std::sqrt(static_cast<double>(fan_in));
}

namespace detail {

// The elements an init function writes, with what its messages need.
template <typename T>
struct InitTarget {
  T* data;
  Index size;
  int rank;
  std::string argument;  // the parameter's name, or "param" for a tensor
  std::string shape;
};

template <typename T>
InitTarget<T> init_target(Parameter<T>& param) {
  return {param.data(), param.size(), param.rank(), param.name(),
          mlstm::shape_string(param.shape())};
}

template <typename X, std::enable_if_t<traits_of<X>::is_tensor, int> = 0>
InitTarget<ScalarOf<X>> init_target(X& param) {
  require_argument_type<X>();
  require_kernel_scalar<ScalarOf<X>>();
  static_assert(!std::is_const_v<std::remove_pointer_t<decltype(param.data())>>,
                "mlstm init functions write their argument: pass a Tensor or a TensorMap of "
                "non-const data");
  constexpr int rank = traits_of<X>::rank;
  return {param.data(), param.size(), rank, "param", shape_string(param.dimensions())};
}

inline void expect_positive_integer(Index value, const char* argument) {
  if (value < 1) {
    throw ValueError(argument, "expected an integer >= 1, got " + std::to_string(value));
  }
}

inline void expect_finite_value(double value, const char* argument) {
  if (!std::isfinite(value)) {
    std::ostringstream text;
    text << "expected a finite value, got " << value;
    throw ValueError(argument, text.str());
  }
}

inline void expect_valid_std(double std_dev, const char* argument = "std") {
  if (!(std::isfinite(std_dev) && std_dev >= 0.0)) {
    std::ostringstream text;
    text << "expected a finite value >= 0, got " << std_dev;
    throw ValueError(argument, text.str());
  }
}

// The argument checks of each function, also run by a whole init plan before it writes.
inline void check_normal_arguments(double mean, double std_dev) {
  expect_finite_value(mean, "mean");
  expect_valid_std(std_dev);
}

inline void check_uniform_arguments(double low, double high) {
  expect_finite_value(low, "low");
  expect_finite_value(high, "high");
  if (!(low <= high)) {
    std::ostringstream text;
    text << "expected low <= high, got low = " << low << ", high = " << high;
    throw ValueError("high", text.str());
  }
}

inline void check_bias_linspace_arguments(int rank, const std::string& argument,
                                          const std::string& shape, double start, double end) {
  if (rank != 1) {
    throw ShapeError(argument,
                     "bias_linspace_init_ expects a 1-dimensional parameter (typically a bias), "
                     "got rank " +
                         std::to_string(rank) + " with shape " + shape);
  }
  expect_finite_value(start, "start");
  expect_finite_value(end, "end");
}

inline void check_wang_arguments(Index dim, Index num_blocks) {
  expect_positive_integer(dim, "dim");
  expect_positive_integer(num_blocks, "num_blocks");
}

template <typename T>
void fill_normal(const InitTarget<T>& target, double mean, double std_dev, Generator& gen) {
  for (Index i = 0; i < target.size; ++i)
    target.data[i] = static_cast<T>(std::fma(std_dev, gen.normal(), mean));
}

}  // namespace detail

template <typename Target>
void zeros_(Target&& param) {
  const auto target = detail::init_target(param);
  std::fill(target.data, target.data + target.size, 0);
}

template <typename Target>
void ones_(Target&& param) {
  const auto target = detail::init_target(param);
  std::fill(target.data, target.data + target.size, 1);
}

template <typename Target>
void normal_(Target&& param, double mean, double std_dev, Generator& gen) {
  const auto target = detail::init_target(param);
  detail::check_normal_arguments(mean, std_dev);
  detail::fill_normal(target, mean, std_dev, gen);
}

// Values in [low, high] (high itself only through rounding).
template <typename Target>
void uniform_(Target&& param, double low, double high, Generator& gen) {
  const auto target = detail::init_target(param);
  using T = std::remove_pointer_t<decltype(target.data)>;
  detail::check_uniform_arguments(low, high);
  for (Index i = 0; i < target.size; ++i)
    target.data[i] = static_cast<T>(std::fma(high - low, gen.uniform(), low));
}

template <typename Target>
void bias_linspace_init_(Target&& param, double start = 3.4, double end = 6.0) {
  const auto target = detail::init_target(param);
  using T = std::remove_pointer_t<decltype(target.data)>;
  detail::check_bias_linspace_arguments(target.rank, target.argument, target.shape, start, end);
  const Index n = target.size;
  const T first = static_cast<T>(start), last = static_cast<T>(end);
  if (n == 1) target.data[0] = first;
  if (n <= 1) return;
  const T step = (last - first) / static_cast<T>(n - 1);
  const Index half = n / 2;
  for (Index i = 0; i < n; ++i) {
    target.data[i] = i < half ? std::fma(step, static_cast<T>(i), first)
                              : std::fma(-step, static_cast<T>(n - 1 - i), last);
  }
}

template <typename Target>
void small_init_init_(Target&& param, Index dim, Generator& gen) {
  const auto target = detail::init_target(param);
  detail::expect_positive_integer(dim, "dim");
  detail::fill_normal(target, 0.0, small_init_std(dim), gen);
}

template <typename Target>
void wang_init_(Target&& param, Index dim, Index num_blocks, Generator& gen) {
  const auto target = detail::init_target(param);
  detail::check_wang_arguments(dim, num_blocks);
  detail::fill_normal(target, 0.0, wang_init_std(dim, num_blocks), gen);
}

}  // namespace mlstm
