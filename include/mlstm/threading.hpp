// PLACEHOLDER until the `fast` branch's threading lands: same names, runs the loop serially.
#pragma once

#include "mlstm/tensor.hpp"

namespace mlstm {

inline void set_num_threads(int) {}

namespace detail {

template <typename Fn>
void parallel_for(Index count, Fn&& fn) {
  for (Index index = 0; index < count; ++index) fn(index);
}

}  // namespace detail
}  // namespace mlstm
