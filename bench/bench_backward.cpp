// Forward plus backward of the mLSTM kernels (training step of the cell), float32, B = 1.
//
//   bench_backward --benchmark_filter=...        (Google Benchmark flags)
//
// Each benchmark is named BM_<Form><Pass>/S:<S>/D:<D>/NH:<NH>/threads:<n>; DQK = DV = D. The
// counter peak_heap_MB is the largest heap growth during one untimed call (inputs excluded),
// measured by counting every allocation (tests/support/heap_counter.hpp). The chunkwise
// benchmark also counts useful_flops (a rate): three times the forward's useful FLOPs of
// bench_kernels.cpp (chunk size L = 64), i.e. the forward and a backward of twice its products
// (each forward product has two in the backward); the backward's recomputation of the forward
// is not counted. bench_kernels' BM_EigenGemm and BM_LibraryGemm (the faster)
// are the ceiling to hold it against.
// compare_backward_pytorch.py runs these and PyTorch autograd of the reference forms at the same
// shapes and inputs' distribution and prints the ratios.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <functional>

#include <mlstm/kernels/chunkwise_backward.hpp>
#include <mlstm/kernels/parallel_backward.hpp>
#include <mlstm/mlstm.hpp>

#include "bench_main.hpp"
#include "support/heap_counter.hpp"
#include "support/random_inputs.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;

struct Problem {
  Tensor<float, 4> q, k, v, igate, fgate, dh;

  Problem(Index heads, Index seq_len, Index dim)
      : q(1, heads, seq_len, dim),
        k(1, heads, seq_len, dim),
        v(1, heads, seq_len, dim),
        igate(1, heads, seq_len, 1),
        fgate(1, heads, seq_len, 1),
        dh(1, heads, seq_len, dim) {
    // The distributions of compare_backward_pytorch.py's make_inputs: q, k, v, dh uniform in
    // [-1, 1); gates like a trained model's (i around 0, forget gates mostly open).
    mlstm::test::Random random(0);
    for (Tensor<float, 4>* x : {&q, &k, &v, &dh}) random.fill_uniform(*x, -1, 1);
    random.fill_uniform(igate, -3, 3);
    random.fill_uniform(fgate, 1, 5);
  }
};

double peak_heap_megabytes(const std::function<void()>& run) {
  const mlstm::test::HeapWatch watch;
  run();
  return static_cast<double>(watch.peak_above_start()) / (1 << 20);
}

void run_benchmark(benchmark::State& state, const std::function<void(const Problem&)>& step) {
  const Index seq_len = state.range(0), dim = state.range(1), heads = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  mlstm::set_num_threads(threads);
  const Problem problem(heads, seq_len, dim);
  state.counters["peak_heap_MB"] = peak_heap_megabytes([&] { step(problem); });
  for (auto _ : state) step(problem);
}

void BM_ParallelForwardBackward(benchmark::State& state) {
  run_benchmark(state, [](const Problem& p) {
    const auto forward =
        mlstm::parallel_stabilized_forward_with_cache(p.q, p.k, p.v, p.igate, p.fgate);
    auto grads =
        mlstm::parallel_stabilized_backward(p.q, p.k, p.v, p.igate, p.fgate, p.dh, forward);
    benchmark::DoNotOptimize(grads.dq.data());
  });
}

// Useful FLOPs of the chunkwise forward at chunk size L, per bench_kernels.cpp's count: per
// chunk of `length` steps 2 (length (length + 1) / 2) (DQK + DV) + 4 length DQK DV.
double chunkwise_forward_flops(Index heads, Index seq_len, Index dim, Index L) {
  double flops = 0.0;
  for (Index begin = 0; begin < seq_len; begin += L) {
    const double length = static_cast<double>(std::min(L, seq_len - begin));
    flops += 2.0 * (length * (length + 1) / 2.0) * static_cast<double>(2 * dim) +
             4.0 * length * static_cast<double>(dim * dim);
  }
  return static_cast<double>(heads) * flops;
}

// The chunkwise forward (chunk 64) and its backward, which recomputes what it needs.
void BM_ChunkwiseForwardBackward(benchmark::State& state) {
  run_benchmark(state, [](const Problem& p) {
    const auto forward = mlstm::chunkwise_stabilized(p.q, p.k, p.v, p.igate, p.fgate);
    benchmark::DoNotOptimize(forward.h.data());
    auto grads = mlstm::chunkwise_stabilized_backward(p.q, p.k, p.v, p.igate, p.fgate, p.dh);
    benchmark::DoNotOptimize(grads.dq.data());
  });
  const double flops =
      3.0 * chunkwise_forward_flops(state.range(2), state.range(0), state.range(1), 64);
  state.counters["useful_flops"] = benchmark::Counter(
      flops * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_ParallelBackward(benchmark::State& state) {
  const Index seq_len = state.range(0), dim = state.range(1), heads = state.range(2);
  mlstm::set_num_threads(static_cast<int>(state.range(3)));
  const Problem p(heads, seq_len, dim);
  const auto forward =
      mlstm::parallel_stabilized_forward_with_cache(p.q, p.k, p.v, p.igate, p.fgate);
  state.counters["peak_heap_MB"] = peak_heap_megabytes(
      [&] { mlstm::parallel_stabilized_backward(p.q, p.k, p.v, p.igate, p.fgate, p.dh, forward); });
  for (auto _ : state) {
    auto grads =
        mlstm::parallel_stabilized_backward(p.q, p.k, p.v, p.igate, p.fgate, p.dh, forward);
    benchmark::DoNotOptimize(grads.dq.data());
  }
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"S", "D", "NH", "threads"});
  for (const int threads : {1, 2})
    for (const int seq_len : {512, 1024, 2048}) b->Args({seq_len, 128, 4, threads});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

// Longer sequences for the chunkwise form, whose memory grows linearly with S.
void long_shapes(benchmark::internal::Benchmark* b) {
  shapes(b);
  for (const int threads : {1, 2})
    for (const int seq_len : {4096, 8192}) b->Args({seq_len, 128, 4, threads});
}

}  // namespace

BENCHMARK(BM_ParallelForwardBackward)->Apply(shapes);
BENCHMARK(BM_ChunkwiseForwardBackward)->Apply(long_shapes);
BENCHMARK(BM_ParallelBackward)->Apply(shapes);

int main(int argc, char** argv) { return mlstm_bench::run_benchmarks(argc, argv); }
