// The chunkwise form: against the plain recurrent loops of tests/support/naive.hpp with and
// without an initial state over chunk sizes, against the parallel form where their stabilizers
// agree, a prompt continued by steps or a second call, the same bits however chunks are grouped
// or walked, chunk sizes beyond S, and its errors.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <mlstm/mlstm.hpp>

#include "support/errors.hpp"
#include "support/naive.hpp"
#include "support/plain_expectation.hpp"
#include "support/random_inputs.hpp"
#include "support/sweep.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;
using mlstm::test::expect_error;
using mlstm::test::forms_budget;
using mlstm::test::random_state;
using mlstm::test::SequenceCase;

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

}  // namespace

TEMPLATE_TEST_CASE("chunkwise continues a sequence as the plain recurrent loops do",
                   "[chunkwise][naive]", float, double) {
  const mlstm::test::Sizes sizes[] = {
      {1, 1, 1, 8, 8},      // one step
      {2, 3, 37, 7, 5},     // odd head sizes, S not a multiple of any chunk size below
      {1, 2, 130, 16, 24},  // DQK != DV, several chunks of 64 and a short last one
  };
  std::uint64_t seed = 500;
  for (const mlstm::test::Sizes& z : sizes) {
    for (const mlstm::test::Gates& gates : mlstm::test::extreme_gates) {
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
  SECTION("S = 2063: the parallel form's column panels of 128") {
    SequenceCase<TestType> wide(1, 1, 2063, 5, 3, 32, {0, 5}, {-2, 6});
    const auto wide_parallel =
        mlstm::parallel_stabilized(wide.q, wide.k, wide.v, wide.igate, wide.fgate);
    const auto out = mlstm::chunkwise_stabilized(wide.q, wide.k, wide.v, wide.igate, wide.fgate);
    MLSTM_CHECK_CLOSE(out.h, wide_parallel, forms_budget(wide_parallel));
  }
}

TEMPLATE_TEST_CASE("a prompt in one chunkwise call, then recurrent steps, is one sequence",
                   "[chunkwise][recurrent]", float, double) {
  const Index B = 2, NH = 2, S = 90, prompt = 70, DQK = 12, DV = 10;
  SequenceCase<TestType> c(B, NH, S, DQK, DV, 8, {-6, 6}, {-2, 8});
  const auto initial = random_state<TestType>(B, NH, DQK, DV, 9);
  const auto whole = mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate, {}, initial);

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
    REQUIRE(mlstm::detail::chunkwise_forward<double>(
        in, chunk_size, segment, 1e-6, threads, initial.c.data(), initial.n.data(),
        initial.m.data(), h.data(), out.c.data(), out.n.data(), out.m.data()));
    return std::make_pair(h, out);
  };
  const auto reference = run(chunks, 1);
  // The by-head walk (used when batch-heads share out evenly) gives the same bits too.
  for (const int threads : {1, 2}) {
    auto out = mlstm::RecurrentState<double>::zeros(1, 2, 7, 5);
    Tensor<double, 4> h(1, 2, 203, 5);
    REQUIRE(mlstm::detail::chunkwise_forward_by_head<double>(
        in, chunk_size, 1e-6, threads, initial.c.data(), initial.n.data(), initial.m.data(),
        h.data(), out.c.data(), out.n.data(), out.m.data()));
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

TEST_CASE("the chunkwise form rejects bad arguments before writing anything",
          "[chunkwise][errors]") {
  SequenceCase<double> c(2, 2, 10, 4, 3, 2);
  mlstm::ChunkwiseOptions options;
  const auto run = [&] { mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options); };
  options.chunk_size = 0;
  expect_error<mlstm::ValueError>(run, "options.chunk_size");
  options.chunk_size = 4;
  options.eps = 0.0;
  expect_error<mlstm::ValueError>(run, "options.eps");
  options.eps = 1e-6;
  const auto wrong = mlstm::RecurrentState<double>::zeros(2, 2, 3, 4);  // DQK and DV swapped
  std::string argument;
  CHECK_THAT(
      mlstm::test::message_of<mlstm::ShapeError>(
          [&] { mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options, wrong); },
          &argument),
      Catch::Contains("(2, 2, 4, 3)"));
  CHECK(argument == "initial_state.c");
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
