// Bad input: every check names the argument and shows what was expected and what was given,
// throws a typed exception (ShapeError / ValueError, both std::invalid_argument), and writes
// nothing. Every exception the library throws is a mlstm::Error.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <mlstm/detail/assert.hpp>
#include <mlstm/detail/thread_pool.hpp>
#include <mlstm/io/safetensors.hpp>
#include <mlstm/mlstm.hpp>

#include "support/errors.hpp"
#include "support/random_inputs.hpp"

namespace {

using Catch::Matchers::Contains;
using mlstm::Index;
using mlstm::Tensor;
using mlstm::test::message_of;
using mlstm::test::SequenceCase;

// The input of `c` that the kernels' messages call `name` (q, k, v, igate_preact, fgate_preact).
Tensor<float, 4>& named_input(SequenceCase<float>& c, const std::string& name) {
  return name == "q"              ? c.q
         : name == "k"            ? c.k
         : name == "v"            ? c.v
         : name == "igate_preact" ? c.igate
                                  : c.fgate;
}

}  // namespace

TEST_CASE("sequence kernels reject wrong ranks and shapes, naming the argument", "[errors]") {
  const SequenceCase<double> c(2, 3, 10, 8, 6, 1);
  const auto parallel = [](const auto& q, const auto& k, const auto& v, const auto& i,
                           const auto& f) { return mlstm::parallel_stabilized(q, k, v, i, f); };
  const auto recurrent = [](const auto& q, const auto& k, const auto& v, const auto& i,
                            const auto& f) { return mlstm::recurrent_sequence(q, k, v, i, f).h; };

  const Tensor<double, 3> rank3(2, 3, 10);
  CHECK_THAT(message_of<mlstm::ShapeError>([&] { parallel(c.q, c.k, c.v, rank3, c.fgate); }),
             Contains("igate_preact") && Contains("expected rank 4") && Contains("(2, 3, 10)"));
  CHECK_THAT(message_of<mlstm::ShapeError>([&] { recurrent(rank3, c.k, c.v, c.igate, c.fgate); }),
             Contains("q:") && Contains("rank 3"));

  const SequenceCase<double> other_dqk(2, 3, 10, 7, 6, 2);
  CHECK_THAT(
      message_of<mlstm::ShapeError>([&] { parallel(c.q, other_dqk.k, c.v, c.igate, c.fgate); }),
      Contains("k:") && Contains("(2, 3, 10, 8)") && Contains("(2, 3, 10, 7)"));
  const SequenceCase<double> other_s(2, 3, 9, 8, 6, 3);
  CHECK_THAT(
      message_of<mlstm::ShapeError>([&] { recurrent(c.q, c.k, other_s.v, c.igate, c.fgate); }),
      Contains("v:") && Contains("(2, 3, 10, 6)") && Contains("(2, 3, 9, 6)"));
  const SequenceCase<double> other_heads(2, 2, 10, 8, 6, 4);
  CHECK_THAT(
      message_of<mlstm::ShapeError>([&] { parallel(c.q, c.k, c.v, c.igate, other_heads.fgate); }),
      Contains("fgate_preact:") && Contains("(2, 3, 10, 1)") && Contains("(2, 2, 10, 1)"));
  const Tensor<double, 4> wide_gate(2, 3, 10, 2);
  CHECK_THAT(message_of<mlstm::ShapeError>([&] { parallel(c.q, c.k, c.v, wide_gate, c.fgate); }),
             Contains("igate_preact:") && Contains("(2, 3, 10, 2)"));
  const SequenceCase<double> empty(1, 1, 0, 8, 6, 5);
  CHECK_THAT(message_of<mlstm::ShapeError>(
                 [&] { parallel(empty.q, empty.k, empty.v, empty.igate, empty.fgate); }),
             Contains("S=0"));
}

TEST_CASE("non-finite inputs and invalid eps are value errors", "[errors]") {
  for (const double bad : {double(NAN), double(INFINITY), -double(INFINITY)}) {
    for (const char* name : {"q", "k", "v", "igate_preact", "fgate_preact"}) {
      CAPTURE(bad, name);
      SequenceCase<float> c(1, 2, 6, 4, 4, 7);
      const std::string which(name);
      Tensor<float, 4>& x = named_input(c, which);
      x(0, 1, 3, 0) = static_cast<float>(bad);
      const auto text = message_of<mlstm::ValueError>(
          [&] { mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate); });
      CHECK_THAT(text, Contains(which + ":") && Contains("(0, 1, 3, 0)"));
      CHECK_THROWS_AS(mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate),
                      mlstm::ValueError);
      // The chunkwise form scans each chunk as it starts on it (the bad value is in the second
      // chunk of head 1), walking heads one per thread or chunks of segments (2 heads on 3
      // threads), and names the value as the others do.
      REQUIRE_FALSE(mlstm::detail::chunkwise_by_head(2, 3));
      for (const int threads : {1, 2, 3}) {
        CAPTURE(threads);
        mlstm::ChunkwiseOptions options;
        options.chunk_size = 2;
        options.num_threads = threads;
        const auto chunkwise_text = message_of<mlstm::ValueError>(
            [&] { mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options); });
        CHECK_THAT(chunkwise_text, Contains(which + ":") && Contains("(0, 1, 3, 0)"));
      }
    }
  }
  const SequenceCase<double> c(1, 1, 4, 4, 4, 8);
  for (const double eps : {0.0, -1e-6, double(NAN), double(INFINITY)}) {
    CAPTURE(eps);
    mlstm::ParallelOptions options;
    options.eps = eps;
    CHECK_THAT(message_of<mlstm::ValueError>(
                   [&] { mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options); }),
               Contains("options.eps") && Contains("finite value > 0"));
    CHECK_THROWS_AS(mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate, {eps}),
                    mlstm::ValueError);
  }
}

// The chunkwise backward scans each chunk as its walks reach it (k, v and the gates forward, q and
// dh in reverse; chunks of 4 steps over 63, the last one partial), so a bad value in the first, a
// middle or the last chunk of head 0 or 3 stops it at different points, on 1 to 3 threads (4
// heads with enough work for 3), with DQK != DV so that each input's own row length is scanned.
// It names the value as the forward does.
TEST_CASE("the chunkwise backward names a non-finite input or dh", "[errors]") {
  const Index S = 63, DQK = 16, DV = 24;
  REQUIRE(mlstm::detail::threads_for_work(3, 4, 10.0 * 4 * S * (4 + DQK) * (DQK + DV)) == 3);
  for (const double bad : {double(NAN), double(INFINITY)}) {
    for (const char* name : {"q", "k", "v", "igate_preact", "fgate_preact", "dh"}) {
      for (const Index head : {Index(0), Index(3)}) {
        for (const Index t : {Index(0), Index(30), S - 1}) {
          for (const int threads : {1, 2, 3}) {
            CAPTURE(bad, name, head, t, threads);
            SequenceCase<float> c(1, 4, S, DQK, DV, 7);
            Tensor<float, 4> dh(1, 4, S, DV);
            dh.setConstant(0.5f);
            const std::string which(name);
            Tensor<float, 4>& x = which == "dh" ? dh : named_input(c, which);
            const Index feature = x.dimension(3) - 1;  // the row's last value
            x(0, head, t, feature) = static_cast<float>(bad);
            mlstm::ChunkwiseOptions options;
            options.chunk_size = 4;
            options.num_threads = threads;
            const auto text = message_of<mlstm::ValueError>([&] {
              mlstm::chunkwise_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, options);
            });
            const std::string at = "(0, " + std::to_string(head) + ", " + std::to_string(t) + ", " +
                                   std::to_string(feature) + ")";
            CHECK_THAT(text, Contains(which + ":") && Contains(at));
          }
        }
      }
    }
  }
}

TEST_CASE("large inputs are scanned for non-finite values on several threads", "[errors]") {
  // q and k of 2 x 4096 x 128 values: four of the scan's blocks (2^18 values) each. The chunkwise
  // form finds the value in its chunk, then scans the whole inputs on its threads to name it.
  SequenceCase<float> c(1, 2, 4096, 128, 8, 10);
  mlstm::ChunkwiseOptions options;
  options.num_threads = 2;
  for (const Index at : {Index(0), Index(700000), c.k.size() - 1}) {
    CAPTURE(at);
    c.k.data()[at] = NAN;
    const auto text = message_of<mlstm::ValueError>(
        [&] { mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options); });
    CHECK_THAT(text, Contains("k:") && Contains("got nan"));
    c.k.data()[at] = 0.5f;
  }
  CHECK_NOTHROW(mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options));
}

TEST_CASE("masks must be square and cover the sequence unless causal", "[errors][mask]") {
  const SequenceCase<double> c(1, 1, 12, 4, 4, 9);
  mlstm::ParallelOptions options;
  options.mask = mlstm::Mask(12, 10);
  CHECK_THAT(message_of<mlstm::ShapeError>(
                 [&] { mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options); }),
             Contains("options.mask") && Contains("(12, 10)"));
  mlstm::Mask band = mlstm::causal_mask(8);
  band(7, 0) = false;
  options.mask = band;
  CHECK_THAT(message_of<mlstm::ShapeError>(
                 [&] { mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options); }),
             Contains("options.mask") && Contains("L >= S = 12") && Contains("(8, 8)"));
}

TEST_CASE("the step checks its state and writes nothing on error", "[errors][recurrent]") {
  const Index B = 2, NH = 2, DQK = 4, DV = 3;
  const SequenceCase<double> inputs(B, NH, 1, DQK, DV, 10);
  auto state = mlstm::RecurrentState<double>::zeros(B, NH, DQK, DV);
  state.c.setConstant(0.25);
  state.m.setConstant(1.5);
  const auto before = state;
  Tensor<double, 4> h(B, NH, 1, DV);
  h.setConstant(7.0);

  const auto unchanged = [&] {
    for (Index i = 0; i < state.c.size(); ++i) REQUIRE(state.c.data()[i] == before.c.data()[i]);
    for (Index i = 0; i < state.m.size(); ++i) REQUIRE(state.m.data()[i] == before.m.data()[i]);
    for (Index i = 0; i < h.size(); ++i) REQUIRE(h.data()[i] == 7.0);
  };

  Tensor<double, 4> wrong_c(B, NH, DV, DQK);
  CHECK_THAT(message_of<mlstm::ShapeError>([&] {
               mlstm::recurrent_step_stabilized_inplace(wrong_c, state.n, state.m, inputs.q,
                                                        inputs.k, inputs.v, inputs.igate,
                                                        inputs.fgate, h);
             }),
             Contains("c:") && Contains("(B, NH, DQK, DV)") && Contains("(2, 2, 4, 3)") &&
                 Contains("(2, 2, 3, 4)"));
  unchanged();
  Tensor<double, 4> wrong_h(B, NH, 1, DV + 1);
  CHECK_THAT(message_of<mlstm::ShapeError>([&] {
               mlstm::recurrent_step_stabilized_inplace(state, inputs.q, inputs.k, inputs.v,
                                                        inputs.igate, inputs.fgate, wrong_h);
             }),
             Contains("h:") && Contains("(2, 2, 1, 4)"));
  unchanged();
  const SequenceCase<double> two_steps(B, NH, 2, DQK, DV, 11);
  CHECK_THAT(message_of<mlstm::ShapeError>([&] {
               mlstm::recurrent_step_stabilized_inplace(state, two_steps.q, two_steps.k,
                                                        two_steps.v, two_steps.igate,
                                                        two_steps.fgate, h);
             }),
             Contains("one time step"));
  unchanged();
  auto bad_m = state;
  bad_m.m(1, 0, 0, 0) = NAN;
  CHECK_THAT(message_of<mlstm::ValueError>([&] {
               mlstm::recurrent_step_stabilized(bad_m.c, bad_m.n, bad_m.m, inputs.q, inputs.k,
                                                inputs.v, inputs.igate, inputs.fgate);
             }),
             Contains("m:") && Contains("(1, 0, 0, 0)"));
  CHECK_THROWS_AS(mlstm::recurrent_step_stabilized_inplace(state, inputs.q, inputs.k, inputs.v,
                                                           inputs.igate, inputs.fgate, h, {0.0}),
                  mlstm::ValueError);
  unchanged();
  auto wrong_initial = mlstm::RecurrentState<double>::zeros(B, NH, DQK, DV + 2);
  CHECK_THAT(message_of<mlstm::ShapeError>([&] {
               mlstm::recurrent_sequence(two_steps.q, two_steps.k, two_steps.v, two_steps.igate,
                                         two_steps.fgate, {}, wrong_initial);
             }),
             Contains("initial_state.c"));
}

TEST_CASE("errors are catchable as mlstm::InvalidArgument and carry the argument name",
          "[errors]") {
  const SequenceCase<double> c(1, 1, 3, 2, 2, 12);
  const Tensor<double, 4> wrong(1, 1, 3, 3);
  try {
    mlstm::parallel_stabilized(c.q, wrong, c.v, c.igate, c.fgate);
    FAIL("expected an error");
  } catch (const mlstm::InvalidArgument& error) {
    CHECK(error.argument() == "k");
  }
}

TEST_CASE("one clause catches every kind of error through mlstm::Error", "[errors]") {
  // Runs `call`, which must throw E, catching it as mlstm::Error only; returns what() of it.
  const auto caught = [](auto&& call, auto expected) -> std::string {
    using E = decltype(expected);
    static_assert(std::is_base_of_v<mlstm::Error, E>);
    try {
      call();
    } catch (const mlstm::Error& error) {
      CHECK(dynamic_cast<const E*>(&error) != nullptr);
      return error.what();
    }
    FAIL("no mlstm::Error was thrown");
    return {};
  };
  const SequenceCase<double> c(1, 1, 3, 2, 2, 13);
  const Tensor<double, 4> wrong(1, 1, 3, 3);
  CHECK_THAT(caught([&] { mlstm::parallel_stabilized(c.q, wrong, c.v, c.igate, c.fgate); },
                    mlstm::ShapeError("", "")),
             Contains("k: "));
  mlstm::ChunkwiseOptions options;
  options.chunk_size = 0;
  CHECK_THAT(caught([&] { mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options); },
                    mlstm::ValueError("", "")),
             Contains("options.chunk_size: "));
  CHECK_THAT(caught([&] { mlstm::set_num_threads(0); }, mlstm::InvalidArgument("", "")),
             Contains("num_threads"));
  const std::vector<std::uint8_t> truncated{1, 2, 3};
  CHECK_THAT(caught([&] { (void)mlstm::safetensors::File::parse(truncated, "short.safetensors"); },
                    mlstm::FormatError("")),
             Contains("short.safetensors"));
  CHECK_THAT(caught([] { MLSTM_ASSERT(1 + 1 == 3, "arithmetic"); }, mlstm::InternalError("")),
             Contains("arithmetic"));
  const auto load_missing = [] { (void)mlstm::safetensors::File::load("/absent/m.safetensors"); };
  CHECK_THAT(caught(load_missing, mlstm::IoError(std::make_error_code(std::errc::io_error))),
             Contains("/absent/m.safetensors"));

  // Each is also the standard exception it is a kind of.
  static_assert(std::is_base_of_v<std::invalid_argument, mlstm::ShapeError>);
  static_assert(std::is_base_of_v<std::invalid_argument, mlstm::ValueError>);
  static_assert(std::is_base_of_v<std::runtime_error, mlstm::FormatError>);
  static_assert(std::is_base_of_v<std::system_error, mlstm::IoError>);
  static_assert(std::is_base_of_v<std::logic_error, mlstm::InternalError>);
  CHECK_THROWS_AS(mlstm::set_num_threads(-1), std::exception);
}

TEST_CASE("internal invariants throw InternalError in tests", "[errors]") {
  const auto broken = [] { MLSTM_ASSERT(1 + 1 == 3, "arithmetic"); };
  CHECK_THROWS_AS(broken(), mlstm::InternalError);
  CHECK_NOTHROW([] { MLSTM_ASSERT(1 + 1 == 2, "arithmetic"); }());
}
