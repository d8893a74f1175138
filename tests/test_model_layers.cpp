// The model's layer pieces against the plain loops of tests/support/naive_layers.hpp: linear and
// head-wise linear maps, layer norm and multi-head layer norm, the causal convolution (whole,
// piecewise, step by step, with a state), SiLU, and the mLSTM cell, layer and block (whole
// sequence, and from a state by the chunkwise kernel and step by step); float and double;
// shapes and errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <mlstm/layers/activations.hpp>
#include <mlstm/layers/causal_conv1d.hpp>
#include <mlstm/layers/cross_entropy.hpp>
#include <mlstm/layers/layer_norm.hpp>
#include <mlstm/layers/linear.hpp>
#include <mlstm/layers/linear_headwise.hpp>
#include <mlstm/layers/soft_cap.hpp>
#include <mlstm/models/xlstm_lm/mlstm_block.hpp>
#include <mlstm/models/xlstm_lm/mlstm_cell.hpp>
#include <mlstm/models/xlstm_lm/mlstm_layer.hpp>

#include "support/naive_layers.hpp"
#include "support/random_inputs.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;
namespace naive = mlstm::test::naive;

template <typename T, int Rank, typename... Dims>
Tensor<T, Rank> random_tensor(mlstm::test::Random& random, double low, double high, Dims... dims) {
  Tensor<T, Rank> x(dims...);
  random.fill_uniform(x, low, high);
  return x;
}

// A view of `x` with another shape of the same size (the naive loops take 2-D rows).
template <int Rank, typename X, typename... Dims>
Tensor<double, Rank> reshaped_double(const X& x, Dims... dims) {
  Tensor<double, Rank> y(dims...);
  REQUIRE(y.size() == x.size());
  for (Index i = 0; i < x.size(); ++i) y.data()[i] = static_cast<double>(x.data()[i]);
  return y;
}

// x (any rank, float or double) as a double tensor. (A plain loop: GCC 12 warns about array
// bounds inside Eigen's vectorized cast of small float tensors.)
template <typename T, int Rank>
Tensor<double, Rank> as_double(const Tensor<T, Rank>& x) {
  Tensor<double, Rank> y(x.dimensions());
  for (Index i = 0; i < x.size(); ++i) y.data()[i] = static_cast<double>(x.data()[i]);
  return y;
}

// Budget of a result computed in T against a double plain loop: forms_relative<T> of the
// magnitude, no less than of 1 (the inputs are of order one).
template <typename E>
double budget_for(double relative, const E& expected) {
  return relative * std::max(1.0, mlstm::test::magnitude(expected));
}

}  // namespace

TEMPLATE_TEST_CASE("linear_forward matches nn.Linear's loops", "[model][layers]", float, double) {
  using T = TestType;
  mlstm::test::Random random(11);
  const double relative = mlstm::test::forms_relative<T>;
  for (const bool with_bias : {false, true}) {
    for (const Index in : {1, 7, 64}) {
      CAPTURE(with_bias, in);
      const Index B = 3, S = 5, out = 9;
      const auto x = random_tensor<T, 3>(random, -2, 2, B, S, in);
      const auto w = random_tensor<T, 2>(random, -1, 1, out, in);
      const auto b = random_tensor<T, 1>(random, -1, 1, out);
      const auto y = with_bias ? mlstm::linear_forward(x, w, b) : mlstm::linear_forward(x, w);
      const Tensor<double, 1> b_double = as_double(b);
      const auto expected = naive::linear(reshaped_double<2>(x, B * S, in), as_double(w),
                                          with_bias ? &b_double : nullptr);
      REQUIRE(y.dimension(0) == B);
      REQUIRE(y.dimension(1) == S);
      REQUIRE(y.dimension(2) == out);
      MLSTM_CHECK_CLOSE(reshaped_double<2>(y, B * S, out), expected,
                        budget_for(relative, expected));
    }
  }
}

TEST_CASE("linear_forward rejects mis-shaped weights and biases", "[model][layers][errors]") {
  Tensor<float, 3> x(2, 3, 4);
  x.setConstant(1.0f);
  Tensor<float, 2> w(5, 3);
  Tensor<float, 1> b(4);
  w.setZero();
  b.setZero();
  CHECK_THROWS_WITH(mlstm::linear_forward(x, w), Catch::Contains("weight") &&
                                                     Catch::Contains("in = 4") &&
                                                     Catch::Contains("(5, 3)"));
  Tensor<float, 2> w_ok(5, 4);
  w_ok.setZero();
  CHECK_THROWS_AS(mlstm::linear_forward(x, w_ok, b), mlstm::ShapeError);
  CHECK_THROWS_WITH(mlstm::linear_forward(x, w_ok, b), Catch::Contains("bias"));
  Tensor<float, 3> w_rank3(5, 4, 1);
  CHECK_THROWS_WITH(mlstm::linear_forward(x, w_rank3), Catch::Contains("expected rank 2"));
}

TEMPLATE_TEST_CASE("linear_headwise_forward matches LinearHeadwiseExpand's loops",
                   "[model][layers]", float, double) {
  using T = TestType;
  mlstm::test::Random random(12);
  struct Sizes {
    Index heads, dout, din;
  };
  // 4 x 4 blocks in even numbers take the AVX2 kernel where the processor has it.
  for (const Sizes z : {Sizes{16, 4, 4}, Sizes{2, 4, 4}, Sizes{5, 4, 4}, Sizes{3, 5, 2},
                        Sizes{1, 6, 6}, Sizes{8, 1, 1}}) {
    for (const bool with_bias : {false, true}) {
      CAPTURE(z.heads, z.dout, z.din, with_bias);
      const Index B = 2, S = 7;
      const auto x = random_tensor<T, 3>(random, -2, 2, B, S, z.heads * z.din);
      const auto w = random_tensor<T, 3>(random, -1, 1, z.heads, z.dout, z.din);
      const auto b = random_tensor<T, 1>(random, -1, 1, z.heads * z.dout);
      const auto y = with_bias ? mlstm::linear_headwise_forward(x, w, b)
                               : mlstm::linear_headwise_forward(x, w);
      const Tensor<double, 1> b_double = as_double(b);
      const auto expected = naive::linear_headwise(reshaped_double<2>(x, B * S, z.heads * z.din),
                                                   as_double(w), with_bias ? &b_double : nullptr);
      REQUIRE(y.dimension(2) == z.heads * z.dout);
      MLSTM_CHECK_CLOSE(reshaped_double<2>(y, B * S, z.heads * z.dout), expected,
                        budget_for(mlstm::test::forms_relative<T>, expected));
    }
  }
}

TEST_CASE("linear_headwise_forward rejects weights that do not tile the features",
          "[model][layers][errors]") {
  Tensor<double, 2> x(3, 12);
  x.setZero();
  Tensor<double, 3> w(5, 2, 2);  // 5 * 2 = 10 != 12
  w.setZero();
  CHECK_THROWS_WITH(mlstm::linear_headwise_forward(x, w),
                    Catch::Contains("weight") && Catch::Contains("NPH * din = 12"));
  Tensor<double, 3> w_ok(6, 3, 2);
  w_ok.setZero();
  Tensor<double, 1> b(12);  // expected 6 * 3 = 18
  CHECK_THROWS_WITH(mlstm::linear_headwise_forward(x, w_ok, b),
                    Catch::Contains("bias") && Catch::Contains("(18)"));
}

TEMPLATE_TEST_CASE("layer_norm_forward matches F.layer_norm's loops", "[model][layers]", float,
                   double) {
  using T = TestType;
  mlstm::test::Random random(13);
  for (const Index D : {1, 2, 33, 64}) {
    for (const bool residual : {true, false}) {
      for (const bool with_bias : {false, true}) {
        for (const double eps : {1e-5, 0.3}) {
          CAPTURE(D, residual, with_bias, eps);
          const Index B = 2, S = 6;
          // An offset in x: the mean must be removed before the variance is taken.
          const auto x = random_tensor<T, 3>(random, 50, 54, B, S, D);
          const auto w = random_tensor<T, 1>(random, -0.5, 0.5, D);
          const auto b = random_tensor<T, 1>(random, -1, 1, D);
          mlstm::LayerNormOptions options;
          options.eps = eps;
          options.residual_weight = residual;
          const auto y = with_bias ? mlstm::layer_norm_forward(x, w, b, options)
                                   : mlstm::layer_norm_forward(x, w, options);
          const Tensor<double, 1> b_double = as_double(b);
          const auto expected = naive::layer_norm(reshaped_double<2>(x, B * S, D), as_double(w),
                                                  with_bias ? &b_double : nullptr, eps, residual);
          MLSTM_CHECK_CLOSE(reshaped_double<2>(y, B * S, D), expected,
                            budget_for(mlstm::test::forms_relative<T>, expected));
        }
      }
    }
  }
}

TEST_CASE("layer_norm_forward: weight is an offset from one by default", "[model][layers]") {
  Tensor<double, 2> x(1, 4);
  x.setValues({{1.0, 2.0, 3.0, 4.0}});
  Tensor<double, 1> zero(4);
  zero.setZero();
  const auto y = mlstm::layer_norm_forward(x, zero);  // residual: scale 1
  const double inverse_std = 1.0 / std::sqrt(1.25 + 1e-5);
  CHECK(y(0, 0) == Approx(-1.5 * inverse_std).epsilon(1e-14));
  CHECK(y(0, 3) == Approx(1.5 * inverse_std).epsilon(1e-14));
  mlstm::LayerNormOptions plain;
  plain.residual_weight = false;
  const auto z = mlstm::layer_norm_forward(x, zero, plain);  // scale 0
  CHECK(mlstm::test::magnitude(z) == 0.0);
}

TEST_CASE("layer_norm_forward rejects bad shapes and eps", "[model][layers][errors]") {
  Tensor<float, 2> x(3, 5);
  x.setZero();
  Tensor<float, 1> w(4);
  CHECK_THROWS_WITH(mlstm::layer_norm_forward(x, w),
                    Catch::Contains("weight") && Catch::Contains("(5)"));
  Tensor<float, 1> w_ok(5);
  w_ok.setZero();
  mlstm::LayerNormOptions options;
  options.eps = 0.0;
  CHECK_THROWS_WITH(mlstm::layer_norm_forward(x, w_ok, options), Catch::Contains("options.eps"));
  Tensor<float, 2> empty(3, 0);
  Tensor<float, 1> w_empty(0);
  CHECK_THROWS_AS(mlstm::layer_norm_forward(empty, w_empty), mlstm::ShapeError);
}

TEMPLATE_TEST_CASE("multi_head_layer_norm_forward matches F.group_norm's loops", "[model][layers]",
                   float, double) {
  using T = TestType;
  mlstm::test::Random random(14);
  struct Sizes {
    Index B, NH, S, DH;
  };
  for (const Sizes z : {Sizes{2, 4, 5, 16}, Sizes{1, 1, 3, 7}, Sizes{3, 3, 1, 2}}) {
    for (const bool with_bias : {false, true}) {
      CAPTURE(z.B, z.NH, z.S, z.DH, with_bias);
      auto h = random_tensor<T, 4>(random, -3, 3, z.B, z.NH, z.S, z.DH);
      // Heads of very different scales: each must be normalized with its own statistics.
      for (Index b = 0; b < z.B; ++b)
        for (Index s = 0; s < z.S; ++s)
          for (Index d = 0; d < z.DH; ++d) h(b, 0, s, d) *= T(1e-3);
      const auto w = random_tensor<T, 1>(random, -0.5, 0.5, z.NH * z.DH);
      const auto b = random_tensor<T, 1>(random, -1, 1, z.NH * z.DH);
      const auto y = with_bias ? mlstm::multi_head_layer_norm_forward(h, w, b)
                               : mlstm::multi_head_layer_norm_forward(h, w);
      const Tensor<double, 1> b_double = as_double(b);
      const auto expected = naive::multi_head_layer_norm(as_double(h), as_double(w),
                                                         with_bias ? &b_double : nullptr, 1e-5);
      MLSTM_CHECK_CLOSE(as_double(y), expected,
                        budget_for(mlstm::test::forms_relative<T>, expected));
    }
  }
}

TEST_CASE("multi_head_layer_norm_forward rejects bad shapes", "[model][layers][errors]") {
  Tensor<double, 4> h(1, 2, 3, 4);
  h.setZero();
  Tensor<double, 1> w(4);  // expected NH * DH = 8
  CHECK_THROWS_WITH(mlstm::multi_head_layer_norm_forward(h, w),
                    Catch::Contains("weight") && Catch::Contains("(8)"));
  Tensor<double, 3> h3(2, 3, 4);
  Tensor<double, 1> w8(8);
  CHECK_THROWS_WITH(mlstm::multi_head_layer_norm_forward(h3, w8),
                    Catch::Contains("h") && Catch::Contains("rank 4"));
}

TEMPLATE_TEST_CASE("causal_conv1d_forward matches nn.Conv1d's loops", "[model][layers]", float,
                   double) {
  using T = TestType;
  mlstm::test::Random random(15);
  for (const Index KS : {1, 2, 4, 6}) {
    for (const Index S : {1, 3, 4, 11}) {
      CAPTURE(KS, S);
      const Index B = 2, D = 5;
      const auto x = random_tensor<T, 3>(random, -2, 2, B, S, D);
      const auto w = random_tensor<T, 3>(random, -1, 1, D, 1, KS);
      const auto bias = random_tensor<T, 1>(random, -1, 1, D);
      const auto y = mlstm::causal_conv1d_forward(x, w, bias);
      const auto expected =
          naive::causal_conv1d(as_double(x), as_double(w), as_double(bias), nullptr);
      MLSTM_CHECK_CLOSE(as_double(y), expected,
                        budget_for(mlstm::test::forms_relative<T>, expected));

      // From a state: the reference's forward with that state prepended, and the new state is
      // the last KS inputs of (state, x).
      auto state = random_tensor<T, 3>(random, -2, 2, B, KS, D);
      const Tensor<double, 3> state_before = as_double(state);
      const auto y_state = mlstm::causal_conv1d_forward(x, w, bias, state);
      const auto expected_state =
          naive::causal_conv1d(as_double(x), as_double(w), as_double(bias), &state_before);
      MLSTM_CHECK_CLOSE(as_double(y_state), expected_state,
                        budget_for(mlstm::test::forms_relative<T>, expected_state));
      Tensor<double, 3> expected_new_state(B, KS, D);
      for (Index b = 0; b < B; ++b)
        for (Index r = 0; r < KS; ++r)
          for (Index d = 0; d < D; ++d) {
            const Index time = S - KS + r;  // position in x; negative: in the old state
            expected_new_state(b, r, d) =
                time >= 0 ? static_cast<double>(x(b, time, d)) : state_before(b, KS + time, d);
          }
      MLSTM_CHECK_CLOSE(as_double(state), expected_new_state, 0.0);
    }
  }
}

TEMPLATE_TEST_CASE("causal_conv1d_forward: whole, piecewise and step by step agree exactly",
                   "[model][layers]", float, double) {
  using T = TestType;
  mlstm::test::Random random(16);
  const Index B = 2, S = 13, D = 6, KS = 4;
  const auto x = random_tensor<T, 3>(random, -2, 2, B, S, D);
  const auto w = random_tensor<T, 3>(random, -1, 1, D, 1, KS);
  const auto bias = random_tensor<T, 1>(random, -1, 1, D);
  Tensor<T, 3> zero_state(B, KS, D);
  zero_state.setZero();

  Tensor<T, 3> whole_state = zero_state;
  const auto whole = mlstm::causal_conv1d_forward(x, w, bias, whole_state);
  CHECK(mlstm::test::max_difference(whole, mlstm::causal_conv1d_forward(x, w, bias)).max_abs ==
        0.0);

  for (const Index piece : {1, 2, 5}) {
    CAPTURE(piece);
    Tensor<T, 3> state = zero_state;
    Tensor<T, 3> pieces(B, S, D);
    for (Index start = 0; start < S; start += piece) {
      const Index length = std::min(piece, S - start);
      const Tensor<T, 3> chunk =
          x.slice(std::array<Index, 3>{0, start, 0}, std::array<Index, 3>{B, length, D});
      const auto y = mlstm::causal_conv1d_forward(chunk, w, bias, state);
      pieces.slice(std::array<Index, 3>{0, start, 0}, std::array<Index, 3>{B, length, D}) = y;
    }
    CHECK(mlstm::test::max_difference(pieces, whole).max_abs == 0.0);
    CHECK(mlstm::test::max_difference(state, whole_state).max_abs == 0.0);
  }

  // The reference's CausalConv1d.step, token by token, on its own state.
  Tensor<double, 3> reference_state = as_double(zero_state);
  for (Index t = 0; t < S; ++t) {
    Tensor<double, 2> x_t(B, D);
    for (Index b = 0; b < B; ++b)
      for (Index d = 0; d < D; ++d) x_t(b, d) = static_cast<double>(x(b, t, d));
    const auto y_t = naive::causal_conv1d_step(x_t, as_double(w), as_double(bias), reference_state);
    Tensor<double, 2> ours(B, D);
    for (Index b = 0; b < B; ++b)
      for (Index d = 0; d < D; ++d) ours(b, d) = static_cast<double>(whole(b, t, d));
    MLSTM_CHECK_CLOSE(ours, y_t, budget_for(mlstm::test::forms_relative<T>, y_t));
  }
  MLSTM_CHECK_CLOSE(as_double(whole_state), reference_state, 0.0);
}

TEST_CASE("causal_conv1d_forward rejects bad shapes and leaves the state alone",
          "[model][layers][errors]") {
  Tensor<float, 3> x(2, 3, 4);
  x.setConstant(1.0f);
  Tensor<float, 3> w(4, 1, 3);
  w.setConstant(0.5f);
  Tensor<float, 1> bias(4);
  bias.setZero();
  Tensor<float, 3> w_bad(4, 2, 3);
  CHECK_THROWS_WITH(mlstm::causal_conv1d_forward(x, w_bad, bias),
                    Catch::Contains("weight") && Catch::Contains("(D, 1, KS)"));
  Tensor<float, 3> w_empty(4, 1, 0);
  CHECK_THROWS_WITH(mlstm::causal_conv1d_forward(x, w_empty, bias), Catch::Contains("KS >= 1"));
  Tensor<float, 1> bias_bad(3);
  CHECK_THROWS_WITH(mlstm::causal_conv1d_forward(x, w, bias_bad), Catch::Contains("bias"));
  Tensor<float, 3> state(2, 2, 4);  // KS = 3 rows expected
  state.setConstant(7.0f);
  CHECK_THROWS_WITH(mlstm::causal_conv1d_forward(x, w, bias, state),
                    Catch::Contains("state") && Catch::Contains("(2, 3, 4)"));
  CHECK(state(1, 1, 3) == 7.0f);
}

TEMPLATE_TEST_CASE("silu_forward is x * sigmoid(x), finite at the extremes", "[model][layers]",
                   float, double) {
  using T = TestType;
  Tensor<T, 1> x(7);
  x.setValues({T(-1000), T(-20), T(-1), T(0), T(0.5), T(20), T(1000)});
  const auto y = mlstm::silu_forward(x);
  for (Index i = 0; i < x.size(); ++i) {
    CAPTURE(x(i));
    const double expected = naive::silu(static_cast<double>(x(i)));
    CHECK(std::isfinite(y(i)));
    CHECK(static_cast<double>(y(i)) ==
          Approx(expected).epsilon(mlstm::test::forms_relative<T>).margin(1e-300));
  }
}

TEMPLATE_TEST_CASE("exp, tanh and silu give each value the same bits wherever it lies",
                   "[model][layers]", float, double) {
  // Eigen takes the values before the first aligned vector and after the last whole one with
  // scalar code, which rounds exp and tanh differently: a training step's loss then moved with
  // the heap's addresses (vector_pieces.hpp). Each function runs on the same values placed at
  // every offset of a 64-byte line (in place too, for silu, as silu_rows runs it) and from a
  // later start (the range a block of rows covers), and must give the bits of the first run.
  using T = TestType;
  const Index n = 300;
  mlstm::test::Random random(41);
  const Tensor<T, 1> x = random_tensor<T, 1>(random, -30.0, 30.0, n);
  // Each function writes its values to `out` and returns a sum it takes of them (0 if none).
  using Function = double (*)(const T*, Index, T*);
  const std::pair<const char*, Function> functions[] = {
      {"silu_values",
       [](const T* in, Index count, T* out) {
         mlstm::detail::silu_values(in, count, out);
         return 0.0;
       }},
      {"silu_values in place",
       [](const T* in, Index count, T* out) {
         std::copy(in, in + count, out);
         mlstm::detail::silu_values(out, count, out);
         return 0.0;
       }},
      {"soft_cap_inplace",
       [](const T* in, Index count, T* out) {
         std::copy(in, in + count, out);
         mlstm::detail::soft_cap_inplace(out, count, T(15));
         return 0.0;
       }},
      {"shifted_exp_sum", [](const T* in, Index count, T* out) {
         return mlstm::detail::shifted_exp_sum(in, count, out).sum;
       }}};
  for (const auto& [name, function] : functions) {
    INFO(name);
    std::vector<T> expected(n);
    const double expected_sum = function(x.data(), n, expected.data());
    const Index line = 64 / static_cast<Index>(sizeof(T));
    std::vector<T> input(n + line), output(n + line);
    for (Index offset = 0; offset < line; ++offset) {
      CAPTURE(offset);
      std::copy(x.data(), x.data() + n, input.begin() + offset);
      const double sum = function(input.data() + offset, n, output.data() + offset);
      Index mismatches = 0;
      for (Index i = 0; i < n; ++i) mismatches += output[offset + i] != expected[i];
      CHECK(mismatches == 0);
      CHECK(sum == expected_sum);
    }
    if (std::string(name) != "shifted_exp_sum") {  // its values depend on the range's maximum
      const Index start = 37;
      function(x.data() + start, n - start, output.data());
      CHECK(std::equal(output.begin(), output.begin() + (n - start), expected.begin() + start));
    }
  }
}

// ---- cell, layer and block -------------------------------------------------------------------

namespace {

struct BlockSizes {
  Index E, I, NH, P, KS;
  bool bias;
};

// Random parameters of a block: of order one everywhere (gate weights included), so that every
// parameter matters to the output.
naive::BlockParams random_block(const BlockSizes& z, std::uint64_t seed) {
  mlstm::test::Random random(seed);
  const auto t1 = [&](Index n, double low, double high) {
    return random_tensor<double, 1>(random, low, high, n);
  };
  naive::BlockParams p;
  p.num_heads = z.NH;
  p.xlstm_norm = t1(z.E, -0.3, 0.3);
  p.proj_up = random_tensor<double, 2>(random, -0.4, 0.4, 2 * z.I, z.E);
  const Index Q = z.I / z.P;
  p.q_proj = random_tensor<double, 3>(random, -0.6, 0.6, z.P, Q, Q);
  p.k_proj = random_tensor<double, 3>(random, -0.6, 0.6, z.P, Q, Q);
  p.v_proj = random_tensor<double, 3>(random, -0.6, 0.6, z.P, Q, Q);
  p.conv = random_tensor<double, 3>(random, -0.5, 0.5, z.I, 1, z.KS);
  p.conv_bias = t1(z.I, -0.2, 0.2);
  p.igate = random_tensor<double, 2>(random, -0.3, 0.3, z.NH, 3 * z.I);
  p.fgate = random_tensor<double, 2>(random, -0.3, 0.3, z.NH, 3 * z.I);
  p.igate_bias = t1(z.NH, -1.0, 1.0);
  p.fgate_bias = t1(z.NH, 1.0, 4.0);
  p.outnorm = t1(z.I, -0.3, 0.3);
  p.skip = t1(z.I, 0.5, 1.5);
  p.proj_down = random_tensor<double, 2>(random, -0.3, 0.3, z.E, z.I);
  if (z.bias) {
    p.proj_up_bias = t1(2 * z.I, -0.2, 0.2);
    p.q_bias = t1(z.I, -0.2, 0.2);
    p.k_bias = t1(z.I, -0.2, 0.2);
    p.v_bias = t1(z.I, -0.2, 0.2);
    p.proj_down_bias = t1(z.E, -0.2, 0.2);
  }
  return p;
}

template <typename T, int Rank>
Tensor<T, Rank> cast_to(const Tensor<double, Rank>& x) {
  Tensor<T, Rank> y(x.dimensions());
  for (Index i = 0; i < x.size(); ++i) y.data()[i] = static_cast<T>(x.data()[i]);
  return y;
}

// The block's parameters in T, owned, and the library's views of them.
template <typename T>
struct OwnedBlock {
  Tensor<T, 1> norm, conv_bias, igate_bias, fgate_bias, outnorm, skip;
  Tensor<T, 2> proj_up, igate, fgate, proj_down;
  Tensor<T, 3> q, k, v, conv;
  std::optional<Tensor<T, 1>> proj_up_bias, q_bias, k_bias, v_bias, proj_down_bias;

  explicit OwnedBlock(const naive::BlockParams& p)
      : norm(cast_to<T>(p.xlstm_norm)),
        conv_bias(cast_to<T>(p.conv_bias)),
        igate_bias(cast_to<T>(p.igate_bias)),
        fgate_bias(cast_to<T>(p.fgate_bias)),
        outnorm(cast_to<T>(p.outnorm)),
        skip(cast_to<T>(p.skip)),
        proj_up(cast_to<T>(p.proj_up)),
        igate(cast_to<T>(p.igate)),
        fgate(cast_to<T>(p.fgate)),
        proj_down(cast_to<T>(p.proj_down)),
        q(cast_to<T>(p.q_proj)),
        k(cast_to<T>(p.k_proj)),
        v(cast_to<T>(p.v_proj)),
        conv(cast_to<T>(p.conv)) {
    const auto copy = [](const std::optional<Tensor<double, 1>>& from,
                         std::optional<Tensor<T, 1>>& to) {
      if (from) to = cast_to<T>(*from);
    };
    copy(p.proj_up_bias, proj_up_bias);
    copy(p.q_bias, q_bias);
    copy(p.k_bias, k_bias);
    copy(p.v_bias, v_bias);
    copy(p.proj_down_bias, proj_down_bias);
  }

  template <int Rank>
  static mlstm::ConstTensorMap<T, Rank> view(const Tensor<T, Rank>& x) {
    return mlstm::ConstTensorMap<T, Rank>(x.data(), x.dimensions());
  }
  static std::optional<mlstm::ConstTensorMap<T, 1>> view(const std::optional<Tensor<T, 1>>& x) {
    if (!x) return std::nullopt;
    return view(*x);
  }

  mlstm::MLSTMCellWeights<T> cell() const {
    return {view(igate), view(igate_bias), view(fgate), view(fgate_bias), view(outnorm)};
  }
  mlstm::MLSTMLayerWeights<T> layer() const {
    return {view(proj_up),   view(proj_up_bias),  view(q), view(q_bias),
            view(k),         view(k_bias),        view(v), view(v_bias),
            view(conv),      view(conv_bias),     cell(),  view(skip),
            view(proj_down), view(proj_down_bias)};
  }
  mlstm::MLSTMBlockWeights<T> block() const { return {view(norm), layer()}; }
};

const BlockSizes block_sizes[] = {
    {8, 16, 2, 4, 4, false},  // the reference's layout: P = I / qkv_proj_blocksize
    {6, 12, 3, 3, 3, true},   // biases, odd head size, KS = 3
    {5, 8, 1, 8, 1, true},    // one head, KS = 1 (no history), P = I
};

naive::State<double> random_state(Index B, Index NH, Index DH, mlstm::test::Random& random) {
  naive::State<double> state{random_tensor<double, 4>(random, -1, 1, B, NH, DH, DH),
                             random_tensor<double, 4>(random, -1, 1, B, NH, DH, 1),
                             random_tensor<double, 4>(random, -2, 2, B, NH, 1, 1)};
  return state;
}

template <typename T>
mlstm::RecurrentState<T> library_state(const naive::State<double>& state) {
  return {cast_to<T>(state.c), cast_to<T>(state.n), cast_to<T>(state.m)};
}

}  // namespace

TEMPLATE_TEST_CASE("mlstm_cell_forward matches the plain loops, with and without a state",
                   "[model][layers]", float, double) {
  using T = TestType;
  const double relative = mlstm::test::forms_relative<T>;
  std::uint64_t seed = 100;
  for (const BlockSizes& z : block_sizes) {
    CAPTURE(z.E, z.I, z.NH, z.P, z.KS, z.bias);
    const auto params = random_block(z, seed++);
    const OwnedBlock<T> owned(params);
    mlstm::test::Random random(seed++);
    const Index B = 2, S = 7, DH = z.I / z.NH;
    const auto q = random_tensor<double, 3>(random, -1, 1, B, S, z.I);
    const auto k = random_tensor<double, 3>(random, -1, 1, B, S, z.I);
    const auto v = random_tensor<double, 3>(random, -1, 1, B, S, z.I);
    const auto rows = [&](const Tensor<double, 3>& x) { return reshaped_double<2>(x, B * S, z.I); };

    const auto h =
        mlstm::mlstm_cell_forward(owned.cell(), cast_to<T>(q), cast_to<T>(k), cast_to<T>(v));
    const auto expected = naive::mlstm_cell(rows(q), rows(k), rows(v), B, S, params, nullptr);
    MLSTM_CHECK_CLOSE(reshaped_double<2>(h, B * S, z.I), expected, budget_for(relative, expected));

    // From a random state: one step (recurrent step) and a sequence (chunkwise kernel).
    for (const Index length : {Index(1), S}) {
      CAPTURE(length);
      const auto part = [&](const Tensor<double, 3>& x) {
        return Tensor<double, 3>(
            x.slice(std::array<Index, 3>{0, 0, 0}, std::array<Index, 3>{B, length, z.I}));
      };
      auto naive_state = random_state(B, z.NH, DH, random);
      auto state = library_state<T>(naive_state);
      mlstm::KernelOptions options;
      options.chunk_size = 3;
      const auto h_state =
          mlstm::mlstm_cell_forward(owned.cell(), cast_to<T>(part(q)), cast_to<T>(part(k)),
                                    cast_to<T>(part(v)), state, options);
      const auto q_rows = reshaped_double<2>(part(q), B * length, z.I);
      const auto k_rows = reshaped_double<2>(part(k), B * length, z.I);
      const auto v_rows = reshaped_double<2>(part(v), B * length, z.I);
      const auto expected_state =
          naive::mlstm_cell(q_rows, k_rows, v_rows, B, length, params, &naive_state);
      MLSTM_CHECK_CLOSE(reshaped_double<2>(h_state, B * length, z.I), expected_state,
                        budget_for(relative, expected_state));
      MLSTM_CHECK_CLOSE(as_double(state.c), naive_state.c, budget_for(relative, naive_state.c));
      MLSTM_CHECK_CLOSE(as_double(state.n), naive_state.n, budget_for(relative, naive_state.n));
      MLSTM_CHECK_CLOSE(as_double(state.m), naive_state.m, budget_for(relative, naive_state.m));
    }
  }
}

TEMPLATE_TEST_CASE("mlstm_layer_forward and mlstm_block_forward match the plain loops",
                   "[model][layers]", float, double) {
  using T = TestType;
  const double relative = mlstm::test::forms_relative<T>;
  std::uint64_t seed = 200;
  for (const BlockSizes& z : block_sizes) {
    CAPTURE(z.E, z.I, z.NH, z.P, z.KS, z.bias);
    const auto params = random_block(z, seed++);
    const OwnedBlock<T> owned(params);
    mlstm::test::Random random(seed++);
    const Index B = 2, S = 9, DH = z.I / z.NH;
    const auto x = random_tensor<double, 3>(random, -1.5, 1.5, B, S, z.E);

    const auto layer = mlstm::mlstm_layer_forward(owned.layer(), cast_to<T>(x));
    const auto expected_layer = naive::mlstm_layer(x, params, nullptr, nullptr);
    MLSTM_CHECK_CLOSE(as_double(layer), expected_layer, budget_for(relative, expected_layer));

    const auto block = mlstm::mlstm_block_forward(owned.block(), cast_to<T>(x));
    const auto expected_block = naive::mlstm_block(x, params, nullptr, nullptr);
    MLSTM_CHECK_CLOSE(as_double(block), expected_block, budget_for(relative, expected_block));

    // From a random state: a prefix by the chunkwise kernel, then one step at a time, against
    // the reference's step loop (recurrent cell, rolled conv state) from the same state.
    auto naive_cell = random_state(B, z.NH, DH, random);
    auto naive_conv = random_tensor<double, 3>(random, -1, 1, B, z.KS, z.I);
    mlstm::MLSTMLayerState<T> state{library_state<T>(naive_cell), cast_to<T>(naive_conv)};
    const auto expected_steps = naive::mlstm_block(x, params, &naive_cell, &naive_conv);
    mlstm::KernelOptions options;
    options.chunk_size = 2;
    const Index prefix = 5;
    Tensor<double, 3> stepped(B, S, z.E);
    const auto put = [&](const Tensor<T, 3>& y, Index first) {
      for (Index b = 0; b < B; ++b)
        for (Index t = 0; t < y.dimension(1); ++t)
          for (Index e = 0; e < z.E; ++e)
            stepped(b, first + t, e) = static_cast<double>(y(b, t, e));
    };
    const auto slice = [&](Index first, Index length) {
      return cast_to<T>(Tensor<double, 3>(
          x.slice(std::array<Index, 3>{0, first, 0}, std::array<Index, 3>{B, length, z.E})));
    };
    put(mlstm::mlstm_block_forward(owned.block(), slice(0, prefix), state, options), 0);
    for (Index t = prefix; t < S; ++t)
      put(mlstm::mlstm_block_forward(owned.block(), slice(t, 1), state, options), t);
    MLSTM_CHECK_CLOSE(stepped, expected_steps, budget_for(relative, expected_steps));
    MLSTM_CHECK_CLOSE(as_double(state.mlstm_state.c), naive_cell.c,
                      budget_for(relative, naive_cell.c));
    MLSTM_CHECK_CLOSE(as_double(state.mlstm_state.m), naive_cell.m,
                      budget_for(relative, naive_cell.m));
    MLSTM_CHECK_CLOSE(as_double(state.conv_state), naive_conv, budget_for(relative, naive_conv));
  }
}

TEST_CASE("layer weights and inputs are validated with the parameters' names",
          "[model][layers][errors]") {
  const BlockSizes z{8, 16, 2, 4, 4, false};
  const auto params = random_block(z, 300);
  const OwnedBlock<double> owned(params);
  Tensor<double, 3> x(1, 3, z.E);
  x.setConstant(0.5);

  Tensor<double, 3> bad_v(4, 3, 4);  // P = 4 blocks of I / P = 4, but (4, 3, 4)
  bad_v.setZero();
  const auto with_bad_v = mlstm::MLSTMLayerWeights<double>{owned.layer().proj_up_weight,
                                                           std::nullopt,
                                                           owned.layer().q_proj_weight,
                                                           std::nullopt,
                                                           owned.layer().k_proj_weight,
                                                           std::nullopt,
                                                           OwnedBlock<double>::view(bad_v),
                                                           std::nullopt,
                                                           owned.layer().conv_weight,
                                                           owned.layer().conv_bias,
                                                           owned.cell(),
                                                           owned.layer().learnable_skip,
                                                           owned.layer().proj_down_weight,
                                                           std::nullopt};
  CHECK_THROWS_WITH(mlstm::mlstm_layer_forward(with_bad_v, x),
                    Catch::Contains("v_proj.weight") && Catch::Contains("(4, 3, 4)"));

  Tensor<double, 3> wrong_width(1, 3, z.E + 1);
  wrong_width.setZero();
  CHECK_THROWS_WITH(mlstm::mlstm_layer_forward(owned.layer(), wrong_width),
                    Catch::Contains("x") && Catch::Contains("E = 8"));

  mlstm::MLSTMLayerState<double> state =
      mlstm::MLSTMLayerState<double>::zeros(2, z.NH, z.I / z.NH, z.KS, z.I);
  CHECK_THROWS_WITH(mlstm::mlstm_block_forward(owned.block(), x, state),
                    Catch::Contains("state.mlstm_state.c") && Catch::Contains("(1, 2, 8, 8)"));
  CHECK(mlstm::test::magnitude(state.conv_state) == 0.0);

  Tensor<double, 1> bad_gate_bias(3);
  bad_gate_bias.setZero();
  auto cell = owned.cell();
  const mlstm::MLSTMCellWeights<double> bad_cell{
      cell.igate_weight, OwnedBlock<double>::view(bad_gate_bias), cell.fgate_weight,
      cell.fgate_bias, cell.outnorm_weight};
  Tensor<double, 3> q(1, 3, z.I);
  q.setZero();
  CHECK_THROWS_WITH(mlstm::mlstm_cell_forward(bad_cell, q, q, q),
                    Catch::Contains("igate.bias") && Catch::Contains("(2)"));
}
