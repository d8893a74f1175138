// The process-wide worker pool behind mlstm/threading.hpp, and parallel_for over work items.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <unsupported/Eigen/CXX11/ThreadPool>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "mlstm/tensor.hpp"

namespace mlstm::detail {

// MLSTM_NUM_THREADS if it holds an integer in [1, max_env_threads], else the hardware's thread
// count (>= 1).
inline constexpr long max_env_threads = 1024;
inline int initial_num_threads() {
  if (const char* text = std::getenv("MLSTM_NUM_THREADS")) {
    char* end = nullptr;
    const long value = std::strtol(text, &end, 10);
    if (end != text && *end == '\0' && value >= 1 && value <= max_env_threads)
      return static_cast<int>(value);
  }
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

inline std::atomic<int>& default_num_threads() {
  static std::atomic<int> count{initial_num_threads()};
  return count;
}

// A pool with at least `workers` threads. The pool is replaced by a larger one when a call asks
// for more; a call keeps the pool it got alive until it returns, so replacing is safe while
// other calls run.
inline std::shared_ptr<Eigen::ThreadPool> worker_pool(int workers) {
  static std::mutex mutex;
  static std::shared_ptr<Eigen::ThreadPool> pool;
  std::lock_guard<std::mutex> lock(mutex);
  if (!pool || pool->NumThreads() < workers) pool = std::make_shared<Eigen::ThreadPool>(workers);
  return pool;
}

// True on a thread that is running items of a parallel_for (the caller's or a worker's).
inline bool& inside_parallel_for() {
  thread_local bool inside = false;
  return inside;
}

// While alive, Eigen's matrix products on this thread run on this thread alone. In a program
// built with -fopenmp, Eigen runs a large product on omp_get_max_threads() OpenMP threads of the
// thread that calls it; inside mlstm's threads that would start an OpenMP team in each of them
// (measured: the parallel form 50x slower on 2 cores). mlstm already uses the cores it was given,
// and its results must not depend on a thread count, so the items of a parallel_for set this
// thread's OpenMP thread count (an ICV of the thread, not Eigen's global setting) to 1 and
// restore it after. Without OpenMP, Eigen's products are single-threaded and this does nothing.
// (A program that calls Eigen::setNbThreads(n > 1) has chosen Eigen's thread count for every
// thread, and keeps it.)
class SingleThreadedProducts {
 public:
#ifdef _OPENMP
  SingleThreadedProducts() : saved_(omp_get_max_threads()) {
    if (saved_ != 1) omp_set_num_threads(1);
  }
  ~SingleThreadedProducts() {
    if (saved_ != 1) omp_set_num_threads(saved_);
  }

 private:
  int saved_;
#else
  SingleThreadedProducts() {}  // user-provided: a guard, not an unused variable
#endif
  SingleThreadedProducts(const SingleThreadedProducts&) = delete;
  SingleThreadedProducts& operator=(const SingleThreadedProducts&) = delete;
};

// How many threads work of `flops` floating-point operations in `items` independent items is
// worth: at most `threads` and `items`, and about one thread per `min_flops_per_thread`, since
// handing an item to a sleeping worker costs some microseconds.
inline int threads_for_work(int threads, Index items, double flops) {
  constexpr double min_flops_per_thread = 4e5;
  const double by_work = std::max(1.0, flops / min_flops_per_thread);
  return static_cast<int>(std::max<double>(
      1.0, std::min({static_cast<double>(threads), static_cast<double>(items), by_work})));
}

// The tile length that cuts `extent` into tiles of at most `max_tile` and about equal length (a
// multiple of `multiple`, but no more than the extent), as few as possible but an even number
// when more than one: 768 outputs are two tiles of 384 rather than 512 and 256, 1536 four of 384
// rather than three of 512, so that two threads get equal work.
inline Index balanced_tile(Index extent, Index max_tile, Index multiple) {
  Index tiles = (extent + max_tile - 1) / max_tile;
  if (tiles > 1 && tiles % 2 == 1) ++tiles;
  const Index length = (extent + tiles - 1) / tiles;
  return std::min(extent, (length + multiple - 1) / multiple * multiple);
}

// The shared part of one parallel_for: what the helpers need. It lives on the heap and is freed
// by whoever lets go of it last, so that a helper woken after all items are done (it then finds
// none) never touches the caller's stack, and the caller need not wait for it.
struct ParallelForState {
  std::atomic<Index> next{0};      // the next item to hand out
  std::atomic<Index> finished{0};  // items done, or abandoned after an exception
  std::atomic<int> users;          // the caller and the helpers not yet done with this state
  Index count;
  const void* task;  // valid while finished < count
  void (*run_task)(const void* task, Index item);
  std::mutex mutex;  // guards error, and the wake-up of a caller waiting for the last item
  std::condition_variable all_finished;
  std::exception_ptr error;

  ParallelForState(int users_, Index count_, const void* task_, void (*run_)(const void*, Index))
      : users(users_), count(count_), task(task_), run_task(run_) {}

  // Runs items until none is left. An item is only taken while unfinished items remain, so the
  // task is alive whenever it is called.
  void work() {
    for (Index item = next.fetch_add(1); item < count; item = next.fetch_add(1)) {
      Index done = 1;
      try {
        run_task(task, item);
      } catch (...) {
        {
          std::lock_guard<std::mutex> lock(mutex);
          if (!error) error = std::current_exception();
        }
        const Index untaken = count - std::min(count, next.exchange(count));
        done += untaken;  // items nobody will take now count as finished
      }
      if (finished.fetch_add(done, std::memory_order_acq_rel) + done == count) {
        std::lock_guard<std::mutex> lock(mutex);
        all_finished.notify_all();
      }
    }
  }

  // Returns once every item is finished: spins first (the items still running usually end about
  // when the caller's do, and a sleep and wake-up would cost more), then sleeps.
  void wait() {
    for (int spins = 0; spins < 2000; ++spins) {
      if (finished.load(std::memory_order_acquire) >= count) return;
      if (spins >= 1000) std::this_thread::yield();
    }
    std::unique_lock<std::mutex> lock(mutex);
    all_finished.wait(lock, [&] { return finished.load(std::memory_order_acquire) >= count; });
  }

  void release() {
    if (users.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
};

// Counts the parallel_for calls that have handed items to the pool's workers.
inline std::atomic<std::uint64_t>& pool_handouts() {
  static std::atomic<std::uint64_t> count{0};
  return count;
}

// How long a worker that has finished its items stays awake for the next parallel_for: a worker
// asleep in Eigen's pool took 30 to 70 us to wake on a 2-vCPU KVM guest, as long as a typical item
// of a generation step's products, so that the caller did the helper's share itself
// (bench/README.md, "Workers that stay awake between products"). The work of one call is usually
// followed within microseconds by the next one's (a model's layers one after the other).
inline constexpr std::chrono::microseconds worker_linger{300};

// Returns once a parallel_for after the `seen`-th has handed out items (its helpers are queued
// right after: the worker, back in the pool and still awake, takes one), or after worker_linger.
inline void linger_for_next_handout(std::uint64_t seen) {
  const auto deadline = std::chrono::steady_clock::now() + worker_linger;
  while (pool_handouts().load(std::memory_order_acquire) == seen &&
         std::chrono::steady_clock::now() < deadline) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_ia32_pause();  // spin politely: the other hardware thread of the core runs on
#endif
  }
}

// Calls task(item) once for every item in [0, count), on up to `threads` threads: the calling
// thread and threads - 1 pool workers, which take items in turn from a shared counter. Which
// thread runs an item varies; what an item computes must not depend on it. The first exception
// thrown by a task stops the handing out of items and is rethrown here once the items taken are
// done. A parallel_for inside a task runs on its calling thread (no nested waiting on the pool).
// The serial case allocates nothing; the threaded one allocates one small block.
// At most this many threads work on one parallel_for, whatever is asked: Eigen's pool takes
// fewer than 65536, and beyond a few hundred threads only waste memory on any machine.
inline constexpr Index max_parallel_threads = 256;

template <typename Task>
void parallel_for(Index count, int threads, const Task& task) {
  const int helpers =
      static_cast<int>(std::min<Index>({Index(threads), count, max_parallel_threads})) - 1;
  if (helpers <= 0 || inside_parallel_for()) {
    const SingleThreadedProducts single_threaded;
    for (Index item = 0; item < count; ++item) task(item);
    return;
  }
  const std::shared_ptr<Eigen::ThreadPool> pool = worker_pool(helpers);
  auto* state = new ParallelForState(helpers + 1, count, &task, [](const void* erased, Index item) {
    (*static_cast<const Task*>(erased))(item);
  });
  const std::uint64_t handout = pool_handouts().fetch_add(1, std::memory_order_acq_rel) + 1;
  for (int helper = 0; helper < helpers; ++helper) {
    pool->Schedule([state, handout] {
      {
        const SingleThreadedProducts single_threaded;
        inside_parallel_for() = true;
        state->work();
        inside_parallel_for() = false;
      }
      state->release();
      linger_for_next_handout(handout);
    });
  }
  {
    const SingleThreadedProducts single_threaded;
    inside_parallel_for() = true;
    state->work();
    inside_parallel_for() = false;
  }
  state->wait();
  std::exception_ptr error = state->error;
  state->release();
  if (error) std::rethrow_exception(error);
}

// parallel_rows' cost of one value of a pass that only moves values through memory (a copy, a
// residual sum): at a prefill's sizes such a pass took about 0.25 ns per float, what a product
// running at 130 to 150 GFLOP/s per thread spends on 32 to 38 operations (bench_model_layers'
// split stage, S = 128).
inline constexpr double memory_pass_cost_per_value = 32.0;

// Calls task(begin, end) for consecutive ranges of `rows` rows, `block` rows each (the last may be
// shorter), on up to `threads` threads, as many as the work is worth. For row-wise work (norms,
// activations) whose result does not depend on how rows are grouped. `cost_per_row` is in
// threads_for_work's unit, a matrix product's floating-point operation: elementwise code does
// several times fewer per second, so count each element's operations a few times over.
template <typename Task>
void parallel_rows(Index rows, Index block, int threads, double cost_per_row, const Task& task) {
  const Index blocks = (rows + block - 1) / block;
  const double flops = cost_per_row * static_cast<double>(rows);
  parallel_for(blocks, threads_for_work(threads, blocks, flops),
               [&](Index item) { task(item * block, std::min(rows, (item + 1) * block)); });
}

}  // namespace mlstm::detail
