// detail::matrix_product, the one product under the linear layers and the kernels, against a
// plain loop in double: every combination of transposed operands, with and without
// accumulation, row strides wider than the rows, and shapes that end inside each of its blocks
// (the packed product's 6 x 16 tiles, its 72 rows, 256 depths and 1024 columns per block). On a
// processor with AVX2 and FMA, in a build without AVX-512, float products are the packed product
// (detail/packed_product.hpp); double products and other processors take Eigen's. The triangular
// products (the chunkwise form's causal blocks) are checked on both: tile by tile on the packed
// product, by halves on Eigen's.
#include <catch2/catch.hpp>
#include <mlstm/detail/matrix_product.hpp>
#include <vector>

#include "support/random_inputs.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::detail::Accumulate;
using mlstm::detail::MatrixOperand;
using mlstm::detail::Triangle;

struct Shape {
  Index rows, cols, depth;
};

// A row-major matrix of `rows` x `width` held with row stride width + 3, values in [-1, 1].
template <typename T>
struct Strided {
  Index rows, width, stride;
  std::vector<T> values;
  Strided(mlstm::test::Random& random, Index rows_, Index width_)
      : rows(rows_),
        width(width_),
        stride(width_ + 3),
        values(static_cast<size_t>(rows_ * stride)) {
    for (T& value : values) value = static_cast<T>(random.uniform(-1.0, 1.0));
  }
  T at(Index i, Index j) const { return values[static_cast<size_t>(i * stride + j)]; }
  T& at(Index i, Index j) { return values[static_cast<size_t>(i * stride + j)]; }
};

// Runs one product of `shape` and holds every element to the plain loop in double within the
// rounding bound of T; with Triangle::lower_a (upper_a), op(A)'s upper (lower) triangle is zeroed
// first, and with Triangle::lower_result, C's upper triangle must be exactly 0.
template <typename T>
void check_product(mlstm::test::Random& random, const Shape& shape, bool a_transposed,
                   bool b_transposed, Accumulate accumulate, Triangle triangle) {
  const Index M = shape.rows, N = shape.cols, K = shape.depth;
  Strided<T> a = a_transposed ? Strided<T>(random, K, M) : Strided<T>(random, M, K);
  const Strided<T> b = b_transposed ? Strided<T>(random, N, K) : Strided<T>(random, K, N);
  const auto op_a = [&](Index i, Index k) -> T& { return a_transposed ? a.at(k, i) : a.at(i, k); };
  for (Index i = 0; i < M; ++i) {
    for (Index k = 0; k < K; ++k) {
      if ((triangle == Triangle::lower_a && k > i) || (triangle == Triangle::upper_a && k < i))
        op_a(i, k) = T(0);
    }
  }
  Strided<T> c(random, M, N);
  const Strided<T> c_before = c;
  mlstm::detail::matrix_product<T>(M, N, K,
                                   MatrixOperand<T>{a.values.data(), a.stride, a_transposed},
                                   MatrixOperand<T>{b.values.data(), b.stride, b_transposed},
                                   c.values.data(), c.stride, accumulate, triangle);
  double worst_ratio = 0.0;
  Index worst_i = 0, worst_j = 0, nonzero_above = 0;
  for (Index i = 0; i < M; ++i) {
    for (Index j = 0; j < N; ++j) {
      if (triangle == Triangle::lower_result && j > i) {
        nonzero_above += c.at(i, j) != T(0);
        continue;
      }
      const double start = accumulate == Accumulate::yes ? c_before.at(i, j) : 0.0;
      double exact = start, absolute = std::abs(start);
      for (Index k = 0; k < K; ++k) {
        const double term = static_cast<double>(op_a(i, k)) *
                            static_cast<double>(b_transposed ? b.at(j, k) : b.at(k, j));
        exact += term;
        absolute += std::abs(term);
      }
      const double budget = mlstm::test::product_budget<T>(K + 1, absolute);
      const double ratio = std::abs(c.at(i, j) - exact) / std::max(budget, 1e-300);
      if (ratio > worst_ratio) {
        worst_ratio = ratio;
        worst_i = i;
        worst_j = j;
      }
    }
  }
  INFO((sizeof(T) == 4 ? "float" : "double")
       << " shape " << M << " x " << N << " x " << K << ", A" << (a_transposed ? "^T" : "") << " B"
       << (b_transposed ? "^T" : "") << ", accumulate " << (accumulate == Accumulate::yes)
       << ", triangle " << static_cast<int>(triangle) << ": worst |difference| / budget "
       << worst_ratio << " at (" << worst_i << ", " << worst_j << "); nonzero above the diagonal "
       << nonzero_above);
  CHECK(worst_ratio <= 1.0);
  CHECK(nonzero_above == 0);
  // The padding between rows is left as it was.
  Index padding_changed = 0;
  for (Index i = 0; i < M; ++i)
    for (Index j = N; j < c.stride; ++j) padding_changed += c.at(i, j) != c_before.at(i, j);
  CHECK(padding_changed == 0);
}

}  // namespace

TEST_CASE("matrix_product matches the plain loop on every layout and edge", "[matrix_product]") {
  INFO("packed product in use: " << mlstm::detail::uses_packed_product());
  const Shape shapes[] = {{1, 5, 7},     {2, 1, 1},    {6, 16, 256},  {7, 17, 3}, {13, 33, 257},
                          {75, 1030, 9}, {5, 40, 600}, {144, 20, 64}, {3, 4, 0}};
  mlstm::test::Random random(20261130);
  for (const Shape& shape : shapes)
    for (int layout = 0; layout < 4; ++layout)
      for (const Accumulate accumulate : {Accumulate::no, Accumulate::yes})
        check_product<float>(random, shape, (layout & 1) != 0, (layout & 2) != 0, accumulate,
                             Triangle::none);
}

TEMPLATE_TEST_CASE("matrix_product's triangles match the plain loop", "[matrix_product]", float,
                   double) {
  INFO("packed product in use: " << mlstm::detail::products_are_packed<TestType>());
  // Square chunks of the chunkwise form (1 to 300 steps: one tile, partial tiles, more than a
  // row block of 72, 128 and more rows for the halves, more than a depth block of 256), shapes
  // wider, narrower and deeper than square, more than a column block of 1024, and rows past the
  // depth in a second depth block (whole upper_a tiles skipped there).
  const Shape shapes[] = {{1, 1, 4},     {5, 5, 3},    {6, 6, 6},      {17, 17, 17},
                          {64, 64, 128}, {73, 73, 73}, {130, 130, 5},  {300, 300, 300},
                          {20, 50, 9},   {50, 20, 70}, {129, 40, 200}, {1030, 1030, 2},
                          {300, 20, 270}};
  mlstm::test::Random random(20261201);
  for (const Shape& shape : shapes) {
    for (int layout = 0; layout < 4; ++layout) {
      const bool a_transposed = (layout & 1) != 0, b_transposed = (layout & 2) != 0;
      check_product<TestType>(random, shape, a_transposed, b_transposed, Accumulate::no,
                              Triangle::lower_result);
      for (const Triangle triangle : {Triangle::lower_a, Triangle::upper_a})
        for (const Accumulate accumulate : {Accumulate::no, Accumulate::yes})
          check_product<TestType>(random, shape, a_transposed, b_transposed, accumulate, triangle);
    }
  }
}
