// The machine's read bandwidth, registered in every benchmark program that includes this header,
// so that a rate of weights read (bytes/s of a generation step) is compared with it in the same
// run:
//
//   BM_read_bandwidth   sums a 512 MiB float array on the library's threads; bytes/s is the rate
//                       at which weights can stream from memory here, and the counter
//                       best_bytes_per_second the fastest single pass of the run (the ceiling
//                       the comparison scripts divide by).
//
// Each thread sums contiguous parts in memory order (one stream per thread, like the step's
// kernel), with the compiler's widest vector loads. The array is the library's AlignedArray, on
// transparent huge pages where the system grants them, like a model's own matrices. Each timed
// iteration makes `passes` passes over the array and counts the fastest (manual time): a pass
// slowed by another process on the machine does not lower the ceiling, so the rate is stable from
// run to run and is not below what the step's kernel itself reads. On a loaded machine the load
// changes over seconds, so the fastest pass of the whole run is reported too.
//
// Include it from one source file per program (it registers the benchmark).
#pragma once

#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <vector>

#include <mlstm/detail/aligned_array.hpp>
#include <mlstm/tensor.hpp>
#include <mlstm/threading.hpp>

namespace mlstm_bench {

inline void BM_read_bandwidth(benchmark::State& state) {
  using mlstm::Index;
  constexpr Index size = Index(1) << 27;  // 512 MiB of floats, far beyond the last-level cache
  constexpr Index parts = 32;             // 16 MiB each
  constexpr int passes = 4;
  mlstm::detail::AlignedArray<float> data(size);
  std::fill(data.data(), data.data() + size, 1.0f);
  const int threads = mlstm::get_num_threads();
  std::vector<float> sums(parts);
  double fastest_of_run = 0.0;
  for (auto _ : state) {
    double fastest = 0.0;
    for (int pass = 0; pass < passes; ++pass) {
      const auto start = std::chrono::steady_clock::now();
      mlstm::detail::parallel_for(parts, threads, [&](Index part) {
        const Index begin = part * (size / parts);
        sums[part] = Eigen::Map<const Eigen::ArrayXf>(data.data() + begin, size / parts).sum();
      });
      benchmark::DoNotOptimize(sums.data());
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      fastest = pass == 0 ? seconds : std::min(fastest, seconds);
    }
    state.SetIterationTime(fastest);
    if (fastest_of_run == 0.0 || fastest < fastest_of_run) fastest_of_run = fastest;
  }
  const Index bytes = size * static_cast<Index>(sizeof(float));
  state.SetBytesProcessed(state.iterations() * bytes);
  if (fastest_of_run > 0.0)
    state.counters["best_bytes_per_second"] = static_cast<double>(bytes) / fastest_of_run;
  state.counters["threads"] = threads;
  state.counters["passes"] = passes;
}
BENCHMARK(BM_read_bandwidth)->Unit(benchmark::kMillisecond)->UseManualTime();

}  // namespace mlstm_bench
