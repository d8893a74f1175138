// Google Benchmark programs for the linear layers (mlstm/layers/linear.hpp) with float and
// bfloat16 weights, and the machine's read bandwidth measured in the same run:
//
//   MLSTM_NUM_THREADS=2 ./bench_linear --benchmark_counters_tabular=true
//
//   BM_read_bandwidth          read_bandwidth.hpp: the rate at which weights can stream from
//                              memory here.
//   BM_linear_step<W>/out/in   one row (a generation step): y (1, out) = x W^T with W (out, in)
//                              in W = float or bfloat16 (on huge pages, like a model's own
//                              matrices); bytes/s counts the weights read, to compare with
//                              BM_read_bandwidth.
//   BM_linear_prefill<W>/rows/out/in   rows at once (a prefill); GFLOP/s in the counters.
//   BM_linear_prefill_rounded_inputs/rows/out/in   the same with bfloat16 weights and
//                              InputRounding::bfloat16 (AMX-BF16 tiles where the processor has
//                              them; the context's mlstm_bfloat16_inputs_product says).
//
// The step's shapes are those of the xLSTM 7B model's FFN (embedding 4096, hidden 10944): larger
// than the last-level cache, so that a step reads its weights from memory. The prefill's are the
// 7B model's and the 125M model's.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <mlstm/detail/aligned_array.hpp>
#include <mlstm/layers/linear.hpp>

#include "bench_main.hpp"
#include "read_bandwidth.hpp"

namespace {

using mlstm::Index;

template <typename T, int Rank, typename... Dims>
mlstm::Tensor<T, Rank> filled(Dims... dims) {
  mlstm::Tensor<T, Rank> x(dims...);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = T(static_cast<float>(i % 17) * 0.01f - 0.08f);
  return x;
}

// The step's weights in the library's AlignedArray (huge pages where the system grants them), as
// a model holds its own matrices.
template <typename W>
void BM_linear_step(benchmark::State& state) {
  const Index out = state.range(0), in = state.range(1);
  const auto x = filled<float, 2>(1, in);
  mlstm::detail::AlignedArray<W> storage(out * in);
  const auto values = filled<W, 1>(out * in);
  std::copy(values.data(), values.data() + out * in, storage.data());
  const mlstm::ConstTensorMap<W, 2> weight(storage.data(), out, in);
  for (auto _ : state) {
    auto y = mlstm::linear_forward(x, weight);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * out * in * static_cast<Index>(sizeof(W)));
}
BENCHMARK_TEMPLATE(BM_linear_step, float)
    ->Args({10944, 4096})
    ->Args({4096, 10944})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_linear_step, Eigen::bfloat16)
    ->Args({10944, 4096})
    ->Args({4096, 10944})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// GFLOP/s of a product of (rows, in) by (in, out) per iteration.
void count_product_rate(benchmark::State& state, Index rows, Index out, Index in) {
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * static_cast<double>(rows * out * in) * static_cast<double>(state.iterations()) * 1e-9,
      benchmark::Counter::kIsRate);
}

template <typename W>
void BM_linear_prefill(benchmark::State& state) {
  const Index rows = state.range(0), out = state.range(1), in = state.range(2);
  const auto x = filled<float, 2>(rows, in);
  const auto weight = filled<W, 2>(out, in);
  for (auto _ : state) {
    auto y = mlstm::linear_forward(x, weight);
    benchmark::DoNotOptimize(y.data());
  }
  count_product_rate(state, rows, out, in);
}
// The 7B model's square projections, and the 125M model's up- and down-projections.
void prefill_shapes(benchmark::internal::Benchmark* benchmark) {
  benchmark->Args({128, 4096, 4096})
      ->Args({512, 4096, 4096})
      ->Args({128, 3072, 768})
      ->Args({2048, 3072, 768})
      ->Args({2048, 768, 1536})
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}
BENCHMARK_TEMPLATE(BM_linear_prefill, float)->Apply(prefill_shapes);
BENCHMARK_TEMPLATE(BM_linear_prefill, Eigen::bfloat16)->Apply(prefill_shapes);

void BM_linear_prefill_rounded_inputs(benchmark::State& state) {
  const Index rows = state.range(0), out = state.range(1), in = state.range(2);
  const auto x = filled<float, 2>(rows, in);
  const auto weight = filled<Eigen::bfloat16, 2>(out, in);
  mlstm::Tensor<float, 2> y(rows, out);
  for (auto _ : state) {
    mlstm::detail::linear_rows(x.data(), rows, in, weight.data(), out,
                               static_cast<const float*>(nullptr), y.data(),
                               mlstm::get_num_threads(), mlstm::InputRounding::bfloat16);
    benchmark::DoNotOptimize(y.data());
  }
  count_product_rate(state, rows, out, in);
}
BENCHMARK(BM_linear_prefill_rounded_inputs)->Apply(prefill_shapes);

}  // namespace

int main(int argc, char** argv) { return mlstm_bench::run_benchmarks(argc, argv); }
