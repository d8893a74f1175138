// One matrix product on row-major operands, on the calling thread, for the kernels' and the
// linear layers' products:
//
//   C (rows, cols) = op(A) op(B)   or   C += op(A) op(B)
//   op(A) (rows, depth): A itself, or A^T for A stored (depth, rows); op(B) (depth, cols) likewise
//
// Each operand has its own row stride. Float products of more than one row are, with the CMake
// option MLSTM_GEMM=oneDNN, oneDNN's sgemm, which measured 1.3 to 1.5x Eigen's product at the
// linear layers' and the chunkwise kernel's shapes (bench/README.md); else, on a processor with
// AVX2 and FMA, our packed product (packed_product.hpp: AVX2's tile, or AVX-512's where the
// processor has it, whatever the build's flags); everything else is Eigen's. A single row (a step)
// stays with Eigen's matrix-vector product, which reads the weights at the memory's speed.
//
// A Triangle (matrix_operand.hpp) lets the product skip the causal blocks' needless work: the
// packed product skips it tile by tile; the others split a product of 128 rows or more into
// halves, of which the quarter past the triangle is skipped (halves of fewer than 64 rows ran
// slower on Eigen's product than the quarter saved).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <type_traits>

#include "mlstm/detail/assert.hpp"
#include "mlstm/detail/matrix_operand.hpp"
#include "mlstm/detail/packed_product.hpp"
#include "mlstm/tensor.hpp"

#ifdef MLSTM_USE_ONEDNN
#include <dnnl.h>
#endif

namespace mlstm::detail {

// Whether matrix_product<T> runs products of more than one row on the packed product (for
// callers whose blocking was measured on it): float, no oneDNN, and a processor it runs on.
template <typename T>
bool products_are_packed() {
#ifdef MLSTM_USE_ONEDNN
  return false;
#else
  return std::is_same_v<T, float> && uses_packed_product();
#endif
}

// C (rows, cols) = op(A) op(B), or C += op(A) op(B), whole: oneDNN's, the packed or Eigen's
// product as the file comment says.
template <typename T>
void general_product(Index rows, Index cols, Index depth, const MatrixOperand<T>& a,
                     const MatrixOperand<T>& b, T* c, Index c_stride, Accumulate accumulate) {
  if (rows < 1 || cols < 1) return;
#ifdef MLSTM_USE_ONEDNN
  if constexpr (std::is_same_v<T, float>) {
    if (rows > 1 && depth > 0 &&
        dnnl_sgemm(a.transposed ? 'T' : 'N', b.transposed ? 'T' : 'N', rows, cols, depth, 1.0f,
                   a.data, a.stride, b.data, b.stride, accumulate == Accumulate::yes ? 1.0f : 0.0f,
                   c, c_stride) == dnnl_success)
      return;
  }
#endif
#if MLSTM_DETAIL_X86_KERNELS
  if constexpr (std::is_same_v<T, float>) {
    if (rows > 1 && uses_packed_product()) {
      packed_product(rows, cols, depth, a, b, c, c_stride, accumulate);
      return;
    }
  }
#endif
  using Strided = Eigen::OuterStride<>;
  using Operand =
      Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
                 Strided>;
  Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0, Strided> out(
      c, rows, cols, Strided(c_stride));
  const Operand a_map(a.data, a.transposed ? depth : rows, a.transposed ? rows : depth,
                      Strided(a.stride));
  const Operand b_map(b.data, b.transposed ? cols : depth, b.transposed ? depth : cols,
                      Strided(b.stride));
  auto run = [&](const auto& lhs, const auto& rhs) {
    if (accumulate == Accumulate::yes) {
      out.noalias() += lhs * rhs;
    } else {
      out.noalias() = lhs * rhs;
    }
  };
  if (!a.transposed && !b.transposed) {
    run(a_map, b_map);
  } else if (!a.transposed) {
    run(a_map, b_map.transpose());
  } else if (!b.transposed) {
    run(a_map.transpose(), b_map);
  } else {
    run(a_map.transpose(), b_map.transpose());
  }
}

// A triangular product by halves, for the products other than the packed one: rows [0, half)
// need columns (lower_result) or depths (lower_a) [0, half) only; rows [half, rows) of an
// upper_a product need depths [half, depth) only.
template <typename T>
void triangular_product_by_halves(Index rows, Index cols, Index depth, const MatrixOperand<T>& a,
                                  const MatrixOperand<T>& b, T* c, Index c_stride,
                                  Accumulate accumulate, Triangle triangle) {
  const Index half = rows >= 128 ? rows / 2 : 0;
  const Index top_cols = triangle == Triangle::lower_result ? std::min(half, cols) : cols;
  const Index top_depth = triangle == Triangle::lower_a ? std::min(half, depth) : depth;
  // At most depth - 1, so that the bottom operands start inside their storage (with depth <=
  // half the bottom rows of an upper_a A are zero, and one more zero term changes nothing).
  const Index bottom_skip =
      triangle == Triangle::upper_a ? std::clamp<Index>(depth - 1, 0, half) : 0;
  general_product(half, top_cols, top_depth, a, b, c, c_stride, accumulate);
  general_product(rows - half, cols, depth - bottom_skip, operand_from(a, half, bottom_skip),
                  operand_from(b, bottom_skip, Index(0)), c + half * c_stride, c_stride,
                  accumulate);
  if (triangle == Triangle::lower_result)
    for (Index i = 0; i < rows; ++i)
      for (Index j = i + 1; j < cols; ++j) c[i * c_stride + j] = T(0);
}

// C (rows, cols) = op(A) op(B), or C += op(A) op(B), skipping what `triangle` makes needless.
// lower_result takes Accumulate::no.
template <typename T>
void matrix_product(Index rows, Index cols, Index depth, const MatrixOperand<T>& a,
                    const MatrixOperand<T>& b, T* c, Index c_stride,
                    Accumulate accumulate = Accumulate::no, Triangle triangle = Triangle::none) {
  MLSTM_ASSERT(!(triangle == Triangle::lower_result && accumulate == Accumulate::yes),
               "a lower_result product assigns");
  if (triangle == Triangle::none) {
    general_product(rows, cols, depth, a, b, c, c_stride, accumulate);
    return;
  }
#if MLSTM_DETAIL_X86_KERNELS
  if constexpr (std::is_same_v<T, float>) {
    if (rows > 1 && products_are_packed<T>()) {
      packed_product(rows, cols, depth, a, b, c, c_stride, accumulate, triangle);
      return;
    }
  }
#endif
  triangular_product_by_halves(rows, cols, depth, a, b, c, c_stride, accumulate, triangle);
}

}  // namespace mlstm::detail
