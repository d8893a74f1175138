// The parallel form's backward: against autograd of the PyTorch reference (golden data, ties
// included), against finite differences of the plain-loop forward (tests/support/naive.hpp) in
// double, the cached forward, and its errors (shapes, and options other than the forward's).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <mlstm/mlstm.hpp>

#include "support/errors.hpp"
#include "support/golden.hpp"
#include "support/gradients.hpp"
#include "support/naive.hpp"
#include "support/parallel_branches.hpp"
#include "support/random_inputs.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;
using mlstm::test::SequenceCase;

using mlstm::test::expect_error;

void check_parallel_against_finite_differences(SequenceCase<double>& c,
                                               const mlstm::ParallelOptions& options) {
  Tensor<double, 4> dh(c.v.dimensions());
  mlstm::test::Random(99).fill_uniform(dh, -1, 1);
  const auto grads =
      mlstm::parallel_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, options);
  const auto loss = [&] {
    const auto h = mlstm::test::naive::parallel(c.q, c.k, c.v, c.igate, c.fgate, options.mask,
                                                options.stabilize_rowwise, options.eps);
    return mlstm::test::dot(h, dh);
  };
  mlstm::test::check_finite_differences(mlstm::test::input_gradients(grads, c), loss);
}

}  // namespace

TEST_CASE("parallel backward matches finite differences in double", "[backward][parallel]") {
  // Gates chosen per case so that the named normalizer branch is active; each case reports and
  // checks its margins from the kinks (normalizer max, abs, stabilizer max), far above the
  // finite-difference steps (1e-6), which is how ties are avoided.
  struct Case {
    const char* name;
    Index S;
    mlstm::test::GateRange igate;
    bool rowwise;
    std::uint64_t seed;
    bool want_abs, want_lower_bound;
  };
  const Case cases[] = {
      {"|sum| branch everywhere, rowwise", 7, {3, 5}, true, 1, true, false},
      {"|sum| branch everywhere, one max per head", 7, {3, 5}, false, 2, true, false},
      {"lower bound everywhere, rowwise", 8, {-6, -4}, true, 3, false, true},
      {"lower bound everywhere, one max per head", 8, {-6, -4}, false, 4, false, true},
      {"both branches, rowwise", 8, {-2.5, 1.5}, true, 5, true, true},
      {"both branches, one max per head", 8, {-1, 3}, false, 16, true, true},
      {"S = 1", 1, {-1, 1}, true, 7, false, false},
  };
  for (const Case& spec : cases) {
    SECTION(spec.name) {
      SequenceCase<double> c(1, 2, spec.S, 3, 4, spec.seed, spec.igate, {-1, 4});
      mlstm::ParallelOptions options;
      options.stabilize_rowwise = spec.rowwise;
      const mlstm::test::BranchReport report = mlstm::test::parallel_branches(c, options);
      INFO("rows: " << report.abs_rows << " |sum| (" << report.positive_sums << " positive, "
                    << report.negative_sums << " negative), " << report.lower_bound_rows
                    << " lower bound; margins: normalizer " << report.normalizer_margin
                    << ", |sum| " << report.sum_margin << ", stabilizer "
                    << report.stabilizer_margin);
      if (spec.want_abs) {
        CHECK(report.positive_sums > 0);
        CHECK(report.negative_sums > 0);
      }
      if (spec.want_lower_bound) CHECK(report.lower_bound_rows > 0);
      if (spec.want_abs && !spec.want_lower_bound) CHECK(report.lower_bound_rows == 0);
      if (spec.want_lower_bound && !spec.want_abs) CHECK(report.abs_rows == 0);
      CHECK(report.normalizer_margin > 1e-3);
      CHECK(report.sum_margin > 1e-3);
      CHECK(report.stabilizer_margin > 1e-3);
      check_parallel_against_finite_differences(c, options);
    }
  }
}

TEST_CASE("the forward with cache is the parallel form, and the backward reuses it exactly",
          "[backward][parallel]") {
  const SequenceCase<float> c = SequenceCase<double>(2, 2, 300, 8, 5, 12).cast<float>();
  Tensor<float, 4> dh(c.v.dimensions());
  mlstm::test::Random(13).fill_uniform(dh, -1, 1);
  for (const bool rowwise : {true, false}) {
    mlstm::ParallelOptions options;
    options.stabilize_rowwise = rowwise;
    const auto forward =
        mlstm::parallel_stabilized_forward_with_cache(c.q, c.k, c.v, c.igate, c.fgate, options);
    const Tensor<float, 4> h = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
    CHECK(std::equal(h.data(), h.data() + h.size(), forward.h.data()));
    const auto cached =
        mlstm::parallel_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, forward, options);
    const auto uncached =
        mlstm::parallel_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, options);
    mlstm::test::check_gradients_close(cached, uncached, [](const auto&) { return 0.0; });
  }
}

// The training cell runs the parallel form on q, k, v where they lie in the layer's (B, S, NH * D)
// rows and writes dq, dk, dv there: forward and backward must give the (B, NH, S, D) tensors'
// results bit for bit, on 1 and 3 threads (2 x 3 heads, DQK != DV, S = 300: a second row tile
// of 44 rows and column panels not a multiple of S). NaN after the inputs' rows would reach the
// results if read; the memory after the gradients' rows must stay untouched.
TEST_CASE("the parallel form reads q, k, v and writes their gradients in (B, S, NH * D) rows",
          "[backward][parallel]") {
  namespace d = mlstm::detail;
  const Index B = 2, NH = 3, S = 300, DQK = 8, DV = 12, guards = 7;
  REQUIRE(S > d::parallel_tile_rows);
  const SequenceCase<float> c = SequenceCase<double>(B, NH, S, DQK, DV, 31).cast<float>();
  Tensor<float, 4> dh(c.v.dimensions());
  mlstm::test::Random(32).fill_uniform(dh, -1, 1);
  // x (B, NH, S, D) as (B, S, NH * D) rows, then `guards` values of `guard`.
  const auto to_rows = [&](const Tensor<float, 4>& x, Index dim, float guard) {
    std::vector<float> rows(static_cast<std::size_t>(B * S * NH * dim + guards), guard);
    for (Index b = 0; b < B; ++b)
      for (Index h = 0; h < NH; ++h)
        for (Index t = 0; t < S; ++t)
          for (Index j = 0; j < dim; ++j)
            rows[static_cast<std::size_t>(((b * S + t) * NH + h) * dim + j)] = x(b, h, t, j);
    return rows;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> q = to_rows(c.q, DQK, nan), k = to_rows(c.k, DQK, nan),
                           v = to_rows(c.v, DV, nan);
  const d::SequenceShape shape{B, NH, S, DQK, DV};
  const d::ParallelOperands<float> in{shape,
                                      d::rows_by_position(q.data(), shape, DQK),
                                      d::rows_by_position(k.data(), shape, DQK),
                                      d::rows_by_position(v.data(), shape, DV),
                                      c.igate.data(),
                                      c.fgate.data()};
  const mlstm::ParallelOptions options;
  const d::SequenceMask mask = d::resolve_mask(options.mask, S);
  const auto expected_forward =
      mlstm::parallel_stabilized_forward_with_cache(c.q, c.k, c.v, c.igate, c.fgate, options);
  const auto expected =
      mlstm::parallel_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, expected_forward);
  const auto same = [](const float* a, const float* b, Index n) { return std::equal(a, a + n, b); };
  const float guard = 3.5f;  // in the gradients' buffers before the backward
  for (const int threads : {1, 3}) {
    CAPTURE(threads);
    mlstm::ParallelForward<float> forward;
    d::parallel_forward_with_cache(in, mask, threads, options, forward);
    CHECK(same(forward.h.data(), expected_forward.h.data(), forward.h.size()));
    CHECK(same(forward.cache.row_sum.data(), expected_forward.cache.row_sum.data(), B * NH * S));

    std::vector<float> dq(q.size(), guard), dk(k.size(), guard), dv(v.size(), guard);
    Tensor<float, 4> di(B, NH, S, 1), df(B, NH, S, 1);
    const d::ParallelGradientRows<float> out{
        d::rows_by_position(dq.data(), shape, DQK), d::rows_by_position(dk.data(), shape, DQK),
        d::rows_by_position(dv.data(), shape, DV), di.data(), df.data()};
    d::parallel_backward(in, mask, threads, dh.data(), forward, options, out);
    CHECK(dq == to_rows(expected.dq, DQK, guard));
    CHECK(dk == to_rows(expected.dk, DQK, guard));
    CHECK(dv == to_rows(expected.dv, DV, guard));
    CHECK(same(di.data(), expected.di.data(), di.size()));
    CHECK(same(df.data(), expected.df.data(), df.size()));
  }
}

TEST_CASE("parallel backward with a given mask matches finite differences",
          "[backward][parallel]") {
  SequenceCase<double> c(1, 1, 6, 3, 2, 11, {-2, 2}, {-1, 4});
  mlstm::Mask mask = mlstm::causal_mask(6);
  mask(3, 1) = false;
  mask(5, 0) = false;
  mask(5, 2) = false;
  mask(2, 2) = false;  // a row whose own position is hidden
  for (const bool rowwise : {true, false}) {
    mlstm::ParallelOptions options;
    options.stabilize_rowwise = rowwise;
    options.mask = mask;
    INFO("stabilize_rowwise " << rowwise);
    check_parallel_against_finite_differences(c, options);
  }
}

namespace {

// make_golden.py's parallel cases, and make_backward_golden.py's cases whose inputs sit exactly
// on a tie of the normalizer's max or of the stabilizer's max (autograd's conventions).
const char* const parallel_golden_cases[] = {
    "parallel_s1",
    "parallel_prime37",
    "parallel_s256",
    "parallel_wide_gates",
    "parallel_forget_near_one",
    "parallel_forget_near_zero",
    "parallel_global_max",
    "parallel_global_max_wide_gates",
    "parallel_mask_given",
    "parallel_mask_longer",
    "parallel_mask_causal_shorter",
    "parallel_small_norm_eps_1em6",
    "parallel_small_norm_eps_1em3",
    "parallel_small_norm_eps_0p5",
    "parallel_lower_bound",
    "backward_parallel_tie_normalizer",
    "backward_parallel_tie_stabilizer_rowwise",
    "backward_parallel_tie_stabilizer_global",
};

struct GradientNames {
  const char* ours;
  const char* golden;
};
const GradientNames parallel_gradient_names[] = {
    {"dq", "dq"}, {"dk", "dk"}, {"dv", "dv"}, {"di", "digate_preact"}, {"df", "dfgate_preact"}};

template <typename T>
const Tensor<T, 4>& gradient_named(const mlstm::ParallelGradients<T>& g, const std::string& name) {
  if (name == "dq") return g.dq;
  if (name == "dk") return g.dk;
  if (name == "dv") return g.dv;
  if (name == "di") return g.di;
  return g.df;
}

mlstm::ParallelOptions golden_options(const mlstm::safetensors::File& golden) {
  mlstm::ParallelOptions options;
  options.eps = std::stod(golden.metadata("eps"));
  options.stabilize_rowwise = golden.metadata("stabilize_rowwise") == "true";
  if (golden.contains("mask")) options.mask = golden.read<bool, 2>("mask");
  return options;
}

template <typename T>
mlstm::ParallelGradients<T> golden_backward(const mlstm::safetensors::File& golden) {
  const auto input = [&](const char* name) { return golden.read<T, 4>(name); };
  return mlstm::parallel_stabilized_backward(input("q"), input("k"), input("v"),
                                             input("igate_preact"), input("fgate_preact"),
                                             input("dh"), golden_options(golden));
}

}  // namespace

TEST_CASE("parallel backward matches autograd of the PyTorch reference", "[backward][golden]") {
  for (const char* stem : parallel_golden_cases) {
    SECTION(stem) {
      const auto golden = mlstm::test::golden_file(stem);
      REQUIRE(golden.contains("dq"));
      const auto in_double = golden_backward<double>(golden);
      const auto in_float = golden_backward<float>(golden);
      for (const GradientNames& name : parallel_gradient_names) {
        const Tensor<double, 4>& expected = golden.read<double, 4>(name.golden);
        const Tensor<double, 4>& float_reference =
            golden.read<double, 4>(std::string(name.golden) + "_f32ref");
        const double scale = std::string(name.ours) == "df"
                                 ? mlstm::test::forget_gradient_magnitude(
                                       expected, golden.read<double, 4>("digate_preact"))
                                 : mlstm::test::magnitude(expected);
        const double reference_loss =
            mlstm::test::max_difference(float_reference, expected).max_abs;
        INFO(stem << " " << name.ours);
        mlstm::test::report_golden(std::string(stem) + " " + name.ours + " double",
                                   gradient_named(in_double, name.ours), expected, scale,
                                   reference_loss);
        mlstm::test::report_golden(std::string(stem) + " " + name.ours + " float",
                                   gradient_named(in_float, name.ours), expected, scale,
                                   reference_loss);
        MLSTM_CHECK_CLOSE(gradient_named(in_double, name.ours), expected,
                          mlstm::test::double_budget(reference_loss, scale));
        MLSTM_CHECK_CLOSE(gradient_named(in_float, name.ours), expected,
                          mlstm::test::float_budget(reference_loss, scale,
                                                    mlstm::test::float_cancellation_loss_factor));
      }
    }
  }
}

TEST_CASE("the parallel backward rejects bad arguments, naming them", "[backward][errors]") {
  const SequenceCase<double> c(1, 2, 6, 3, 4, 81);
  Tensor<double, 4> dh(1, 2, 6, 4), wrong_dh(1, 2, 5, 4);
  dh.setConstant(0.5);
  wrong_dh.setConstant(0.5);
  Tensor<double, 4> nan_dh = dh;
  nan_dh(0, 1, 2, 3) = std::nan("");
  using mlstm::ShapeError;
  using mlstm::ValueError;
  expect_error<ShapeError>(
      [&] { mlstm::parallel_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, wrong_dh); },
      "dh");
  expect_error<ValueError>(
      [&] { mlstm::parallel_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, nan_dh); }, "dh");
  mlstm::ParallelOptions options;
  const auto forward =
      mlstm::parallel_stabilized_forward_with_cache(c.q, c.k, c.v, c.igate, c.fgate, options);
  mlstm::ParallelOptions other_eps = options;
  other_eps.eps = 1e-3;
  expect_error<ValueError>(
      [&] {
        mlstm::parallel_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, forward,
                                            other_eps);
      },
      "options.eps");
  mlstm::ParallelOptions other_max = options;
  other_max.stabilize_rowwise = false;
  expect_error<ValueError>(
      [&] {
        mlstm::parallel_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, forward,
                                            other_max);
      },
      "options.stabilize_rowwise");

  const SequenceCase<double> shorter(1, 2, 5, 3, 4, 82);
  const auto other_forward = mlstm::parallel_stabilized_forward_with_cache(
      shorter.q, shorter.k, shorter.v, shorter.igate, shorter.fgate, options);
  expect_error<ShapeError>(
      [&] {
        mlstm::parallel_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, other_forward,
                                            options);
      },
      "forward.h");
}

TEST_CASE("the parallel backward requires the mask the forward applied", "[backward][errors]") {
  // The mask the backward applies must be the forward's; a causal one is causal however given.
  const Index S = 16;
  const SequenceCase<double> c(1, 2, S, 3, 4, 85);
  Tensor<double, 4> dh(1, 2, S, 4);
  dh.setConstant(0.5);
  const mlstm::ParallelOptions options;
  const auto forward =
      mlstm::parallel_stabilized_forward_with_cache(c.q, c.k, c.v, c.igate, c.fgate, options);
  mlstm::Mask band = mlstm::causal_mask(S);
  band(S - 1, 0) = false;
  mlstm::ParallelOptions banded;
  banded.mask = band;
  const auto banded_forward =
      mlstm::parallel_stabilized_forward_with_cache(c.q, c.k, c.v, c.igate, c.fgate, banded);
  const auto backward_with = [&](const auto& cached, const std::optional<mlstm::Mask>& mask) {
    mlstm::ParallelOptions with_mask;
    with_mask.mask = mask;
    return [&cached, with_mask, &c, &dh] {
      mlstm::parallel_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, cached, with_mask);
    };
  };
  expect_error<mlstm::ValueError>(backward_with(forward, band), "options.mask");
  expect_error<mlstm::ValueError>(backward_with(banded_forward, std::nullopt), "options.mask");
  mlstm::Mask other_band = band;
  other_band(S - 1, 0) = true;
  other_band(S - 1, 1) = false;
  expect_error<mlstm::ValueError>(backward_with(banded_forward, other_band), "options.mask");
  const mlstm::Mask band_copy = band;
  CHECK_NOTHROW(backward_with(banded_forward, band_copy)());
  CHECK_NOTHROW(backward_with(forward, mlstm::causal_mask(2 * S))());
  CHECK_NOTHROW(backward_with(forward, mlstm::causal_mask(S))());
}
