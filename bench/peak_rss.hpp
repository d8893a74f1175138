// The process's peak resident memory, for the benchmarks' memory counters.
#pragma once

#include <sys/resource.h>

#include <fstream>
#include <string>

namespace mlstm_bench {

// The peak resident set of this program so far, in bytes: VmHWM of /proc/self/status where
// there is one (Linux), else getrusage's ru_maxrss. Linux's ru_maxrss carries over the peak of
// the process image before exec, so a benchmark started from a large process (a Python script
// holding a PyTorch model) would report that process's memory as its own; VmHWM belongs to the
// program's own address space.
inline double peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) * 1024.0;  // in kB
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0;  // kilobytes on Linux
}

}  // namespace mlstm_bench
