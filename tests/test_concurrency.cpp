// Kernels called from several user threads at once, while another thread changes the library's
// default thread count: every call must give the single-threaded result bit for bit (the kernels
// compute each quantity on one thread in a fixed order, whatever the count). Also built alone
// with ThreadSanitizer (scripts/run-tests --tsan), which checks the thread pool, the default
// thread count and a model's kept inference buffers for data races.
#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <mlstm/mlstm.hpp>

#include "support/random_inputs.hpp"
#include "support/seeded_model.hpp"

using mlstm::Index;
using mlstm::Tensor;

namespace {

template <typename X>
bool same_bits(const X& a, const X& b) {
  return a.dimensions() == b.dimensions() &&
         std::memcmp(a.data(), b.data(), sizeof(*a.data()) * static_cast<std::size_t>(a.size())) ==
             0;
}

// Position `t` of a sequence tensor, as a one-step tensor.
Tensor<float, 4> at_step(const Tensor<float, 4>& x, Index t) {
  return x.slice(std::array<Index, 4>{0, 0, t, 0},
                 std::array<Index, 4>{x.dimension(0), x.dimension(1), 1, x.dimension(3)});
}

// Restores the library's default thread count when the test ends.
class SavedThreadCount {
 public:
  SavedThreadCount() : saved_(mlstm::get_num_threads()) {}
  ~SavedThreadCount() { mlstm::set_num_threads(saved_); }

 private:
  int saved_;
};

}  // namespace

TEST_CASE(
    "kernels called from several threads while the thread count changes equal one thread's "
    "results bit for bit",
    "[threads]") {
  const SavedThreadCount saved;
  // Three batch-heads: 1 and 3 threads take whole heads, 2 threads the chunkwise form's segments.
  const mlstm::test::SequenceCase<float> c(1, 3, 40, 8, 8, 31, {-4, 4}, {-2, 6});
  const Index last = c.q.dimension(2) - 1;
  const Tensor<float, 4> q_t = at_step(c.q, last), k_t = at_step(c.k, last),
                         v_t = at_step(c.v, last), i_t = at_step(c.igate, last),
                         f_t = at_step(c.fgate, last);

  mlstm::ParallelOptions parallel_options;
  mlstm::ChunkwiseOptions chunkwise_options;
  chunkwise_options.chunk_size = 8;
  const auto parallel = [&](int threads) {
    mlstm::ParallelOptions options = parallel_options;
    options.num_threads = threads;
    return mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
  };
  const auto chunkwise = [&](int threads) {
    mlstm::ChunkwiseOptions options = chunkwise_options;
    options.num_threads = threads;
    return mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
  };
  const auto prefix = chunkwise(1).state;
  const auto step = [&](int threads) {
    return mlstm::recurrent_step_stabilized(prefix.c, prefix.n, prefix.m, q_t, k_t, v_t, i_t, f_t,
                                            {1e-6, threads});
  };
  const auto parallel_one = parallel(1);
  const auto chunkwise_one = chunkwise(1);
  const auto step_one = step(1);

  // Each check runs one kernel with the default thread count (0) and compares.
  const std::vector<std::function<bool()>> checks = {
      [&] { return same_bits(parallel(0), parallel_one); },
      [&] {
        const auto result = chunkwise(0);
        return same_bits(result.h, chunkwise_one.h) &&
               same_bits(result.state.c, chunkwise_one.state.c) &&
               same_bits(result.state.n, chunkwise_one.state.n) &&
               same_bits(result.state.m, chunkwise_one.state.m);
      },
      [&] {
        const auto result = step(0);
        return same_bits(result.h, step_one.h) && same_bits(result.state.c, step_one.state.c) &&
               same_bits(result.state.n, step_one.state.n) &&
               same_bits(result.state.m, step_one.state.m);
      },
  };

  constexpr int users = 3, calls_per_user = 100;
  std::atomic<bool> done{false};
  std::atomic<int> mismatches{0}, calls{0}, changes{0};
  std::mutex failure_mutex;
  std::exception_ptr failure;
  std::thread changer([&] {
    for (int count = 0; !done.load(); ++count) {
      mlstm::set_num_threads(1 + count % 3);
      changes.fetch_add(1);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> callers;
  for (int user = 0; user < users; ++user) {
    callers.emplace_back([&, user] {
      try {
        for (int call = 0; call < calls_per_user; ++call) {
          if (!checks[static_cast<std::size_t>((user + call) % 3)]()) mismatches.fetch_add(1);
          calls.fetch_add(1);
        }
      } catch (...) {
        const std::lock_guard<std::mutex> lock(failure_mutex);
        failure = std::current_exception();
      }
    });
  }
  for (std::thread& caller : callers) caller.join();
  done.store(true);
  changer.join();

  if (failure) std::rethrow_exception(failure);
  CHECK(calls.load() == users * calls_per_user);
  CHECK(mismatches.load() == 0);
  CHECK(changes.load() > 0);
}

// A model keeps its inference buffers between calls; calls from several threads at once on one
// model (one holds the kept buffers, the others use their own) give one call's results bit for
// bit, at alternating prompt lengths so that the kept buffers are resized between calls.
TEST_CASE("prefills from several threads on one model equal one call's results bit for bit",
          "[threads][model]") {
  mlstm::KernelOptions options;
  options.num_threads = 2;
  const auto model = mlstm::test::seeded_model({64, 32, 2, 16}, options, 5);
  const Index lengths[2] = {9, 14};
  std::vector<Tensor<int, 2>> prompts;
  std::vector<Tensor<float, 3>> expected;
  for (const Index length : lengths) {
    Tensor<int, 2> prompt(2, length);
    for (Index i = 0; i < prompt.size(); ++i) prompt.data()[i] = static_cast<int>((i * 13) % 64);
    auto state = model.initial_state(2);
    expected.push_back(model.prefill(prompt, state));
    prompts.push_back(prompt);
  }

  constexpr int users = 3, calls_per_user = 20;
  std::atomic<int> mismatches{0}, calls{0};
  std::mutex failure_mutex;
  std::exception_ptr failure;
  std::vector<std::thread> callers;
  for (int user = 0; user < users; ++user) {
    callers.emplace_back([&, user] {
      try {
        auto state = model.initial_state(2);
        for (int call = 0; call < calls_per_user; ++call) {
          const std::size_t which = static_cast<std::size_t>((user + call) % 2);
          state.set_zero();
          if (!same_bits(model.prefill(prompts[which], state), expected[which]))
            mismatches.fetch_add(1);
          calls.fetch_add(1);
        }
      } catch (...) {
        const std::lock_guard<std::mutex> lock(failure_mutex);
        failure = std::current_exception();
      }
    });
  }
  for (std::thread& caller : callers) caller.join();

  if (failure) std::rethrow_exception(failure);
  CHECK(calls.load() == users * calls_per_user);
  CHECK(mismatches.load() == 0);
}
