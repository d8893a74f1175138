// The operands of a matrix product on row-major storage (matrix_product.hpp).
#pragma once

#include "mlstm/tensor.hpp"

namespace mlstm::detail {

// A row-major operand: its first element, its row stride, and whether the product takes its
// transpose.
template <typename T>
struct MatrixOperand {
  const T* data;
  Index stride;
  bool transposed = false;
};

// C = op(A) op(B), or C += op(A) op(B).
enum class Accumulate { no, yes };

}  // namespace mlstm::detail
