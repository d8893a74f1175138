// The optimised kernels against the plain loops of tests/support/naive.hpp and against each
// other: the tiled parallel form across tile edges and masks, the chunkwise form with and
// without an initial state, results independent of the thread count, the backend's choice of
// kernel, and the errors of the new options.
//
// Tile sizes: the parallel form walks tiles of detail::parallel_tile_rows rows and
// detail::parallel_tile_columns columns, so sequences of 255..520 steps cross row tiles, column
// tiles and the diagonal at every offset.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>

#include <limits>
#include <cmath>
#include <mlstm/mlstm.hpp>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/naive.hpp"
#include "support/plain_expectation.hpp"
#include "support/random_inputs.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;
using mlstm::test::GateRange;
using mlstm::test::SequenceCase;

struct Sizes {
  Index B, NH, S, DQK, DV;
};

struct Gates {
  const char* name;
  GateRange igate, fgate;
};

const Gates gate_sweep[] = {
    {"typical", {-3, 3}, {0, 6}},
    {"wide", {-40, 40}, {-40, 40}},
    {"forget near 1", {-5, 5}, {15, 30}},
    {"forget near 0", {-5, 5}, {-30, -15}},
};

template <typename T>
double forms_budget(const Tensor<T, 4>& reference) {
  return mlstm::test::forms_relative<T> * std::max(1.0, mlstm::test::magnitude(reference));
}

// c * exp(m) for c (B, NH, X, Y) and m (B, NH, 1, 1): a state without its stabilizer, the way two
// forms' states are compared.
template <typename T>
Tensor<T, 4> unstabilized(const Tensor<T, 4>& x, const Tensor<T, 4>& m) {
  Tensor<T, 4> out = x;
  for (Index b = 0; b < x.dimension(0); ++b)
    for (Index h = 0; h < x.dimension(1); ++h)
      for (Index i = 0; i < x.dimension(2); ++i)
        for (Index j = 0; j < x.dimension(3); ++j) out(b, h, i, j) *= std::exp(m(b, h, 0, 0));
  return out;
}

template <typename T>
mlstm::RecurrentState<T> random_state(Index B, Index NH, Index DQK, Index DV, std::uint64_t seed) {
  auto state = mlstm::RecurrentState<T>::zeros(B, NH, DQK, DV);
  mlstm::test::Random random(seed);
  random.fill_uniform(state.c, -1, 1);
  random.fill_uniform(state.n, -1, 1);
  random.fill_uniform(state.m, -4, 4);
  return state;
}

// The plain recurrent loops from `initial` over case c, in dtype U: h, c * exp(m), n * exp(m), m.
template <typename U, typename T>
std::vector<Tensor<U, 4>> plain_recurrent(const SequenceCase<T>& c,
                                          const mlstm::RecurrentState<T>& initial) {
  const auto cu = c.template cast<U>();
  mlstm::test::naive::State<U> state{initial.c.template cast<U>(), initial.n.template cast<U>(),
                                     initial.m.template cast<U>()};
  Tensor<U, 4> h =
      mlstm::test::naive::recurrent<U>(cu.q, cu.k, cu.v, cu.igate, cu.fgate, state, U(1e-6));
  return {h, unstabilized(state.c, state.m), unstabilized(state.n, state.m), state.m};
}

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

}  // namespace

TEMPLATE_TEST_CASE("the tiled parallel form matches the plain loops across tile edges",
                   "[parallel][fast]", float, double) {
  static_assert(
      mlstm::detail::parallel_tile_rows == 256 && mlstm::detail::parallel_tile_columns == 128,
      "the sizes below are chosen around these tiles");
  const Sizes sizes[] = {
      {1, 1, 1, 8, 8},      // one step
      {1, 2, 255, 7, 5},    // odd head sizes, one row tile, two column tiles
      {2, 1, 257, 16, 24},  // one step into the second row tile, DQK != DV
      {1, 1, 520, 8, 4},    // three row tiles, five column tiles
  };
  std::uint64_t seed = 10;
  for (const Sizes& z : sizes) {
    for (const Gates& gates : gate_sweep) {
      for (const bool rowwise : {true, false}) {
        CAPTURE(z.B, z.NH, z.S, z.DQK, z.DV, gates.name, rowwise);
        SequenceCase<TestType> c(z.B, z.NH, z.S, z.DQK, z.DV, seed++, gates.igate, gates.fgate);
        mlstm::ParallelOptions options;
        options.stabilize_rowwise = rowwise;
        const auto h = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
        const auto plain = mlstm::test::plain_expectation<TestType>([&](auto dtype) {
          using U = typename decltype(dtype)::type;
          const auto cu = c.template cast<U>();
          return mlstm::test::naive::parallel<U>(cu.q, cu.k, cu.v, cu.igate, cu.fgate, std::nullopt,
                                                 rowwise, U(1e-6));
        });
        MLSTM_CHECK_CLOSE(h, plain.expected, plain.budget);
      }
    }
  }
}

TEMPLATE_TEST_CASE("a given mask, causal or not, is applied across tiles", "[parallel][mask]",
                   float, double) {
  // A sliding window of 40 with a few positions far ahead of the row (non-causal), a row that
  // sees nothing, and whole tiles that see nothing (skipped).
  const Index S = 300;
  SequenceCase<TestType> c(1, 2, S, 8, 6, 77);
  mlstm::Mask mask(S, S);
  for (Index t = 0; t < S; ++t)
    for (Index s = 0; s < S; ++s)
      mask(t, s) = (s <= t && t - s < 40) || (t % 7 == 0 && s == std::min(S - 1, t + 150));
  for (Index s = 0; s < S; ++s) mask(100, s) = false;
  for (const bool rowwise : {true, false}) {
    CAPTURE(rowwise);
    mlstm::ParallelOptions options;
    options.stabilize_rowwise = rowwise;
    options.mask = mask;
    const auto h = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
    const auto plain = mlstm::test::plain_expectation<TestType>([&](auto dtype) {
      using U = typename decltype(dtype)::type;
      const auto cu = c.template cast<U>();
      return mlstm::test::naive::parallel<U>(cu.q, cu.k, cu.v, cu.igate, cu.fgate, mask, rowwise,
                                             U(1e-6));
    });
    MLSTM_CHECK_CLOSE(h, plain.expected, plain.budget);
    for (Index head = 0; head < 2; ++head)
      for (Index j = 0; j < 6; ++j) CHECK(h(0, head, 100, j) == TestType(0));
  }
}

TEMPLATE_TEST_CASE("chunkwise continues a sequence as the plain recurrent loops do",
                   "[chunkwise][fast]", float, double) {
  const Sizes sizes[] = {
      {1, 1, 1, 8, 8},      // one step
      {2, 3, 37, 7, 5},     // odd head sizes, S not a multiple of any chunk size below
      {1, 2, 130, 16, 24},  // DQK != DV, several chunks of 64 and a short last one
  };
  std::uint64_t seed = 500;
  for (const Sizes& z : sizes) {
    for (const Gates& gates : gate_sweep) {
      for (const Index chunk_size : {Index(1), Index(7), Index(64), Index(200)}) {
        for (const bool with_state : {false, true}) {
          CAPTURE(z.B, z.NH, z.S, z.DQK, z.DV, gates.name, chunk_size, with_state);
          SequenceCase<TestType> c(z.B, z.NH, z.S, z.DQK, z.DV, seed++, gates.igate, gates.fgate);
          const auto initial = with_state
                                   ? random_state<TestType>(z.B, z.NH, z.DQK, z.DV, seed++)
                                   : mlstm::RecurrentState<TestType>::zeros(z.B, z.NH, z.DQK, z.DV);
          mlstm::ChunkwiseOptions options;
          options.chunk_size = chunk_size;
          const auto out =
              with_state
                  ? mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options, initial)
                  : mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
          const std::vector<Tensor<TestType, 4>> actual{
              out.h, unstabilized(out.state.c, out.state.m), unstabilized(out.state.n, out.state.m),
              out.state.m};
          const char* names[] = {"h", "c * exp(m)", "n * exp(m)", "m"};
          for (size_t part = 0; part < actual.size(); ++part) {
            CAPTURE(names[part]);
            const auto plain = mlstm::test::plain_expectation<TestType>([&](auto dtype) {
              using U = typename decltype(dtype)::type;
              return plain_recurrent<U>(c, initial)[part];
            });
            MLSTM_CHECK_CLOSE(actual[part], plain.expected, plain.budget);
          }
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("chunkwise agrees with the parallel form when their stabilizers agree",
                   "[chunkwise][parallel]", float, double) {
  // From the zero state the chunkwise (recurrent) m_t also holds the state's term
  // sum_{r<=t} logsigmoid(f_r); with i >= 0 the parallel maximum is never below it (its s = 0
  // term is that sum minus logsigmoid(f_0) plus i_0), so both forms use the same m_t and agree
  // to rounding, lower bound included.
  SequenceCase<TestType> c(1, 2, 300, 16, 8, 31, {0, 5}, {-2, 6});
  const auto parallel = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate);
  for (const Index chunk_size : {Index(1), Index(64), Index(100), Index(512)}) {
    CAPTURE(chunk_size);
    mlstm::ChunkwiseOptions options;
    options.chunk_size = chunk_size;
    const auto out = mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
    MLSTM_CHECK_CLOSE(out.h, parallel, forms_budget(parallel));
  }
}

TEMPLATE_TEST_CASE("a prompt in one chunkwise call, then recurrent steps, is one sequence",
                   "[chunkwise][recurrent]", float, double) {
  const Index B = 2, NH = 2, S = 90, prompt = 70, DQK = 12, DV = 10;
  SequenceCase<TestType> c(B, NH, S, DQK, DV, 8, {-6, 6}, {-2, 8});
  const auto initial = random_state<TestType>(B, NH, DQK, DV, 9);
  const auto whole = mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate, initial);

  auto part = [&](const Tensor<TestType, 4>& x, Index begin, Index end) {
    const std::array<Index, 4> offsets{0, 0, begin, 0};
    const std::array<Index, 4> extents{B, NH, end - begin, x.dimension(3)};
    return Tensor<TestType, 4>(x.slice(offsets, extents));
  };
  mlstm::ChunkwiseOptions options;
  options.chunk_size = 16;
  auto prefix = mlstm::chunkwise_stabilized(part(c.q, 0, prompt), part(c.k, 0, prompt),
                                            part(c.v, 0, prompt), part(c.igate, 0, prompt),
                                            part(c.fgate, 0, prompt), options, initial);
  MLSTM_CHECK_CLOSE(prefix.h, part(whole.h, 0, prompt), forms_budget(whole.h));

  // Continued by the in-place step, one step at a time.
  mlstm::RecurrentState<TestType> state = prefix.state;
  Tensor<TestType, 4> h_step(B, NH, 1, DV);
  for (Index t = prompt; t < S; ++t) {
    mlstm::recurrent_step_stabilized_inplace(state, part(c.q, t, t + 1), part(c.k, t, t + 1),
                                             part(c.v, t, t + 1), part(c.igate, t, t + 1),
                                             part(c.fgate, t, t + 1), h_step);
    CAPTURE(t);
    MLSTM_CHECK_CLOSE(h_step, part(whole.h, t, t + 1), forms_budget(whole.h));
  }
  // And by a second chunkwise call from the first one's state.
  const auto suffix = mlstm::chunkwise_stabilized(part(c.q, prompt, S), part(c.k, prompt, S),
                                                  part(c.v, prompt, S), part(c.igate, prompt, S),
                                                  part(c.fgate, prompt, S), options, prefix.state);
  MLSTM_CHECK_CLOSE(suffix.h, part(whole.h, prompt, S), forms_budget(whole.h));
  const mlstm::RecurrentState<TestType>* ends[] = {&state, &suffix.state};
  for (const auto* end : ends) {
    const Tensor<TestType, 4> c_expected = unstabilized(whole.state.c, whole.state.m);
    MLSTM_CHECK_CLOSE(unstabilized(end->c, end->m), c_expected, forms_budget(c_expected));
    const Tensor<TestType, 4> n_expected = unstabilized(whole.state.n, whole.state.m);
    MLSTM_CHECK_CLOSE(unstabilized(end->n, end->m), n_expected, forms_budget(n_expected));
  }
}

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
    return mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate, 1e-6, threads);
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

TEST_CASE("chunkwise results do not depend on how chunks are grouped or walked",
          "[chunkwise][threads]") {
  // The public call picks the segment length from a memory budget; any length gives the same
  // bits, so that budget is free to change.
  SequenceCase<double> c(1, 2, 203, 7, 5, 4, {-10, 10}, {-5, 10});
  const auto initial = random_state<double>(1, 2, 7, 5, 5);
  const auto in = mlstm::detail::check_sequence_inputs(c.q, c.k, c.v, c.igate, c.fgate);
  const Index chunk_size = 16, chunks = 13;
  auto run = [&](Index segment, int threads) {
    auto out = mlstm::RecurrentState<double>::zeros(1, 2, 7, 5);
    Tensor<double, 4> h(1, 2, 203, 5);
    mlstm::detail::chunkwise_forward<double>(in, chunk_size, segment, 1e-6, threads,
                                             initial.c.data(), initial.n.data(), initial.m.data(),
                                             h.data(), out.c.data(), out.n.data(), out.m.data());
    return std::make_pair(h, out);
  };
  const auto reference = run(chunks, 1);
  // The by-head walk (used when batch-heads share out evenly) gives the same bits too.
  for (const int threads : {1, 2}) {
    auto out = mlstm::RecurrentState<double>::zeros(1, 2, 7, 5);
    Tensor<double, 4> h(1, 2, 203, 5);
    mlstm::detail::chunkwise_forward_by_head<double>(
        in, chunk_size, 1e-6, threads, initial.c.data(), initial.n.data(), initial.m.data(),
        h.data(), out.c.data(), out.n.data(), out.m.data());
    CAPTURE(threads);
    MLSTM_CHECK_CLOSE(h, reference.first, 0.0);
    MLSTM_CHECK_CLOSE(out.c, reference.second.c, 0.0);
    MLSTM_CHECK_CLOSE(out.n, reference.second.n, 0.0);
    MLSTM_CHECK_CLOSE(out.m, reference.second.m, 0.0);
  }
  for (const Index segment : {Index(1), Index(3), Index(5)}) {
    for (const int threads : {1, 2, 3}) {
      CAPTURE(segment, threads);
      const auto other = run(segment, threads);
      MLSTM_CHECK_CLOSE(other.first, reference.first, 0.0);
      MLSTM_CHECK_CLOSE(other.second.c, reference.second.c, 0.0);
      MLSTM_CHECK_CLOSE(other.second.n, reference.second.n, 0.0);
      MLSTM_CHECK_CLOSE(other.second.m, reference.second.m, 0.0);
    }
  }
}

TEST_CASE("a chunk size beyond the sequence is the sequence as one chunk", "[chunkwise]") {
  SequenceCase<double> c(1, 2, 10, 4, 3, 8, {-5, 5}, {-5, 5});
  mlstm::ChunkwiseOptions whole;
  whole.chunk_size = 10;
  const auto reference = mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, whole);
  for (const Index chunk_size : {Index(11), Index(1) << 40, std::numeric_limits<Index>::max()}) {
    CAPTURE(chunk_size);
    mlstm::ChunkwiseOptions options;
    options.chunk_size = chunk_size;
    const auto out = mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
    MLSTM_CHECK_CLOSE(out.h, reference.h, 0.0);
    MLSTM_CHECK_CLOSE(out.state.c, reference.state.c, 0.0);
    MLSTM_CHECK_CLOSE(out.state.m, reference.state.m, 0.0);
  }
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
  // Several threads do take part when asked (items wait until a second thread has arrived).
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
  CHECK(seen.size() == 2);
  // A parallel_for inside a task runs on that task's thread.
  std::atomic<int> inner{0};
  mlstm::detail::parallel_for(
      4, 2, [&](Index) { mlstm::detail::parallel_for(10, 2, [&](Index) { ++inner; }); });
  CHECK(inner == 40);
}

TEST_CASE("thread counts are validated", "[threads][errors]") {
  CHECK_THROWS_AS(mlstm::set_num_threads(0), mlstm::ValueError);
  try {
    mlstm::set_num_threads(-2);
    FAIL("no exception");
  } catch (const mlstm::ValueError& error) {
    CHECK(error.argument() == "num_threads");
  }
  {
    DefaultThreads two(2);
    CHECK(mlstm::get_num_threads() == 2);
  }
  SequenceCase<float> c(1, 1, 8, 4, 4, 1);
  mlstm::ParallelOptions parallel_options;
  parallel_options.num_threads = -1;
  try {
    mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, parallel_options);
    FAIL("no exception");
  } catch (const mlstm::ValueError& error) {
    CHECK(error.argument() == "options.num_threads");
  }
  mlstm::ChunkwiseOptions chunkwise_options;
  chunkwise_options.num_threads = -1;
  CHECK_THROWS_AS(mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, chunkwise_options),
                  mlstm::ValueError);
  CHECK_THROWS_AS(mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate, 1e-6, -1),
                  mlstm::ValueError);
}

TEST_CASE("the chunkwise form rejects bad arguments before writing anything",
          "[chunkwise][errors]") {
  SequenceCase<double> c(2, 2, 10, 4, 3, 2);
  mlstm::ChunkwiseOptions options;
  options.chunk_size = 0;
  try {
    mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
    FAIL("no exception");
  } catch (const mlstm::ValueError& error) {
    CHECK(error.argument() == "options.chunk_size");
  }
  options.chunk_size = 4;
  options.eps = 0.0;
  try {
    mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
    FAIL("no exception");
  } catch (const mlstm::ValueError& error) {
    CHECK(error.argument() == "options.eps");
  }
  options.eps = 1e-6;
  auto wrong = mlstm::RecurrentState<double>::zeros(2, 2, 3, 4);  // DQK and DV swapped
  try {
    mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options, wrong);
    FAIL("no exception");
  } catch (const mlstm::ShapeError& error) {
    CHECK(error.argument() == "initial_state.c");
    CHECK(std::string(error.what()).find("(2, 2, 4, 3)") != std::string::npos);
  }
  auto state = mlstm::RecurrentState<double>::zeros(2, 2, 4, 3);
  state.m(1, 0, 0, 0) = std::nan("");
  CHECK_THROWS_AS(mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options, state),
                  mlstm::ValueError);
  Tensor<double, 4> short_gate(2, 2, 9, 1);
  short_gate.setZero();
  CHECK_THROWS_AS(mlstm::chunkwise_stabilized(c.q, c.k, c.v, short_gate, c.fgate, options),
                  mlstm::ShapeError);
  // nullopt is the zero state.
  const auto from_nullopt = mlstm::chunkwise_stabilized(
      c.q, c.k, c.v, c.igate, c.fgate, options, std::optional<mlstm::RecurrentState<double>>{});
  const auto from_zero = mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
  MLSTM_CHECK_CLOSE(from_nullopt.h, from_zero.h, 0.0);
}

TEST_CASE("the backend chooses the kernel by mode and configuration", "[backend]") {
  const Index B = 1, NH = 2, S = 50, DQK = 8, DV = 6;
  SequenceCase<double> c(B, NH, S, DQK, DV, 21);
  const auto initial = random_state<double>(B, NH, DQK, DV, 22);
  mlstm::ChunkwiseOptions chunk16;
  chunk16.chunk_size = 16;

  mlstm::BackendConfig config;
  const auto parallel = mlstm::Backend(config).run(c.q, c.k, c.v, c.igate, c.fgate);
  MLSTM_CHECK_CLOSE(parallel.h, mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate), 0.0);
  CHECK_FALSE(parallel.last_state.has_value());

  config.kernel = mlstm::SequenceKernel::chunkwise;
  config.chunk_size = 16;
  const auto chunkwise = mlstm::Backend(config).run(c.q, c.k, c.v, c.igate, c.fgate, initial);
  const auto expected =
      mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, chunk16, initial);
  MLSTM_CHECK_CLOSE(chunkwise.h, expected.h, 0.0);
  CHECK_FALSE(chunkwise.last_state.has_value());
  config.return_last_state = true;
  const auto with_state = mlstm::Backend(config).run(c.q, c.k, c.v, c.igate, c.fgate, initial);
  REQUIRE(with_state.last_state.has_value());
  MLSTM_CHECK_CLOSE(with_state.last_state->c, expected.state.c, 0.0);

  config.kernel = mlstm::SequenceKernel::recurrent;
  const auto recurrent = mlstm::Backend(config).run(c.q, c.k, c.v, c.igate, c.fgate, initial);
  const auto recurrent_expected =
      mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate, initial);
  MLSTM_CHECK_CLOSE(recurrent.h, recurrent_expected.h, 0.0);
  REQUIRE(recurrent.last_state.has_value());
  MLSTM_CHECK_CLOSE(recurrent.last_state->m, recurrent_expected.state.m, 0.0);

  // Inference: the chunkwise kernel for a prompt, a recurrent step for S = 1; always the state.
  config = mlstm::BackendConfig{};
  config.mode = mlstm::BackendMode::inference;
  config.chunk_size = 16;
  const mlstm::Backend inference(config);
  const auto prompt = inference.run(c.q, c.k, c.v, c.igate, c.fgate);
  const auto prompt_expected =
      mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, chunk16);
  MLSTM_CHECK_CLOSE(prompt.h, prompt_expected.h, 0.0);
  REQUIRE(prompt.last_state.has_value());
  SequenceCase<double> next(B, NH, 1, DQK, DV, 23);
  const auto step =
      inference.run(next.q, next.k, next.v, next.igate, next.fgate, *prompt.last_state);
  const auto step_expected = mlstm::recurrent_step_stabilized(
      prompt.last_state->c, prompt.last_state->n, prompt.last_state->m, next.q, next.k, next.v,
      next.igate, next.fgate);
  MLSTM_CHECK_CLOSE(step.h, step_expected.h, 0.0);
  REQUIRE(step.last_state.has_value());
  MLSTM_CHECK_CLOSE(step.last_state->c, step_expected.state.c, 0.0);
  // forward() gives the same h and drops the state.
  MLSTM_CHECK_CLOSE(inference.forward(c.q, c.k, c.v, c.igate, c.fgate), prompt.h, 0.0);
}

TEST_CASE("the backend rejects configurations it cannot run", "[backend][errors]") {
  auto argument_of = [](const mlstm::BackendConfig& config) {
    try {
      mlstm::Backend backend(config);
    } catch (const mlstm::ValueError& error) {
      return error.argument();
    }
    return std::string("no exception");
  };
  mlstm::BackendConfig config;
  config.chunk_size = 0;
  CHECK(argument_of(config) == "config.chunk_size");
  config = mlstm::BackendConfig{};
  config.num_threads = -3;
  CHECK(argument_of(config) == "config.num_threads");
  config = mlstm::BackendConfig{};
  config.return_last_state = true;  // with the parallel kernel in train mode
  CHECK(argument_of(config) == "config.return_last_state");
  config.mode = mlstm::BackendMode::inference;
  CHECK(argument_of(config) == "no exception");

  SequenceCase<double> c(1, 1, 5, 4, 4, 3);
  const mlstm::Backend parallel{mlstm::BackendConfig{}};
  try {
    parallel.run(c.q, c.k, c.v, c.igate, c.fgate, mlstm::RecurrentState<double>::zeros(1, 1, 4, 4));
    FAIL("no exception");
  } catch (const mlstm::ValueError& error) {
    CHECK(error.argument() == "initial_state");
  }
}

TEST_CASE("bfloat16 inputs are computed in float and h is rounded once", "[bfloat16]") {
  using bf16 = Eigen::bfloat16;
  const SequenceCase<float> c(1, 2, 300, 16, 8, 41);
  auto rounded = [](const Tensor<float, 4>& x) { return Tensor<bf16, 4>(x.cast<bf16>()); };
  auto widened = [](const Tensor<bf16, 4>& x) { return Tensor<float, 4>(x.cast<float>()); };
  const Tensor<bf16, 4> q = rounded(c.q), k = rounded(c.k), v = rounded(c.v), i = rounded(c.igate),
                        f = rounded(c.fgate);
  // The float computation on the very values the bfloat16 inputs hold.
  const Tensor<float, 4> qf = widened(q), kf = widened(k), vf = widened(v), i_f = widened(i),
                         ff = widened(f);

  const Tensor<bf16, 4> h = mlstm::parallel_stabilized(q, k, v, i, f);
  const Tensor<float, 4> h_float = mlstm::parallel_stabilized(qf, kf, vf, i_f, ff);
  MLSTM_CHECK_CLOSE(widened(h), widened(rounded(h_float)), 0.0);
  // And that is within bfloat16 rounding of the float result.
  MLSTM_CHECK_CLOSE(widened(h), h_float, std::ldexp(1.0, -8) * mlstm::test::magnitude(h_float));

  mlstm::ChunkwiseOptions options;
  options.chunk_size = 32;
  const auto initial = random_state<float>(1, 2, 16, 8, 42);
  const auto out = mlstm::chunkwise_stabilized(q, k, v, i, f, options, initial);
  const auto out_float = mlstm::chunkwise_stabilized(qf, kf, vf, i_f, ff, options, initial);
  static_assert(std::is_same_v<decltype(out.h), Tensor<bf16, 4>>);
  static_assert(std::is_same_v<decltype(out.state.c), Tensor<float, 4>>);
  MLSTM_CHECK_CLOSE(widened(out.h), widened(rounded(out_float.h)), 0.0);
  MLSTM_CHECK_CLOSE(out.state.c, out_float.state.c, 0.0);
  MLSTM_CHECK_CLOSE(out.state.n, out_float.state.n, 0.0);
  MLSTM_CHECK_CLOSE(out.state.m, out_float.state.m, 0.0);

  // Arguments are checked with their own names.
  const Tensor<bf16, 4> short_k = rounded(Tensor<float, 4>(
      c.k.slice(std::array<Index, 4>{0, 0, 0, 0}, std::array<Index, 4>{1, 2, 299, 16})));
  try {
    mlstm::chunkwise_stabilized(q, short_k, v, i, f, options);
    FAIL("no exception");
  } catch (const mlstm::ShapeError& error) {
    CHECK(error.argument() == "k");
  }
}
