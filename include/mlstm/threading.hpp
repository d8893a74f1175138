// PLACEHOLDER until the `fast` branch's threading lands: runs the loop serially.
#pragma once

#include "mlstm/tensor.hpp"

namespace mlstm::detail {

template <typename Fn>
void parallel_for(Index count, Fn&& fn) {
  for (Index index = 0; index < count; ++index) fn(index);
}

}  // namespace mlstm::detail
