// Reproducible random inputs for the tests (std::mt19937_64 is specified bit for bit; the
// conversion to reals is done here, not by a std:: distribution whose output may vary).
#pragma once

#include <cstdint>
#include <random>

#include <mlstm/kernels/state.hpp>
#include <mlstm/tensor.hpp>

namespace mlstm::test {

class Random {
 public:
  explicit Random(std::uint64_t seed) : engine_(seed) {}

  double uniform(double low, double high) {
    const double unit = static_cast<double>(engine_() >> 11) * 0x1.0p-53;
    return low + (high - low) * unit;
  }

  template <typename T, int Rank>
  void fill_uniform(Tensor<T, Rank>& x, double low, double high) {
    for (Index flat = 0; flat < x.size(); ++flat) x.data()[flat] = static_cast<T>(uniform(low, high));
  }

 private:
  std::mt19937_64 engine_;
};

struct GateRange {
  double low, high;
};

// The five inputs of a sequence kernel: q, k (B, NH, S, DQK), v (B, NH, S, DV), gates (B, NH, S, 1).
template <typename T>
struct SequenceCase {
  Tensor<T, 4> q, k, v, igate, fgate;

  SequenceCase(Index B, Index NH, Index S, Index DQK, Index DV, std::uint64_t seed,
               GateRange igate_range = {-3, 3}, GateRange fgate_range = {0, 6})
      : q(B, NH, S, DQK), k(B, NH, S, DQK), v(B, NH, S, DV), igate(B, NH, S, 1),
        fgate(B, NH, S, 1) {
    Random random(seed);
    random.fill_uniform(q, -1.5, 1.5);
    random.fill_uniform(k, -1.5, 1.5);
    random.fill_uniform(v, -1.5, 1.5);
    random.fill_uniform(igate, igate_range.low, igate_range.high);
    random.fill_uniform(fgate, fgate_range.low, fgate_range.high);
  }

  template <typename U>
  SequenceCase<U> cast() const {
    SequenceCase<U> other(q.dimension(0), q.dimension(1), q.dimension(2), q.dimension(3),
                          v.dimension(3), 0);
    other.q = q.template cast<U>();
    other.k = k.template cast<U>();
    other.v = v.template cast<U>();
    other.igate = igate.template cast<U>();
    other.fgate = fgate.template cast<U>();
    return other;
  }
};

// A random recurrent state: c, n uniform in [-1, 1), m uniform in [m.low, m.high).
template <typename T>
RecurrentState<T> random_state(Index B, Index NH, Index DQK, Index DV, std::uint64_t seed,
                               GateRange m = {-4, 4}) {
  auto state = RecurrentState<T>::zeros(B, NH, DQK, DV);
  Random random(seed);
  random.fill_uniform(state.c, -1, 1);
  random.fill_uniform(state.n, -1, 1);
  random.fill_uniform(state.m, m.low, m.high);
  return state;
}

}  // namespace mlstm::test
