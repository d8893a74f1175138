// The machine's read bandwidth, registered in every benchmark program that includes this header,
// so that a rate of weights read (bytes/s of a generation step) is compared with it in the same
// run:
//
//   BM_read_bandwidth   sums a 512 MiB float array on the library's threads (64 parts); bytes/s
//                       is the rate at which weights can stream from memory here.
//
// Include it from one source file per program (it registers the benchmark).
#pragma once

#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <vector>

#include <mlstm/tensor.hpp>
#include <mlstm/threading.hpp>

namespace mlstm_bench {

inline void BM_read_bandwidth(benchmark::State& state) {
  using mlstm::Index;
  const Index size = Index(1) << 27;  // 512 MiB of floats, far beyond the last-level cache
  const std::vector<float> data(static_cast<std::size_t>(size), 1.0f);
  const Index parts = 64;
  const int threads = mlstm::get_num_threads();
  std::vector<float> sums(parts);
  for (auto _ : state) {
    mlstm::detail::parallel_for(parts, threads, [&](Index part) {
      const Index begin = part * (size / parts);
      sums[part] = Eigen::Map<const Eigen::ArrayXf>(data.data() + begin, size / parts).sum();
    });
    benchmark::DoNotOptimize(sums.data());
  }
  state.SetBytesProcessed(state.iterations() * size * static_cast<Index>(sizeof(float)));
  state.counters["threads"] = threads;
}
BENCHMARK(BM_read_bandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace mlstm_bench
