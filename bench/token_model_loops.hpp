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
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>

#include <mlstm/models/token_model.hpp>

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
void generate_loop(benchmark::State& state, const Model& model, Index prompt_length) {
  auto model_state = model.initial_state(1);
  model.prefill(prompt_tokens(prompt_length, model.config().vocab_size), model_state,
                mlstm::Logits::last);
  mlstm::Tensor<std::int64_t, 1> token(1);
  token(0) = 1;
  for (auto _ : state) {
    auto logits = model.step(token, model_state);
    benchmark::DoNotOptimize(logits.data());
    token(0) = (token(0) * 31 + 7) % model.config().vocab_size;  // the next token's id
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace mlstm_bench
