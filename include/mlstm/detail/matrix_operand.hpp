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

// What the caller knows of a product's triangles (the chunkwise form's causal blocks), so that the
// product can skip the work they make needless:
//   none          a general product
//   lower_result  only C's lower triangle is wanted: C(i, j) = 0 for j > i (with Accumulate::no)
//   lower_a       op(A) is lower triangular, op(A)(i, k) = 0 for k > i: row i sums depths 0..i
//   upper_a       op(A) is upper triangular, op(A)(i, k) = 0 for k < i: row i sums depths i..
enum class Triangle { none, lower_result, lower_a, upper_a };

// The operand that starts at op(M)(i, j): the same storage, moved by i rows and j columns of op(M).
template <typename T>
MatrixOperand<T> operand_from(const MatrixOperand<T>& m, Index i, Index j) {
  return {m.transposed ? m.data + j * m.stride + i : m.data + i * m.stride + j, m.stride,
          m.transposed};
}

}  // namespace mlstm::detail
