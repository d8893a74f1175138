// Google Benchmark program for xLSTM-Large, the xLSTM 7B architecture: generation (one token per
// step from the state) and prefill (a prompt in one chunkwise call), in tokens per second, with
// the process's peak resident memory.
//
//   MLSTM_NUM_THREADS=2 ./bench_xlstm_large
//   MLSTM_BENCH_BLOCKS=32 ./bench_xlstm_large     # the full 7B model: 13.7 GB of bfloat16
//   MLSTM_BENCH_WEIGHTS=float ./bench_xlstm_large # float32 weights instead of bfloat16
//
// The model is a slice of the 7B configuration: embedding 4096, 8 heads (DQK 256, DV 512), FFN
// 10944, vocab 50304, 2 blocks by default (MLSTM_BENCH_BLOCKS), random weights stored in
// bfloat16 and summed in float (the layout a bfloat16 checkpoint maps in place). Batch 1.
//
//   BM_Generate     one step from the state after a 128-token prompt; items = tokens.
//   BM_Prefill/S    a prompt of S tokens from the zero state, logits of the last; items = tokens.
//
// Counters: parameters, weight_bytes (what a step reads), peak_rss_bytes (getrusage's maximum
// resident set of the process so far: the model, its state and the activations).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <type_traits>

#include <mlstm/models/xlstm_large/model.hpp>

#include "peak_rss.hpp"
#include "token_model_loops.hpp"

namespace {

using mlstm::Index;

mlstm::XLSTMLargeConfig bench_config() {
  mlstm::XLSTMLargeConfig config;  // the 7B model's sizes
  const char* blocks = std::getenv("MLSTM_BENCH_BLOCKS");
  config.num_blocks = blocks != nullptr ? std::atoi(blocks) : 2;
  return config;
}

// A model with random weights: matrices normal with the small-init scale, norms one, gate biases
// as the reference initializes them (biases stay zero).
template <typename W>
std::unique_ptr<mlstm::XLSTMLarge<float, W>> random_model() {
  auto model = std::make_unique<mlstm::XLSTMLarge<float, W>>(bench_config());
  std::mt19937_64 engine(0);
  const mlstm::ParameterTable table = model->table();
  for (const mlstm::ParameterRow& row : table.rows()) {
    if (!mlstm::is_matrix(row)) continue;
    auto values = model->matrix(row.name);
    std::normal_distribution<float> normal(0.0f, 0.01f);
    for (Index i = 0; i < values.size(); ++i) values.data()[i] = W(normal(engine));
  }
  return model;
}

template <typename W>
const mlstm::XLSTMLarge<float, W>& bench_model() {
  static const std::unique_ptr<mlstm::XLSTMLarge<float, W>> model = random_model<W>();
  return *model;
}

template <typename W>
void add_counters(benchmark::State& state, const mlstm::XLSTMLarge<float, W>& model) {
  const double parameters = static_cast<double>(model.table().parameter_count());
  state.counters["parameters"] = parameters;
  state.counters["weight_bytes"] = parameters * sizeof(W);
  state.counters["peak_rss_bytes"] = mlstm_bench::peak_rss_bytes();
}

template <typename W>
void generate(benchmark::State& state) {
  mlstm_bench::generate_loop(state, bench_model<W>(), 128);
  add_counters(state, bench_model<W>());
}

template <typename W>
void prefill(benchmark::State& state) {
  mlstm_bench::prefill_loop(state, bench_model<W>());
  add_counters(state, bench_model<W>());
}

bool float_weights() {
  const char* weights = std::getenv("MLSTM_BENCH_WEIGHTS");
  return weights != nullptr && std::string(weights) == "float";
}

void BM_Generate(benchmark::State& state) {
  float_weights() ? generate<float>(state) : generate<Eigen::bfloat16>(state);
}

void BM_Prefill(benchmark::State& state) {
  float_weights() ? prefill<float>(state) : prefill<Eigen::bfloat16>(state);
}

BENCHMARK(BM_Generate)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Prefill)->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
