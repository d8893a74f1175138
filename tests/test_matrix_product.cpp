// detail::matrix_product, the one product under the linear layers and the kernels, against a
// plain loop in double: every combination of transposed operands, with and without
// accumulation, row strides wider than the rows, and shapes that end inside each of its blocks
// (the packed product's 6 x 16 and 8 x 32 tiles, its 72 rows, 256 depths and 1024 columns per
// block). On a processor with AVX2 and FMA, float products are the packed product
// (detail/packed_product.hpp), on its AVX-512 tile where the processor has AVX-512; double
// products and other processors take Eigen's. The triangular products (the chunkwise form's
// causal blocks) are checked on both: tile by tile on the packed product, by halves on Eigen's.
// Each tile the processor runs is checked on its own, and the two tiles, and each tile's
// operands packed or read where they lie, must give the same bits.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <mlstm/detail/matrix_product.hpp>
#include <string>
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

// Floats a row-major matrix of `rows` rows of `width` at row stride `stride` spans: its last row
// ends the storage, so that a read past an operand is a read past its allocation (AddressSanitizer
// sees it).
inline Index spanned(Index rows, Index width, Index stride) {
  return rows > 0 ? (rows - 1) * stride + width : 0;
}

// A row-major matrix of `rows` x `width` held with row stride width + 3, values in [-1, 1]; the
// storage ends with the last row's values (an operand) or with its 3 padding values too (a
// result, whose padding must stay untouched).
template <typename T>
struct Strided {
  Index rows, width, stride;
  std::vector<T> values;
  Strided(mlstm::test::Random& random, Index rows_, Index width_, bool padded_end = false)
      : rows(rows_),
        width(width_),
        stride(width_ + 3),
        values(static_cast<size_t>(padded_end ? rows_ * stride : spanned(rows_, width_, stride))) {
    for (T& value : values) value = static_cast<T>(random.uniform(-1.0, 1.0));
  }
  T at(Index i, Index j) const { return values[static_cast<size_t>(i * stride + j)]; }
  T& at(Index i, Index j) { return values[static_cast<size_t>(i * stride + j)]; }
};

// matrix_product<T> itself, as check_product's default product.
template <typename T>
struct LibraryProduct {
  void operator()(Index rows, Index cols, Index depth, const MatrixOperand<T>& a,
                  const MatrixOperand<T>& b, T* c, Index c_stride, Accumulate accumulate,
                  Triangle triangle) const {
    mlstm::detail::matrix_product<T>(rows, cols, depth, a, b, c, c_stride, accumulate, triangle);
  }
};

// Whether op(A)(row, depth) lies in the part of a triangular op(A) that `triangle` says is zero.
bool outside_triangle(Triangle triangle, Index row, Index depth) {
  return (triangle == Triangle::lower_a && depth > row) ||
         (triangle == Triangle::upper_a && depth < row);
}

// Runs one product of `shape` and holds every element to the plain loop in double within the
// rounding bound of T; with Triangle::lower_a (upper_a), op(A)'s upper (lower) triangle is zeroed
// first, and with Triangle::lower_result, C's upper triangle must be exactly 0.
template <typename T, typename Product = LibraryProduct<T>>
void check_product(mlstm::test::Random& random, const Shape& shape, bool a_transposed,
                   bool b_transposed, Accumulate accumulate, Triangle triangle,
                   Product product = {}) {
  const Index M = shape.rows, N = shape.cols, K = shape.depth;
  Strided<T> a = a_transposed ? Strided<T>(random, K, M) : Strided<T>(random, M, K);
  const Strided<T> b = b_transposed ? Strided<T>(random, N, K) : Strided<T>(random, K, N);
  const auto op_a = [&](Index i, Index k) -> T& { return a_transposed ? a.at(k, i) : a.at(i, k); };
  for (Index i = 0; i < M; ++i) {
    for (Index k = 0; k < K; ++k) {
      if (outside_triangle(triangle, i, k)) op_a(i, k) = T(0);
    }
  }
  Strided<T> c(random, M, N, true);
  const Strided<T> c_before = c;
  product(M, N, K, MatrixOperand<T>{a.values.data(), a.stride, a_transposed},
          MatrixOperand<T>{b.values.data(), b.stride, b_transposed}, c.values.data(), c.stride,
          accumulate, triangle);
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

#if MLSTM_DETAIL_X86_KERNELS
namespace {

// packed_product_with<Tile> as check_product's product.
template <typename Tile>
struct TileProduct {
  void operator()(Index rows, Index cols, Index depth, const MatrixOperand<float>& a,
                  const MatrixOperand<float>& b, float* c, Index c_stride, Accumulate accumulate,
                  Triangle triangle) const {
    mlstm::detail::packed_product_with<Tile>(rows, cols, depth, a, b, c, c_stride, accumulate,
                                             triangle);
  }
};

// Shapes for one tile: the tiles' edges (6 x 16 and 8 x 32, whole and one past), a chunk of the
// chunkwise form with operands read in place (columns a multiple of both tiles' 16 and 32), more
// than a depth block read in place, operands too large to be read in place (more than 64K floats,
// or rows 1024 floats apart), and large operands read once, and so in place: op(A) where op(B) is
// one panel wide (75 x 32 x 1100 for the 8 x 32 tile, 603 x 16 x 130 for both, when transposed),
// op(B) where op(A) is one panel high over a long depth (8 x 64 x 2100 for the 8 x 32 tile,
// 6 x 64 x 2100 for both).
const Shape tile_shapes[] = {{6, 16, 256},   {8, 32, 256},  {9, 33, 257},   {7, 17, 3},
                             {5, 64, 40},    {64, 64, 128}, {64, 128, 128}, {70, 128, 300},
                             {144, 96, 600}, {13, 1030, 9}, {75, 32, 1100}, {8, 64, 2100},
                             {6, 64, 2100},  {603, 16, 130}};

template <typename Tile>
void check_tile(mlstm::test::Random& random) {
  for (const Shape& shape : tile_shapes) {
    for (int layout = 0; layout < 4; ++layout) {
      const bool a_transposed = (layout & 1) != 0, b_transposed = (layout & 2) != 0;
      for (const Accumulate accumulate : {Accumulate::no, Accumulate::yes})
        for (const Triangle triangle : {Triangle::none, Triangle::lower_a, Triangle::upper_a})
          check_product<float>(random, shape, a_transposed, b_transposed, accumulate, triangle,
                               TileProduct<Tile>{});
      check_product<float>(random, shape, a_transposed, b_transposed, Accumulate::no,
                           Triangle::lower_result, TileProduct<Tile>{});
    }
  }
}

// C of `shape` by packed_product_with<Tile> on the operands' values held at row strides a_stride
// and b_stride (the values are the same whatever the strides), op(A) triangular as `triangle`
// says.
template <typename Tile>
std::vector<float> tile_result(const Shape& shape, bool a_transposed, bool b_transposed,
                               Triangle triangle, Index a_stride, Index b_stride) {
  const Index M = shape.rows, N = shape.cols, K = shape.depth;
  const Index a_rows = a_transposed ? K : M, a_width = a_transposed ? M : K;
  const Index b_rows = b_transposed ? N : K, b_width = b_transposed ? K : N;
  mlstm::test::Random random(7);
  std::vector<float> a(static_cast<size_t>(spanned(a_rows, a_width, a_stride))),
      b(static_cast<size_t>(spanned(b_rows, b_width, b_stride))),
      c(static_cast<size_t>(M * N), 1.0f);
  for (Index i = 0; i < a_rows; ++i) {
    for (Index j = 0; j < a_width; ++j) {
      // op(A)(row, depth), zero where the triangle says so (the tiles skip different zeros).
      const Index row = a_transposed ? j : i, depth = a_transposed ? i : j;
      a[static_cast<size_t>(i * a_stride + j)] =
          outside_triangle(triangle, row, depth) ? 0.0f
                                                 : static_cast<float>(random.uniform(-1.0, 1.0));
    }
  }
  for (Index i = 0; i < b_rows; ++i)
    for (Index j = 0; j < b_width; ++j)
      b[static_cast<size_t>(i * b_stride + j)] = static_cast<float>(random.uniform(-1.0, 1.0));
  const Accumulate accumulate =
      triangle == Triangle::lower_result ? Accumulate::no : Accumulate::yes;
  mlstm::detail::packed_product_with<Tile>(M, N, K, {a.data(), a_stride, a_transposed},
                                           {b.data(), b_stride, b_transposed}, c.data(), N,
                                           accumulate, triangle);
  return c;
}

// How many elements of two results differ in their bits, and the first.
std::string bit_differences(const std::vector<float>& x, const std::vector<float>& y) {
  Index count = 0, first = -1;
  for (size_t e = 0; e < x.size(); ++e) {
    if (std::memcmp(&x[e], &y[e], sizeof(float)) != 0) {
      if (count++ == 0) first = static_cast<Index>(e);
    }
  }
  if (count == 0) return "";
  return std::to_string(count) + " elements differ, the first at " + std::to_string(first) + ": " +
         std::to_string(x[static_cast<size_t>(first)]) + " against " +
         std::to_string(y[static_cast<size_t>(first)]);
}

}  // namespace

TEST_CASE("each tile of the packed product matches the plain loop", "[matrix_product]") {
  mlstm::test::Random random(20261202);
  if (mlstm::detail::processor_has_avx2_fma()) {
    check_tile<mlstm::detail::Avx2Tile>(random);
  } else {
    WARN("no AVX2 and FMA here: the packed product is not tested");
  }
  if (mlstm::detail::processor_has_avx512()) {
    check_tile<mlstm::detail::Avx512Tile>(random);
  } else {
    WARN("no AVX-512 here: the packed product's 8 x 32 tile is not tested");
  }
}

TEST_CASE("the packed product's bits do not depend on the tile or on packing", "[matrix_product]") {
  using mlstm::detail::Avx2Tile;
  using mlstm::detail::Avx512Tile;
  if (!mlstm::detail::processor_has_avx2_fma()) {
    WARN("no AVX2 and FMA here: the packed product is not tested");
    return;
  }
  const bool avx512 = mlstm::detail::processor_has_avx512();
  if (!avx512) WARN("no AVX-512 here: the 8 x 32 tile is not compared with the 6 x 16 one");
  // Narrow strides let a tile read both operands in place (where op(B)'s columns run along B's
  // rows); strides of 1024 floats or more make it pack them. The last four shapes have an operand
  // too large to stay in the cache that is read only once, in place too: op(B) where op(A) is one
  // tile high (8 rows for the 8 x 32 tile, 6 for both), op(A) (with a partial last panel) where
  // op(B) is one tile wide (32 columns for the 8 x 32 tile, 16 for both).
  const Shape shapes[] = {{64, 128, 128}, {64, 64, 128},  {13, 96, 70},  {130, 64, 300},
                          {8, 64, 2100},  {603, 32, 130}, {6, 64, 2100}, {603, 16, 130}};
  for (const Shape& shape : shapes) {
    for (int layout = 0; layout < 4; ++layout) {
      const bool a_transposed = (layout & 1) != 0, b_transposed = (layout & 2) != 0;
      const Index a_narrow = (a_transposed ? shape.rows : shape.depth) + 1;
      const Index b_narrow = (b_transposed ? shape.depth : shape.cols) + 1;
      const Index a_wide = std::max<Index>(1024, a_narrow),
                  b_wide = std::max<Index>(1024, b_narrow);
      for (const Triangle triangle :
           {Triangle::none, Triangle::lower_result, Triangle::lower_a, Triangle::upper_a}) {
        INFO("shape " << shape.rows << " x " << shape.cols << " x " << shape.depth << ", A"
                      << (a_transposed ? "^T" : "") << " B" << (b_transposed ? "^T" : "")
                      << ", triangle " << static_cast<int>(triangle));
        const auto in_place =
            tile_result<Avx2Tile>(shape, a_transposed, b_transposed, triangle, a_narrow, b_narrow);
        CHECK(bit_differences(in_place, tile_result<Avx2Tile>(shape, a_transposed, b_transposed,
                                                              triangle, a_wide, b_wide)) == "");
        if (avx512) {
          CHECK(bit_differences(in_place, tile_result<Avx512Tile>(shape, a_transposed, b_transposed,
                                                                  triangle, a_narrow, b_narrow)) ==
                "");
          CHECK(bit_differences(in_place, tile_result<Avx512Tile>(shape, a_transposed, b_transposed,
                                                                  triangle, a_wide, b_wide)) == "");
        }
      }
    }
  }
}
#endif
