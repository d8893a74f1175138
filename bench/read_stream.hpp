// One pass of reading an array from memory, the way a generation step streams its weights: the
// yardstick of the benchmarks' bandwidth figures.
//
//   ReadStream stream(bytes);       an array of about `bytes` (floats, all one), on transparent
//                                   huge pages where the system grants them (AlignedArray), like
//                                   a model's own matrices
//   double s = stream.pass_seconds();  wall seconds of one pass on the library's threads
//
// Each thread sums contiguous parts in memory order (one stream per thread, like the step's
// kernel), with the compiler's widest vector loads. The sums are kept, so the reads are not
// optimized away.
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

class ReadStream {
 public:
  explicit ReadStream(mlstm::Index bytes)
      : size_(std::max<mlstm::Index>(bytes / static_cast<mlstm::Index>(sizeof(float)), parts)),
        data_(size_),
        sums_(parts) {
    std::fill(data_.data(), data_.data() + size_, 1.0f);
  }

  mlstm::Index bytes() const { return size_ * static_cast<mlstm::Index>(sizeof(float)); }

  double pass_seconds() {
    const auto start = std::chrono::steady_clock::now();
    mlstm::detail::parallel_for(parts, mlstm::get_num_threads(), [&](mlstm::Index part) {
      const mlstm::Index begin = part * size_ / parts;
      const mlstm::Index end = (part + 1) * size_ / parts;
      sums_[part] = Eigen::Map<const Eigen::ArrayXf>(data_.data() + begin, end - begin).sum();
    });
    benchmark::DoNotOptimize(sums_.data());
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

 private:
  static constexpr mlstm::Index parts = 32;  // items of the pool: a few per thread
  mlstm::Index size_;
  mlstm::detail::AlignedArray<float> data_;
  std::vector<float> sums_;
};

}  // namespace mlstm_bench
