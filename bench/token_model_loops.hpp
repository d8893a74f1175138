// The timed loops that every language model's benchmark shares (any model with the TokenModel
// interface: forward, prefill, step, initial_state, config().vocab_size), batch 1.
//
//   prefill_loop    a prompt of state.range(0) tokens from the zero state, logits at the last
//                   position only; items = prompt tokens. The state is one made before the loop
//                   and set to zero in place for each prompt (StateMemory::reused, the way to
//                   prefill prompts one after another), or a new one per prompt (fresh).
//                   The fresh state's memory comes from the system each time, page by page.
//   generate_loop   one step (one token) after a prompt of `prompt_length` tokens (the step's cost
//                   does not depend on it; it only fixes the state's content); items = tokens.
//                   After each step, one pass reads an array as large as what a step reads
//                   (`step_read_bytes`; at most 256 MiB, ReadStream), timed apart: the host's
//                   memory rate drifts over seconds, so the step and a plain read are measured
//                   at the same moments. Manual time (register with UseManualTime) is the
//                   steps' alone. Counters: step_read_bytes; read_fraction, the median over the
//                   iterations of (step's bytes / step time) / (pass's bytes / pass time): the
//                   step's read rate as a fraction of the plain read's at that moment;
//                   read_bytes_per_second, the passes' mean rate; read_pass_bytes, the size of
//                   the read array (resident beside the model: part of a peak RSS counter).
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include <mlstm/models/token_model.hpp>

#include "read_stream.hpp"

namespace mlstm_bench {

using mlstm::Index;

// A fixed pseudo-random prompt (xorshift64), the same for every model and run.
inline mlstm::Tensor<std::int64_t, 2> prompt_tokens(Index length, Index vocab) {
  mlstm::Tensor<std::int64_t, 2> tokens(1, length);
  std::uint64_t x = 0x9e3779b97f4a7c15ull;
  for (Index t = 0; t < length; ++t) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    tokens(0, t) = static_cast<std::int64_t>(x % static_cast<std::uint64_t>(vocab));
  }
  return tokens;
}

enum class StateMemory { reused, fresh };

template <typename Model>
void prefill_loop(benchmark::State& state, const Model& model, StateMemory memory) {
  const Index length = state.range(0);
  const auto tokens = prompt_tokens(length, model.config().vocab_size);
  auto model_state = model.initial_state(1);
  for (auto _ : state) {
    if (memory == StateMemory::fresh) {
      model_state = model.initial_state(1);
    } else {
      model_state.set_zero();
    }
    auto logits = model.prefill(tokens, model_state, mlstm::Logits::last);
    benchmark::DoNotOptimize(logits.data());
  }
  state.SetItemsProcessed(state.iterations() * length);
}

template <typename Model>
void generate_loop(benchmark::State& state, const Model& model, Index prompt_length,
                   Index step_read_bytes) {
  auto model_state = model.initial_state(1);
  model.prefill(prompt_tokens(prompt_length, model.config().vocab_size), model_state,
                mlstm::Logits::last);
  // At most 256 MiB (8x the last-level cache), so that the 7B model's 13 GB step does not need a
  // second 13 GB in memory; the fraction scales the pass to the step's bytes.
  ReadStream stream(std::min(step_read_bytes, Index(256) << 20));
  mlstm::Tensor<std::int64_t, 1> token(1);
  token(0) = 1;
  std::vector<double> fractions;
  double read_seconds = 0.0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    auto logits = model.step(token, model_state);
    benchmark::DoNotOptimize(logits.data());
    const double step_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(step_seconds);
    const double pass_seconds = stream.pass_seconds();
    read_seconds += pass_seconds;
    fractions.push_back(pass_seconds / step_seconds * static_cast<double>(step_read_bytes) /
                        static_cast<double>(stream.bytes()));
    token(0) = (token(0) * 31 + 7) % model.config().vocab_size;  // the next token's id
  }
  state.SetItemsProcessed(state.iterations());
  if (fractions.empty()) return;
  std::nth_element(fractions.begin(), fractions.begin() + fractions.size() / 2, fractions.end());
  state.counters["step_read_bytes"] = static_cast<double>(step_read_bytes);
  state.counters["read_fraction"] = fractions[fractions.size() / 2];
  state.counters["read_pass_bytes"] = static_cast<double>(stream.bytes());
  state.counters["read_bytes_per_second"] =
      static_cast<double>(stream.bytes()) * static_cast<double>(fractions.size()) / read_seconds;
}

}  // namespace mlstm_bench
