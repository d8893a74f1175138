// Every layer's backward against central finite differences in double: the building blocks one
// by one, then the whole language model's forward_backward (which runs the embedding, the blocks'
// norms, projections, convolution, gates, cell, multi-head norm, skip and output gate, the
// post-blocks norm, the head and the cross-entropy) for every parameter.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <mlstm/layers/activations.hpp>
#include <mlstm/layers/causal_conv1d.hpp>
#include <mlstm/layers/cross_entropy.hpp>
#include <mlstm/layers/embedding.hpp>
#include <mlstm/layers/layer_norm.hpp>
#include <mlstm/layers/linear.hpp>
#include <mlstm/layers/linear_headwise.hpp>
#include <mlstm/model.hpp>

#include "support/finite_differences.hpp"
#include "support/random_inputs.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;
using mlstm::test::Random;

template <int Rank>
Tensor<double, Rank> random_tensor(const std::array<Index, Rank>& shape, std::uint64_t seed,
                                   double low = -1, double high = 1) {
  Tensor<double, Rank> x(shape);
  Random(seed).fill_uniform(x, low, high);
  return x;
}

// Checks `analytic` against the finite differences of `loss` with respect to `input`.
template <int Rank>
void check_gradient(const char* name, const Tensor<double, Rank>& analytic,
                    Tensor<double, Rank>& input, const std::function<double()>& loss) {
  const Tensor<double, Rank> numeric = mlstm::test::finite_difference_gradient(input, loss);
  INFO(name);
  MLSTM_CHECK_CLOSE(analytic, numeric, mlstm::test::finite_difference_budget(numeric));
}

}  // namespace

TEST_CASE("linear backward matches finite differences", "[layers_backward]") {
  auto x = random_tensor<3>({2, 3, 5}, 1);
  auto weight = random_tensor<2>({4, 5}, 2);
  auto bias = random_tensor<1>({4}, 3);
  const auto dy = random_tensor<3>({2, 3, 4}, 4);
  const auto g = mlstm::linear_backward(x, weight, dy);
  const auto loss = [&] { return mlstm::test::dot(mlstm::linear_forward(x, weight, bias), dy); };
  check_gradient("dx", g.dx, x, loss);
  check_gradient("dweight", g.dweight, weight, loss);
  check_gradient("dbias", g.dbias, bias, loss);
}

TEST_CASE("head-wise linear backward matches finite differences", "[layers_backward]") {
  // 2 -> 4 takes the matrix products; 4 -> 4 the fixed-size loops of small square blocks. 70 rows
  // make more than one tile of rows, on two threads.
  const Index rows = 70, heads = 3;
  for (const auto& [din, dout] : {std::pair<Index, Index>{2, 4}, {4, 4}}) {
    INFO("din " << din << ", dout " << dout);
    auto x = random_tensor<2>({rows, heads * din}, 5);
    auto weight = random_tensor<3>({heads, dout, din}, 6);
    auto bias = random_tensor<1>({heads * dout}, 7);
    const auto dy = random_tensor<2>({rows, heads * dout}, 8);
    Tensor<double, 2> dx(rows, heads * din);
    Tensor<double, 3> dweight(heads, dout, din);
    Tensor<double, 1> dbias(heads * dout);
    dweight.setZero();
    dbias.setZero();
    mlstm::detail::linear_headwise_rows_backward(x.data(), rows, heads, din, weight.data(), dout,
                                                 dy.data(), dx.data(), dweight.data(), dbias.data(),
                                                 2);
    const auto loss = [&] {
      return mlstm::test::dot(mlstm::linear_headwise_forward(x, weight, bias), dy);
    };
    check_gradient("dx", dx, x, loss);
    check_gradient("dweight", dweight, weight, loss);
    check_gradient("dbias", dbias, bias, loss);
  }
}

TEST_CASE("linear backward is the plain products across tiles, on any thread count",
          "[layers_backward]") {
  // More rows, inputs and outputs than one tile of each (256 rows, 256 inputs, up to 256 outputs
  // for the weight gradient), in one block (dense) and in two (head-wise); and 40 blocks of 4 x 4
  // (the loops for small square blocks, more than one item of 16 blocks).
  const Index rows = 300;
  struct Shape {
    Index blocks, in, out;
  };
  for (const Shape& shape : {Shape{1, 260, 270}, Shape{2, 260, 270}, Shape{40, 4, 4}}) {
    const Index blocks = shape.blocks, in = shape.in, out = shape.out;
    INFO(blocks << " blocks of " << out << " x " << in);
    const auto x = random_tensor<2>({rows, blocks * in}, 11);
    const auto weight = random_tensor<3>({blocks, out, in}, 12);
    const auto dy = random_tensor<2>({rows, blocks * out}, 13);
    using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Eigen::Map<const Matrix> x_matrix(x.data(), rows, blocks * in),
        dy_matrix(dy.data(), rows, blocks * out);
    const auto run = [&](int threads) {
      std::pair<Tensor<double, 2>, Tensor<double, 3>> g{Tensor<double, 2>(rows, blocks * in),
                                                        Tensor<double, 3>(blocks, out, in)};
      g.second.setConstant(0.5);  // accumulated into
      mlstm::detail::linear_headwise_rows_backward(x.data(), rows, blocks, in, weight.data(), out,
                                                   dy.data(), g.first.data(), g.second.data(),
                                                   static_cast<double*>(nullptr), threads);
      return g;
    };
    const auto one = run(1), three = run(3);
    Tensor<double, 2> dx(rows, blocks * in);
    Tensor<double, 3> dweight(blocks, out, in);
    for (Index b = 0; b < blocks; ++b) {
      const Eigen::Map<const Matrix> w(weight.data() + b * out * in, out, in);
      const Matrix block_dx = dy_matrix.middleCols(b * out, out) * w;
      const Matrix block_dweight =
          dy_matrix.middleCols(b * out, out).transpose() * x_matrix.middleCols(b * in, in);
      for (Index r = 0; r < rows; ++r)
        for (Index j = 0; j < in; ++j) dx(r, b * in + j) = block_dx(r, j);
      for (Index o = 0; o < out; ++o)
        for (Index j = 0; j < in; ++j) dweight(b, o, j) = block_dweight(o, j) + 0.5;
    }
    // Two summation orders of the same products in double.
    const auto budget = [](const auto& reference) {
      return mlstm::test::forms_relative<double> * std::max(1.0, mlstm::test::magnitude(reference));
    };
    MLSTM_CHECK_CLOSE(one.first, dx, budget(dx));
    MLSTM_CHECK_CLOSE(one.second, dweight, budget(dweight));
    const auto same = [](const auto& a, const auto& b) {  // bit for bit
      return std::equal(a.data(), a.data() + a.size(), b.data());
    };
    CHECK(same(one.first, three.first));
    CHECK(same(one.second, three.second));
  }
}

TEST_CASE("head-wise 4 x 4 weight gradients in float are the plain sums, on any thread count",
          "[layers_backward]") {
  // The float path of the small square blocks' weight gradient (pairs of blocks in vector
  // registers where the processor has AVX2, in passes of 32 rows, an odd item's last block one
  // by one): 40 blocks (items of 32 and 8 blocks), 42 (32 and 10) and 41 (the second item's 9
  // blocks leave 1 for the plain loop), over 300 rows (9 passes and 12 rows), against the sums in
  // double of the same float inputs.
  const Index rows = 300, size = 4;
  for (const Index blocks : {Index(40), Index(42), Index(41)}) {
    INFO(blocks << " blocks");
    const Tensor<float, 2> x = random_tensor<2>({rows, blocks * size}, 21).cast<float>();
    const Tensor<float, 3> weight = random_tensor<3>({blocks, size, size}, 22).cast<float>();
    const Tensor<float, 2> dy = random_tensor<2>({rows, blocks * size}, 23).cast<float>();
    const auto run = [&](int threads) {
      Tensor<float, 3> dweight(blocks, size, size);
      dweight.setConstant(0.5f);  // accumulated into
      mlstm::detail::linear_headwise_rows_backward(
          x.data(), rows, blocks, size, weight.data(), size, dy.data(),
          static_cast<float*>(nullptr), dweight.data(), static_cast<float*>(nullptr), threads);
      return dweight;
    };
    Tensor<double, 3> expected(blocks, size, size);
    for (Index b = 0; b < blocks; ++b)
      for (Index o = 0; o < size; ++o)
        for (Index i = 0; i < size; ++i) {
          double sum = 0.0;
          for (Index r = 0; r < rows; ++r)
            sum += double(dy(r, b * size + o)) * double(x(r, b * size + i));
          expected(b, o, i) = sum + 0.5;
        }
    const Tensor<float, 3> one = run(1), three = run(3);
    const Tensor<double, 3> one_double = one.cast<double>();
    MLSTM_CHECK_CLOSE(
        one_double, expected,
        mlstm::test::forms_relative<float> * std::max(1.0, mlstm::test::magnitude(expected)));
    CHECK(std::equal(one.data(), one.data() + one.size(), three.data()));
  }
}

TEST_CASE("layer norm backward matches finite differences", "[layers_backward]") {
  // The reference's form (1 + weight) and the plain one, with a bias.
  for (const bool residual : {true, false}) {
    mlstm::LayerNormOptions options;
    options.residual_weight = residual;
    const Index rows = 4, dim = 6;
    auto x = random_tensor<2>({rows, dim}, 9, -2, 2);
    auto weight = random_tensor<1>({dim}, 10);
    auto bias = random_tensor<1>({dim}, 11);
    const auto dy = random_tensor<2>({rows, dim}, 12);
    Tensor<double, 2> dx(rows, dim);
    Tensor<double, 1> dweight(dim), dbias(dim);
    dweight.setZero();
    dbias.setZero();
    for (Index r = 0; r < rows; ++r)
      mlstm::detail::layer_norm_row_backward(x.data() + r * dim, dim, weight.data(), residual,
                                             options.eps, dy.data() + r * dim, dx.data() + r * dim,
                                             dweight.data(), dbias.data());
    const auto loss = [&] {
      return mlstm::test::dot(mlstm::layer_norm_forward(x, weight, bias, options), dy);
    };
    INFO("residual_weight " << residual);
    check_gradient("dx", dx, x, loss);
    check_gradient("dweight", dweight, weight, loss);
    check_gradient("dbias", dbias, bias, loss);
  }
}

// Large enough for the pool to split both the rows and the columns.
TEST_CASE("layer_norm_rows_backward is the row-by-row loop on any thread count",
          "[layers_backward][threads]") {
  const Index rows = 300, dim = 70;
  const auto x = random_tensor<2>({rows, dim}, 21, -2, 2);
  const auto weight = random_tensor<1>({dim}, 22);
  const auto dy = random_tensor<2>({rows, dim}, 23);
  const double eps = mlstm::LayerNormOptions{}.eps;
  Tensor<double, 2> dx(rows, dim);
  Tensor<double, 1> dweight(dim), dbias(dim);
  dweight.setZero();
  dbias.setZero();
  for (Index r = 0; r < rows; ++r)
    mlstm::detail::layer_norm_row_backward(x.data() + r * dim, dim, weight.data(), true, eps,
                                           dy.data() + r * dim, dx.data() + r * dim, dweight.data(),
                                           dbias.data());
  for (const int threads : {1, 3}) {
    CAPTURE(threads);
    Tensor<double, 2> rows_dx(rows, dim);
    Tensor<double, 1> rows_dweight(dim), rows_dbias(dim);
    rows_dweight.setZero();
    rows_dbias.setZero();
    mlstm::detail::layer_norm_rows_backward(x.data(), rows, dim, weight.data(), true, eps,
                                            dy.data(), rows_dx.data(), rows_dweight.data(),
                                            rows_dbias.data(), threads);
    CHECK(std::equal(dx.data(), dx.data() + dx.size(), rows_dx.data()));
    CHECK(std::equal(dweight.data(), dweight.data() + dim, rows_dweight.data()));
    CHECK(std::equal(dbias.data(), dbias.data() + dim, rows_dbias.data()));
  }
}

TEST_CASE("multi-head layer norm backward matches finite differences", "[layers_backward]") {
  const Index B = 2, NH = 3, S = 4, DH = 5;
  auto h = random_tensor<4>({B, NH, S, DH}, 13, -2, 2);
  auto weight = random_tensor<1>({NH * DH}, 14);
  const auto dy = random_tensor<4>({B, NH, S, DH}, 15);
  Tensor<double, 4> dh(B, NH, S, DH);
  Tensor<double, 1> dweight(NH * DH);
  dweight.setZero();
  mlstm::detail::multi_head_layer_norm_backward(
      h.data(), B, NH, S, DH, weight.data(), mlstm::LayerNormOptions{}, false, dy.data(), dh.data(),
      dweight.data(), static_cast<double*>(nullptr));
  const auto loss = [&] {
    return mlstm::test::dot(mlstm::multi_head_layer_norm_forward(h, weight), dy);
  };
  check_gradient("dh", dh, h, loss);
  check_gradient("dweight", dweight, weight, loss);
}

TEST_CASE("head-wise backward writes or adds its input gradient into rows a stride apart",
          "[layers_backward]") {
  // The layer sends the q and k maps' input gradients onto dx_conv and the v map's onto the first
  // half of proj_up's output gradient: each value must be the written gradient added to what was
  // there (one addition, bit for bit), and the columns past the input's width untouched. 4 x 4
  // blocks in float take the vector kernel where the processor has AVX2 (an even count) and the
  // plain loop (an odd count); 2 -> 4 the matrix products, which add op(A) op(B) to C as their
  // library does (one addition a value after the sum in the packed product and Eigen's at this
  // depth; oneDNN's sgemm may start its sums from C), so there the sum is held to a rounding.
  struct Shape {
    Index blocks, in, out;
  };
  const Index rows = 70;
  for (const Shape& shape : {Shape{40, 4, 4}, Shape{3, 4, 4}, Shape{3, 2, 4}}) {
    const Index width = shape.blocks * shape.in, stride = 2 * width + 3;
    INFO(shape.blocks << " blocks of " << shape.out << " x " << shape.in);
    const Tensor<float, 2> x = random_tensor<2>({rows, width}, 31).cast<float>();
    const Tensor<float, 3> weight =
        random_tensor<3>({shape.blocks, shape.out, shape.in}, 32).cast<float>();
    const Tensor<float, 2> dy =
        random_tensor<2>({rows, shape.blocks * shape.out}, 33).cast<float>();
    const Tensor<float, 2> before = random_tensor<2>({rows, stride}, 34).cast<float>();
    for (const int threads : {1, 3}) {
      INFO(threads << " threads");
      const auto backward = [&](const mlstm::detail::InputGradient<float>& dx) {
        mlstm::detail::linear_headwise_rows_backward(
            x.data(), rows, shape.blocks, shape.in, weight.data(), shape.out, dy.data(), dx,
            static_cast<float*>(nullptr), static_cast<float*>(nullptr), threads);
      };
      Tensor<float, 2> written(rows, width);
      backward(written.data());
      Tensor<float, 2> strided = before, added = before;
      backward({strided.data(), stride});
      backward({added.data(), stride, mlstm::detail::Accumulate::yes});
      const bool one_addition =
          mlstm::detail::has_small_square_blocks(shape.blocks, shape.in, shape.out);
      Index mismatches = 0;
      for (Index r = 0; r < rows; ++r)
        for (Index j = 0; j < stride; ++j) {
          const bool inside = j < width;
          const float expected_strided = inside ? written(r, j) : before(r, j);
          const float expected_added = inside ? before(r, j) + written(r, j) : before(r, j);
          const float rounding = one_addition || !inside
                                     ? 0.0f
                                     : 4 * std::numeric_limits<float>::epsilon() *
                                           (std::abs(before(r, j)) + std::abs(written(r, j)));
          if (strided(r, j) != expected_strided ||
              !(std::abs(added(r, j) - expected_added) <= rounding)) {
            if (++mismatches <= 3)
              FAIL_CHECK("row " << r << ", column " << j << ": written " << strided(r, j)
                                << " (expected " << expected_strided << "), added " << added(r, j)
                                << " (expected " << expected_added << ")");
          }
        }
      CHECK(mismatches == 0);
    }
  }
}

TEST_CASE("causal conv1d backward matches finite differences", "[layers_backward]") {
  // A kernel longer than the sequence too: taps before the start see zeros. 2 x 40 rows are two
  // blocks of the backward's rows (64), the second starting inside the second sequence.
  for (const auto& [kernel, S] : {std::pair<Index, Index>{3, 40}, {6, 5}}) {
    const Index B = 2, D = 3;
    auto x = random_tensor<3>({B, S, D}, 16);
    auto weight = random_tensor<3>({D, 1, kernel}, 17);
    auto bias = random_tensor<1>({D}, 18);
    const auto dy = random_tensor<3>({B, S, D}, 19);
    Tensor<double, 3> dx(B, S, D), dweight(D, 1, kernel);
    Tensor<double, 1> dbias(D);
    dweight.setZero();
    dbias.setZero();
    mlstm::detail::causal_conv1d_backward(x.data(), B, S, D, weight.data(), kernel, dy.data(),
                                          dx.data(), D, dweight.data(), dbias.data(), 2);
    const auto loss = [&] {
      return mlstm::test::dot(mlstm::causal_conv1d_forward(x, weight, bias), dy);
    };
    INFO("kernel " << kernel);
    check_gradient("dx", dx, x, loss);
    check_gradient("dweight", dweight, weight, loss);
    check_gradient("dbias", dbias, bias, loss);

    // dx into rows wider than D (the layer writes into the first half of a gradient of 2 D
    // columns): the same values, and the columns past D untouched.
    const Index stride = 2 * D + 1;
    Tensor<double, 3> wide(B, S, stride);
    wide.setConstant(7.0);
    mlstm::detail::causal_conv1d_backward(x.data(), B, S, D, weight.data(), kernel, dy.data(),
                                          wide.data(), stride, dweight.data(), dbias.data(), 2);
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < S; ++t)
        for (Index j = 0; j < stride; ++j) {
          INFO("b " << b << ", t " << t << ", column " << j);
          CHECK(wide(b, t, j) == (j < D ? dx(b, t, j) : 7.0));
        }
  }
}

TEST_CASE("silu backward matches finite differences", "[layers_backward]") {
  auto x = random_tensor<2>({3, 7}, 20, -8, 8);
  const auto dy = random_tensor<2>({3, 7}, 21);
  const auto dx = mlstm::silu_backward(x, dy);
  check_gradient("dx", dx, x, [&] { return mlstm::test::dot(mlstm::silu_forward(x), dy); });
}

TEST_CASE("embedding backward matches finite differences", "[layers_backward]") {
  const Index V = 5, E = 3;
  const std::vector<int> ids = {4, 1, 4, 0};  // a repeated id gets both rows
  const Index rows = static_cast<Index>(ids.size());
  auto weight = random_tensor<2>({V, E}, 22);
  const auto dy = random_tensor<2>({rows, E}, 23);
  Tensor<double, 2> dweight(V, E);
  dweight.setZero();
  mlstm::detail::embedding_backward(ids.data(), rows, E, dy.data(), dweight.data());
  check_gradient("dweight", dweight, weight, [&] {
    Tensor<double, 2> y(rows, E);
    mlstm::detail::embedding_forward(ids.data(), rows, weight.data(), E, y.data());
    return mlstm::test::dot(y, dy);
  });
}

TEST_CASE("cross-entropy backward matches finite differences, ignored rows get none",
          "[layers_backward]") {
  const Index rows = 5, V = 7;
  const std::vector<long long> targets = {3, -100, 0, 6, 3};
  auto logits = random_tensor<2>({rows, V}, 24, -4, 4);
  const mlstm::CrossEntropyOptions options;
  const Index counted = mlstm::detail::count_targets(targets.data(), rows, V, options, "targets");
  CHECK(counted == 4);
  const double dloss = 0.7;
  Tensor<double, 2> dlogits(rows, V);
  mlstm::detail::cross_entropy_backward(logits.data(), rows, V, targets.data(), counted, options,
                                        dloss, dlogits.data());
  check_gradient("dlogits", dlogits, logits, [&] {
    return dloss * mlstm::detail::cross_entropy_forward(logits.data(), rows, V, targets.data(),
                                                        counted, options);
  });
  for (Index j = 0; j < V; ++j) CHECK(dlogits(1, j) == 0.0);

  const std::vector<long long> bad = {3, 7, 0, 6, 3};
  CHECK_THROWS_AS(mlstm::detail::count_targets(bad.data(), rows, V, options, "targets"),
                  mlstm::ValueError);
}

namespace {

// Cross-entropy's loss and dlogits by plain loops in long double: the plain version the library's
// vectorized one is held to.
struct PlainCrossEntropy {
  double loss = 0.0;
  Tensor<double, 2> dlogits;
};

template <typename T>
PlainCrossEntropy plain_cross_entropy(const Tensor<T, 2>& logits,
                                      const std::vector<long long>& targets, long long ignore,
                                      double dloss) {
  const Index rows = logits.dimension(0), V = logits.dimension(1);
  PlainCrossEntropy out{0.0, Tensor<double, 2>(rows, V)};
  out.dlogits.setZero();
  long double total = 0.0L;
  Index counted = 0;
  for (Index r = 0; r < rows; ++r) counted += targets[static_cast<std::size_t>(r)] != ignore;
  for (Index r = 0; r < rows; ++r) {
    const long long target = targets[static_cast<std::size_t>(r)];
    if (target == ignore) continue;
    long double top = logits(r, 0);
    for (Index j = 1; j < V; ++j) top = std::max<long double>(top, logits(r, j));
    long double sum = 0.0L;
    for (Index j = 0; j < V; ++j) sum += std::exp(static_cast<long double>(logits(r, j)) - top);
    total += top + std::log(sum) - static_cast<long double>(logits(r, target));
    for (Index j = 0; j < V; ++j) {
      const long double p = std::exp(static_cast<long double>(logits(r, j)) - top) / sum;
      out.dlogits(r, j) = static_cast<double>(dloss / counted * (p - (j == target ? 1.0L : 0.0L)));
    }
  }
  out.loss = static_cast<double>(total / counted);
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE(
    "cross-entropy agrees with plain loops, vocabularies past the exponentials' "
    "block, extreme logits",
    "[layers_backward]", float, double) {
  using T = TestType;
  const long long ignore = -100;
  const double dloss = 1.3;
  for (const Index V : {Index(7), Index(256), Index(700)}) {
    CAPTURE(V);
    const Index rows = 6;
    Tensor<T, 2> logits(rows, V);
    Random(40 + static_cast<std::uint64_t>(V)).fill_uniform(logits, -30.0, 30.0);
    // Row 2: its target far ahead of the rest (a probability next to 1, whose gradient is a
    // difference with 1); row 4: a value far below the others (an exponential of 0).
    logits(2, 1) = T(80);
    logits(4, 0) = T(-1e4);
    const std::vector<long long> targets = {0, V - 1, 1, ignore, 0, V / 2};
    const auto plain = plain_cross_entropy(logits, targets, ignore, dloss);
    const mlstm::CrossEntropyOptions options{ignore};
    const Index counted = mlstm::detail::count_targets(targets.data(), rows, V, options, "t");
    const double loss = mlstm::detail::cross_entropy_forward(logits.data(), rows, V, targets.data(),
                                                             counted, options, 2);
    INFO("loss " << loss << " against " << plain.loss);
    CHECK(std::abs(loss - plain.loss) <=
          mlstm::test::forms_relative<T> * std::max(1.0, std::abs(plain.loss)));
    Tensor<T, 2> dlogits(rows, V);
    mlstm::detail::cross_entropy_backward(logits.data(), rows, V, targets.data(), counted, options,
                                          dloss, dlogits.data(), 2);
    MLSTM_CHECK_CLOSE(
        dlogits, plain.dlogits,
        mlstm::test::forms_relative<T> * std::max(1.0, mlstm::test::magnitude(plain.dlogits)));
    // In place, as the language model calls it.
    Tensor<T, 2> in_place = logits;
    mlstm::detail::cross_entropy_backward(in_place.data(), rows, V, targets.data(), counted,
                                          options, dloss, in_place.data());
    MLSTM_CHECK_CLOSE(in_place, dlogits, 0.0);
  }
}

namespace {

// A small model with every parameter drawn at random (so that gates, norms and skip all matter),
// and a batch of tokens and targets with one ignored target.
struct ModelCase {
  mlstm::LMModelConfig config;
  Tensor<std::int64_t, 2> tokens, targets;
};

ModelCase model_case(bool tie_weights, bool bias, bool post_norm) {
  ModelCase c;
  c.config.vocab_size = 11;
  c.config.embedding_dim = 8;
  c.config.num_heads = 2;
  c.config.num_blocks = 2;
  c.config.context_length = 6;
  c.config.proj_factor = 2.0;
  c.config.round_proj_up_to_multiple_of = 4;
  c.config.conv1d_kernel_size = 3;
  c.config.qkv_proj_blocksize = 4;
  c.config.bias = bias;
  c.config.tie_weights = tie_weights;
  c.config.add_post_blocks_norm = post_norm;
  const Index B = 2, S = 6;
  c.tokens = Tensor<std::int64_t, 2>(B, S);
  c.targets = Tensor<std::int64_t, 2>(B, S);
  Random random(25);
  for (Index i = 0; i < c.tokens.size(); ++i) {
    c.tokens.data()[i] = static_cast<std::int64_t>(random.uniform(0, 11));
    c.targets.data()[i] = static_cast<std::int64_t>(random.uniform(0, 11));
  }
  c.targets(1, 2) = -100;
  return c;
}

void randomize(mlstm::Registry<double>& registry, std::uint64_t seed) {
  Random random(seed);
  for (auto& parameter : registry) {
    const bool gate = parameter.name().find("gate.") != std::string::npos;
    const double scale = gate ? 1.0 : 0.5;
    for (Index i = 0; i < parameter.size(); ++i)
      parameter.data()[i] = random.uniform(-scale, scale);
  }
}

}  // namespace

TEST_CASE("language model forward_backward matches finite differences for every parameter",
          "[layers_backward][model]") {
  struct Variant {
    bool tie_weights, bias, post_norm;
    mlstm::SequenceKernel kernel;
  };
  for (const Variant& variant : {Variant{false, false, true, mlstm::SequenceKernel::parallel},
                                 Variant{true, true, false, mlstm::SequenceKernel::chunkwise}}) {
    ModelCase c = model_case(variant.tie_weights, variant.bias, variant.post_norm);
    mlstm::KernelOptions options;
    options.forward_kernel = variant.kernel;
    options.chunk_size = 4;  // two chunks, the second one short
    mlstm::LanguageModel<double> model(c.config, options);
    randomize(model.registry(), 26);
    for (auto& parameter : model.registry()) parameter.zero_grad();
    const double scale = 0.5;
    const double loss = model.forward_backward(c.tokens, c.targets, scale);
    CHECK(loss == Approx(model.loss(c.tokens, c.targets)).epsilon(1e-12));
    INFO("tied " << variant.tie_weights << ", bias " << variant.bias << ", post norm "
                 << variant.post_norm);
    for (auto& parameter : model.registry()) {
      Tensor<double, 1> analytic(parameter.size()), numeric(parameter.size());
      std::copy(parameter.grad_data(), parameter.grad_data() + parameter.size(), analytic.data());
      mlstm::test::finite_difference_gradient(
          parameter.data(), parameter.size(),
          [&] { return scale * model.loss(c.tokens, c.targets); }, numeric.data());
      INFO(parameter.name());
      MLSTM_CHECK_CLOSE(analytic, numeric, mlstm::test::finite_difference_budget(numeric));
    }
  }
}

TEST_CASE("forward_backward accumulates gradients over calls", "[layers_backward][model]") {
  ModelCase c = model_case(false, false, true);
  mlstm::LanguageModel<double> model(c.config);
  randomize(model.registry(), 27);
  for (auto& parameter : model.registry()) parameter.zero_grad();
  model.forward_backward(c.tokens, c.targets, 1.0);
  std::vector<std::vector<double>> once;
  for (auto& parameter : model.registry())
    once.emplace_back(parameter.grad_data(), parameter.grad_data() + parameter.size());
  model.forward_backward(c.tokens, c.targets, 0.5);
  std::size_t p = 0;
  for (auto& parameter : model.registry()) {
    INFO(parameter.name());
    for (Index i = 0; i < parameter.size(); ++i)
      CHECK(parameter.grad_data()[i] == Approx(1.5 * once[p][i]).epsilon(1e-12).margin(1e-300));
    ++p;
  }
}

TEST_CASE("forward_backward validates targets before computing", "[layers_backward][model]") {
  ModelCase c = model_case(false, false, true);
  mlstm::LanguageModel<double> model(c.config);
  Tensor<std::int64_t, 2> short_targets(2, 5);
  short_targets.setZero();
  CHECK_THROWS_AS(model.forward_backward(c.tokens, short_targets), mlstm::ShapeError);
  c.targets(0, 0) = 11;
  CHECK_THROWS_AS(model.forward_backward(c.tokens, c.targets), mlstm::ValueError);
  CHECK_THROWS_AS(model.forward_backward(c.tokens, c.tokens, NAN), mlstm::ValueError);
  for (const auto& parameter : model.registry())
    for (Index i = 0; i < parameter.size(); ++i) CHECK(parameter.grad_data()[i] == 0.0);
}
