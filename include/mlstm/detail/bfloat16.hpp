// bfloat16 arguments: the kernels take Eigen::bfloat16 inputs and return bfloat16 outputs, and
// compute in float. The inputs are converted to float once at the boundary (a float copy of
// them is the extra memory), the float kernel runs, and h is rounded to bfloat16 at the end;
// states stay in float, as the mlstm_kernels backend keeps its inference state.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "mlstm/tensor.hpp"

namespace mlstm::detail {

template <typename T>
inline constexpr bool is_bfloat16 = std::is_same_v<T, Eigen::bfloat16>;

// bfloat16 is the top half of a float: widening is a shift, exact.
inline float widen(Eigen::bfloat16 w) {
  const std::uint32_t bits = static_cast<std::uint32_t>(w.value) << 16;
  float result;
  std::memcpy(&result, &bits, sizeof result);
  return result;
}

// A float copy of a rank-`Rank` bfloat16 argument (a ShapeError naming it for another rank).
template <int Rank, typename X>
Tensor<float, Rank> to_float(const X& x, const char* name, const char* layout) {
  return const_view<Rank>(x, name, layout).template cast<float>();
}

template <int Rank>
Tensor<Eigen::bfloat16, Rank> to_bfloat16(const Tensor<float, Rank>& x) {
  return x.template cast<Eigen::bfloat16>();
}

}  // namespace mlstm::detail
