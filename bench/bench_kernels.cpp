// Google Benchmark programs for the mLSTM kernels: parallel, chunkwise, recurrent (a whole
// sequence and one step), the Eigen matrix product that bounds them on this machine, and the
// cores' multiply-add rate above both.
//
//   MLSTM_NUM_THREADS=2 ./bench_kernels --benchmark_format=json
//
// Shapes: B = 1, NH = 4, DQK = DV = D in {64, 128, 256}, S from 256 to 16384 (the chunkwise and
// recurrent forms also at 65536 for D = 128), float32. Benchmark arguments are D, S, and for the
// chunkwise form the chunk size L (64 everywhere, 128 as well at D = 128).
// The thread count is the library default (MLSTM_NUM_THREADS, else the hardware's), reported in
// the context as mlstm_threads. Times are wall-clock; the CPU time reported is that of all the
// process's threads, which on a shared machine still tells how much work a run took.
//
// Counters: items = time steps of all heads per second; bytes = inputs read and h written per
// second; useful_flops (a rate) counts only the work the form needs:
//   parallel    2 * (S (S + 1) / 2) * (DQK + DV) per head (the causal half of Q K^T and of W V)
//   chunkwise   per chunk of L steps: 2 * (L (L + 1) / 2) * (DQK + DV) + 4 * L * DQK * DV
//               (intra-chunk causal half, inter-chunk readout q^T C, state update K^T V)
//   recurrent   4 * DQK * DV per head and step (rank-1 update of C and the readout q^T C)
//   gemm        2 * N^3 per product, one independent N x N product per thread
//   BM_MultiplyAddPeak's flops: 2 per lane of each fused multiply-add (16 lanes with AVX-512,
//               8 with AVX2), all threads
//   BM_HandoutAfterSerialWork/gap_us: handout_overhead_us, what a parallel_for costs beyond its
//               items' own time after the caller worked alone for gap_us (waking the workers)
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <mlstm/mlstm.hpp>
#include <string>
#include <vector>

#include "bench_main.hpp"
#include "support/random_inputs.hpp"

namespace {

using mlstm::Index;
using Tensor4 = mlstm::Tensor<float, 4>;

constexpr Index batch = 1, heads = 4;

struct Inputs {
  Tensor4 q, k, v, igate, fgate;

  Inputs(Index S, Index D)
      : q(batch, heads, S, D),
        k(batch, heads, S, D),
        v(batch, heads, S, D),
        igate(batch, heads, S, 1),
        fgate(batch, heads, S, 1) {
    // compare_pytorch.py's distributions: q, k, v, i uniform in [-1, 1), forget gate
    // preactivations in [2.5, 4.5).
    mlstm::test::Random random(0);
    for (Tensor4* x : {&q, &k, &v, &igate}) random.fill_uniform(*x, -1, 1);
    random.fill_uniform(fgate, 2.5, 4.5);
  }
};

double sequence_bytes(Index S, Index D) {
  // q, k, v and two gates read, h written.
  return static_cast<double>(batch * heads * S * (4 * D + 2) * Index(sizeof(float)));
}

double parallel_flops(Index S, Index D) {
  return static_cast<double>(batch * heads) * 2.0 * (static_cast<double>(S) * (S + 1) / 2.0) *
         static_cast<double>(2 * D);
}

double chunkwise_flops(Index S, Index D, Index L) {
  double flops = 0.0;
  for (Index begin = 0; begin < S; begin += L) {
    const double length = static_cast<double>(std::min(L, S - begin));
    flops += 2.0 * (length * (length + 1) / 2.0) * static_cast<double>(2 * D) +
             4.0 * length * static_cast<double>(D * D);
  }
  return static_cast<double>(batch * heads) * flops;
}

double recurrent_flops(Index S, Index D) {
  return static_cast<double>(batch * heads * S) * 4.0 * static_cast<double>(D * D);
}

void set_counters(benchmark::State& state, Index S, double bytes, double flops) {
  state.SetItemsProcessed(state.iterations() * batch * heads * S);
  state.SetBytesProcessed(static_cast<int64_t>(static_cast<double>(state.iterations()) * bytes));
  state.counters["useful_flops"] = benchmark::Counter(
      flops * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_Parallel(benchmark::State& state) {
  const Index D = state.range(0), S = state.range(1);
  const Inputs in(S, D);
  for (auto _ : state) {
    Tensor4 h = mlstm::parallel_stabilized(in.q, in.k, in.v, in.igate, in.fgate);
    benchmark::DoNotOptimize(h.data());
  }
  set_counters(state, S, sequence_bytes(S, D), parallel_flops(S, D));
}

void BM_Chunkwise(benchmark::State& state) {
  const Index D = state.range(0), S = state.range(1), L = state.range(2);
  const Inputs in(S, D);
  mlstm::ChunkwiseOptions options;
  options.chunk_size = L;
  for (auto _ : state) {
    auto out = mlstm::chunkwise_stabilized(in.q, in.k, in.v, in.igate, in.fgate, options);
    benchmark::DoNotOptimize(out.h.data());
  }
  set_counters(state, S, sequence_bytes(S, D), chunkwise_flops(S, D, L));
}

void BM_RecurrentSequence(benchmark::State& state) {
  const Index D = state.range(0), S = state.range(1);
  const Inputs in(S, D);
  for (auto _ : state) {
    auto out = mlstm::recurrent_sequence(in.q, in.k, in.v, in.igate, in.fgate);
    benchmark::DoNotOptimize(out.h.data());
  }
  set_counters(state, S, sequence_bytes(S, D), recurrent_flops(S, D));
}

// One generation step on caller-owned state and output buffers (allocates nothing).
void BM_RecurrentStep(benchmark::State& state) {
  const Index D = state.range(0);
  const Inputs in(1, D);
  auto memory = mlstm::RecurrentState<float>::zeros(batch, heads, D, D);
  Tensor4 h(batch, heads, 1, D);
  for (auto _ : state) {
    mlstm::recurrent_step_stabilized_inplace(memory, in.q, in.k, in.v, in.igate, in.fgate, h);
    benchmark::DoNotOptimize(h.data());
    benchmark::ClobberMemory();
  }
  // The state is read and written, q, k, v and gates read, h written.
  const double bytes =
      static_cast<double>(batch * heads * (2 * (D * D + D + 1) + 4 * D + 2) * Index(sizeof(float)));
  set_counters(state, 1, bytes, recurrent_flops(1, D));
}

// The ceiling: one independent N x N x N product per thread, on the library's threads, by
// `product` (a, b, c): Eigen's own (BM_EigenGemm) and the library's (BM_LibraryGemm:
// detail::matrix_product, which is the packed product on an AVX2 processor and oneDNN's sgemm in
// a MLSTM_GEMM=oneDNN build). The comparison scripts take the faster as the machine's ceiling.
template <typename Product>
void square_products(benchmark::State& state, const Product& product) {
  using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Index N = state.range(0);
  const int threads = mlstm::get_num_threads();
  std::vector<Matrix> a, b, c;
  for (int t = 0; t < threads; ++t) {
    a.push_back(Matrix::Random(N, N));
    b.push_back(Matrix::Random(N, N));
    c.push_back(Matrix::Zero(N, N));
  }
  for (auto _ : state) {
    mlstm::detail::parallel_for(threads, threads, [&](Index t) { product(a[t], b[t], c[t]); });
    benchmark::DoNotOptimize(c.front().data());
  }
  const double flops =
      2.0 * static_cast<double>(N) * static_cast<double>(N) * static_cast<double>(N) * threads;
  state.counters["useful_flops"] = benchmark::Counter(
      flops * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_EigenGemm(benchmark::State& state) {
  square_products(state, [](const auto& a, const auto& b, auto& c) { c.noalias() = a * b; });
}

void BM_LibraryGemm(benchmark::State& state) {
  square_products(state, [](const auto& a, const auto& b, auto& c) {
    const Index n = a.rows();
    mlstm::detail::matrix_product<float>(n, n, n, {a.data(), n}, {b.data(), n}, c.data(), n);
  });
}

// The cores' own ceiling: fused multiply-adds on whole vectors into independent sums that stay
// in registers (no memory traffic), on the library's threads: 24 sums of 16 floats with AVX-512,
// else 12 of 8 with AVX2 and FMA, else skipped.
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
// Eigen's widest packet of floats for this build: 16 lanes with AVX-512, 8 with AVX2.
using PeakVector = Eigen::internal::packet_traits<float>::type;
constexpr int peak_lanes = Eigen::internal::packet_traits<float>::size;
constexpr int peak_sums = peak_lanes == 16 ? 24 : 12;  // of 32 or 16 vector registers
#define MLSTM_BENCH_PEAK 1
#else
#define MLSTM_BENCH_PEAK 0
#endif

#if MLSTM_BENCH_PEAK
float multiply_add_loop(long rounds) {
  namespace ei = Eigen::internal;
  PeakVector sums[peak_sums];
  for (PeakVector& sum : sums) sum = ei::pset1<PeakVector>(0.0f);
  PeakVector x = ei::pset1<PeakVector>(1.0f), w = ei::pset1<PeakVector>(1e-9f);
  for (long round = 0; round < rounds; ++round) {
#pragma GCC unroll 24
    for (int i = 0; i < peak_sums; ++i) sums[i] = ei::pmadd(x, w, sums[i]);
    asm volatile("" : "+x"(x));  // keeps the loop from being folded
  }
  PeakVector total = sums[0];
  for (int i = 1; i < peak_sums; ++i) total = ei::padd(total, sums[i]);
  return ei::predux(total);
}
#endif

void BM_MultiplyAddPeak(benchmark::State& state) {
#if MLSTM_BENCH_PEAK
  constexpr long rounds = 100000;
  const int threads = mlstm::get_num_threads();
  std::vector<float> results(threads);
  for (auto _ : state) {
    mlstm::detail::parallel_for(threads, threads,
                                [&](Index t) { results[t] = multiply_add_loop(rounds); });
    benchmark::DoNotOptimize(results.data());
  }
  const double flops = 2.0 * peak_lanes * peak_sums * static_cast<double>(rounds) * threads;
  state.counters["flops"] = benchmark::Counter(flops * static_cast<double>(state.iterations()),
                                               benchmark::Counter::kIsRate);
#else
  state.SkipWithError("built without AVX-512 or AVX2 and FMA");
#endif
}

// Busy on the calling thread for `microseconds` (a spin: the thread stays on its core).
void spin_for(double microseconds) {
  const auto end =
      std::chrono::steady_clock::now() + std::chrono::duration<double, std::micro>(microseconds);
  while (std::chrono::steady_clock::now() < end) {
  }
}

// What handing work to the pool's workers costs after the caller has worked alone for a while
// (a model's serial steps between its products): per iteration the caller spins `gap` us, then
// one parallel_for of one 50 us item per thread is timed (manual time). On an idle pool it would
// take 50 us; the counter handout_overhead_us is the median iteration's excess over that.
void BM_HandoutAfterSerialWork(benchmark::State& state) {
  constexpr double item_microseconds = 50.0;
  const double gap = static_cast<double>(state.range(0));
  const int threads = mlstm::get_num_threads();
  std::vector<double> seconds;
  for (auto _ : state) {
    spin_for(gap);
    const auto start = std::chrono::steady_clock::now();
    mlstm::detail::parallel_for(threads, threads, [](Index) { spin_for(item_microseconds); });
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(elapsed);
    seconds.push_back(elapsed);
  }
  std::nth_element(seconds.begin(), seconds.begin() + seconds.size() / 2, seconds.end());
  state.counters["handout_overhead_us"] = seconds[seconds.size() / 2] * 1e6 - item_microseconds;
  state.counters["threads"] = threads;
}

void sequence_grid(benchmark::internal::Benchmark* bench, Index longest_d128) {
  for (const Index D : {64, 128, 256}) {
    for (Index S = 256; S <= 16384; S *= 2) bench->Args({D, S});
  }
  for (Index S = 32768; S <= longest_d128; S *= 2) bench->Args({128, S});
  bench->ArgNames({"D", "S"})
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->MeasureProcessCPUTime();
}

// The chunkwise grid with the chunk size L: 64 throughout, 128 at D = 128 too.
void chunkwise_grid(benchmark::internal::Benchmark* bench) {
  for (const Index D : {64, 128, 256}) {
    for (Index S = 256; S <= 16384; S *= 2) {
      bench->Args({D, S, 64});
      if (D == 128) bench->Args({D, S, 128});
    }
  }
  for (Index S = 32768; S <= 65536; S *= 2) bench->Args({128, S, 64});
  bench->ArgNames({"D", "S", "L"})
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->MeasureProcessCPUTime();
}

BENCHMARK(BM_Parallel)->Apply([](benchmark::internal::Benchmark* b) { sequence_grid(b, 16384); });
BENCHMARK(BM_Chunkwise)->Apply(chunkwise_grid);
BENCHMARK(BM_RecurrentSequence)->Apply([](benchmark::internal::Benchmark* b) {
  sequence_grid(b, 65536);
});
BENCHMARK(BM_RecurrentStep)
    ->ArgName("D")
    ->Arg(64)
    ->Arg(128)
    ->Arg(256)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();
BENCHMARK(BM_MultiplyAddPeak)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_HandoutAfterSerialWork)
    ->ArgName("gap_us")
    ->Arg(0)
    ->Arg(20)
    ->Arg(100)
    ->Arg(250)
    ->Arg(1000)
    ->Unit(benchmark::kMicrosecond)
    ->UseManualTime();
// The square products' sizes and timing, for both ceilings.
void square_product_runs(benchmark::internal::Benchmark* b) {
  b->ArgName("N")
      ->Arg(256)
      ->Arg(512)
      ->Arg(1024)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->MeasureProcessCPUTime();
}
BENCHMARK(BM_EigenGemm)->Apply(square_product_runs);
BENCHMARK(BM_LibraryGemm)->Apply(square_product_runs);

}  // namespace

int main(int argc, char** argv) {
  return mlstm_bench::run_benchmarks(
      argc, argv, {{"mlstm_dtype", "float32"}, {"mlstm_shape", "B=1 NH=4 DQK=DV=D"}});
}
