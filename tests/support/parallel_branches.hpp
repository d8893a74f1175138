// Which branch of the parallel form's normalizer each row takes, and how far the rows are from
// the kinks of the forward, for tests that need a case on a given side (finite differences must
// not step across a kink; forms agree where the lower bound is not active).
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include <catch2/catch.hpp>

#include <mlstm/kernels/parallel_backward.hpp>

#include "support/naive.hpp"
#include "support/random_inputs.hpp"

namespace mlstm::test {

struct BranchReport {
  int rows = 0, abs_rows = 0, lower_bound_rows = 0, positive_sums = 0, negative_sums = 0;
  double normalizer_margin = HUGE_VAL;  // min over rows of ||b| - exp(-m)|
  double sum_margin = HUGE_VAL;         // min over rows of |b|
  double stabilizer_margin = HUGE_VAL;  // min gap between the largest and the next logD
};

// The row sums b_t from the library's forward; the stabilizers m_t and the logD gaps from the
// plain definitions (causal mask).
inline BranchReport parallel_branches(const SequenceCase<double>& c,
                                      const ParallelOptions& options) {
  const auto forward =
      parallel_stabilized_forward_with_cache(c.q, c.k, c.v, c.igate, c.fgate, options);
  const Index B = c.q.dimension(0), NH = c.q.dimension(1), S = c.q.dimension(2);
  BranchReport report;
  for (Index b = 0; b < B; ++b) {
    for (Index hd = 0; hd < NH; ++hd) {
      std::vector<std::vector<double>> log_decay(static_cast<size_t>(S));
      std::vector<double> all;
      for (Index t = 0; t < S; ++t) {
        for (Index s = 0; s <= t; ++s) {
          double f_sum = 0;
          for (Index r = s + 1; r <= t; ++r) f_sum += naive::log_sigmoid(c.fgate(b, hd, r, 0));
          log_decay[t].push_back(f_sum + c.igate(b, hd, s, 0));
        }
        std::sort(log_decay[t].rbegin(), log_decay[t].rend());
        all.insert(all.end(), log_decay[t].begin(), log_decay[t].end());
      }
      std::sort(all.rbegin(), all.rend());
      for (Index t = 0; t < S; ++t) {
        const std::vector<double>& sorted = options.stabilize_rowwise ? log_decay[t] : all;
        if (sorted.size() > 1)
          report.stabilizer_margin = std::min(report.stabilizer_margin, sorted[0] - sorted[1]);
        const double sum = forward.cache.row_sum(b, hd, t, 0);
        const double bound = std::exp(-sorted[0]);
        ++report.rows;
        if (std::abs(sum) > bound) {
          ++report.abs_rows;
          ++(sum > 0 ? report.positive_sums : report.negative_sums);
        } else {
          ++report.lower_bound_rows;
        }
        report.normalizer_margin =
            std::min(report.normalizer_margin, std::abs(std::abs(sum) - bound));
        report.sum_margin = std::min(report.sum_margin, std::abs(sum));
      }
    }
  }
  return report;
}

// The parallel backward of case c for dh with eps = 1e-14, after checking that some but not all
// rows are on the normalizer's lower bound. With so small an eps the recurrent and chunkwise
// forms compute the same function from the zero state (eps enters the forms' normalizers rescaled
// by different stabilizers), so their gradients must agree with these on both branches.
inline ParallelGradients<double> parallel_gradients_on_both_branches(
    const SequenceCase<double>& c, const Tensor<double, 4>& dh) {
  ParallelOptions options;
  options.eps = 1e-14;
  const BranchReport report = parallel_branches(c, options);
  INFO(report.lower_bound_rows << " of " << report.rows << " rows on the lower bound");
  CHECK(report.lower_bound_rows > 0);
  CHECK(report.lower_bound_rows < report.rows);
  return parallel_stabilized_backward(c.q, c.k, c.v, c.igate, c.fgate, dh, options);
}

}  // namespace mlstm::test
