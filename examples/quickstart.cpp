// Quickstart: run the mLSTM cell over a whole sequence in parallel form; then process its first
// part (the prompt) in one chunkwise call that returns the recurrent state, continue the sequence
// one step at a time from that state, and check that both ways give the same outputs.
//
//   B = 1 sequence, NH = 4 heads, DQK = DV = 64, a prompt of 48 steps and 16 more steps.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include <mlstm/mlstm.hpp>

#include "build_banner.hpp"

int main() {
  example::print_build_banner("quickstart");
  using mlstm::Index;
  const Index B = 1, NH = 4, prompt_len = 48, extra_steps = 16, DQK = 64, DV = 64;
  const Index S = prompt_len + extra_steps;

  // Inputs for the whole sequence, as a model's projections would produce them.
  std::mt19937 engine(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  mlstm::Tensor<float, 4> q(B, NH, S, DQK), k(B, NH, S, DQK), v(B, NH, S, DV);
  mlstm::Tensor<float, 4> igate(B, NH, S, 1), fgate(B, NH, S, 1);
  for (auto* x : {&q, &k, &v, &igate})
    for (Index i = 0; i < x->size(); ++i) x->data()[i] = normal(engine);
  for (Index i = 0; i < fgate.size(); ++i) fgate.data()[i] = 3.0f + normal(engine);  // forget bias

  // 1. The whole sequence at once, in parallel form: the reference for what follows.
  const mlstm::Tensor<float, 4> h_parallel = mlstm::parallel_stabilized(q, k, v, igate, fgate);

  // 2. The prompt in one chunkwise call (chunks of 16 steps), keeping the state it ends in.
  const auto prompt = [&](const mlstm::Tensor<float, 4>& x) {
    return mlstm::Tensor<float, 4>(x.slice(
        std::array<Index, 4>{0, 0, 0, 0}, std::array<Index, 4>{B, NH, prompt_len, x.dimension(3)}));
  };
  mlstm::ChunkwiseOptions chunkwise;
  chunkwise.chunk_size = 16;
  mlstm::HiddenAndState<float> prefill = mlstm::chunkwise_stabilized(
      prompt(q), prompt(k), prompt(v), prompt(igate), prompt(fgate), chunkwise);
  mlstm::RecurrentState<float>& state = prefill.state;

  // 3. The remaining steps one at a time, updating the state in place.
  mlstm::Tensor<float, 4> h_step(B, NH, 1, DV);
  float max_difference = 0.0f, max_magnitude = 0.0f;
  for (Index t = prompt_len; t < S; ++t) {
    const auto at_t = [&](const mlstm::Tensor<float, 4>& x) {
      return mlstm::Tensor<float, 4>(x.slice(std::array<Index, 4>{0, 0, t, 0},
                                             std::array<Index, 4>{B, NH, 1, x.dimension(3)}));
    };
    mlstm::recurrent_step_stabilized_inplace(state, at_t(q), at_t(k), at_t(v), at_t(igate),
                                             at_t(fgate), h_step);
    for (Index head = 0; head < NH; ++head)
      for (Index j = 0; j < DV; ++j) {
        max_difference =
            std::max(max_difference, std::abs(h_step(0, head, 0, j) - h_parallel(0, head, t, j)));
        max_magnitude = std::max(max_magnitude, std::abs(h_parallel(0, head, t, j)));
      }
  }

  std::printf("mlstm %d.%d.%d quickstart: B=%ld NH=%ld DQK=%ld DV=%ld, prompt %ld + %ld steps\n",
              mlstm::version_major, mlstm::version_minor, mlstm::version_patch, long(B), long(NH),
              long(DQK), long(DV), long(prompt_len), long(extra_steps));
  std::printf(
      "max |h(step) - h(parallel)| over the %ld continued steps: %.3g (max |h| %.3g, "
      "relative %.3g)\n",
      long(extra_steps), max_difference, max_magnitude, max_difference / max_magnitude);
  const bool agree = max_difference <= 1e-4f * std::max(1.0f, max_magnitude);
  std::printf("%s\n", agree ? "the parallel and step-by-step forms agree"
                            : "MISMATCH between the parallel and step-by-step forms");
  return agree ? 0 : 1;
}
