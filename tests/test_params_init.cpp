// The init functions: golden values (torch.linspace; the generator's documented use), the
// distributions they draw from, reproducibility, the targets they accept, and their errors.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <mlstm/mlstm.hpp>

#include "params/golden_file.hpp"
#include "params/statistics.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Generator;
using mlstm::Index;
using mlstm::test::GoldenFile;

template <typename T>
bool same_bits(const T* a, const T* b, Index n) {
  return std::memcmp(a, b, sizeof(T) * static_cast<std::size_t>(n)) == 0;
}

// Largest |actual - expected| in units of the float spacing at `magnitude`.
template <typename T>
double spacings_apart(const T* actual, const std::vector<T>& expected, double magnitude) {
  const double spacing =
      std::nextafter(static_cast<T>(magnitude), std::numeric_limits<T>::infinity()) -
      static_cast<T>(magnitude);
  double worst = 0.0;
  for (std::size_t i = 0; i < expected.size(); ++i)
    worst = std::max(worst, std::abs(double(actual[i]) - double(expected[i])) / spacing);
  return worst;
}

template <typename T>
void check_linspace_golden(const std::string& dtype) {
  const GoldenFile golden("params_linspace.safetensors");
  int exact_cases = 0, checked = 0;
  for (const auto& c : golden.json("cases")) {
    if (c.at("dtype").get<std::string>() != dtype) continue;
    const std::string key = c.at("key").get<std::string>();
    const double start = c.at("start").get<double>(), end = c.at("end").get<double>();
    const Index n = c.at("n").get<Index>();
    const auto expected = golden.values<T>(key);
    mlstm::Tensor<T, 1> values(n);
    mlstm::bias_linspace_init_(values, start, end);
    INFO(dtype << " linspace(" << start << ", " << end << ", " << n << ")");
    // Exact properties: the endpoints, and start for a single element.
    CHECK(values(0) == static_cast<T>(start));
    if (n > 1) CHECK(values(n - 1) == static_cast<T>(end));
    if (c.at("torch_scalar_path").get<bool>()) {
      // torch computed these elements with its scalar formula, which is ours: bit for bit.
      CHECK(same_bits(values.data(), expected.data(), n));
      ++exact_cases;
    } else {
      // torch's vectorized path rounds differently, by at most one spacing of the larger
      // endpoint (measured by the golden script; max_endpoint_ulps_vs_library_formula).
      const double magnitude = std::max(std::abs(start), std::abs(end));
      CHECK(spacings_apart(values.data(), expected, magnitude) <= 1.0);
    }
    ++checked;
  }
  CHECK(checked == 180);
  CHECK(exact_cases >= 5 * 7);  // at least n = 1..7 of every range
}

}  // namespace

TEST_CASE("params init: bias_linspace_init_ reproduces torch.linspace", "[params][init][golden]") {
  check_linspace_golden<float>("float32");
  check_linspace_golden<double>("float64");
}

TEST_CASE("params init: bias_linspace_init_ on parameters, maps and edge sizes", "[params][init]") {
  mlstm::Registry<float> registry;
  auto& bias = registry.add("fgate.bias", {4});
  mlstm::bias_linspace_init_(bias, 3.0, 6.0);
  const std::vector<float> expected{3.0f, 4.0f, 5.0f, 6.0f};
  CHECK(std::vector<float>(bias.data(), bias.data() + 4) == expected);

  mlstm::bias_linspace_init_(bias);  // the reference's defaults 3.4 .. 6.0
  CHECK(bias.data()[0] == 3.4f);
  CHECK(bias.data()[3] == 6.0f);

  auto& single = registry.add("single", {1});
  mlstm::bias_linspace_init_(single, 2.5, 9.0);
  CHECK(single.data()[0] == 2.5f);

  auto& empty = registry.add("empty", {0});
  mlstm::bias_linspace_init_(empty, 1.0, 2.0);  // nothing to write, no error

  std::vector<double> buffer(5, -1.0);
  mlstm::bias_linspace_init_(mlstm::TensorMap<double, 1>(buffer.data(), 5), -1.0, 1.0);
  CHECK(buffer == std::vector<double>{-1.0, -0.5, 0.0, 0.5, 1.0});
}

TEST_CASE("params init: bias_linspace_init_ rejects anything but 1-D, writing nothing",
          "[params][init][errors]") {
  mlstm::Registry<double> registry;
  auto& weight = registry.add("cell.fgate.weight", {4, 768});
  mlstm::ones_(weight);
  try {
    mlstm::bias_linspace_init_(weight, 3.0, 6.0);
    FAIL("expected a ShapeError");
  } catch (const mlstm::ShapeError& error) {
    const std::string message = error.what();
    CHECK(error.argument() == "cell.fgate.weight");
    CHECK(message.find("rank 2") != std::string::npos);
    CHECK(message.find("(4, 768)") != std::string::npos);
  }
  CHECK(weight.map<2>()(3, 767) == 1.0);

  mlstm::Tensor<float, 2> matrix(2, 3);
  matrix.setConstant(7.0f);
  CHECK_THROWS_AS(mlstm::bias_linspace_init_(matrix), mlstm::ShapeError);
  CHECK(matrix(1, 2) == 7.0f);

  auto& scalar = registry.add("scalar", {});
  CHECK_THROWS_AS(mlstm::bias_linspace_init_(scalar), mlstm::ShapeError);
  mlstm::Tensor<float, 1> bias(3);
  CHECK_THROWS_AS(mlstm::bias_linspace_init_(bias, std::nan(""), 1.0), mlstm::ValueError);
  CHECK_THROWS_AS(mlstm::bias_linspace_init_(bias, 0.0, INFINITY), mlstm::ValueError);
}

TEST_CASE("params init: values drawn from the generator match the documented computation",
          "[params][init][golden]") {
  // Golden: the Python port of the generator, drawing in the order listed in the metadata.
  const GoldenFile golden("params_generator.safetensors");
  Generator gen(7);
  mlstm::Tensor<float, 2> small(4, 5);
  mlstm::small_init_init_(small, 128, gen);
  mlstm::Tensor<double, 2> wang(3, 7);
  mlstm::wang_init_(wang, 64, 3, gen);
  mlstm::Tensor<float, 1> normal(13);
  mlstm::normal_(normal, 0.5, 2.0, gen);
  mlstm::Tensor<double, 1> uniform(11);
  mlstm::uniform_(uniform, -0.25, 0.5, gen);
  // The normals agree to a few ulp of a double (see the generator test), so float values agree
  // to one float rounding and double values to a few double ulps.
  constexpr double float_ulp = std::numeric_limits<float>::epsilon();
  constexpr double double_ulp = std::numeric_limits<double>::epsilon();
  const auto expected_small = golden.tensor<float, 2>("init.small_init_f32");
  MLSTM_CHECK_CLOSE(small, expected_small, float_ulp * mlstm::test::magnitude(expected_small));
  const auto expected_wang = golden.tensor<double, 2>("init.wang_f64");
  MLSTM_CHECK_CLOSE(wang, expected_wang, 8 * double_ulp * mlstm::test::magnitude(expected_wang));
  const auto expected_normal = golden.tensor<float, 1>("init.normal_f32");
  MLSTM_CHECK_CLOSE(normal, expected_normal, float_ulp * mlstm::test::magnitude(expected_normal));
  // Uniform values involve no libm function: bit for bit.
  const auto expected_uniform = golden.tensor<double, 1>("init.uniform_f64");
  CHECK(same_bits(uniform.data(), golden.values<double>("init.uniform_f64").data(), 11));
  MLSTM_CHECK_CLOSE(uniform, expected_uniform, 0.0);
}

TEST_CASE("params init: small_init_init_ and wang_init_ draw from the right normal",
          "[params][init][statistics]") {
  using namespace mlstm::test;
  constexpr Index rows = 512, cols = 512;
  constexpr long n = rows * cols;
  struct Case {
    const char* what;
    double sigma;
  };
  for (const Case& c : {Case{"small_init dim=128", std::sqrt(2.0 / (5.0 * 128))},
                        Case{"wang dim=768 num_blocks=12", 2.0 / 12.0 / std::sqrt(768.0)}}) {
    mlstm::Tensor<float, 2> w(rows, cols);
    Generator gen(31);
    if (c.what[0] == 's') mlstm::small_init_init_(w, 128, gen);
    else mlstm::wang_init_(w, 768, 12, gen);
    const auto m = moments(w.data(), n);
    const double d = ks_statistic(w.data(), n, [&](double x) { return normal_cdf(x, 0, c.sigma); });
    INFO(c.what << ": mean " << m.mean << ", std " << m.std << " (expected " << c.sigma << "), KS "
                << d << " (critical " << ks_critical_value(n) << ")");
    CHECK(std::abs(m.mean) <= mean_bound(c.sigma, n));
    CHECK(std::abs(m.std - c.sigma) <= normal_std_bound(c.sigma, n));
    CHECK(d <= ks_critical_value(n));
  }
  CHECK(mlstm::small_init_std(128) == std::sqrt(2.0 / (5 * 128)));
  CHECK(mlstm::wang_init_std(768, 12) == 2.0 / 12 / std::sqrt(768.0));
}

TEST_CASE("params init: normal_ and uniform_ draw from their distributions",
          "[params][init][statistics]") {
  using namespace mlstm::test;
  constexpr long n = 100000;
  Generator gen(8);
  mlstm::Tensor<double, 1> z(n), u(n);
  mlstm::normal_(z, -1.5, 0.1, gen);
  mlstm::uniform_(u, -0.5, 0.25, gen);

  const auto mz = moments(z.data(), n);
  CHECK(std::abs(mz.mean + 1.5) <= mean_bound(0.1, n));
  CHECK(std::abs(mz.std - 0.1) <= normal_std_bound(0.1, n));
  CHECK(ks_statistic(z.data(), n, [](double x) { return normal_cdf(x, -1.5, 0.1); }) <=
        ks_critical_value(n));

  const double sigma = 0.75 / std::sqrt(12.0);
  const auto mu = moments(u.data(), n);
  CHECK(std::abs(mu.mean + 0.125) <= mean_bound(sigma, n));
  CHECK(std::abs(mu.std - sigma) <= uniform_std_bound(sigma, n));
  CHECK(ks_statistic(u.data(), n, [](double x) { return uniform_cdf(x, -0.5, 0.25); }) <=
        ks_critical_value(n));
  for (long i = 0; i < n; ++i) {
    INFO("element " << i);
    REQUIRE(u(i) >= -0.5);
    REQUIRE(u(i) <= 0.25);
  }
  // A uniform sample fails the normal test with the same mean and std, so the test discriminates.
  CHECK(ks_statistic(u.data(), n, [&](double x) { return normal_cdf(x, -0.125, sigma); }) >
        ks_critical_value(n));

  mlstm::Tensor<float, 1> constant(5);
  mlstm::normal_(constant, 0.25, 0.0, gen);  // std 0 is allowed, as in torch
  for (Index i = 0; i < 5; ++i) CHECK(constant(i) == 0.25f);
}

TEST_CASE("params init: reproducible for a seed, and the same on a Tensor, a map and a Parameter",
          "[params][init]") {
  mlstm::Registry<float> registry;
  auto& param = registry.add("w", {6, 7});
  mlstm::Tensor<float, 2> tensor(6, 7);
  std::vector<float> buffer(42);
  {
    Generator gen(77);
    mlstm::small_init_init_(param, 64, gen);
  }
  {
    Generator gen(77);
    mlstm::small_init_init_(tensor, 64, gen);
  }
  {
    Generator gen(77);
    mlstm::small_init_init_(mlstm::TensorMap<float, 2>(buffer.data(), 6, 7), 64, gen);
  }
  CHECK(same_bits(param.data(), tensor.data(), 42));
  CHECK(same_bits(param.data(), buffer.data(), 42));
  Generator other(78);
  mlstm::small_init_init_(tensor, 64, other);
  CHECK_FALSE(same_bits(param.data(), tensor.data(), 42));
}

TEST_CASE("params init: zeros_ and ones_ on any rank", "[params][init]") {
  mlstm::Registry<double> registry;
  auto& p = registry.add("p", {2, 3, 4});
  mlstm::ones_(p);
  for (Index i = 0; i < p.size(); ++i) REQUIRE(p.data()[i] == 1.0);
  mlstm::zeros_(p.map<3>());
  for (Index i = 0; i < p.size(); ++i) REQUIRE(p.data()[i] == 0.0);
  auto& scalar = registry.add("s", {});
  mlstm::ones_(scalar);
  CHECK(scalar.map<0>()() == 1.0);
}

TEST_CASE("params init: invalid arguments throw before writing", "[params][init][errors]") {
  mlstm::Tensor<float, 2> w(3, 3);
  w.setConstant(4.0f);
  Generator gen(1);
  const auto unchanged = [&] { return w(0, 0) == 4.0f && w(2, 2) == 4.0f; };
  const auto expect_value_error = [&](auto&& call, const std::string& argument) {
    try {
      call();
      FAIL("expected a ValueError naming " << argument);
    } catch (const mlstm::ValueError& error) {
      CHECK(error.argument() == argument);
    }
    CHECK(unchanged());
  };
  expect_value_error([&] { mlstm::small_init_init_(w, 0, gen); }, "dim");
  expect_value_error([&] { mlstm::small_init_init_(w, -4, gen); }, "dim");
  expect_value_error([&] { mlstm::wang_init_(w, 0, 2, gen); }, "dim");
  expect_value_error([&] { mlstm::wang_init_(w, 16, 0, gen); }, "num_blocks");
  expect_value_error([&] { mlstm::normal_(w, 0.0, -0.1, gen); }, "std");
  expect_value_error([&] { mlstm::normal_(w, 0.0, std::nan(""), gen); }, "std");
  expect_value_error([&] { mlstm::normal_(w, INFINITY, 1.0, gen); }, "mean");
  expect_value_error([&] { mlstm::uniform_(w, 1.0, -1.0, gen); }, "high");
  expect_value_error([&] { mlstm::uniform_(w, -INFINITY, 1.0, gen); }, "low");
  try {
    mlstm::wang_init_(w, 16, 0, gen);
  } catch (const mlstm::ValueError& error) {
    CHECK(std::string(error.what()) == "num_blocks: expected an integer >= 1, got 0");
  }
}
