// The edge sweep the kernel tests share: problem sizes and gate ranges that reach every branch
// of the forms (S = 1, prime S, odd head sizes, DQK != DV, B and NH > 1; typical, wide and
// extreme gates).
#pragma once

#include <mlstm/tensor.hpp>

#include "support/random_inputs.hpp"

namespace mlstm::test {

struct Sizes {
  Index B, NH, S, DQK, DV;
};

inline constexpr Sizes sweep_sizes[] = {
    {1, 1, 1, 8, 8}, {2, 3, 37, 16, 24}, {1, 2, 64, 7, 5}, {1, 1, 130, 16, 16}, {3, 1, 5, 1, 3},
};

struct Gates {
  const char* name;
  GateRange igate, fgate;
};

inline constexpr Gates sweep_gates[] = {
    {"typical", {-3, 3}, {0, 6}},
    {"wide", {-40, 40}, {-40, 40}},
    {"forget near 1", {-5, 5}, {15, 30}},
    {"forget near 0", {-5, 5}, {-30, -15}},
    {"input strongly negative", {-12, -8}, {2, 6}},
};

// The typical and the extreme ranges of sweep_gates (all but the strongly negative input gates),
// for the sweeps over long sequences.
inline constexpr Gates extreme_gates[] = {sweep_gates[0], sweep_gates[1], sweep_gates[2],
                                          sweep_gates[3]};

}  // namespace mlstm::test
