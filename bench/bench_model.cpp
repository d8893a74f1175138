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
//                    items = prompt tokens. One state, set to zero in place for each prompt.
//   BM_Prefill_fresh_state/S   the same with a new state (initial_state) for each prompt.
//   BM_Generate/S    one step (one token) from the state after a prompt of S tokens (the step's
//                    cost does not depend on S; S only fixes the state's content); items = tokens.
//                    Each step is followed by a plain read of as many bytes as it reads, timed
//                    apart; read_fraction (token_model_loops.hpp) compares the two.
//
// The thread count is the library default (MLSTM_NUM_THREADS, else the hardware's), reported in
// the context as mlstm_threads; the linear layers' matrix product (the build's MLSTM_GEMM) as
// mlstm_gemm. bench/compare_model_pytorch.py runs this and the reference
// PyTorch model side by side.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include <mlstm/mlstm.hpp>

#include "bench_main.hpp"
#include "token_model_loops.hpp"

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

void add_context(benchmark::State& state, const mlstm::LanguageModel<float>& model) {
  state.counters["parameters"] = static_cast<double>(model.registry().parameter_count());
}

void BM_Prefill(benchmark::State& state) {
  mlstm_bench::prefill_loop(state, bench_model(), mlstm_bench::StateMemory::reused);
  add_context(state, bench_model());
}

void BM_Prefill_fresh_state(benchmark::State& state) {
  mlstm_bench::prefill_loop(state, bench_model(), mlstm_bench::StateMemory::fresh);
  add_context(state, bench_model());
}

// Bytes a step reads: every parameter but the embedding table (one row of it is read), and each
// block's state (c, n, m), all float32.
Index step_read_bytes(const mlstm::LanguageModel<float>& model) {
  const mlstm::LMModelConfig& config = model.config();
  const Index head_dim = config.inner_embedding_dim() / config.num_heads;
  const Index state = config.num_blocks * config.num_heads * (head_dim * head_dim + head_dim + 1);
  return static_cast<Index>(sizeof(float)) *
         (model.registry().parameter_count() - config.vocab_size * config.embedding_dim +
          config.embedding_dim + state);
}

void BM_Generate(benchmark::State& state) {
  mlstm_bench::generate_loop(state, bench_model(), state.range(0), step_read_bytes(bench_model()));
  add_context(state, bench_model());
}

BENCHMARK(BM_Prefill)->Arg(128)->Arg(512)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Prefill_fresh_state)->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Generate)->Arg(512)->Unit(benchmark::kMillisecond)->UseManualTime();

}  // namespace

int main(int argc, char** argv) {
  const char* model = std::getenv("MLSTM_BENCH_MODEL");
  return mlstm_bench::run_benchmarks(argc, argv, {{"model", model != nullptr ? model : "125M"}});
}
