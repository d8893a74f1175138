// The recurrent step's backward: against autograd of the PyTorch reference (golden data, ties
// included), finite differences of the plain-loop step in double, truncated backpropagation
// through time built from it (agrees with the parallel backward), and its errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
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

using State = mlstm::RecurrentState<double>;

// Time step t of a (B, NH, S, D) tensor as (B, NH, 1, D).
Tensor<double, 4> step_of(const Tensor<double, 4>& x, Index t) {
  const std::array<Index, 4> offset{0, 0, t, 0};
  const std::array<Index, 4> extent{x.dimension(0), x.dimension(1), 1, x.dimension(3)};
  return x.slice(offset, extent);
}

void set_step(Tensor<double, 4>& x, Index t, const Tensor<double, 4>& value) {
  const std::array<Index, 4> offset{0, 0, t, 0};
  const std::array<Index, 4> extent{x.dimension(0), x.dimension(1), 1, x.dimension(3)};
  x.slice(offset, extent) = value;
}

// Truncated backpropagation through time from the step backward: the forward keeps the state
// before every step, the backward runs the steps in reverse.
struct ChainGradients : mlstm::SequenceGradients<double> {
  State dinitial;
};

ChainGradients backprop_through_steps(const SequenceCase<double>& c, const State& initial,
                                      const Tensor<double, 4>& dh, const State& dfinal,
                                      double eps) {
  const Index S = c.q.dimension(2);
  std::vector<State> before;
  State state = initial;
  for (Index t = 0; t < S; ++t) {
    before.push_back(state);
    state = mlstm::recurrent_step_stabilized(state.c, state.n, state.m, step_of(c.q, t),
                                             step_of(c.k, t), step_of(c.v, t), step_of(c.igate, t),
                                             step_of(c.fgate, t), {eps})
                .state;
  }
  ChainGradients g{{Tensor<double, 4>(c.q.dimensions()), Tensor<double, 4>(c.k.dimensions()),
                    Tensor<double, 4>(c.v.dimensions()), Tensor<double, 4>(c.igate.dimensions()),
                    Tensor<double, 4>(c.fgate.dimensions())},
                   dfinal};
  for (Index t = S - 1; t >= 0; --t) {
    auto step = mlstm::recurrent_step_stabilized_backward(
        before[t], step_of(c.q, t), step_of(c.k, t), step_of(c.v, t), step_of(c.igate, t),
        step_of(c.fgate, t), step_of(dh, t), g.dinitial, {eps});
    set_step(g.dq, t, step.dq);
    set_step(g.dk, t, step.dk);
    set_step(g.dv, t, step.dv);
    set_step(g.di, t, step.di);
    set_step(g.df, t, step.df);
    g.dinitial = std::move(step.dstate);
  }
  return g;
}

void check_chain_against_finite_differences(SequenceCase<double>& c, State& initial, double eps) {
  Tensor<double, 4> dh(c.v.dimensions());
  mlstm::test::Random random(77);
  random.fill_uniform(dh, -1, 1);
  State dfinal =
      State::zeros(c.q.dimension(0), c.q.dimension(1), c.q.dimension(3), c.v.dimension(3));
  random.fill_uniform(dfinal.c, -1, 1);
  random.fill_uniform(dfinal.n, -1, 1);
  random.fill_uniform(dfinal.m, -1, 1);
  const ChainGradients g = backprop_through_steps(c, initial, dh, dfinal, eps);
  auto gradients = mlstm::test::input_gradients(g, c);
  for (const auto& item : mlstm::test::state_gradients(g.dinitial, initial))
    gradients.push_back(item);
  mlstm::test::check_finite_differences(
      gradients, [&] { return mlstm::test::recurrent_loss(c, initial, dh, dfinal, eps); });
}

// Branches taken by each step of the plain-loop forward, and the distance to the nearest kink.
struct StepBranches {
  int abs_steps = 0, lower_bound_steps = 0, positive = 0, negative = 0;
  int forget_path = 0, input_path = 0;  // which side of m' = max(lf + m, i)
  double margin = HUGE_VAL;
};

StepBranches step_branches(const SequenceCase<double>& c, const State& initial, double eps) {
  StepBranches report;
  const Index B = c.q.dimension(0), NH = c.q.dimension(1), S = c.q.dimension(2);
  const Index DQK = c.q.dimension(3);
  mlstm::test::naive::State<double> state{initial.c, initial.n, initial.m};
  for (Index t = 0; t < S; ++t) {
    mlstm::test::naive::State<double> before = state;
    mlstm::test::naive::recurrent(
        Tensor<double, 4>(step_of(c.q, t)), Tensor<double, 4>(step_of(c.k, t)),
        Tensor<double, 4>(step_of(c.v, t)), Tensor<double, 4>(step_of(c.igate, t)),
        Tensor<double, 4>(step_of(c.fgate, t)), state, eps);
    for (Index b = 0; b < B; ++b) {
      for (Index hd = 0; hd < NH; ++hd) {
        const double a =
            mlstm::test::naive::log_sigmoid(c.fgate(b, hd, t, 0)) + before.m(b, hd, 0, 0);
        const double i = c.igate(b, hd, t, 0);
        ++(a > i ? report.forget_path : report.input_path);
        double qn = 0;
        for (Index d = 0; d < DQK; ++d) qn += c.q(b, hd, t, d) * state.n(b, hd, d, 0);
        const double bound = std::exp(-state.m(b, hd, 0, 0));
        if (std::abs(qn) > bound) {
          ++report.abs_steps;
          ++(qn > 0 ? report.positive : report.negative);
        } else {
          ++report.lower_bound_steps;
        }
        report.margin = std::min(
            {report.margin, std::abs(a - i), std::abs(qn), std::abs(std::abs(qn) - bound)});
      }
    }
  }
  return report;
}

}  // namespace

TEST_CASE("recurrent step backward matches finite differences in double", "[backward][recurrent]") {
  struct Case {
    const char* name;
    Index S;
    mlstm::test::GateRange igate, fgate;
    double m_low, m_high;
    std::uint64_t seed;
  };
  // One step (S = 1) from a random state, and chains of steps; gates chosen so that every
  // branch (|q.n'| positive and negative, the lower bound, m' from either side) is taken.
  const Case cases[] = {
      {"one step, m' = i", 1, {1, 3}, {-2, 4}, -1, 1, 21},
      {"one step, m' = i, lower bound", 1, {-8, -6}, {-2, 4}, -8, -6, 22},
      {"six steps, both branches", 6, {-3, 3}, {-2, 4}, -2, 2, 23},
  };
  for (const Case& spec : cases) {
    SECTION(spec.name) {
      SequenceCase<double> c(1, 4, spec.S, 3, 2, spec.seed, spec.igate, spec.fgate);
      State initial =
          mlstm::test::random_state<double>(1, 4, 3, 2, spec.seed + 100, {spec.m_low, spec.m_high});
      const StepBranches report = step_branches(c, initial, 1e-6);
      INFO("steps: " << report.abs_steps << " |q.n'| (" << report.positive << " positive, "
                     << report.negative << " negative), " << report.lower_bound_steps
                     << " lower bound; m' from lf + m " << report.forget_path << ", from i "
                     << report.input_path << "; margin " << report.margin);
      CHECK(report.margin > 1e-3);
      if (spec.S > 1) {
        CHECK(report.positive > 0);
        CHECK(report.negative > 0);
        CHECK(report.lower_bound_steps > 0);
        CHECK(report.forget_path > 0);
        CHECK(report.input_path > 0);
      }
      check_chain_against_finite_differences(c, initial, 1e-6);
    }
  }
}

TEST_CASE("recurrent step backward matches autograd of the PyTorch reference",
          "[backward][recurrent][golden]") {
  const char* const stems[] = {"zero_state",     "random_state",  "wide_gates",
                               "dqk_ne_dv",      "lower_bound",   "no_state_gradient",
                               "tie_stabilizer", "tie_normalizer"};
  struct Names {
    const char* ours;
    const char* golden;
  };
  for (const char* stem : stems) {
    SECTION(stem) {
      const auto golden = mlstm::test::golden_file(std::string("backward_step_") + stem);
      const double eps = std::stod(golden.metadata("eps"));
      const auto run = [&](auto zero) {
        using T = decltype(zero);
        const auto in = [&](const char* name) { return golden.read<T, 4>(name); };
        return mlstm::recurrent_step_stabilized_backward(
            in("c"), in("n"), in("m"), in("q"), in("k"), in("v"), in("igate_preact"),
            in("fgate_preact"), in("dh"), in("dc_new"), in("dn_new"), in("dm_new"), {eps});
      };
      const auto in_double = run(0.0);
      const auto in_float = run(0.0f);
      const auto check = [&](const char* golden_name, const auto& ours_double,
                             const auto& ours_float) {
        const Tensor<double, 4>& expected = golden.read<double, 4>(golden_name);
        const double scale = mlstm::test::magnitude(expected);
        const double reference_loss =
            mlstm::test::max_difference(
                golden.read<double, 4>(std::string(golden_name) + "_f32ref"), expected)
                .max_abs;
        INFO(stem << " " << golden_name);
        const std::string what = std::string("step ") + stem + " " + golden_name;
        mlstm::test::report_golden(what + " double", ours_double, expected, scale, reference_loss);
        mlstm::test::report_golden(what + " float", ours_float, expected, scale, reference_loss);
        MLSTM_CHECK_CLOSE(ours_double, expected, mlstm::test::double_budget(reference_loss, scale));
        MLSTM_CHECK_CLOSE(ours_float, expected, mlstm::test::float_budget(reference_loss, scale));
      };
      check("dq", in_double.dq, in_float.dq);
      check("dk", in_double.dk, in_float.dk);
      check("dv", in_double.dv, in_float.dv);
      check("digate_preact", in_double.di, in_float.di);
      check("dfgate_preact", in_double.df, in_float.df);
      check("dc", in_double.dstate.c, in_float.dstate.c);
      check("dn", in_double.dstate.n, in_float.dstate.n);
      check("dm", in_double.dstate.m, in_float.dstate.m);
    }
  }
}

TEST_CASE("backpropagation through the steps equals the parallel backward",
          "[backward][recurrent][parallel]") {
  // From the zero state the two forms compute the same function except for how eps enters
  // (rescaled, the recurrent normalizer is max(|b|, exp(-m_par)) + eps exp(m_rec - m_par)),
  // so with a tiny eps their gradients agree to rounding, on both normalizer branches.
  const double eps = 1e-14;
  SequenceCase<double> c(2, 2, 9, 4, 3, 31, {-4, 3}, {-1, 4});
  Tensor<double, 4> dh(c.v.dimensions());
  mlstm::test::Random(32).fill_uniform(dh, -1, 1);
  const State zero = State::zeros(2, 2, 4, 3);
  const ChainGradients chain = backprop_through_steps(c, zero, dh, zero, eps);
  const auto parallel = mlstm::test::parallel_gradients_on_both_branches(c, dh);
  mlstm::test::check_gradients_close<double>(chain, parallel, [](const Tensor<double, 4>& x) {
    return 1e-10 * std::max(1.0, mlstm::test::magnitude(x));
  });
}

TEST_CASE("the recurrent step backward rejects bad arguments, naming them",
          "[backward][recurrent][errors]") {
  using mlstm::test::expect_error;
  const SequenceCase<double> step(1, 2, 1, 3, 4, 83);
  auto state = mlstm::RecurrentState<double>::zeros(1, 2, 3, 4);
  auto dstate = mlstm::RecurrentState<double>::zeros(1, 2, 3, 4);
  Tensor<double, 4> step_dh(1, 2, 1, 4);
  step_dh.setConstant(1.0);
  const auto call = [&] {
    mlstm::recurrent_step_stabilized_backward(state, step.q, step.k, step.v, step.igate, step.fgate,
                                              step_dh, dstate);
  };
  REQUIRE_NOTHROW(call());
  dstate.c = Tensor<double, 4>(1, 2, 4, 3);
  expect_error<mlstm::ShapeError>(call, "dc_new");
  dstate = mlstm::RecurrentState<double>::zeros(1, 2, 3, 4);
  dstate.m(0, 1, 0, 0) = std::nan("");
  expect_error<mlstm::ValueError>(call, "dm_new");
  dstate = mlstm::RecurrentState<double>::zeros(1, 2, 3, 4);
  step_dh = Tensor<double, 4>(1, 2, 2, 4);
  expect_error<mlstm::ShapeError>(call, "dh");
  step_dh = Tensor<double, 4>(1, 2, 1, 4);
  step_dh.setZero();
  state.n = Tensor<double, 4>(1, 2, 3, 2);
  expect_error<mlstm::ShapeError>(call, "n");
}
