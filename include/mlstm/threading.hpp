// How many threads the kernels use.
//
//   mlstm::set_num_threads(4);          // library-wide default for every later call
//   mlstm::ParallelOptions options;
//   options.num_threads = 1;            // per-call override (0 = the library-wide default)
//
// The default is the environment variable MLSTM_NUM_THREADS when it holds a positive integer,
// otherwise std::thread::hardware_concurrency(). A count is an upper bound: a call uses fewer
// threads when it has less independent work than that (a single recurrent step of a few heads
// runs on the calling thread alone, because waking a worker costs more than the step).
//
// Results never depend on the number of threads: each unit of work (a batch-head, a row tile of
// a head, a chunk of a head) is computed by one thread in a fixed order, and no sum is ever split
// across threads.
//
// Mechanism: a process-wide Eigen::ThreadPool (Eigen's own non-blocking work-stealing pool from
// <unsupported/Eigen/CXX11/ThreadPool>), shared by all calls; the calling thread works too, so
// n threads means the caller plus n - 1 pool workers. Eigen is already a dependency, so this
// adds none, and it needs no compiler flag or runtime library in the consumer (OpenMP would make
// every consumer compile and link with -fopenmp and can clash with another OpenMP runtime in the
// same process). Calls from several user threads at once are safe; a kernel called from inside
// another kernel's work runs on its calling thread.
//
// Eigen's own matrix products, which the kernels call on small tiles, stay single-threaded, also
// in a program compiled with -fopenmp (where Eigen would otherwise start an OpenMP team inside
// each of our threads): see detail::SingleThreadedProducts.
#pragma once

#include <string>

#include "mlstm/detail/thread_pool.hpp"
#include "mlstm/errors.hpp"

namespace mlstm {

// Sets the library-wide default number of threads (>= 1) of every later call that does not
// override it. Throws ValueError for a count below 1.
inline void set_num_threads(int num_threads) {
  if (num_threads < 1) {
    throw ValueError("num_threads",
                     "expected a thread count >= 1, got " + std::to_string(num_threads));
  }
  detail::default_num_threads().store(num_threads);
}

// The library-wide default number of threads.
inline int get_num_threads() { return detail::default_num_threads().load(); }

namespace detail {

// The thread count of one call: `requested` (from an options struct; 0 = the library default).
// `name` names the option in the ValueError thrown for a negative count.
inline int resolve_num_threads(int requested, const char* name) {
  if (requested < 0) {
    throw ValueError(name, "expected 0 (the library default) or a thread count >= 1, got " +
                               std::to_string(requested));
  }
  return requested == 0 ? get_num_threads() : requested;
}

}  // namespace detail
}  // namespace mlstm
