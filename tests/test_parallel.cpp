// The parallel form against the plain loops of tests/support/naive.hpp: the edge sweep
// (support/sweep.hpp) with both stabilizations and several eps, sequences that cross the
// kernel's row and column tiles at every offset, and masks (given, causal, longer or shorter
// than the sequence); float and double.
//
// Tile sizes: the parallel form walks tiles of detail::parallel_tile_rows rows and
// detail::parallel_panel_columns(S) columns (64, or 128 from S = 2048), so sequences of 255..520
// steps cross row tiles, column tiles and the diagonal at every offset. The panels of 128 are
// checked against the chunkwise form (test_chunkwise.cpp, test_chunkwise_backward.cpp): the plain
// loops take minutes at S = 2048.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include <mlstm/mlstm.hpp>

#include "support/naive.hpp"
#include "support/plain_expectation.hpp"
#include "support/random_inputs.hpp"
#include "support/sweep.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::test::SequenceCase;

// parallel_stabilized on case c against the plain loops with the same options; returns h.
template <typename T>
mlstm::Tensor<T, 4> check_against_plain_loops(const SequenceCase<T>& c,
                                              const mlstm::ParallelOptions& options) {
  const auto h = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
  const auto plain = mlstm::test::plain_expectation<T>([&](auto dtype) {
    using U = typename decltype(dtype)::type;
    const auto cu = c.template cast<U>();
    return mlstm::test::naive::parallel<U>(cu.q, cu.k, cu.v, cu.igate, cu.fgate, options.mask,
                                           options.stabilize_rowwise, static_cast<U>(options.eps));
  });
  MLSTM_CHECK_CLOSE(h, plain.expected, plain.budget);
  return h;
}

}  // namespace

TEMPLATE_TEST_CASE("parallel_stabilized matches the plain loops over the edge sweep",
                   "[parallel][naive]", float, double) {
  std::uint64_t seed = 1;
  for (const mlstm::test::Sizes& z : mlstm::test::sweep_sizes) {
    for (const mlstm::test::Gates& gates : mlstm::test::sweep_gates) {
      for (const bool rowwise : {true, false}) {
        for (const double eps : {1e-6, 1e-2}) {
          CAPTURE(z.B, z.NH, z.S, z.DQK, z.DV, gates.name, rowwise, eps);
          SequenceCase<TestType> c(z.B, z.NH, z.S, z.DQK, z.DV, seed++, gates.igate, gates.fgate);
          mlstm::ParallelOptions options;
          options.stabilize_rowwise = rowwise;
          options.eps = eps;
          check_against_plain_loops(c, options);
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("the tiled parallel form matches the plain loops across tile edges",
                   "[parallel][naive]", float, double) {
  static_assert(mlstm::detail::parallel_tile_rows == 256 &&
                    mlstm::detail::parallel_wide_panel_min_length == 2048,
                "the sizes below are chosen around these tiles");
  CHECK(mlstm::detail::parallel_panel_columns(2047) == 64);
  CHECK(mlstm::detail::parallel_panel_columns(2048) == 128);
  const mlstm::test::Sizes sizes[] = {
      {1, 1, 1, 8, 8},      // one step
      {1, 2, 255, 7, 5},    // odd head sizes, one row tile, four column tiles
      {2, 1, 257, 16, 24},  // one step into the second row tile, DQK != DV
      {1, 1, 520, 8, 4},    // three row tiles, nine column tiles
  };
  std::uint64_t seed = 10;
  for (const mlstm::test::Sizes& z : sizes) {
    for (const mlstm::test::Gates& gates : mlstm::test::extreme_gates) {
      for (const bool rowwise : {true, false}) {
        CAPTURE(z.B, z.NH, z.S, z.DQK, z.DV, gates.name, rowwise);
        SequenceCase<TestType> c(z.B, z.NH, z.S, z.DQK, z.DV, seed++, gates.igate, gates.fgate);
        mlstm::ParallelOptions options;
        options.stabilize_rowwise = rowwise;
        check_against_plain_loops(c, options);
      }
    }
  }
}

TEMPLATE_TEST_CASE("a given mask, causal or not, is applied within and across tiles",
                   "[parallel][mask]", float, double) {
  // A sliding window with a few positions ahead of the row (non-causal), and one row that sees
  // nothing (its h must be 0); in the long sequence also whole tiles that see nothing (skipped).
  struct Masked {
    Index B, S, window, ahead_every, ahead_by, empty_row;
    std::uint64_t seed;
  };
  for (const Masked& spec : {Masked{2, 23, 5, 3, 2, 7, 99}, Masked{1, 300, 40, 7, 150, 100, 77}}) {
    CAPTURE(spec.S);
    const SequenceCase<TestType> c(spec.B, 2, spec.S, 8, 6, spec.seed);
    mlstm::Mask mask(spec.S, spec.S);
    for (Index t = 0; t < spec.S; ++t)
      for (Index s = 0; s < spec.S; ++s)
        mask(t, s) = (s <= t && t - s < spec.window) ||
                     (t % spec.ahead_every == 0 && s == std::min(spec.S - 1, t + spec.ahead_by));
    for (Index s = 0; s < spec.S; ++s) mask(spec.empty_row, s) = false;
    for (const bool rowwise : {true, false}) {
      CAPTURE(rowwise);
      mlstm::ParallelOptions options;
      options.stabilize_rowwise = rowwise;
      options.mask = mask;
      const auto h = check_against_plain_loops(c, options);
      for (Index b = 0; b < spec.B; ++b)
        for (Index head = 0; head < 2; ++head)
          for (Index j = 0; j < 6; ++j) CHECK(h(b, head, spec.empty_row, j) == TestType(0));
    }
  }
}

TEST_CASE("a mask longer than the sequence, or a causal one shorter, means the causal mask",
          "[parallel][mask]") {
  SequenceCase<double> c(1, 2, 20, 8, 8, 5);
  const auto causal = check_against_plain_loops(c, mlstm::ParallelOptions{});
  for (const Index L : {Index(32), Index(7)}) {
    CAPTURE(L);
    mlstm::ParallelOptions options;
    options.mask = mlstm::causal_mask(L);
    const auto h = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
    MLSTM_CHECK_CLOSE(h, causal, 0.0);
  }
}

TEMPLATE_TEST_CASE("decays below the negligible cut give weights of exactly 0, never subnormal",
                   "[parallel][decay]", float, double) {
  using T = TestType;
  const T negligible = mlstm::detail::negligible_decay<T>();
  // T's smallest normal number over its epsilon: 2^-103 for float, 2^-970 for double.
  CHECK(negligible == std::ldexp(T(1), std::is_same_v<T, float> ? -103 : -970));
  const double cut = std::log(static_cast<double>(negligible));
  // Exponents col - row (the row at 0) on both sides of the cut, down through the range where
  // exp is subnormal (about -87 to -103 for float, -708 to -745 for double) and beyond, repeated
  // along rows long enough for every lane of Eigen's vectorized exp, from several first columns.
  // A NaN or an infinite exponent gives NaN or infinity in its place and leaves the rest of its
  // row as without it.
  const double subnormal_exp = std::is_same_v<T, float> ? -95.0 : -720.0;
  const double infinity = std::numeric_limits<double>::infinity();
  const double exponents[] = {0.0,
                              -1.0,
                              cut + 0.5,
                              cut - 0.5,
                              subnormal_exp,
                              -1e4,
                              -infinity,
                              infinity,
                              0.5,
                              -2.0,
                              std::numeric_limits<double>::quiet_NaN()};
  const Index length = 67;
  std::vector<double> col_hi(length), col_lo(length, 0.0), near(length);
  for (Index c = 0; c < length; ++c) {
    col_hi[c] = exponents[c % std::size(exponents)];
    near[c] = exponents[c % 2];  // its first two: a row with no weight near the cut
  }
  const std::vector<double> row_hi = {0.0}, row_lo = {0.0};
  const T scale = T(0.125);
  auto check_row = [&](const std::vector<double>& columns, Index first) {
    const mlstm::detail::DecayParts parts{row_hi.data(), row_lo.data(), columns.data() + first,
                                          col_lo.data() + first};
    const Index count = length - first;
    std::vector<T> weight(static_cast<std::size_t>(count));
    mlstm::detail::decay_weights(parts, 0, count, scale, weight.data());
    for (Index c = 0; c < count; ++c) {
      const double exponent = columns[first + c];
      CAPTURE(first, c, exponent, cut, weight[c]);
      if (std::isnan(exponent)) {
        CHECK(std::isnan(weight[c]));
        continue;
      }
      if (exponent == infinity) {
        CHECK(weight[c] == std::numeric_limits<T>::infinity());
        continue;
      }
      if (exponent > cut) {
        const double expected =
            static_cast<double>(scale) * std::exp(static_cast<double>(static_cast<T>(exponent)));
        CHECK(static_cast<double>(weight[c]) ==
              Approx(expected).epsilon(8 * std::numeric_limits<T>::epsilon()));
      } else {
        CHECK(weight[c] == T(0));
      }
      CHECK((weight[c] == T(0) || weight[c] >= std::numeric_limits<T>::min()));
    }
  };
  // Finite rows with weights below the cut; rows far from it but for a NaN and one weight below
  // the cut, at every pair of places within three vector packets (a vectorized minimum may miss
  // a low weight beside a NaN: the row must still go the careful way).
  const double finite_exponents[] = {0.0, -1.0, cut + 0.5, cut - 0.5, subnormal_exp, 0.5, -2.0};
  std::vector<double> finite_low(length);
  for (Index c = 0; c < length; ++c)
    finite_low[c] = finite_exponents[c % std::size(finite_exponents)];
  std::vector<double> near_non_finite = near;
  near_non_finite[40] = std::numeric_limits<double>::quiet_NaN();
  near_non_finite[50] = infinity;
  for (const Index first : {Index(0), Index(1), Index(3), Index(5)}) {
    check_row(col_hi, first);
    check_row(near, first);
    check_row(finite_low, first);
    check_row(near_non_finite, first);
  }
  const Index pair_span = 48;
  for (Index nan_at = 0; nan_at < pair_span; ++nan_at) {
    for (Index low_at = 0; low_at < pair_span; ++low_at) {
      if (low_at == nan_at) continue;
      std::vector<double> row = near;
      row[nan_at] = std::numeric_limits<double>::quiet_NaN();
      row[low_at] = subnormal_exp;
      check_row(row, 0);
    }
  }
}
