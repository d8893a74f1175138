// The linear layers' shared product (detail/linear_product.hpp) on shapes that cross its tiles,
// and with bfloat16 weights: against the plain loops of tests/support/naive_layers.hpp (in
// double, on the widened weights) and against the float path given the same weights widened
// to float; in the step's few-row path (each of its kernels) and the prefill's widened-tile path;
// and independent of the thread count.
#include <Eigen/Core>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <mlstm/detail/linear_product.hpp>
#include <mlstm/layers/linear.hpp>
#include <mlstm/layers/linear_headwise.hpp>
#include <mlstm/threading.hpp>
#include <string>
#include <utility>
#include <vector>

#include "support/naive_layers.hpp"
#include "support/random_inputs.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;
using bfloat16 = Eigen::bfloat16;
namespace naive = mlstm::test::naive;

template <typename T, int Rank, typename... Dims>
Tensor<T, Rank> random_tensor(mlstm::test::Random& random, Dims... dims) {
  Tensor<T, Rank> x(dims...);
  random.fill_uniform(x, -1.0, 1.0);
  return x;
}

template <int Rank, typename T>
Tensor<double, Rank> as_double(const Tensor<T, Rank>& x) {
  Tensor<double, Rank> y(x.dimensions());
  for (Index i = 0; i < x.size(); ++i) y.data()[i] = static_cast<double>(x.data()[i]);
  return y;
}

template <int Rank>
Tensor<float, Rank> widened(const Tensor<bfloat16, Rank>& x) {
  Tensor<float, Rank> y(x.dimensions());
  for (Index i = 0; i < x.size(); ++i) y.data()[i] = static_cast<float>(x.data()[i]);
  return y;
}

// A float sum of `terms` products of magnitude up to 1, against a double one.
double float_sum_budget(Index terms) {
  return mlstm::test::forms_relative<float> * std::max<double>(1.0, static_cast<double>(terms));
}

// Rows of the step path, of the prefill path, and across a row tile; outputs across a column
// tile; an input size that leaves a remainder in the step's vectorized dot.
struct Sizes {
  Index rows, in, out;
};
// 300 x 33 -> 530 crosses row and column tiles; with bfloat16 weights, 6 x 1100 -> 530 spans
// five depth blocks and six tiles of outputs of detail::widened_product.
constexpr Sizes linear_sizes[] = {
    {1, 67, 130}, {3, 200, 9}, {5, 40, 70}, {300, 33, 530}, {6, 1100, 530}};

}  // namespace

TEST_CASE("linear_forward with bfloat16 weights sums in float", "[layers][linear][bfloat16]") {
  mlstm::test::Random random(21);
  for (const Sizes z : linear_sizes) {
    for (const bool with_bias : {false, true}) {
      CAPTURE(z.rows, z.in, z.out, with_bias);
      const auto x = random_tensor<float, 2>(random, z.rows, z.in);
      const auto w = random_tensor<bfloat16, 2>(random, z.out, z.in);
      const auto b = random_tensor<float, 1>(random, z.out);
      const Tensor<float, 2> w_float = widened(w);
      const auto y = with_bias ? mlstm::linear_forward(x, w, b) : mlstm::linear_forward(x, w);
      const auto y_float =
          with_bias ? mlstm::linear_forward(x, w_float, b) : mlstm::linear_forward(x, w_float);
      const Tensor<double, 1> b_double = as_double(b);
      const auto expected =
          naive::linear(as_double(x), as_double(w_float), with_bias ? &b_double : nullptr);
      MLSTM_CHECK_CLOSE(as_double(y), expected, float_sum_budget(z.in));
      MLSTM_CHECK_CLOSE(as_double(y_float), expected, float_sum_budget(z.in));
      MLSTM_CHECK_CLOSE(as_double(y), as_double(y_float), float_sum_budget(z.in));
    }
  }
}

TEST_CASE("linear_forward crosses tiles like the plain loop", "[layers][linear]") {
  mlstm::test::Random random(22);
  const Index rows = 300, in = 33, out = 530;  // two row tiles, two column tiles
  const auto x = random_tensor<double, 2>(random, rows, in);
  const auto w = random_tensor<double, 2>(random, out, in);
  const auto b = random_tensor<double, 1>(random, out);
  MLSTM_CHECK_CLOSE(mlstm::linear_forward(x, w, b), naive::linear(x, w, &b),
                    mlstm::test::forms_relative<double> * in);
}

// Float weights of few inputs go to the broadcast kernel (where the processor has AVX-512) below
// packed_float_weights_min_rows rows and to matrix_product's tiles from there on: both sides of
// that line, dense and head-wise, against the plain loop, on 1 and 3 threads to the same bits.
TEST_CASE("linear_forward in float sums like the plain loop on either side of the packed rows",
          "[layers][linear]") {
  mlstm::test::Random random(28);
  const int saved = mlstm::get_num_threads();
  const Index min_rows = mlstm::detail::packed_float_weights_min_rows;
  const Index max_inputs = mlstm::detail::packed_float_weights_max_inputs;
#if MLSTM_DETAIL_X86_KERNELS && !defined(MLSTM_USE_ONEDNN)
  // Which side of the line each product is on.
  using mlstm::detail::uses_broadcast_product;
  const bool broadcast = mlstm::detail::processor_has_avx512();
  CHECK(uses_broadcast_product<float, float>(min_rows - 1, max_inputs) == broadcast);
  CHECK_FALSE(uses_broadcast_product<float, float>(min_rows, max_inputs));
  CHECK(uses_broadcast_product<float, float>(min_rows, max_inputs + 1) == broadcast);
  CHECK(uses_broadcast_product<float, bfloat16>(min_rows, max_inputs) == broadcast);
#endif
  for (const Index rows : {min_rows - 1, min_rows, min_rows + 90}) {
    for (const Index heads : {Index(1), Index(2)}) {
      const Index in = 70, out = heads == 1 ? 530 : 40;  // dense: two column tiles
      CAPTURE(rows, heads, in, out);
      const auto x = random_tensor<float, 2>(random, rows, heads * in);
      const auto w = random_tensor<float, 3>(random, heads, out, in);
      const auto b = random_tensor<float, 1>(random, heads * out);
      const Tensor<double, 1> b_double = as_double(b);
      mlstm::set_num_threads(1);
      const Tensor<float, 2> one = mlstm::linear_headwise_forward(x, w, b);
      MLSTM_CHECK_CLOSE(as_double(one),
                        naive::linear_headwise(as_double(x), as_double(w), &b_double),
                        float_sum_budget(in));
      mlstm::set_num_threads(3);
      MLSTM_CHECK_CLOSE(one, mlstm::linear_headwise_forward(x, w, b), 0.0);
    }
  }
  mlstm::set_num_threads(saved);
}

TEST_CASE("linear_headwise_forward with bfloat16 weights sums in float",
          "[layers][linear][bfloat16]") {
  mlstm::test::Random random(23);
  struct HeadSizes {
    Index rows, heads, dout, din;
  };
  // Small square blocks (2, 4, 8, 16) take plain loops, the others the tiled product.
  for (const HeadSizes z : {HeadSizes{1, 8, 4, 4}, HeadSizes{2, 3, 5, 40}, HeadSizes{270, 6, 4, 4},
                            HeadSizes{9, 2, 20, 70}, HeadSizes{5, 3, 2, 2}, HeadSizes{70, 2, 8, 8},
                            HeadSizes{3, 2, 16, 16}, HeadSizes{4, 2, 6, 70}}) {
    CAPTURE(z.rows, z.heads, z.dout, z.din);
    const auto x = random_tensor<float, 2>(random, z.rows, z.heads * z.din);
    const auto w = random_tensor<bfloat16, 3>(random, z.heads, z.dout, z.din);
    const auto b = random_tensor<float, 1>(random, z.heads * z.dout);
    const Tensor<float, 3> w_float = widened(w);
    const auto y = mlstm::linear_headwise_forward(x, w, b);
    const Tensor<double, 1> b_double = as_double(b);
    const auto expected = naive::linear_headwise(as_double(x), as_double(w_float), &b_double);
    MLSTM_CHECK_CLOSE(as_double(y), expected, float_sum_budget(z.din));
    MLSTM_CHECK_CLOSE(as_double(y), as_double(mlstm::linear_headwise_forward(x, w_float, b)),
                      float_sum_budget(z.din));
  }
}

TEST_CASE("linear layers give the same bits on one thread and on several",
          "[layers][linear][threads]") {
  mlstm::test::Random random(24);
  const int saved = mlstm::get_num_threads();
  for (const Sizes z : linear_sizes) {
    CAPTURE(z.rows, z.in, z.out);
    const auto x = random_tensor<float, 2>(random, z.rows, z.in);
    const auto w = random_tensor<bfloat16, 2>(random, z.out, z.in);
    const Tensor<float, 2> w_float = widened(w);
    mlstm::set_num_threads(1);
    const Tensor<float, 2> one_bf16 = mlstm::linear_forward(x, w);
    const Tensor<float, 2> one_float = mlstm::linear_forward(x, w_float);
    mlstm::set_num_threads(3);
    const Tensor<float, 2> several_bf16 = mlstm::linear_forward(x, w);
    const Tensor<float, 2> several_float = mlstm::linear_forward(x, w_float);
    MLSTM_CHECK_CLOSE(one_bf16, several_bf16, 0.0);
    MLSTM_CHECK_CLOSE(one_float, several_float, 0.0);
  }
  const auto x = random_tensor<float, 2>(random, 700, 96);  // 24 blocks of 4, 11 row items
  const auto w = random_tensor<float, 3>(random, 24, 4, 4);
  mlstm::set_num_threads(1);
  const Tensor<float, 2> one = mlstm::linear_headwise_forward(x, w);
  mlstm::set_num_threads(3);
  MLSTM_CHECK_CLOSE(one, mlstm::linear_headwise_forward(x, w), 0.0);
  mlstm::set_num_threads(saved);
}

TEST_CASE("linear_forward takes a bfloat16 weight map in place", "[layers][linear][bfloat16]") {
  mlstm::test::Random random(25);
  const auto x = random_tensor<float, 3>(random, 2, 1, 16);
  const auto w = random_tensor<bfloat16, 2>(random, 5, 16);
  const mlstm::ConstTensorMap<bfloat16, 2> view(w.data(), 5, 16);  // as into a mapped file
  MLSTM_CHECK_CLOSE(mlstm::linear_forward(x, view), mlstm::linear_forward(x, w), 0.0);
}

// The step's kernels called directly, so that each is checked on any processor that runs it
// (linear_forward takes one paired kernel, on x arranged in pairs, where the processor has one):
// rows of x and y with gaps between them, sizes that end in each part of the paired loops (64 and
// 32 at a time, one by one) and column counts around the portable kernel's groups of 8.
TEST_CASE("the step's bfloat16 kernels sum like the plain loop", "[layers][linear][bfloat16]") {
  using Kernel = std::function<void(const float*, Index, Index, const bfloat16*, Index, Index,
                                    const float*, float*, Index)>;
  std::vector<std::pair<const char*, Kernel>> kernels = {
      {"portable", mlstm::detail::dot_widened_rows_portable}};
  const auto paired = [](mlstm::detail::PairedDot dot) {
    return [dot](const float* x, Index x_stride, Index rows, const bfloat16* w, Index columns,
                 Index size, const float* bias, float* y, Index y_stride) {
      std::vector<float> arranged(static_cast<std::size_t>(rows * size));
      mlstm::detail::arrange_pairs(x, x_stride, rows, size, arranged.data(), size);
      mlstm::detail::dot_pairs_rows(dot, arranged.data(), size, rows, w, columns, size, bias, y,
                                    y_stride);
    };
  };
#if MLSTM_DETAIL_X86_KERNELS
  if (mlstm::detail::processor_has_avx512())
    kernels.emplace_back("avx512", paired(mlstm::detail::dot_pairs_avx512));
  if (mlstm::detail::processor_has_avx2_fma())
    kernels.emplace_back("avx2", paired(mlstm::detail::dot_pairs_avx2));
#endif
  mlstm::test::Random random(26);
  for (const auto& [name, kernel] : kernels) {
    for (const Index rows : {Index(1), Index(3)}) {
      for (const Index size : {Index(7), Index(64), Index(85), Index(101), Index(4096)}) {
        for (const Index columns : {Index(1), Index(9), Index(17)}) {
          CAPTURE(name, rows, size, columns);
          const auto x = random_tensor<float, 2>(random, rows, size + 3);  // 3 unused per row
          const auto w = random_tensor<bfloat16, 2>(random, columns, size);
          const auto b = random_tensor<float, 1>(random, columns);
          Tensor<float, 2> y(rows, columns + 2);
          y.setConstant(0.0f);
          kernel(x.data(), size + 3, rows, w.data(), columns, size, b.data(), y.data(),
                 columns + 2);
          const Tensor<double, 2> used_x =
              as_double(x).slice(Eigen::array<Index, 2>{0, 0}, Eigen::array<Index, 2>{rows, size});
          const Tensor<double, 1> b_double = as_double(b);
          const Tensor<double, 2> expected =
              naive::linear(used_x, as_double(widened(w)), &b_double);
          const Tensor<double, 2> got = as_double(y).slice(Eigen::array<Index, 2>{0, 0},
                                                           Eigen::array<Index, 2>{rows, columns});
          MLSTM_CHECK_CLOSE(got, expected, float_sum_budget(size));
          for (Index r = 0; r < rows; ++r)  // the gaps in y untouched
            CHECK((y(r, columns) == 0.0f && y(r, columns + 1) == 0.0f));
        }
      }
    }
  }
}

// Each of the prefill's products (widened_product for bfloat16 weights on any processor;
// broadcast_product for float and bfloat16 weights where the processor has AVX-512) against the
// plain loop, on strided rows: rows around the broadcast kernel's vectors of 16 and blocks of 64,
// odd input sizes, output counts around its groups of 5; with the default tiles and with small
// ones that cut the depth, the rows and the outputs into several tiles. The float weights hold
// the bfloat16 weights' values, so both broadcast products must agree exactly.
TEST_CASE("the prefill's products sum like the plain loop", "[layers][linear][bfloat16]") {
  struct Weights {
    const bfloat16* bfloat16_values;
    const float* float_values;
  };
  using Product = std::function<void(const float*, Index, Index, Weights, Index, Index,
                                     const float*, float*, Index, bool)>;
  std::vector<std::pair<const char*, Product>> products = {
      {"widened", [](const float* x, Index x_stride, Index rows, Weights w, Index in, Index out,
                     const float* bias, float* y, Index y_stride, bool small_tiles) {
         mlstm::detail::WidenedProductTiles tiles;
         if (small_tiles) tiles = {32, 64, 16};
         mlstm::detail::widened_product(x, x_stride, rows, w.bfloat16_values, in, out, bias, y,
                                        y_stride, 2, tiles);
       }}};
#if MLSTM_DETAIL_X86_KERNELS
  const bool broadcast = mlstm::detail::processor_has_avx512();
  // The kernel for float weights, or for bfloat16 ones.
  auto broadcast_with = [](bool bfloat16_weights) {
    return [bfloat16_weights](const float* x, Index x_stride, Index rows, Weights w, Index in,
                              Index out, const float* bias, float* y, Index y_stride,
                              bool small_tiles) {
      const auto tiles = small_tiles ? mlstm::detail::BroadcastProductTiles{64, 10, 8}
                                     : mlstm::detail::BroadcastProductTiles{};
      if (bfloat16_weights) {
        mlstm::detail::broadcast_product(x, x_stride, rows, w.bfloat16_values, in, out, bias, y,
                                         y_stride, 2, tiles);
      } else {
        mlstm::detail::broadcast_product(x, x_stride, rows, w.float_values, in, out, bias, y,
                                         y_stride, 2, tiles);
      }
    };
  };
  if (broadcast) {
    products.emplace_back("broadcast float", broadcast_with(false));
    products.emplace_back("broadcast bfloat16", broadcast_with(true));
  } else {
    WARN("no AVX-512 here: broadcast_product is not tested");
  }
#endif
  // The float weights' results, case by case, for the bfloat16 weights' (the random draws
  // repeat: one generator per product).
  std::vector<Tensor<float, 2>> float_results;
  for (const auto& [name, product] : products) {
    mlstm::test::Random random(27);
    Index case_index = 0;
    for (const bool small_tiles : {false, true}) {
      for (const Index rows : {Index(5), Index(16), Index(17), Index(65), Index(130)}) {
        for (const Index in : {Index(1), Index(7), Index(64), Index(301)}) {
          for (const Index out : {Index(1), Index(4), Index(11), Index(37)}) {
            const bool with_bias = (rows + in + out) % 2 == 0;
            CAPTURE(name, small_tiles, rows, in, out, with_bias);
            const auto x = random_tensor<float, 2>(random, rows, in + 3);  // 3 unused per row
            const auto w = random_tensor<bfloat16, 2>(random, out, in);
            const Tensor<float, 2> w_float = widened(w);
            const auto b = random_tensor<float, 1>(random, out);
            Tensor<float, 2> y(rows, out + 2);
            y.setConstant(0.0f);
            product(x.data(), in + 3, rows, {w.data(), w_float.data()}, in, out,
                    with_bias ? b.data() : nullptr, y.data(), out + 2, small_tiles);
            const Tensor<double, 2> used_x =
                as_double(x).slice(Eigen::array<Index, 2>{0, 0}, Eigen::array<Index, 2>{rows, in});
            const Tensor<double, 1> b_double = as_double(b);
            const Tensor<double, 2> expected =
                naive::linear(used_x, as_double(w_float), with_bias ? &b_double : nullptr);
            const Tensor<double, 2> got =
                as_double(y).slice(Eigen::array<Index, 2>{0, 0}, Eigen::array<Index, 2>{rows, out});
            MLSTM_CHECK_CLOSE(got, expected, float_sum_budget(in));
            for (Index r = 0; r < rows; ++r)  // the gaps in y untouched
              CHECK((y(r, out) == 0.0f && y(r, out + 1) == 0.0f));
            const std::string product_name = name;
            if (product_name == "broadcast float") float_results.push_back(y);
            if (product_name == "broadcast bfloat16") {
              const Tensor<bool, 0> same = (y == float_results.at(case_index)).all();
              CHECK(same());
            }
            ++case_index;
          }
        }
      }
    }
  }
}

// Products with InputRounding::bfloat16 against the plain loop on x rounded to bfloat16 (to
// nearest even), in double: linear_product with the rounding on any processor (the step's few
// rows, and a rounded copy of x where there is no AMX-BF16), dense and head-wise, on one thread
// and three with the same bits; and amx_product itself where the processor has AMX-BF16, on
// strided rows: rows around its tiles of 16, its pairs of row blocks and its row tile of 128,
// inputs around its blocks of 32 (a last block of 16), outputs around its tiles of 16 and its
// tasks of 32.
TEST_CASE("products with inputs rounded to bfloat16 sum like the plain loop on rounded inputs",
          "[layers][linear][bfloat16]") {
#if MLSTM_DETAIL_AMX_KERNELS
  const bool amx = mlstm::detail::processor_has_amx_bf16();
#else
  const bool amx = false;
#endif
  if (!amx) WARN("no AMX-BF16 here: amx_product is not tested, only the rounded copy of x");
  mlstm::test::Random random(31);
  for (const Index rows :
       {Index(1), Index(4), Index(5), Index(16), Index(17), Index(33), Index(130), Index(300)}) {
    for (const Index in :
         {Index(1), Index(4), Index(16), Index(31), Index(32), Index(48), Index(64), Index(301)}) {
      for (const Index out :
           {Index(1), Index(4), Index(15), Index(16), Index(17), Index(37), Index(64)}) {
        for (const Index blocks : {Index(1), Index(2)}) {
          // A few head-wise shapes, among them blocks of 4 x 4 (small_square_blocks).
          if (blocks > 1 && (rows > 33 || out > 17)) continue;
          const bool with_bias = (rows + in + out) % 2 == 1;
          CAPTURE(rows, in, out, blocks, with_bias);
          const auto x = random_tensor<float, 2>(random, rows, blocks * in + 3);  // 3 unused
          const auto w = random_tensor<bfloat16, 3>(random, blocks, out, in);
          const auto b = random_tensor<float, 1>(random, blocks * out);
          Tensor<double, 2> rounded_x(rows, blocks * in);
          for (Index r = 0; r < rows; ++r)
            for (Index j = 0; j < blocks * in; ++j)
              rounded_x(r, j) = static_cast<double>(static_cast<float>(bfloat16(x(r, j))));
          const Tensor<double, 1> b_double = as_double(b);
          const Tensor<double, 2> expected = naive::linear_headwise(
              rounded_x, as_double(widened(w)), with_bias ? &b_double : nullptr);
          const float* bias = with_bias ? b.data() : nullptr;

          // linear_product reads x with the row stride of its blocks: the used columns first.
          const Tensor<float, 2> x_used =
              x.slice(Eigen::array<Index, 2>{0, 0}, Eigen::array<Index, 2>{rows, blocks * in});
          Tensor<float, 2> one_thread(rows, blocks * out), three_threads(rows, blocks * out);
          const mlstm::detail::LinearShape shape{rows, blocks, in, out};
          mlstm::detail::linear_product(x_used.data(), w.data(), bias, one_thread.data(), shape, 1,
                                        mlstm::InputRounding::bfloat16);
          mlstm::detail::linear_product(x_used.data(), w.data(), bias, three_threads.data(), shape,
                                        3, mlstm::InputRounding::bfloat16);
          MLSTM_CHECK_CLOSE(as_double(one_thread), expected, float_sum_budget(in));
          const Tensor<bool, 0> same = (one_thread == three_threads).all();
          CHECK(same());

#if MLSTM_DETAIL_AMX_KERNELS
          if (amx && blocks == 1) {
            Tensor<float, 2> y(rows, out + 2);
            y.setConstant(0.0f);
            mlstm::detail::amx_product(x.data(), in + 3, rows, w.data(), in, out, bias, y.data(),
                                       out + 2, 2);
            const Tensor<double, 2> got =
                as_double(y).slice(Eigen::array<Index, 2>{0, 0}, Eigen::array<Index, 2>{rows, out});
            MLSTM_CHECK_CLOSE(got, expected, float_sum_budget(in));
            for (Index r = 0; r < rows; ++r)  // the gaps in y untouched
              CHECK((y(r, out) == 0.0f && y(r, out + 1) == 0.0f));
          }
#endif
        }
      }
    }
  }
}

// A NaN poisons exactly what it takes part in: a NaN input the outputs of its row, a NaN weight
// its output in every row; the columns of x past the inputs, and the weights past a row, are
// never read (x's three unused columns hold NaN). With the first weight of a row NaN, a product
// that read a partial block of inputs past the end of the row before it would poison that
// output too. Inputs and outputs leave partial blocks of the AMX kernel's tiles.
TEST_CASE("products with inputs rounded to bfloat16 read only their operands",
          "[layers][linear][bfloat16]") {
  const Index rows = 21, out = 19, nan_row = 18, nan_outputs[] = {3, 17};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  mlstm::test::Random random(32);
  for (const Index in : {Index(31), Index(37)}) {
    CAPTURE(in);
    const Index x_stride = in + 3;
    auto x = random_tensor<float, 2>(random, rows, x_stride);
    auto w = random_tensor<bfloat16, 2>(random, out, in);
    for (Index r = 0; r < rows; ++r)
      for (Index j = in; j < x_stride; ++j) x(r, j) = nan;
    x(nan_row, in - 4) = nan;
    w(nan_outputs[0], 0) = bfloat16(nan);
    w(nan_outputs[1], in - 1) = bfloat16(nan);
    auto check_pattern = [&](const float* y) {
      for (Index r = 0; r < rows; ++r)
        for (Index o = 0; o < out; ++o) {
          CAPTURE(r, o);
          const bool poisoned = r == nan_row || o == nan_outputs[0] || o == nan_outputs[1];
          CHECK(std::isnan(y[r * out + o]) == poisoned);
        }
    };
    Tensor<float, 2> y(rows, out);
    const Tensor<float, 2> x_used =
        x.slice(Eigen::array<Index, 2>{0, 0}, Eigen::array<Index, 2>{rows, in});
    mlstm::detail::linear_product(x_used.data(), w.data(), static_cast<const float*>(nullptr),
                                  y.data(), mlstm::detail::LinearShape{rows, 1, in, out}, 2,
                                  mlstm::InputRounding::bfloat16);
    check_pattern(y.data());
#if MLSTM_DETAIL_AMX_KERNELS
    if (mlstm::detail::processor_has_amx_bf16()) {
      mlstm::detail::amx_product(x.data(), x_stride, rows, w.data(), in, out, nullptr, y.data(),
                                 out, 2);
      check_pattern(y.data());
    }
#endif
  }
}
