// The machine's read bandwidth, registered in every benchmark program that includes this header,
// so that a rate of weights read (bytes/s of a generation step) is compared with it in the same
// run:
//
//   BM_read_bandwidth   sums a 512 MiB float array on the library's threads; bytes/s is the rate
//                       at which weights can stream from memory here, and the counter
//                       best_bytes_per_second the fastest single pass of the run (the ceiling
//                       the comparison scripts divide by).
//
// The pass is ReadStream's (read_stream.hpp), over an array of 512 MiB, far beyond the last-level
// cache. Each timed iteration makes `passes` passes over the array and counts the fastest (manual
// time): a pass slowed by another process on the machine does not lower the ceiling, so the rate
// is stable from run to run and is not below what the step's kernel itself reads. On a loaded
// machine the load changes over seconds, so the fastest pass of the whole run is reported too.
//
// Include it from one source file per program (it registers the benchmark).
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>

#include <mlstm/threading.hpp>

#include "read_stream.hpp"

namespace mlstm_bench {

inline void BM_read_bandwidth(benchmark::State& state) {
  constexpr mlstm::Index bytes = mlstm::Index(1) << 29;  // 512 MiB
  constexpr int passes = 4;
  ReadStream stream(bytes);
  double fastest_of_run = 0.0;
  for (auto _ : state) {
    double fastest = stream.pass_seconds();
    for (int pass = 1; pass < passes; ++pass) fastest = std::min(fastest, stream.pass_seconds());
    state.SetIterationTime(fastest);
    if (fastest_of_run == 0.0 || fastest < fastest_of_run) fastest_of_run = fastest;
  }
  state.SetBytesProcessed(state.iterations() * stream.bytes());
  if (fastest_of_run > 0.0)
    state.counters["best_bytes_per_second"] = static_cast<double>(stream.bytes()) / fastest_of_run;
  state.counters["threads"] = mlstm::get_num_threads();
  state.counters["passes"] = passes;
}
BENCHMARK(BM_read_bandwidth)->Unit(benchmark::kMillisecond)->UseManualTime();

}  // namespace mlstm_bench
