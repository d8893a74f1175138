// detail::matrix_product, the one product under the linear layers and the kernels, against a
// plain loop in double: every combination of transposed operands, with and without
// accumulation, row strides wider than the rows, and shapes that end inside each of its blocks
// (the packed product's 6 x 16 tiles, its 72 rows, 256 depths and 1024 columns per block). On a
// processor with AVX2 and FMA, in a build without AVX-512, this is the packed product
// (detail/packed_product.hpp); elsewhere Eigen's.
#include <catch2/catch.hpp>
#include <mlstm/detail/matrix_product.hpp>
#include <vector>

#include "support/random_inputs.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::detail::Accumulate;
using mlstm::detail::MatrixOperand;

struct Shape {
  Index rows, cols, depth;
};

// A row-major matrix of `rows` x `width` held with row stride width + 3, values in [-1, 1].
struct Strided {
  Index rows, width, stride;
  std::vector<float> values;
  Strided(mlstm::test::Random& random, Index rows_, Index width_)
      : rows(rows_),
        width(width_),
        stride(width_ + 3),
        values(static_cast<size_t>(rows_ * stride)) {
    for (float& value : values) value = static_cast<float>(random.uniform(-1.0, 1.0));
  }
  float at(Index i, Index j) const { return values[static_cast<size_t>(i * stride + j)]; }
};

}  // namespace

TEST_CASE("matrix_product matches the plain loop on every layout and edge", "[matrix_product]") {
  INFO("packed product in use: " << mlstm::detail::uses_packed_product());
  const Shape shapes[] = {{1, 5, 7},     {2, 1, 1},    {6, 16, 256},  {7, 17, 3}, {13, 33, 257},
                          {75, 1030, 9}, {5, 40, 600}, {144, 20, 64}, {3, 4, 0}};
  mlstm::test::Random random(20261130);
  for (const Shape& shape : shapes) {
    for (int layout = 0; layout < 4; ++layout) {
      const bool a_transposed = (layout & 1) != 0, b_transposed = (layout & 2) != 0;
      for (const Accumulate accumulate : {Accumulate::no, Accumulate::yes}) {
        const Index M = shape.rows, N = shape.cols, K = shape.depth;
        const Strided a = a_transposed ? Strided(random, K, M) : Strided(random, M, K);
        const Strided b = b_transposed ? Strided(random, N, K) : Strided(random, K, N);
        Strided c(random, M, N);
        const Strided c_before = c;
        mlstm::detail::matrix_product<float>(
            M, N, K, MatrixOperand<float>{a.values.data(), a.stride, a_transposed},
            MatrixOperand<float>{b.values.data(), b.stride, b_transposed}, c.values.data(),
            c.stride, accumulate);
        double worst_ratio = 0.0;
        Index worst_i = 0, worst_j = 0;
        for (Index i = 0; i < M; ++i) {
          for (Index j = 0; j < N; ++j) {
            const double start = accumulate == Accumulate::yes ? c_before.at(i, j) : 0.0;
            double exact = start, absolute = std::abs(start);
            for (Index k = 0; k < K; ++k) {
              const double term = static_cast<double>(a_transposed ? a.at(k, i) : a.at(i, k)) *
                                  static_cast<double>(b_transposed ? b.at(j, k) : b.at(k, j));
              exact += term;
              absolute += std::abs(term);
            }
            const double budget = mlstm::test::float_product_budget(K + 1, absolute);
            const double ratio = std::abs(c.at(i, j) - exact) / std::max(budget, 1e-30);
            if (ratio > worst_ratio) {
              worst_ratio = ratio;
              worst_i = i;
              worst_j = j;
            }
          }
        }
        INFO("shape " << M << " x " << N << " x " << K << ", A" << (a_transposed ? "^T" : "")
                      << " B" << (b_transposed ? "^T" : "") << ", accumulate "
                      << (accumulate == Accumulate::yes) << ": worst |difference| / budget "
                      << worst_ratio << " at (" << worst_i << ", " << worst_j << ")");
        CHECK(worst_ratio <= 1.0);
        // The padding between rows is left as it was.
        for (Index i = 0; i < M; ++i)
          for (Index j = N; j < c.stride; ++j) CHECK(c.at(i, j) == c_before.at(i, j));
      }
    }
  }
}
