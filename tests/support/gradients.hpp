// Comparing the gradients of backward passes: against central finite differences of a loss
// (the recurrent form's, for the passes that carry a state), and two sets of the five input
// gradients against each other.
#pragma once

#include <functional>
#include <vector>

#include <catch2/catch.hpp>

#include <mlstm/kernels/gradients.hpp>
#include <mlstm/kernels/state.hpp>
#include <mlstm/tensor.hpp>

#include "support/finite_differences.hpp"
#include "support/naive.hpp"
#include "support/tolerance.hpp"

namespace mlstm::test {

// An analytic gradient and the input it is the gradient of.
struct NamedGradient {
  const char* name;
  const Tensor<double, 4>* analytic;
  Tensor<double, 4>* input;
};

// The five input gradients of `g` paired with the inputs of case c.
template <typename Case>
std::vector<NamedGradient> input_gradients(const SequenceGradients<double>& g, Case& c) {
  return {{"dq", &g.dq, &c.q},
          {"dk", &g.dk, &c.k},
          {"dv", &g.dv, &c.v},
          {"di", &g.di, &c.igate},
          {"df", &g.df, &c.fgate}};
}

// The gradients of a state paired with the state they are the gradients of.
inline std::vector<NamedGradient> state_gradients(const RecurrentState<double>& g,
                                                  RecurrentState<double>& state) {
  return {{"dc", &g.c, &state.c}, {"dn", &g.n, &state.n}, {"dm", &g.m, &state.m}};
}

// sum(h * dh) + <dfinal, final state> of the plain-loop recurrent form run over case c from
// `initial`: the loss whose gradients the recurrent and chunkwise backward passes compute.
template <typename Case>
double recurrent_loss(const Case& c, const RecurrentState<double>& initial,
                      const Tensor<double, 4>& dh, const RecurrentState<double>& dfinal,
                      double eps) {
  naive::State<double> state{initial.c, initial.n, initial.m};
  const auto h = naive::recurrent(c.q, c.k, c.v, c.igate, c.fgate, state, eps);
  return dot(h, dh) + dot(state.c, dfinal.c) + dot(state.n, dfinal.n) + dot(state.m, dfinal.m);
}

// Each analytic gradient against central differences of `loss` (which reads the inputs).
inline void check_finite_differences(const std::vector<NamedGradient>& gradients,
                                     const std::function<double()>& loss) {
  for (const NamedGradient& g : gradients) {
    const Tensor<double, 4> numeric = finite_difference_gradient(*g.input, loss);
    INFO(g.name);
    MLSTM_CHECK_CLOSE(*g.analytic, numeric, finite_difference_budget(numeric));
  }
}

// The five gradients of `actual` against `expected`, each within budget(expected gradient).
template <typename T, typename Budget>
void check_gradients_close(const SequenceGradients<T>& actual, const SequenceGradients<T>& expected,
                           const Budget& budget) {
  MLSTM_CHECK_CLOSE(actual.dq, expected.dq, budget(expected.dq));
  MLSTM_CHECK_CLOSE(actual.dk, expected.dk, budget(expected.dk));
  MLSTM_CHECK_CLOSE(actual.dv, expected.dv, budget(expected.dv));
  MLSTM_CHECK_CLOSE(actual.di, expected.di, budget(expected.di));
  MLSTM_CHECK_CLOSE(actual.df, expected.df, budget(expected.df));
}

}  // namespace mlstm::test
