// Google Benchmark programs for the mLSTM language model: prefill (a prompt in one call, chunkwise
// kernel) and generation (one token per step from the state), in tokens per second.
//
//   MLSTM_NUM_THREADS=2 ./bench_model --benchmark_format=json
//   MLSTM_BENCH_MODEL=small ./bench_model        # a small model, for a quick look
//
// The model has the size the xLSTM 125M language models have: vocab 50304, embedding 768,
// 12 mLSTM blocks of 4 heads (inner dimension 1536, head dimension 384), conv kernel 4, q/k/v
// block size 4, untied head: 120.6M parameters, float32, initialized as the reference
// initializes it (seed 0). Batch 1.
//
//   BM_Prefill/S     a prompt of S tokens from the zero state: embedding, the 12 blocks
//                    (chunkwise kernel, chunk 64), the norm and the head at the last position;
//                    items = prompt tokens.
//   BM_Generate/S    one step (one token) from the state after a prompt of S tokens (the step's
//                    cost does not depend on S; S only fixes the state's content); items = tokens.
//
// The thread count is the library default (MLSTM_NUM_THREADS, else the hardware's), reported in
// the context as mlstm_threads. bench/compare_model_pytorch.py runs this and the reference
// PyTorch model side by side.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include <mlstm/mlstm.hpp>

namespace {

using mlstm::Index;

mlstm::LMModelConfig bench_config() {
  mlstm::LMModelConfig config;
  const char* size = std::getenv("MLSTM_BENCH_MODEL");
  if (size != nullptr && std::string(size) == "small") {
    config.vocab_size = 1024;
    config.embedding_dim = 128;
    config.num_blocks = 2;
  } else {
    config.vocab_size = 50304;
    config.embedding_dim = 768;
    config.num_blocks = 12;
  }
  config.num_heads = 4;
  config.context_length = 2048;
  return config;
}

// One model for every benchmark of the run (building and initializing it takes seconds).
const mlstm::LanguageModel<float>& bench_model() {
  static const std::unique_ptr<mlstm::LanguageModel<float>> model = [] {
    auto built = std::make_unique<mlstm::LanguageModel<float>>(bench_config());
    mlstm::Generator generator(0);
    built->reset_parameters(generator);
    return built;
  }();
  return *model;
}

mlstm::Tensor<std::int64_t, 2> prompt_tokens(Index length, Index vocab) {
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

void add_context(benchmark::State& state, const mlstm::LanguageModel<float>& model) {
  state.counters["parameters"] = static_cast<double>(model.registry().parameter_count());
}

void BM_Prefill(benchmark::State& state) {
  const auto& model = bench_model();
  const Index length = state.range(0);
  const auto tokens = prompt_tokens(length, model.config().vocab_size);
  for (auto _ : state) {
    auto model_state = model.initial_state(1);
    auto logits = model.prefill(tokens, model_state, mlstm::Logits::last);
    benchmark::DoNotOptimize(logits.data());
  }
  state.SetItemsProcessed(state.iterations() * length);
  add_context(state, model);
}

void BM_Generate(benchmark::State& state) {
  const auto& model = bench_model();
  const Index length = state.range(0);
  auto model_state = model.initial_state(1);
  const auto prompt = prompt_tokens(length, model.config().vocab_size);
  model.prefill(prompt, model_state, mlstm::Logits::last);
  mlstm::Tensor<std::int64_t, 1> token(1);
  token(0) = 1;
  for (auto _ : state) {
    auto logits = model.step(token, model_state);
    benchmark::DoNotOptimize(logits.data());
    token(0) = (token(0) * 31 + 7) % model.config().vocab_size;  // the next token's id
  }
  state.SetItemsProcessed(state.iterations());
  add_context(state, model);
}

BENCHMARK(BM_Prefill)->Arg(128)->Arg(512)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Generate)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("mlstm_threads", std::to_string(mlstm::get_num_threads()));
  benchmark::AddCustomContext("model", std::getenv("MLSTM_BENCH_MODEL") != nullptr
                                           ? std::getenv("MLSTM_BENCH_MODEL")
                                           : "125M");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
