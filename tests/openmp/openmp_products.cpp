// Built twice, without and with -fopenmp (tests/CMakeLists.txt): runs the parallel and chunkwise
// forms and a linear layer on two threads and writes their results to the file named by its
// argument, which the test compares byte for byte between the two builds. The OpenMP build also
// checks that Eigen's products inside mlstm's threads (the caller's and the workers') run on one
// thread while the program's own OpenMP thread count is 4.
#include <Eigen/Core>
#include <cstdio>
#include <fstream>
#include <mlstm/layers/linear.hpp>
#include <mlstm/mlstm.hpp>
#include <mutex>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using mlstm::Index;
using Tensor4 = mlstm::Tensor<float, 4>;

template <typename X>
void fill(X& x, float scale, float offset) {
  for (Index i = 0; i < x.size(); ++i)
    x.data()[i] = offset + scale * static_cast<float>((i * 7919) % 211) / 211.0f;
}

template <typename X>
void write(std::ofstream& file, const X& x) {
  file.write(reinterpret_cast<const char*>(x.data()),
             static_cast<std::streamsize>(x.size() * sizeof(float)));
}

#ifdef _OPENMP
// Whether every item of a two-thread parallel_for sees Eigen's product thread count at 1.
bool products_single_threaded_in_items() {
  std::mutex mutex;
  int largest = 0;
  mlstm::detail::parallel_for(64, 2, [&](Index) {
    const int threads = Eigen::nbThreads();
    std::lock_guard<std::mutex> lock(mutex);
    largest = std::max(largest, threads);
  });
  mlstm::detail::parallel_for(4, 1,
                              [&](Index) { largest = std::max(largest, Eigen::nbThreads()); });
  return largest == 1;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT\n", argv[0]);
    return 2;
  }
#ifdef _OPENMP
  omp_set_num_threads(4);
  if (Eigen::nbThreads() != 4) {
    std::fprintf(stderr, "Eigen does not follow the OpenMP thread count (%d)\n",
                 Eigen::nbThreads());
    return 1;
  }
  if (!products_single_threaded_in_items()) {
    std::fprintf(stderr, "Eigen's products inside mlstm's threads are not single-threaded\n");
    return 1;
  }
  if (Eigen::nbThreads() != 4) {
    std::fprintf(stderr, "the program's OpenMP thread count was not restored\n");
    return 1;
  }
#endif
  mlstm::set_num_threads(2);
  const Index B = 1, NH = 2, S = 384, D = 96;
  Tensor4 q(B, NH, S, D), k(B, NH, S, D), v(B, NH, S, D), i(B, NH, S, 1), f(B, NH, S, 1);
  fill(q, 2.0f, -1.0f);
  fill(k, 2.0f, -1.0f);
  fill(v, 2.0f, -1.0f);
  fill(i, 2.0f, -1.0f);
  fill(f, 2.0f, 2.5f);
  const Tensor4 h_parallel = mlstm::parallel_stabilized(q, k, v, i, f);
  const auto chunkwise = mlstm::chunkwise_stabilized(q, k, v, i, f);
  mlstm::Tensor<float, 2> x(320, 256), w(600, 256);
  fill(x, 2.0f, -1.0f);
  fill(w, 0.2f, -0.1f);
  const mlstm::Tensor<float, 2> y = mlstm::linear_forward(x, w);

  std::ofstream file(argv[1], std::ios::binary);
  write(file, h_parallel);
  write(file, chunkwise.h);
  write(file, y);
  return file.good() ? 0 : 1;
}
