// Element-wise work over many flat arrays (the optimizer's update of every parameter, the global
// gradient norm) cut into pieces for the thread pool. The pieces depend on the arrays' sizes
// only, so a result summed piece by piece in order does not depend on the thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "mlstm/tensor.hpp"

namespace mlstm::detail {

// Values [begin, end) of array number `array`.
struct Piece {
  std::size_t array;
  Index begin, end;
};

// Values per piece: enough work to be worth handing to a thread, few enough to balance.
inline constexpr Index piece_values = Index(1) << 15;

// Appends the pieces of array number `array` of `size` values.
inline void append_pieces(std::vector<Piece>& pieces, std::size_t array, Index size) {
  for (Index begin = 0; begin < size; begin += piece_values)
    pieces.push_back(Piece{array, begin, std::min(size, begin + piece_values)});
}

}  // namespace mlstm::detail
