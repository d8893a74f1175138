// The recurrent form: recurrent_sequence against the plain loops of tests/support/naive.hpp over
// the edge sweep (support/sweep.hpp) from a random state, the step against the sequence, the
// in-place step on caller-owned buffers, and where a non-finite state value reaches.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <vector>

#include <mlstm/mlstm.hpp>

#include "support/naive.hpp"
#include "support/random_inputs.hpp"
#include "support/sweep.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;
using mlstm::test::random_state;
using mlstm::test::SequenceCase;

}  // namespace

TEMPLATE_TEST_CASE("recurrent_sequence matches the plain loops over the edge sweep",
                   "[recurrent][naive]", float, double) {
  std::uint64_t seed = 1000;
  for (const mlstm::test::Sizes& z : mlstm::test::sweep_sizes) {
    for (const mlstm::test::Gates& gates : mlstm::test::sweep_gates) {
      CAPTURE(z.B, z.NH, z.S, z.DQK, z.DV, gates.name);
      SequenceCase<TestType> c(z.B, z.NH, z.S, z.DQK, z.DV, seed++, gates.igate, gates.fgate);
      // A non-zero initial state with its own stabilizer.
      const auto initial = random_state<TestType>(z.B, z.NH, z.DQK, z.DV, seed++);
      mlstm::test::naive::State<TestType> state{initial.c, initial.n, initial.m};
      const auto expected = mlstm::test::naive::recurrent<TestType>(c.q, c.k, c.v, c.igate, c.fgate,
                                                                    state, TestType(1e-6));
      const auto out = mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate, {}, initial);
      MLSTM_CHECK_CLOSE(out.h, expected, mlstm::test::forms_budget(expected));
      MLSTM_CHECK_CLOSE(out.state.c, state.c, mlstm::test::forms_budget(state.c));
      MLSTM_CHECK_CLOSE(out.state.n, state.n, mlstm::test::forms_budget(state.n));
      MLSTM_CHECK_CLOSE(out.state.m, state.m, mlstm::test::forms_budget(state.m));
    }
  }
}

TEST_CASE("steps continue a sequence exactly as recurrent_sequence runs it", "[recurrent]") {
  const Index S = 9;
  SequenceCase<double> c(1, 2, S, 5, 7, 51, {-20, 20}, {-20, 20});
  const auto whole = mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate);
  auto state = mlstm::RecurrentState<double>::zeros(1, 2, 5, 7);
  Tensor<double, 4> h(1, 2, 1, 7);
  for (Index t = 0; t < S; ++t) {
    const std::array<Index, 4> offset{0, 0, t, 0};
    const auto slice = [&](const Tensor<double, 4>& x) {
      return Tensor<double, 4>(x.slice(offset, std::array<Index, 4>{1, 2, 1, x.dimension(3)}));
    };
    mlstm::recurrent_step_stabilized_inplace(state, slice(c.q), slice(c.k), slice(c.v),
                                             slice(c.igate), slice(c.fgate), h);
    MLSTM_CHECK_CLOSE(h, slice(whole.h), 0.0);
  }
  MLSTM_CHECK_CLOSE(state.c, whole.state.c, 0.0);
  MLSTM_CHECK_CLOSE(state.m, whole.state.m, 0.0);
}

TEST_CASE("the in-place step updates caller-owned buffers and matches the functional step",
          "[recurrent]") {
  const Index B = 2, NH = 3, DQK = 6, DV = 4;
  SequenceCase<float> inputs(B, NH, 1, DQK, DV, 41, {-5, 5}, {-5, 5});
  const auto state = random_state<float>(B, NH, DQK, DV, 42, {-3, 3});
  const auto expected = mlstm::recurrent_step_stabilized(
      state.c, state.n, state.m, inputs.q, inputs.k, inputs.v, inputs.igate, inputs.fgate);
  // The caller's own buffers, as they would come from another framework.
  std::vector<float> c_buffer(state.c.data(), state.c.data() + state.c.size());
  std::vector<float> n_buffer(state.n.data(), state.n.data() + state.n.size());
  std::vector<float> m_buffer(state.m.data(), state.m.data() + state.m.size());
  std::vector<float> h_buffer(B * NH * DV, -1.0f);
  mlstm::recurrent_step_stabilized_inplace(
      mlstm::TensorMap<float, 4>(c_buffer.data(), B, NH, DQK, DV),
      mlstm::TensorMap<float, 4>(n_buffer.data(), B, NH, DQK, 1),
      mlstm::TensorMap<float, 4>(m_buffer.data(), B, NH, 1, 1),
      mlstm::ConstTensorMap<float, 4>(inputs.q.data(), B, NH, 1, DQK), inputs.k, inputs.v,
      inputs.igate, inputs.fgate, mlstm::TensorMap<float, 4>(h_buffer.data(), B, NH, 1, DV));
  const mlstm::TensorMap<float, 4> h_out(h_buffer.data(), B, NH, 1, DV);
  const mlstm::TensorMap<float, 4> c_out(c_buffer.data(), B, NH, DQK, DV);
  const mlstm::TensorMap<float, 4> n_out(n_buffer.data(), B, NH, DQK, 1);
  const mlstm::TensorMap<float, 4> m_out(m_buffer.data(), B, NH, 1, 1);
  MLSTM_CHECK_CLOSE(h_out, expected.h, 0.0);
  MLSTM_CHECK_CLOSE(c_out, expected.state.c, 0.0);
  MLSTM_CHECK_CLOSE(n_out, expected.state.n, 0.0);
  MLSTM_CHECK_CLOSE(m_out, expected.state.m, 0.0);
}

TEST_CASE("a non-finite value in the state reaches only its own head", "[recurrent][properties]") {
  const SequenceCase<double> c(1, 3, 4, 5, 3, 31);
  for (const double bad : {double(NAN), double(INFINITY)}) {
    CAPTURE(bad);
    auto state = mlstm::RecurrentState<double>::zeros(1, 3, 5, 3);
    const auto clean = mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate, {}, state);
    state.c(0, 1, 2, 2) = bad;
    const auto poisoned = mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate, {}, state);
    for (Index hd = 0; hd < 3; ++hd) {
      bool head_finite = true, head_unchanged = true;
      for (Index t = 0; t < 4; ++t)
        for (Index j = 0; j < 3; ++j) {
          head_finite = head_finite && std::isfinite(poisoned.h(0, hd, t, j));
          head_unchanged = head_unchanged && poisoned.h(0, hd, t, j) == clean.h(0, hd, t, j);
        }
      CAPTURE(hd);
      if (hd == 1)
        CHECK_FALSE(head_finite);
      else
        CHECK(head_unchanged);
    }
  }
}
