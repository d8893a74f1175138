// Tensor types used throughout mlstm, and how arguments become views.
//
// Tensors are row-major Eigen tensors in the reference's axis order (B, NH, S, D), so that a
// buffer from PyTorch or NumPy maps without a copy:
//
//   float* buffer = ...;                                  // (B, NH, S, D), C-contiguous
//   mlstm::TensorMap<float, 4> q(buffer, B, NH, S, D);    // no copy
//
// Kernels accept Tensor, TensorMap and ConstTensorMap arguments alike (of float or double).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <type_traits>

#include <unsupported/Eigen/CXX11/Tensor>

#include "mlstm/errors.hpp"

namespace mlstm {

using Index = Eigen::Index;

template <typename T, int Rank>
using Tensor = Eigen::Tensor<T, Rank, Eigen::RowMajor, Index>;

template <typename T, int Rank>
using TensorMap = Eigen::TensorMap<Eigen::Tensor<T, Rank, Eigen::RowMajor, Index>>;

template <typename T, int Rank>
using ConstTensorMap = Eigen::TensorMap<const Eigen::Tensor<T, Rank, Eigen::RowMajor, Index>>;

template <typename T>
using Tensor4 = Tensor<T, 4>;

namespace detail {

// What mlstm needs to know of an argument type: scalar, rank, and that it is a contiguous
// row-major Eigen tensor or map. Anything else is not an argument type.
template <typename X>
struct tensor_traits {
  static constexpr bool is_tensor = false;
};

template <typename Scalar_, int Rank_, int Options_, typename Index_>
struct tensor_traits<Eigen::Tensor<Scalar_, Rank_, Options_, Index_>> {
  static constexpr bool is_tensor = true;
  static constexpr bool row_major = (Options_ & Eigen::RowMajor) != 0;
  static constexpr int rank = Rank_;
  using Scalar = Scalar_;
};

template <typename Scalar_, int Rank_, int Options_, typename Index_, int MapOptions_,
          template <class> class MakePointer_>
struct tensor_traits<Eigen::TensorMap<Eigen::Tensor<Scalar_, Rank_, Options_, Index_>, MapOptions_,
                                      MakePointer_>>
    : tensor_traits<Eigen::Tensor<Scalar_, Rank_, Options_, Index_>> {};

template <typename Scalar_, int Rank_, int Options_, typename Index_, int MapOptions_,
          template <class> class MakePointer_>
struct tensor_traits<Eigen::TensorMap<const Eigen::Tensor<Scalar_, Rank_, Options_, Index_>,
                                      MapOptions_, MakePointer_>>
    : tensor_traits<Eigen::Tensor<Scalar_, Rank_, Options_, Index_>> {};

template <typename X>
using traits_of = tensor_traits<std::remove_cv_t<std::remove_reference_t<X>>>;

template <typename X>
using scalar_of = typename traits_of<X>::Scalar;

template <typename X>
constexpr void require_argument_type() {
  static_assert(traits_of<X>::is_tensor,
                "mlstm: arguments must be Eigen::Tensor or Eigen::TensorMap of a Tensor");
  static_assert(traits_of<X>::row_major,
                "mlstm: tensors must be row-major (mlstm::Tensor / mlstm::TensorMap)");
}

template <typename T>
constexpr void require_kernel_scalar() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "mlstm: kernels work in float or double");
}

// All arguments of one call share one scalar type; it is the first argument's.
template <typename First, typename... Rest>
constexpr void require_same_scalar() {
  (require_argument_type<First>(), ..., require_argument_type<Rest>());
  static_assert((std::is_same_v<scalar_of<First>, scalar_of<Rest>> && ...),
                "mlstm: all tensor arguments of one call must have the same scalar type");
}

template <typename Dims>
std::string shape_string(const Dims& dims, int rank) {
  std::string text = "(";
  for (int axis = 0; axis < rank; ++axis) {
    if (axis > 0) text += ", ";
    text += std::to_string(static_cast<long long>(dims[axis]));
  }
  return text + ")";
}

template <int Rank>
std::string shape_string(const std::array<Index, Rank>& dims) {
  return shape_string(dims, Rank);
}

// A read-only rank-`Rank` view of `x`, or a ShapeError naming `name` if x has another rank.
// `layout` spells the expected axes, e.g. "(B, NH, S, DQK)", for the message.
template <int Rank, typename X>
ConstTensorMap<scalar_of<X>, Rank> const_view(const X& x, const char* name, const char* layout) {
  require_argument_type<X>();
  constexpr int actual_rank = traits_of<X>::rank;
  if constexpr (actual_rank == Rank) {
    std::array<Index, Rank> dims{};
    for (int axis = 0; axis < Rank; ++axis) dims[axis] = x.dimension(axis);
    return ConstTensorMap<scalar_of<X>, Rank>(x.data(), dims);
  } else {
    throw ShapeError(name, "expected rank " + std::to_string(Rank) + " " + layout + ", got rank " +
                               std::to_string(actual_rank) + " with shape " +
                               shape_string(x.dimensions(), actual_rank));
  }
}

// A writable rank-`Rank` view of `x` (a Tensor or a TensorMap of non-const data).
template <int Rank, typename X>
TensorMap<scalar_of<X>, Rank> mutable_view(X& x, const char* name, const char* layout) {
  require_argument_type<X>();
  constexpr int actual_rank = traits_of<X>::rank;
  if constexpr (actual_rank == Rank) {
    std::array<Index, Rank> dims{};
    for (int axis = 0; axis < Rank; ++axis) dims[axis] = x.dimension(axis);
    return TensorMap<scalar_of<X>, Rank>(x.data(), dims);
  } else {
    throw ShapeError(name, "expected rank " + std::to_string(Rank) + " " + layout + ", got rank " +
                               std::to_string(actual_rank) + " with shape " +
                               shape_string(x.dimensions(), actual_rank));
  }
}

}  // namespace detail
}  // namespace mlstm
