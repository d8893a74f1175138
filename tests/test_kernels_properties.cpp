// Properties of the forms: where parallel and recurrent agree and why they differ elsewhere,
// stabilizer invariance, finite outputs for finite inputs.
//
// Both forms compute, per row t, with the unstabilized numerator N_t = sum_s w_ts v_s and
// denominator D_t = sum_s w_ts (w_ts = q_t.k_s/sqrt(DQK) exp(logD[t,s])):
//
//     h_t = N_t / (max(|D_t|, 1) + eps exp(m_t))
//
// because the stabilizer cancels everywhere except in eps. The parallel form's m_t is
// max_s logD[t,s]; the recurrent form's also holds the initial state's term
// (sum_{r<=t} logsigmoid(f_r) + m_0), so the forms agree to rounding when that term does not
// exceed the parallel maximum (i_0 >= logsigmoid(f_0) from the zero state), and otherwise
// differ by exactly the eps exp(m_t) term. The lower bound (|D_t| < 1) is the same in both.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <mlstm/mlstm.hpp>

#include "support/naive.hpp"
#include "support/random_inputs.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;
using mlstm::test::forms_budget;
using mlstm::test::SequenceCase;

// The unstabilized quantities of one (b, h), in long double, for moderate gates.
struct Unstabilized {
  std::vector<std::vector<long double>> numerator;  // N_t (DV)
  std::vector<long double> denominator;             // D_t
  std::vector<long double> parallel_m;              // max_s logD[t,s]
  std::vector<long double> recurrent_m;             // with the zero state's term
};

Unstabilized unstabilized(const SequenceCase<double>& c, Index b, Index hd) {
  const Index S = c.q.dimension(2), DQK = c.q.dimension(3), DV = c.v.dimension(3);
  Unstabilized u;
  long double lf_total = 0;  // sum_{r<=t} logsigmoid(f_r)
  for (Index t = 0; t < S; ++t) {
    lf_total += mlstm::test::naive::log_sigmoid<long double>(c.fgate(b, hd, t, 0));
    std::vector<long double> n(DV, 0);
    long double d = 0, m = -INFINITY;
    for (Index s = 0; s <= t; ++s) {
      long double f_sum = 0;
      for (Index r = s + 1; r <= t; ++r)
        f_sum += mlstm::test::naive::log_sigmoid<long double>(c.fgate(b, hd, r, 0));
      const long double log_decay = f_sum + c.igate(b, hd, s, 0);
      long double qk = 0;
      for (Index j = 0; j < DQK; ++j) qk += (long double)c.q(b, hd, t, j) * c.k(b, hd, s, j);
      const long double w = qk / std::sqrt((long double)DQK) * std::exp(log_decay);
      d += w;
      for (Index j = 0; j < DV; ++j) n[j] += w * c.v(b, hd, s, j);
      m = std::max(m, log_decay);
    }
    u.numerator.push_back(n);
    u.denominator.push_back(d);
    u.parallel_m.push_back(m);
    u.recurrent_m.push_back(std::max(m, lf_total + 0.0L));
  }
  return u;
}

// h predicted from the unstabilized quantities with a given stabilizer per row.
Tensor<double, 4> predicted_h(const SequenceCase<double>& c, double eps, bool recurrent_m) {
  const Index B = c.q.dimension(0), NH = c.q.dimension(1), S = c.q.dimension(2);
  const Index DV = c.v.dimension(3);
  Tensor<double, 4> h(B, NH, S, DV);
  for (Index b = 0; b < B; ++b)
    for (Index hd = 0; hd < NH; ++hd) {
      const Unstabilized u = unstabilized(c, b, hd);
      for (Index t = 0; t < S; ++t) {
        const long double m = recurrent_m ? u.recurrent_m[t] : u.parallel_m[t];
        const long double denominator =
            std::max(std::abs(u.denominator[t]), 1.0L) + eps * std::exp(m);
        for (Index j = 0; j < DV; ++j) h(b, hd, t, j) = double(u.numerator[t][j] / denominator);
      }
    }
  return h;
}

}  // namespace

TEST_CASE("parallel and recurrent agree when their stabilizers agree", "[properties]") {
  SequenceCase<double> c(2, 2, 48, 16, 12, 11, {-4, 4}, {-2, 6});
  // i_0 >= logsigmoid(f_0) (< 0) makes the zero state's term never the maximum.
  for (Index b = 0; b < 2; ++b)
    for (Index hd = 0; hd < 2; ++hd) c.igate(b, hd, 0, 0) = 0.5;
  const auto parallel = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate);
  const auto recurrent = mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate);
  MLSTM_CHECK_CLOSE(recurrent.h, parallel, forms_budget(parallel));
}

TEST_CASE("parallel and recurrent differ exactly by the eps exp(m) term otherwise",
          "[properties]") {
  // Strongly negative input gates: the zero state's term (about 0) dominates the recurrent
  // stabilizer while the parallel one is about -10. A large eps makes the difference visible.
  SequenceCase<double> c(1, 2, 24, 8, 8, 12, {-12, -8}, {3, 8});
  const double eps = 0.05;
  mlstm::ParallelOptions options;
  options.eps = eps;
  const auto parallel = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
  const auto recurrent = mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate, {eps});
  const auto expected_parallel = predicted_h(c, eps, false);
  const auto expected_recurrent = predicted_h(c, eps, true);
  MLSTM_CHECK_CLOSE(parallel, expected_parallel, 1e-10 * mlstm::test::magnitude(expected_parallel));
  MLSTM_CHECK_CLOSE(recurrent.h, expected_recurrent,
                    1e-10 * mlstm::test::magnitude(expected_recurrent));
  // And the difference is real, not within rounding.
  const auto gap = mlstm::test::max_difference(parallel, recurrent.h);
  INFO(gap.describe());
  CHECK(gap.max_abs > 1e3 * forms_budget(parallel));
}

TEST_CASE("adding a constant to every input gate changes nothing where the lower bound is "
          "inactive", "[properties]") {
  SequenceCase<double> c(1, 3, 40, 8, 8, 13, {-2, 2}, {1, 5});
  const double shift = 3.0;
  SequenceCase<double> shifted = c;
  shifted.igate = c.igate + shift;
  // eps = 0 is not allowed; a tiny eps keeps the eps exp(m) term below rounding.
  mlstm::ParallelOptions options;
  options.eps = 1e-30;
  const auto h = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
  const auto h_shifted = mlstm::parallel_stabilized(c.q, c.k, c.v, shifted.igate, c.fgate, options);
  // From h = N / max(|D|, 1): shifting i by a multiplies N and D by exp(a), so rows with
  // |D| >= 1 and |D| exp(a) >= 1 are unchanged; rows with |D| < 1 scale by exp(a) up to the bound.
  Index inactive_rows = 0, active_rows = 0;
  for (Index hd = 0; hd < 3; ++hd) {
    const Unstabilized u = unstabilized(c, 0, hd);
    for (Index t = 0; t < 40; ++t) {
      const bool bound_inactive = std::abs(u.denominator[t]) >= 1.0L;
      double row_gap = 0, row_scale = 0;
      for (Index j = 0; j < 8; ++j) {
        row_gap = std::max(row_gap, std::abs(h(0, hd, t, j) - h_shifted(0, hd, t, j)));
        row_scale = std::max(row_scale, std::abs(h(0, hd, t, j)));
      }
      CAPTURE(hd, t, double(u.denominator[t]), row_gap, row_scale);
      if (bound_inactive) {
        ++inactive_rows;
        CHECK(row_gap <= 1e-12 * std::max(1.0, row_scale));
      } else if (std::abs(u.denominator[t]) * std::exp(shift) <= 1.0L) {
        ++active_rows;  // bound active before and after: h scales by exp(shift)
        for (Index j = 0; j < 8; ++j)
          CHECK(h_shifted(0, hd, t, j) ==
                Approx(h(0, hd, t, j) * std::exp(shift)).epsilon(1e-9).margin(1e-300));
      }
    }
  }
  // Both kinds of rows occur, so neither branch of this test is vacuous.
  CHECK(inactive_rows > 10);
  CHECK(active_rows > 0);
}

TEMPLATE_TEST_CASE("finite inputs give finite outputs, whatever the gates", "[properties]", float,
                   double) {
  for (const double gate_scale : {1.0, 30.0, 100.0, 1e4}) {
    for (const Index S : {Index(1), Index(17), Index(300)}) {
      CAPTURE(gate_scale, S);
      SequenceCase<TestType> c(1, 2, S, 16, 8, 21 + S, {-gate_scale, gate_scale},
                               {-gate_scale, gate_scale});
      for (const bool rowwise : {true, false}) {
        mlstm::ParallelOptions options;
        options.stabilize_rowwise = rowwise;
        const auto h = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
        CHECK(std::isfinite(mlstm::test::magnitude(h)));
        bool all_finite = true;
        for (Index flat = 0; flat < h.size(); ++flat) all_finite = all_finite && std::isfinite(h.data()[flat]);
        CHECK(all_finite);
      }
      const auto out = mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate);
      bool all_finite = true;
      for (Index flat = 0; flat < out.h.size(); ++flat) all_finite = all_finite && std::isfinite(out.h.data()[flat]);
      for (Index flat = 0; flat < out.state.c.size(); ++flat) all_finite = all_finite && std::isfinite(out.state.c.data()[flat]);
      CHECK(all_finite);
    }
  }
}
