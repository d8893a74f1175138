// Threads: results do not depend on the thread count (parallel, chunkwise on both of its paths,
// recurrent), the library default, parallel_for itself, and the validation of thread counts.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include <mlstm/mlstm.hpp>

#include "support/errors.hpp"
#include "support/random_inputs.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::test::SequenceCase;

// Sets the library default thread count for one scope.
class DefaultThreads {
 public:
  explicit DefaultThreads(int count) : saved_(mlstm::get_num_threads()) {
    mlstm::set_num_threads(count);
  }
  ~DefaultThreads() { mlstm::set_num_threads(saved_); }
  DefaultThreads(const DefaultThreads&) = delete;
  DefaultThreads& operator=(const DefaultThreads&) = delete;

 private:
  int saved_;
};

// Runs a parallel_for of two items on 2 threads in which each item waits until both have started,
// so the call completes only if a worker takes the second item; returns how many distinct threads
// ran the items.
std::size_t rendezvous_of_two_items() {
  std::mutex mutex;
  std::set<std::thread::id> seen;
  std::atomic<int> arrived{0};
  mlstm::detail::parallel_for(2, 2, [&](Index) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      seen.insert(std::this_thread::get_id());
    }
    ++arrived;
    while (arrived < 2) std::this_thread::yield();
  });
  return seen.size();
}

}  // namespace

TEST_CASE("results do not depend on the number of threads", "[threads]") {
  SequenceCase<float> c(2, 3, 600, 16, 8, 12, {-8, 8}, {-4, 8});
  mlstm::Mask mask = mlstm::causal_mask(600);
  for (Index t = 0; t < 600; t += 5) mask(t, std::min<Index>(599, t + 17)) = true;

  auto parallel = [&](int threads, bool rowwise, bool masked) {
    mlstm::ParallelOptions options;
    options.num_threads = threads;
    options.stabilize_rowwise = rowwise;
    if (masked) options.mask = mask;
    return mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
  };
  auto recurrent = [&](int threads) {
    return mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate, {1e-6, threads});
  };
  for (const bool rowwise : {true, false}) {
    for (const bool masked : {false, true}) {
      CAPTURE(rowwise, masked);
      const auto one = parallel(1, rowwise, masked);
      for (const int threads : {2, 3})
        MLSTM_CHECK_CLOSE(parallel(threads, rowwise, masked), one, 0.0);
    }
  }
  const auto recurrent_one = recurrent(1);
  // Six batch-heads share out evenly over 1, 2 and 3 threads (one batch-head per item); three
  // over 2 threads do not (chunks of segments per item).
  for (const Index batch : {2, 1}) {
    const SequenceCase<float> heads(batch, 3, 600, 16, 8, 13, {-8, 8}, {-4, 8});
    auto chunkwise_on = [&](int threads) {
      mlstm::ChunkwiseOptions options;
      options.num_threads = threads;
      options.chunk_size = 32;
      return mlstm::chunkwise_stabilized(heads.q, heads.k, heads.v, heads.igate, heads.fgate,
                                         options);
    };
    const auto chunkwise_one = chunkwise_on(1);
    for (const int threads : {2, 3}) {
      CAPTURE(batch, threads);
      const auto chunkwise_many = chunkwise_on(threads);
      MLSTM_CHECK_CLOSE(chunkwise_many.h, chunkwise_one.h, 0.0);
      MLSTM_CHECK_CLOSE(chunkwise_many.state.c, chunkwise_one.state.c, 0.0);
      MLSTM_CHECK_CLOSE(chunkwise_many.state.n, chunkwise_one.state.n, 0.0);
      MLSTM_CHECK_CLOSE(chunkwise_many.state.m, chunkwise_one.state.m, 0.0);
    }
  }
  for (const int threads : {2, 3}) {
    CAPTURE(threads);
    const auto recurrent_many = recurrent(threads);
    MLSTM_CHECK_CLOSE(recurrent_many.h, recurrent_one.h, 0.0);
    MLSTM_CHECK_CLOSE(recurrent_many.state.c, recurrent_one.state.c, 0.0);
  }
  // The library default applies when an option leaves the count at 0.
  DefaultThreads three(3);
  MLSTM_CHECK_CLOSE(parallel(0, true, false), parallel(1, true, false), 0.0);
}

TEST_CASE("parallel_for runs every item once and passes on the first exception", "[threads]") {
  for (const int threads : {1, 2, 3, 8}) {
    CAPTURE(threads);
    std::vector<std::atomic<int>> runs(1000);
    mlstm::detail::parallel_for(1000, threads, [&](Index item) { ++runs[item]; });
    CHECK(std::all_of(runs.begin(), runs.end(), [](const std::atomic<int>& r) { return r == 1; }));
    CHECK_THROWS_AS(mlstm::detail::parallel_for(100, threads,
                                                [](Index item) {
                                                  if (item == 37) throw std::runtime_error("37");
                                                }),
                    std::runtime_error);
  }
  // Several threads do take part when asked.
  CHECK(rendezvous_of_two_items() == 2);
  // A parallel_for inside a task runs on that task's thread.
  std::atomic<int> inner{0};
  mlstm::detail::parallel_for(
      4, 2, [&](Index) { mlstm::detail::parallel_for(10, 2, [&](Index) { ++inner; }); });
  CHECK(inner == 40);
}

// After its items a worker stays awake until the next call hands out items (or a while passes):
// it must then take part in that call, and calls from several threads at once must each still
// run every item once.
TEST_CASE("back-to-back parallel_for calls keep their workers and their items", "[threads]") {
  // Each call needs a worker besides the caller: a worker that kept waiting for a handout it had
  // missed would hang the second call.
  for (int call = 0; call < 50; ++call) REQUIRE(rendezvous_of_two_items() == 2);
  constexpr int callers = 4, calls = 200, items = 8;
  std::vector<std::atomic<int>> runs(callers * calls * items);
  std::vector<std::thread> threads;
  for (int caller = 0; caller < callers; ++caller) {
    threads.emplace_back([&runs, caller] {
      for (int call = 0; call < calls; ++call) {
        const Index first = (Index(caller) * calls + call) * items;
        mlstm::detail::parallel_for(items, 3, [&](Index item) { ++runs[first + item]; });
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(std::all_of(runs.begin(), runs.end(), [](const std::atomic<int>& r) { return r == 1; }));
}

TEST_CASE("thread counts are validated", "[threads][errors]") {
  CHECK_THROWS_AS(mlstm::set_num_threads(0), mlstm::ValueError);
  mlstm::test::expect_error<mlstm::ValueError>([] { mlstm::set_num_threads(-2); }, "num_threads");
  {
    DefaultThreads two(2);
    CHECK(mlstm::get_num_threads() == 2);
  }
  SequenceCase<float> c(1, 1, 8, 4, 4, 1);
  mlstm::ParallelOptions parallel_options;
  parallel_options.num_threads = -1;
  mlstm::test::expect_error<mlstm::ValueError>(
      [&] { mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, parallel_options); },
      "options.num_threads");
  mlstm::ChunkwiseOptions chunkwise_options;
  chunkwise_options.num_threads = -1;
  CHECK_THROWS_AS(mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, chunkwise_options),
                  mlstm::ValueError);
  CHECK_THROWS_AS(mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate, {1e-6, -1}),
                  mlstm::ValueError);
}
