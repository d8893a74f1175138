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
// bfloat16 and summed in float (the layout a bfloat16 checkpoint maps in place). Batch 1. The
// model holds its matrices itself, on transparent huge pages where the system grants them
// (detail::AlignedArray); a checkpoint used in place stays on the file's ordinary pages.
//
//   BM_Generate     one step from the state after a 128-token prompt; items = tokens. Each step
//                   is followed by a plain read of as many bytes as it reads (every matrix but
//                   one row of the embedding, and the state), timed apart: the counters
//                   step_read_bytes and read_fraction (token_model_loops.hpp).
//   BM_Prefill/S    a prompt of S tokens from the zero state, logits of the last; items = tokens.
//                   One state, set to zero in place for each prompt.
//   BM_PrefillRoundedInputs/S  BM_Prefill with InputRounding::bfloat16: the activations rounded
//                   to bfloat16 before each product, which run on the AMX-BF16 tile unit where
//                   the processor has one (bfloat16 weights only).
//
//   BM_read_bandwidth  the machine's read bandwidth (read_bandwidth.hpp), in the same run.
//
// Counters: parameters, weight_bytes (all of them in W), peak_rss_bytes (the process's peak
// resident set so far, peak_rss.hpp: the model, its state and the activations, and
// BM_Generate's read array), build_seconds (wall time to build the model and fill it with random
// values).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <type_traits>

#include <mlstm/models/xlstm_large/model.hpp>
#include <mlstm/params/generator.hpp>

#include "bench_main.hpp"
#include "peak_rss.hpp"
#include "read_bandwidth.hpp"
#include "token_model_loops.hpp"

namespace {

using mlstm::Index;

mlstm::XLSTMLargeConfig bench_config() {
  mlstm::XLSTMLargeConfig config;  // the 7B model's sizes
  const char* blocks = std::getenv("MLSTM_BENCH_BLOCKS");
  config.num_blocks = blocks != nullptr ? std::atoi(blocks) : 2;
  return config;
}

// A model with random weights: every matrix uniform with standard deviation 0.01 (the values do
// not change the work), norms one, biases zero (as the model is built). The matrices are written
// in place in the model's one buffer of W (no float copy) on the library's threads, each value
// from splitmix64 of its index (counter-based: any range fills independently, the same on every
// run and thread count, and the loop vectorizes), so that the 7B model's 6.9 billion values fill
// in seconds.
template <typename W>
std::unique_ptr<mlstm::XLSTMLarge<float, W>> random_model() {
  auto model = std::make_unique<mlstm::XLSTMLarge<float, W>>(bench_config());
  // Uniform on [-a, a) has std a / sqrt(3); a signed 32-bit integer times a / 2^31 is that.
  const float scale = 0.01f * std::sqrt(3.0f) * 0x1.0p-31f;
  const Index part = Index(1) << 20;
  std::uint64_t first = 0;  // the index of a matrix's first value among all matrices
  const mlstm::ParameterTable table = model->table();
  for (const mlstm::ParameterRow& row : table.rows()) {
    if (!mlstm::is_matrix(row)) continue;
    auto values = model->matrix(row.name);
    const Index size = values.size();
    mlstm::detail::parallel_for(
        (size + part - 1) / part, mlstm::get_num_threads(), [&](Index item) {
          const Index end = std::min(size, (item + 1) * part);
          for (Index i = item * part; i < end; ++i) {
            std::uint64_t counter = first + static_cast<std::uint64_t>(i);
            const auto bits =
                static_cast<std::int32_t>(mlstm::Generator::splitmix64(counter) >> 32);
            values.data()[i] = W(scale * static_cast<float>(bits));
          }
        });
    first += static_cast<std::uint64_t>(size);
  }
  return model;
}

// The model of this run, built once, and the wall time its construction and random fill took.
template <typename W>
struct BenchModel {
  std::unique_ptr<mlstm::XLSTMLarge<float, W>> model;
  double build_seconds = 0.0;
};

template <typename W>
const BenchModel<W>& bench_model() {
  static const BenchModel<W> built = [] {
    const auto start = std::chrono::steady_clock::now();
    BenchModel<W> result{random_model<W>()};
    result.build_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
  }();
  return built;
}

template <typename W>
void add_counters(benchmark::State& state, const BenchModel<W>& built) {
  const double parameters = static_cast<double>(built.model->table().parameter_count());
  state.counters["parameters"] = parameters;
  state.counters["weight_bytes"] = parameters * sizeof(W);
  state.counters["peak_rss_bytes"] = mlstm_bench::peak_rss_bytes();
  state.counters["build_seconds"] = built.build_seconds;
}

// Bytes a step reads: every matrix but the embedding (one row of it is read), in W, and each
// block's state (c, n, m) in float32.
mlstm::Index step_read_bytes(const mlstm::XLSTMLargeConfig& config, mlstm::Index parameters,
                             mlstm::Index bytes_per_weight) {
  const Index state = config.num_blocks * config.num_heads *
                      (config.qk_head_dim() * config.v_head_dim() + config.qk_head_dim() + 1);
  return bytes_per_weight *
             (parameters - config.vocab_size * config.embedding_dim + config.embedding_dim) +
         static_cast<Index>(sizeof(float)) * state;
}

template <typename W>
void generate(benchmark::State& state) {
  const auto& model = *bench_model<W>().model;
  mlstm_bench::generate_loop(
      state, model, 128,
      step_read_bytes(model.config(), model.table().parameter_count(), sizeof(W)));
  add_counters(state, bench_model<W>());
}

template <typename W>
void prefill(benchmark::State& state) {
  mlstm_bench::prefill_loop(state, *bench_model<W>().model, mlstm_bench::StateMemory::reused);
  add_counters(state, bench_model<W>());
}

// MLSTM_BENCH_WEIGHTS: "float", or "bfloat16" (the default); anything else stops the program
// rather than quietly timing bfloat16 weights.
bool float_weights() {
  const char* weights = std::getenv("MLSTM_BENCH_WEIGHTS");
  if (weights == nullptr || std::string(weights) == "bfloat16") return false;
  if (std::string(weights) == "float") return true;
  std::fprintf(stderr, "MLSTM_BENCH_WEIGHTS must be float or bfloat16, got '%s'\n", weights);
  std::exit(2);
}

void BM_Generate(benchmark::State& state) {
  float_weights() ? generate<float>(state) : generate<Eigen::bfloat16>(state);
}

void BM_Prefill(benchmark::State& state) {
  float_weights() ? prefill<float>(state) : prefill<Eigen::bfloat16>(state);
}

void BM_PrefillRoundedInputs(benchmark::State& state) {
  if (float_weights()) {
    state.SkipWithError("bfloat16 inputs need bfloat16 weights");
    return;
  }
  mlstm::XLSTMLarge<float, Eigen::bfloat16>& model = *bench_model<Eigen::bfloat16>().model;
  model.set_input_rounding(mlstm::InputRounding::bfloat16);
  prefill<Eigen::bfloat16>(state);
  model.set_input_rounding(mlstm::InputRounding::none);
}

BENCHMARK(BM_Generate)->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_Prefill)->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_PrefillRoundedInputs)->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) { return mlstm_bench::run_benchmarks(argc, argv); }
