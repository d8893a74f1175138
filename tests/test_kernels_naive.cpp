// The library's kernels against the plain loops of tests/support/naive.hpp, over an edge sweep:
// S = 1, prime S, odd head sizes, DQK != DV, B and NH > 1, wide and extreme gates, both
// stabilization settings, masks, several eps; float and double.
#include <catch2/catch.hpp>

#include <mlstm/mlstm.hpp>

#include "support/naive.hpp"
#include "support/plain_expectation.hpp"
#include "support/random_inputs.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::test::GateRange;
using mlstm::test::SequenceCase;

struct Sizes {
  Index B, NH, S, DQK, DV;
};

const Sizes sweep_sizes[] = {
    {1, 1, 1, 8, 8},  {2, 3, 37, 16, 24}, {1, 2, 64, 7, 5},
    {1, 1, 130, 16, 16}, {3, 1, 5, 1, 3},
};

struct Gates {
  const char* name;
  GateRange igate, fgate;
};

const Gates sweep_gates[] = {
    {"typical", {-3, 3}, {0, 6}},
    {"wide", {-40, 40}, {-40, 40}},
    {"forget near 1", {-5, 5}, {15, 30}},
    {"forget near 0", {-5, 5}, {-30, -15}},
    {"input strongly negative", {-12, -8}, {2, 6}},
};

template <typename T>
double forms_budget(const mlstm::Tensor<T, 4>& reference) {
  return mlstm::test::forms_relative<T> * std::max(1.0, mlstm::test::magnitude(reference));
}

}  // namespace

TEMPLATE_TEST_CASE("parallel_stabilized matches the plain loops", "[parallel][naive]", float,
                   double) {
  std::uint64_t seed = 1;
  for (const Sizes& z : sweep_sizes) {
    for (const Gates& gates : sweep_gates) {
      for (const bool rowwise : {true, false}) {
        for (const double eps : {1e-6, 1e-2}) {
          CAPTURE(z.B, z.NH, z.S, z.DQK, z.DV, gates.name, rowwise, eps);
          SequenceCase<TestType> c(z.B, z.NH, z.S, z.DQK, z.DV, seed++, gates.igate, gates.fgate);
          mlstm::ParallelOptions options;
          options.stabilize_rowwise = rowwise;
          options.eps = eps;
          const auto h = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
          const auto plain = mlstm::test::plain_expectation<TestType>([&](auto dtype) {
            using U = typename decltype(dtype)::type;
            const auto cu = c.template cast<U>();
            return mlstm::test::naive::parallel<U>(cu.q, cu.k, cu.v, cu.igate, cu.fgate,
                                                   std::nullopt, rowwise, static_cast<U>(eps));
          });
          MLSTM_CHECK_CLOSE(h, plain.expected, plain.budget);
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("parallel_stabilized applies a given mask, causal or not", "[parallel][mask]",
                   float, double) {
  const Index S = 23;
  SequenceCase<TestType> c(2, 2, S, 8, 6, 99);
  // A sliding window of width 5 plus a few positions ahead of the row (non-causal), and one
  // row that sees nothing (its h must be 0).
  mlstm::Mask mask(S, S);
  for (Index t = 0; t < S; ++t)
    for (Index s = 0; s < S; ++s) mask(t, s) = (s <= t && t - s < 5) || (s == t + 2 && t % 3 == 0);
  for (Index s = 0; s < S; ++s) mask(7, s) = false;
  for (const bool rowwise : {true, false}) {
    CAPTURE(rowwise);
    mlstm::ParallelOptions options;
    options.stabilize_rowwise = rowwise;
    options.mask = mask;
    const auto h = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
    const auto plain = mlstm::test::plain_expectation<TestType>([&](auto dtype) {
      using U = typename decltype(dtype)::type;
      const auto cu = c.template cast<U>();
      return mlstm::test::naive::parallel<U>(cu.q, cu.k, cu.v, cu.igate, cu.fgate, mask, rowwise,
                                             U(1e-6));
    });
    MLSTM_CHECK_CLOSE(h, plain.expected, plain.budget);
    for (Index j = 0; j < 6; ++j) CHECK(h(1, 1, 7, j) == TestType(0));
  }
}

TEST_CASE("a mask longer than the sequence, or a causal one shorter, means the causal mask",
          "[parallel][mask]") {
  SequenceCase<double> c(1, 2, 20, 8, 8, 5);
  const auto causal = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate);
  const auto expected = mlstm::test::naive::parallel<double>(c.q, c.k, c.v, c.igate, c.fgate,
                                                             std::nullopt, true, 1e-6);
  MLSTM_CHECK_CLOSE(causal, expected, forms_budget(expected));
  for (const Index L : {Index(32), Index(7)}) {
    CAPTURE(L);
    mlstm::ParallelOptions options;
    options.mask = mlstm::causal_mask(L);
    const auto h = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
    MLSTM_CHECK_CLOSE(h, causal, 0.0);
  }
}

TEMPLATE_TEST_CASE("recurrent_sequence and the step match the plain loops", "[recurrent][naive]",
                   float, double) {
  std::uint64_t seed = 1000;
  for (const Sizes& z : sweep_sizes) {
    for (const Gates& gates : sweep_gates) {
      CAPTURE(z.B, z.NH, z.S, z.DQK, z.DV, gates.name);
      SequenceCase<TestType> c(z.B, z.NH, z.S, z.DQK, z.DV, seed++, gates.igate, gates.fgate);
      // A non-zero initial state with its own stabilizer.
      auto initial = mlstm::RecurrentState<TestType>::zeros(z.B, z.NH, z.DQK, z.DV);
      mlstm::test::Random random(seed++);
      random.fill_uniform(initial.c, -1, 1);
      random.fill_uniform(initial.n, -1, 1);
      random.fill_uniform(initial.m, -4, 4);
      mlstm::test::naive::State<TestType> state{initial.c, initial.n, initial.m};
      const auto expected = mlstm::test::naive::recurrent<TestType>(c.q, c.k, c.v, c.igate,
                                                                    c.fgate, state, TestType(1e-6));
      const auto out = mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate, initial);
      MLSTM_CHECK_CLOSE(out.h, expected, forms_budget(expected));
      MLSTM_CHECK_CLOSE(out.state.c, state.c, forms_budget(state.c));
      MLSTM_CHECK_CLOSE(out.state.n, state.n, forms_budget(state.n));
      MLSTM_CHECK_CLOSE(out.state.m, state.m, forms_budget(state.m));
    }
  }
}
