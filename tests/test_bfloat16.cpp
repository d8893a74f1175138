// bfloat16 arguments: the parallel and chunkwise forms compute in float on the values the
// bfloat16 inputs hold and round h once; the state stays in float.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <type_traits>

#include <mlstm/mlstm.hpp>

#include "support/errors.hpp"
#include "support/random_inputs.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;
using mlstm::test::random_state;
using mlstm::test::SequenceCase;

}  // namespace

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
  mlstm::test::expect_error<mlstm::ShapeError>(
      [&] { mlstm::chunkwise_stabilized(q, short_k, v, i, f, options); }, "k");
}
