// The process's peak resident memory, for the benchmarks' memory counters.
#pragma once

#include <sys/resource.h>

namespace mlstm_bench {

// getrusage's maximum resident set of the process so far, in bytes (Linux reports kilobytes).
inline double peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0;
}

}  // namespace mlstm_bench
