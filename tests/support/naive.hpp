// Plain-loop mLSTM, written straight from the equations of docs/design.md with no shared code
// from the library: the yardstick every optimised kernel is compared with.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include <mlstm/tensor.hpp>

namespace mlstm::test::naive {

template <typename T>
T log_sigmoid(T x) {
  // log(1 / (1 + exp(-x))), arranged so exp never overflows.
  return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x));
}

// Parallel form. visible(t, s) says which pairs the mask allows (nullopt: causal).
// F[t,s] is summed directly: sum_{r=s+1..t} lf_r for s <= t, and -sum_{r=t+1..s} lf_r for s > t
// (what the difference of cumulative sums gives for a non-causal mask).
template <typename T>
Tensor<T, 4> parallel(const Tensor<T, 4>& q, const Tensor<T, 4>& k, const Tensor<T, 4>& v,
                      const Tensor<T, 4>& igate, const Tensor<T, 4>& fgate,
                      const std::optional<Tensor<bool, 2>>& visible, bool stabilize_rowwise,
                      T eps) {
  const Index B = q.dimension(0), NH = q.dimension(1), S = q.dimension(2);
  const Index DQK = q.dimension(3), DV = v.dimension(3);
  const T minus_inf = -std::numeric_limits<T>::infinity();
  Tensor<T, 4> h(B, NH, S, DV);
  h.setZero();
  for (Index b = 0; b < B; ++b) {
    for (Index hd = 0; hd < NH; ++hd) {
      std::vector<T> lf(S);
      for (Index t = 0; t < S; ++t) lf[t] = log_sigmoid(fgate(b, hd, t, 0));
      std::vector<std::vector<T>> log_d(S, std::vector<T>(S, minus_inf));
      T global_max = minus_inf;
      for (Index t = 0; t < S; ++t) {
        for (Index s = 0; s < S; ++s) {
          const bool allowed = visible ? (*visible)(t, s) : s <= t;
          if (!allowed) continue;
          T f_sum = 0;
          if (s <= t) {
            for (Index r = s + 1; r <= t; ++r) f_sum += lf[r];
          } else {
            for (Index r = t + 1; r <= s; ++r) f_sum -= lf[r];
          }
          log_d[t][s] = f_sum + igate(b, hd, s, 0);
          global_max = std::max(global_max, log_d[t][s]);
        }
      }
      for (Index t = 0; t < S; ++t) {
        T m = stabilize_rowwise ? *std::max_element(log_d[t].begin(), log_d[t].end()) : global_max;
        if (m == minus_inf) continue;  // an empty row: h = 0
        std::vector<T> weight(S, 0);
        T sum = 0;
        for (Index s = 0; s < S; ++s) {
          if (log_d[t][s] == minus_inf) continue;
          T qk = 0;
          for (Index d = 0; d < DQK; ++d) qk += q(b, hd, t, d) * k(b, hd, s, d);
          weight[s] = qk / std::sqrt(static_cast<T>(DQK)) * std::exp(log_d[t][s] - m);
          sum += weight[s];
        }
        const T normalizer = std::max(std::abs(sum), std::exp(-m)) + eps;
        for (Index j = 0; j < DV; ++j) {
          T acc = 0;
          for (Index s = 0; s < S; ++s) acc += weight[s] * v(b, hd, s, j);
          h(b, hd, t, j) = acc / normalizer;
        }
      }
    }
  }
  return h;
}

template <typename T>
struct State {
  Tensor<T, 4> c, n, m;
};

// Recurrent form over a whole sequence from `state` (updated in place); returns h.
template <typename T>
Tensor<T, 4> recurrent(const Tensor<T, 4>& q, const Tensor<T, 4>& k, const Tensor<T, 4>& v,
                       const Tensor<T, 4>& igate, const Tensor<T, 4>& fgate, State<T>& state,
                       T eps) {
  const Index B = q.dimension(0), NH = q.dimension(1), S = q.dimension(2);
  const Index DQK = q.dimension(3), DV = v.dimension(3);
  Tensor<T, 4> h(B, NH, S, DV);
  for (Index b = 0; b < B; ++b) {
    for (Index hd = 0; hd < NH; ++hd) {
      for (Index t = 0; t < S; ++t) {
        const T lf = log_sigmoid(fgate(b, hd, t, 0));
        const T i = igate(b, hd, t, 0);
        const T m_old = state.m(b, hd, 0, 0);
        const T m_new = std::max(lf + m_old, i);
        const T fa = std::exp(lf + m_old - m_new);
        const T ia = std::exp(i - m_new);
        const T scale = 1 / std::sqrt(static_cast<T>(DQK));
        for (Index d = 0; d < DQK; ++d) {
          for (Index j = 0; j < DV; ++j)
            state.c(b, hd, d, j) = fa * state.c(b, hd, d, j) + ia * k(b, hd, t, d) * scale * v(b, hd, t, j);
          state.n(b, hd, d, 0) = fa * state.n(b, hd, d, 0) + ia * k(b, hd, t, d) * scale;
        }
        state.m(b, hd, 0, 0) = m_new;
        T qn = 0;
        for (Index d = 0; d < DQK; ++d) qn += q(b, hd, t, d) * state.n(b, hd, d, 0);
        const T denominator = std::max(std::abs(qn), std::exp(-m_new)) + eps;
        for (Index j = 0; j < DV; ++j) {
          T acc = 0;
          for (Index d = 0; d < DQK; ++d) acc += q(b, hd, t, d) * state.c(b, hd, d, j);
          h(b, hd, t, j) = acc / denominator;
        }
      }
    }
  }
  return h;
}

}  // namespace mlstm::test::naive
