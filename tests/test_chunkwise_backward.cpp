// The chunkwise form's backward: finite differences of the plain-loop recurrent form (the same
// function), golden gradients from PyTorch autograd of the reference recurrent form with an
// initial state and a final-state gradient, agreement with the parallel backward, segments, chunk
// sizes, thread counts and its errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

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
using State = mlstm::RecurrentState<double>;

}  // namespace

TEST_CASE("chunkwise backward matches finite differences in double", "[backward][chunkwise]") {
  struct Case {
    const char* name;
    Index S, chunk;
    mlstm::test::GateRange igate;
    bool initial, final_gradient;
  };
  const Case cases[] = {
      {"zero state, chunk 3 of S = 8", 8, 3, {-3, 3}, false, false},
      {"initial state and final gradient, chunk 4 of S = 8", 8, 4, {-3, 3}, true, true},
      {"chunk 1", 5, 1, {-3, 3}, true, true},
      {"one chunk longer than S", 6, 16, {-3, 3}, true, false},
      {"lower bound", 7, 3, {-9, -6}, true, true},
  };
  for (const Case& spec : cases) {
    SECTION(spec.name) {
      SequenceCase<double> c(1, 3, spec.S, 3, 2, 40 + spec.S, spec.igate, {-1, 4});
      State initial = spec.initial ? mlstm::test::random_state<double>(1, 3, 3, 2, 41, {-2, 2})
                                   : State::zeros(1, 3, 3, 2);
      State dfinal = State::zeros(1, 3, 3, 2);
      Tensor<double, 4> dh(c.v.dimensions());
      mlstm::test::Random random(42);
      random.fill_uniform(dh, -1, 1);
      if (spec.final_gradient) {
        random.fill_uniform(dfinal.c, -1, 1);
        random.fill_uniform(dfinal.n, -1, 1);
        random.fill_uniform(dfinal.m, -1, 1);
      }
      mlstm::ChunkwiseOptions options;
      options.chunk_size = spec.chunk;
      const auto g = mlstm::chunkwise_stabilized_backward(
          c.q, c.k, c.v, c.igate, c.fgate, dh, options,
          spec.initial ? std::optional<State>(initial) : std::nullopt,
          spec.final_gradient ? std::optional<State>(dfinal) : std::nullopt);
      REQUIRE(g.dinitial_state.has_value() == spec.initial);
      auto gradients = mlstm::test::input_gradients(g, c);
      if (spec.initial) {
        for (const auto& item : mlstm::test::state_gradients(*g.dinitial_state, initial))
          gradients.push_back(item);
      }
      mlstm::test::check_finite_differences(
          gradients, [&] { return mlstm::test::recurrent_loss(c, initial, dh, dfinal, 1e-6); });
    }
  }
}

TEST_CASE("chunkwise backward matches autograd of the PyTorch reference",
          "[backward][chunkwise][golden]") {
  // make_backward_golden.py: autograd of the reference recurrent form from an initial state,
  // which is the function the chunkwise form computes for every chunk size.
  const char* const stems[] = {"prime37",     "zero_state",       "wide_gates",
                               "lower_bound", "forget_near_zero", "s1"};
  for (const char* stem : stems) {
    for (const Index chunk : {Index(1), Index(5), Index(16), Index(64)}) {
      SECTION(std::string(stem) + ", chunk " + std::to_string(chunk)) {
        const auto golden = mlstm::test::golden_file(std::string("backward_sequence_") + stem);
        mlstm::ChunkwiseOptions options;
        options.chunk_size = chunk;
        options.eps = std::stod(golden.metadata("eps"));
        const auto run = [&](auto zero) {
          using T = decltype(zero);
          const auto in = [&](const char* name) { return golden.read<T, 4>(name); };
          const mlstm::RecurrentState<T> initial{in("c0"), in("n0"), in("m0")};
          const mlstm::RecurrentState<T> dfinal{in("dc_final"), in("dn_final"), in("dm_final")};
          return mlstm::chunkwise_stabilized_backward(in("q"), in("k"), in("v"), in("igate_preact"),
                                                      in("fgate_preact"), in("dh"), options,
                                                      initial, dfinal);
        };
        const auto in_double = run(0.0);
        const auto in_float = run(0.0f);
        const auto check = [&](const char* golden_name, const auto& ours_double,
                               const auto& ours_float) {
          const Tensor<double, 4>& expected = golden.read<double, 4>(golden_name);
          const double scale = std::string(golden_name) == "dfgate_preact"
                                   ? mlstm::test::forget_gradient_magnitude(
                                         expected, golden.read<double, 4>("digate_preact"))
                                   : mlstm::test::magnitude(expected);
          const double reference_loss =
              mlstm::test::max_difference(
                  golden.read<double, 4>(std::string(golden_name) + "_f32ref"), expected)
                  .max_abs;
          INFO(stem << " chunk " << chunk << " " << golden_name);
          const std::string what = std::string("sequence ") + stem + " chunk " +
                                   std::to_string(chunk) + " " + golden_name;
          mlstm::test::report_golden(what + " double", ours_double, expected, scale,
                                     reference_loss);
          mlstm::test::report_golden(what + " float", ours_float, expected, scale, reference_loss);
          MLSTM_CHECK_CLOSE(ours_double, expected,
                            mlstm::test::double_budget(reference_loss, scale));
          MLSTM_CHECK_CLOSE(ours_float, expected,
                            mlstm::test::float_budget(reference_loss, scale,
                                                      mlstm::test::float_cancellation_loss_factor));
        };
        check("dq", in_double.dq, in_float.dq);
        check("dk", in_double.dk, in_float.dk);
        check("dv", in_double.dv, in_float.dv);
        check("digate_preact", in_double.di, in_float.di);
        check("dfgate_preact", in_double.df, in_float.df);
        check("dc0", in_double.dinitial_state->c, in_float.dinitial_state->c);
        check("dn0", in_double.dinitial_state->n, in_float.dinitial_state->n);
        check("dm0", in_double.dinitial_state->m, in_float.dinitial_state->m);
      }
    }
  }
}

namespace {

// Steps [begin, begin + length) of a (B, NH, S, D) tensor.
template <typename T>
Tensor<T, 4> steps(const Tensor<T, 4>& x, Index begin, Index length) {
  const std::array<Index, 4> offset{0, 0, begin, 0};
  const std::array<Index, 4> extent{x.dimension(0), x.dimension(1), length, x.dimension(3)};
  return x.slice(offset, extent);
}

template <typename T>
Tensor<T, 4> concat_steps(const Tensor<T, 4>& a, const Tensor<T, 4>& b) {
  return a.concatenate(b, 2);
}

template <typename T>
double forms_budget(const Tensor<T, 4>& reference) {
  return mlstm::test::forms_relative<T> * std::max(1.0, mlstm::test::magnitude(reference));
}

template <typename T>
void check_segments_equal_whole(Index split, Index chunk) {
  const Index S = 50;
  const SequenceCase<T> c = SequenceCase<double>(2, 2, S, 4, 3, 51, {-4, 3}, {-1, 4}).cast<T>();
  Tensor<T, 4> dh(c.v.dimensions());
  mlstm::test::Random random(52);
  random.fill_uniform(dh, -1, 1);
  auto dfinal = mlstm::RecurrentState<T>::zeros(2, 2, 4, 3);
  random.fill_uniform(dfinal.c, -1, 1);
  random.fill_uniform(dfinal.n, -1, 1);
  random.fill_uniform(dfinal.m, -1, 1);
  mlstm::ChunkwiseOptions options;
  options.chunk_size = chunk;

  const auto whole = mlstm::chunkwise_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh,
                                                          options, std::nullopt, dfinal);
  const auto part = [&](const Tensor<T, 4>& x, bool first) {
    return first ? steps(x, 0, split) : steps(x, split, S - split);
  };
  const auto a = mlstm::chunkwise_stabilized(part(c.q, true), part(c.k, true), part(c.v, true),
                                             part(c.igate, true), part(c.fgate, true), options);
  const auto gb = mlstm::chunkwise_stabilized_backward(
      part(c.q, false), part(c.k, false), part(c.v, false), part(c.igate, false),
      part(c.fgate, false), part(dh, false), options, a.state, dfinal);
  REQUIRE(gb.dinitial_state.has_value());
  const auto ga = mlstm::chunkwise_stabilized_backward(
      part(c.q, true), part(c.k, true), part(c.v, true), part(c.igate, true), part(c.fgate, true),
      part(dh, true), options, std::nullopt, *gb.dinitial_state);
  REQUIRE_FALSE(ga.dinitial_state.has_value());
  MLSTM_CHECK_CLOSE(concat_steps(ga.dq, gb.dq), whole.dq, forms_budget(whole.dq));
  MLSTM_CHECK_CLOSE(concat_steps(ga.dk, gb.dk), whole.dk, forms_budget(whole.dk));
  MLSTM_CHECK_CLOSE(concat_steps(ga.dv, gb.dv), whole.dv, forms_budget(whole.dv));
  MLSTM_CHECK_CLOSE(concat_steps(ga.di, gb.di), whole.di, forms_budget(whole.di));
  MLSTM_CHECK_CLOSE(concat_steps(ga.df, gb.df), whole.df,
                    mlstm::test::forms_relative<T> *
                        std::max(1.0, mlstm::test::forget_gradient_magnitude(whole.df, whole.di)));
}

}  // namespace

TEST_CASE("a sequence trained in segments gets the gradients of the whole sequence",
          "[backward][chunkwise]") {
  SECTION("double, split at a chunk boundary") { check_segments_equal_whole<double>(32, 16); }
  SECTION("double, split inside a chunk") { check_segments_equal_whole<double>(21, 16); }
  SECTION("float, split inside a chunk") { check_segments_equal_whole<float>(21, 8); }
}

namespace {

// From the zero state the forms compute the same function up to how eps enters (see
// test_recurrent_backward.cpp): with a tiny eps (1e-14, the parallel gradients' too) the
// chunkwise backward in chunks of `chunk` gives the parallel backward's gradients.
void check_chunkwise_equals_parallel(const SequenceCase<double>& c, const Tensor<double, 4>& dh,
                                     const mlstm::ParallelGradients<double>& parallel,
                                     Index chunk) {
  mlstm::ChunkwiseOptions options;
  options.chunk_size = chunk;
  options.eps = 1e-14;
  const auto chunkwise =
      mlstm::chunkwise_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, options);
  INFO("chunk " << chunk);
  mlstm::test::check_gradients_close<double>(chunkwise, parallel, [](const Tensor<double, 4>& x) {
    return 1e-10 * std::max(1.0, mlstm::test::magnitude(x));
  });
}

}  // namespace

TEST_CASE("chunkwise backward equals the parallel backward", "[backward][chunkwise][parallel]") {
  // Both branches of the normalizer. Chunk 128 (and a short last chunk): the forward's products
  // over the causal half only.
  SequenceCase<double> c(2, 2, 150, 8, 6, 61, {-5, 3}, {-1, 5});
  Tensor<double, 4> dh(c.v.dimensions());
  mlstm::test::Random(62).fill_uniform(dh, -1, 1);
  const auto parallel = mlstm::test::parallel_gradients_on_both_branches(c, dh);
  for (const Index chunk : {Index(4), Index(16), Index(64), Index(128)})
    check_chunkwise_equals_parallel(c, dh, parallel, chunk);
}

TEST_CASE("chunkwise backward equals the parallel backward on its wide panels",
          "[backward][chunkwise][parallel]") {
  // From S = 2048 the parallel backward walks column panels of 128 (parallel.hpp).
  SequenceCase<double> c(1, 1, 2049, 4, 3, 63, {-5, 3}, {-1, 5});
  Tensor<double, 4> dh(c.v.dimensions());
  mlstm::test::Random(64).fill_uniform(dh, -1, 1);
  // (parallel_gradients_on_both_branches would run the plain loops: minutes at this length.)
  mlstm::ParallelOptions parallel_options;
  parallel_options.eps = 1e-14;
  const auto parallel =
      mlstm::parallel_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, parallel_options);
  check_chunkwise_equals_parallel(c, dh, parallel, 64);
}

TEST_CASE("backward results do not depend on the thread count", "[backward][threads]") {
  // Big enough that every kernel uses every thread it is given.
  const SequenceCase<float> c = SequenceCase<double>(2, 3, 130, 16, 12, 71).cast<float>();
  Tensor<float, 4> dh(c.v.dimensions());
  mlstm::test::Random(72).fill_uniform(dh, -1, 1);
  const auto initial = mlstm::test::random_state<float>(2, 3, 16, 12, 73, {-1, 1});
  const auto exactly = [](const auto&) { return 0.0; };
  for (const int threads : {2, 3, 5}) {
    INFO(threads << " threads against 1");
    SECTION("parallel, " + std::to_string(threads) + " threads") {
      mlstm::ParallelOptions one, many;
      one.num_threads = 1;
      many.num_threads = threads;
      const auto a = mlstm::parallel_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, one);
      const auto b = mlstm::parallel_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, many);
      mlstm::test::check_gradients_close(b, a, exactly);
    }
    SECTION("chunkwise, " + std::to_string(threads) + " threads") {
      mlstm::ChunkwiseOptions one, many;
      one.chunk_size = many.chunk_size = 16;
      one.num_threads = 1;
      many.num_threads = threads;
      const auto a = mlstm::chunkwise_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, one,
                                                          initial, initial);
      const auto b = mlstm::chunkwise_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, many,
                                                          initial, initial);
      mlstm::test::check_gradients_close<float>(b, a, exactly);
      MLSTM_CHECK_CLOSE(b.dinitial_state->c, a.dinitial_state->c, 0.0);
      MLSTM_CHECK_CLOSE(b.dinitial_state->n, a.dinitial_state->n, 0.0);
      MLSTM_CHECK_CLOSE(b.dinitial_state->m, a.dinitial_state->m, 0.0);
    }
  }
}

TEST_CASE("the chunkwise backward rejects bad arguments, naming them",
          "[backward][chunkwise][errors]") {
  using mlstm::test::expect_error;
  const SequenceCase<double> c(1, 2, 6, 3, 4, 81);
  Tensor<double, 4> dh(1, 2, 6, 4), wrong_dh(1, 2, 5, 4);
  dh.setConstant(0.5);
  wrong_dh.setConstant(0.5);
  mlstm::ChunkwiseOptions options;
  const auto zero = mlstm::RecurrentState<double>::zeros(1, 2, 3, 4);
  auto wrong = zero;
  wrong.c = Tensor<double, 4>(1, 2, 4, 4);
  expect_error<mlstm::ShapeError>(
      [&] {
        mlstm::chunkwise_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, options,
                                             std::nullopt, wrong);
      },
      "dfinal_state.c");
  expect_error<mlstm::ShapeError>(
      [&] {
        mlstm::chunkwise_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, options, wrong,
                                             zero);
      },
      "initial_state.c");
  expect_error<mlstm::ShapeError>(
      [&] {
        mlstm::chunkwise_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, wrong_dh, options);
      },
      "dh");
  options.chunk_size = 0;
  expect_error<mlstm::ValueError>(
      [&] { mlstm::chunkwise_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, options); },
      "options.chunk_size");
}
