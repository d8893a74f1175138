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
struct tensor_traits<
    Eigen::TensorMap<Eigen::Tensor<Scalar_, Rank_, Options_, Index_>, MapOptions_, MakePointer_>>
    : tensor_traits<Eigen::Tensor<Scalar_, Rank_, Options_, Index_>> {};

template <typename Scalar_, int Rank_, int Options_, typename Index_, int MapOptions_,
          template <class> class MakePointer_>
struct tensor_traits<Eigen::TensorMap<const Eigen::Tensor<Scalar_, Rank_, Options_, Index_>,
                                      MapOptions_, MakePointer_>>
    : tensor_traits<Eigen::Tensor<Scalar_, Rank_, Options_, Index_>> {};

template <typename X>
using traits_of = tensor_traits<std::remove_cv_t<std::remove_reference_t<X>>>;

// n rounded up to a multiple of `multiple` (> 0).
inline Index round_up_to(Index n, Index multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

}  // namespace detail

// The scalar type of a tensor argument (an mlstm::Tensor, TensorMap or ConstTensorMap).
template <typename X>
using ScalarOf = typename detail::traits_of<X>::Scalar;

// The rank of a tensor argument.
template <typename X>
inline constexpr int rank_of = detail::traits_of<X>::rank;

// The scalar a kernel computes in and keeps a recurrent state in: float for Eigen::bfloat16
// arguments, T otherwise.
template <typename T>
using ComputeScalar = std::conditional_t<std::is_same_v<T, Eigen::bfloat16>, float, T>;

// "(2, 3, 4)": a shape (any sequence of sizes: a tensor's dimensions(), std::array,
// std::vector) as messages spell it.
template <typename Dims>
std::string shape_string(const Dims& dims) {
  std::string text = "(";
  for (const auto& size : dims) {
    if (text.size() > 1) text += ", ";
    text += std::to_string(static_cast<long long>(size));
  }
  return text + ")";
}

namespace detail {

// A row-major Eigen matrix: the layout of the tensors' rows, for the kernels' working buffers.
template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

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
  static_assert((std::is_same_v<ScalarOf<First>, ScalarOf<Rest>> && ...),
                "mlstm: all tensor arguments of one call must have the same scalar type");
}

// The dimensions of `x` as a rank-`Rank` tensor, or a ShapeError naming `name` if x has another
// rank. `layout` spells the expected axes, e.g. "(B, NH, S, DQK)", for the message.
template <int Rank, typename X>
std::array<Index, Rank> dimensions_of_rank(const X& x, const char* name, const char* layout) {
  require_argument_type<X>();
  constexpr int actual_rank = traits_of<X>::rank;
  if constexpr (actual_rank != Rank) {
    throw ShapeError(name, "expected rank " + std::to_string(Rank) + " " + layout + ", got rank " +
                               std::to_string(actual_rank) + " with shape " +
                               shape_string(x.dimensions()));
  } else {
    std::array<Index, Rank> dims{};
    for (int axis = 0; axis < Rank; ++axis) dims[axis] = x.dimension(axis);
    return dims;
  }
}

// The multi-index of element `flat` of the row-major rank-`Rank` tensor `x`, for messages.
template <int Rank, typename X>
std::array<Index, Rank> multi_index(const X& x, Index flat) {
  std::array<Index, Rank> index{};
  for (int axis = Rank - 1; axis >= 0; --axis) {
    index[axis] = flat % x.dimension(axis);
    flat /= x.dimension(axis);
  }
  return index;
}

// A read-only rank-`Rank` view of `x` (see dimensions_of_rank).
template <int Rank, typename X>
ConstTensorMap<ScalarOf<X>, Rank> const_view(const X& x, const char* name, const char* layout) {
  return ConstTensorMap<ScalarOf<X>, Rank>(x.data(), dimensions_of_rank<Rank>(x, name, layout));
}

// A writable rank-`Rank` view of `x`, a Tensor or a TensorMap of non-const data.
template <int Rank, typename X>
TensorMap<ScalarOf<X>, Rank> mutable_view(X& x, const char* name, const char* layout) {
  return TensorMap<ScalarOf<X>, Rank>(x.data(), dimensions_of_rank<Rank>(x, name, layout));
}

}  // namespace detail
}  // namespace mlstm
