// Choosing a kernel (kernels/backend.hpp): kernel_forward runs the kernel KernelOptions names
// from the zero state, continues a state with a step or the chunkwise form, and rejects invalid
// options by name.
#include <catch2/catch.hpp>
#include <limits>

#include <mlstm/mlstm.hpp>

#include "support/errors.hpp"
#include "support/random_inputs.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::test::SequenceCase;

}  // namespace

TEST_CASE("kernel_forward runs the chosen kernel from the zero state, at any length", "[backend]") {
  const SequenceCase<double> c(1, 2, 50, 8, 6, 21);
  mlstm::KernelOptions options;
  options.chunk_size = 16;
  MLSTM_CHECK_CLOSE(mlstm::kernel_forward(c.q, c.k, c.v, c.igate, c.fgate, options),
                    mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate), 0.0);
  options.forward_kernel = mlstm::SequenceKernel::chunkwise;
  mlstm::ChunkwiseOptions chunk16;
  chunk16.chunk_size = 16;
  MLSTM_CHECK_CLOSE(mlstm::kernel_forward(c.q, c.k, c.v, c.igate, c.fgate, options),
                    mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, chunk16).h, 0.0);
  options.forward_kernel = mlstm::SequenceKernel::recurrent;
  MLSTM_CHECK_CLOSE(mlstm::kernel_forward(c.q, c.k, c.v, c.igate, c.fgate, options),
                    mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate).h, 0.0);
}

TEST_CASE("kernel_forward continues a state: chunkwise for a prompt, a step for S = 1",
          "[backend]") {
  const Index B = 1, NH = 2, DQK = 8, DV = 6;
  const SequenceCase<double> prompt(B, NH, 50, DQK, DV, 21);
  const auto initial = mlstm::test::random_state<double>(B, NH, DQK, DV, 22);
  mlstm::KernelOptions options;
  options.chunk_size = 16;
  mlstm::ChunkwiseOptions chunk16;
  chunk16.chunk_size = 16;

  auto state = initial;
  const auto h_prompt = mlstm::kernel_forward(prompt.q, prompt.k, prompt.v, prompt.igate,
                                              prompt.fgate, state, options);
  const auto expected = mlstm::chunkwise_stabilized(prompt.q, prompt.k, prompt.v, prompt.igate,
                                                    prompt.fgate, chunk16, initial);
  MLSTM_CHECK_CLOSE(h_prompt, expected.h, 0.0);
  MLSTM_CHECK_CLOSE(state.c, expected.state.c, 0.0);
  MLSTM_CHECK_CLOSE(state.m, expected.state.m, 0.0);

  const SequenceCase<double> next(B, NH, 1, DQK, DV, 23);
  const auto step_expected =
      mlstm::recurrent_step_stabilized(state, next.q, next.k, next.v, next.igate, next.fgate);
  const auto h_step =
      mlstm::kernel_forward(next.q, next.k, next.v, next.igate, next.fgate, state, options);
  MLSTM_CHECK_CLOSE(h_step, step_expected.h, 0.0);
  MLSTM_CHECK_CLOSE(state.c, step_expected.state.c, 0.0);
  MLSTM_CHECK_CLOSE(state.n, step_expected.state.n, 0.0);
  MLSTM_CHECK_CLOSE(state.m, step_expected.state.m, 0.0);
}

TEMPLATE_TEST_CASE(
    "kernel_forward prefills a short prompt from the zero state by the parallel "
    "form, agreeing with the chunkwise form",
    "[backend]", float, double) {
  using T = TestType;
  const Index B = 2, NH = 2, S = 40, DQK = 16, DV = 8;
  const SequenceCase<T> c(B, NH, S, DQK, DV, 31);
  mlstm::KernelOptions chunkwise;
  chunkwise.chunk_size = 16;
  chunkwise.parallel_prefill_max = 0;
  mlstm::KernelOptions parallel = chunkwise;
  parallel.parallel_prefill_max = S;
  const auto zero = mlstm::RecurrentState<T>::zeros(B, NH, DQK, DV);
  auto by_chunks = zero, by_parallel = zero;
  const auto h_chunks =
      mlstm::kernel_forward(c.q, c.k, c.v, c.igate, c.fgate, by_chunks, chunkwise);
  const auto h_parallel =
      mlstm::kernel_forward(c.q, c.k, c.v, c.igate, c.fgate, by_parallel, parallel);
  // The path taken is the parallel form's.
  MLSTM_CHECK_CLOSE(h_parallel, mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate), 0.0);
  // The forms' stabilizers differ where the zero state's term leads (chunkwise.hpp), which moves
  // h by up to eps relative to its magnitude.
  MLSTM_CHECK_CLOSE(h_parallel, h_chunks,
                    mlstm::test::forms_budget(h_chunks) +
                        chunkwise.eps * std::max(1.0, mlstm::test::magnitude(h_chunks)));
  MLSTM_CHECK_CLOSE(by_parallel.m, by_chunks.m, mlstm::test::forms_budget(by_chunks.m));
  MLSTM_CHECK_CLOSE(by_parallel.c, by_chunks.c, mlstm::test::forms_budget(by_chunks.c));
  MLSTM_CHECK_CLOSE(by_parallel.n, by_chunks.n, mlstm::test::forms_budget(by_chunks.n));

  // Longer than the limit, or from a state that is not zero: the chunkwise form, bit for bit.
  parallel.parallel_prefill_max = S - 1;
  auto longer = zero;
  MLSTM_CHECK_CLOSE(mlstm::kernel_forward(c.q, c.k, c.v, c.igate, c.fgate, longer, parallel),
                    h_chunks, 0.0);
  parallel.parallel_prefill_max = S;
  auto started = zero, started_chunks = zero;
  started.n(1, 0, 3, 0) = started_chunks.n(1, 0, 3, 0) = T(0.5);
  MLSTM_CHECK_CLOSE(
      mlstm::kernel_forward(c.q, c.k, c.v, c.igate, c.fgate, started, parallel),
      mlstm::kernel_forward(c.q, c.k, c.v, c.igate, c.fgate, started_chunks, chunkwise), 0.0);
  MLSTM_CHECK_CLOSE(started.c, started_chunks.c, 0.0);
  // One value of c, however small, makes a state that is not zero; -0 is zero.
  auto tiny = zero, tiny_chunks = zero;
  tiny.c(1, 1, DQK - 1, DV - 1) = tiny_chunks.c(1, 1, DQK - 1, DV - 1) =
      std::numeric_limits<T>::denorm_min();
  MLSTM_CHECK_CLOSE(mlstm::kernel_forward(c.q, c.k, c.v, c.igate, c.fgate, tiny, parallel),
                    mlstm::kernel_forward(c.q, c.k, c.v, c.igate, c.fgate, tiny_chunks, chunkwise),
                    0.0);
  auto negative_zero = zero;
  negative_zero.c.setConstant(T(-0.0));
  negative_zero.n.setConstant(T(-0.0));
  MLSTM_CHECK_CLOSE(mlstm::kernel_forward(c.q, c.k, c.v, c.igate, c.fgate, negative_zero, parallel),
                    h_parallel, 0.0);
}

TEST_CASE("kernel_forward rejects invalid options by name, leaving the state",
          "[backend][errors]") {
  const SequenceCase<double> c(1, 1, 5, 4, 4, 3);
  auto state = mlstm::test::random_state<double>(1, 1, 4, 4, 4);
  const auto before = state;
  const auto run = [&](const mlstm::KernelOptions& options) {
    return [&c, &state, options] {
      mlstm::kernel_forward(c.q, c.k, c.v, c.igate, c.fgate, state, options);
    };
  };
  mlstm::KernelOptions options;
  options.chunk_size = 0;
  mlstm::test::expect_error<mlstm::ValueError>(run(options), "options.chunk_size");
  options = {};
  options.num_threads = -3;
  mlstm::test::expect_error<mlstm::ValueError>(run(options), "options.num_threads");
  options = {};
  options.eps = 0;
  mlstm::test::expect_error<mlstm::ValueError>(run(options), "options.eps");
  options = {};
  options.parallel_prefill_max = -1;
  mlstm::test::expect_error<mlstm::ValueError>(run(options), "options.parallel_prefill_max");
  MLSTM_CHECK_CLOSE(state.c, before.c, 0.0);
  MLSTM_CHECK_CLOSE(state.m, before.m, 0.0);
  CHECK_NOTHROW(run({})());
}
