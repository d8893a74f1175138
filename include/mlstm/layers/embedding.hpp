// The token embedding of the model, the reference's nn.Embedding (and, tied, the head's weight):
//
//   ids (rows) of [0, V), weight (V, E) -> x (rows, E),   x[r] = weight[ids[r]]
//
// Backward, given dx (rows, E): dweight[ids[r]] += dx[r] (a token seen twice gets both rows).
// What the forward keeps for it: the ids. The ids are validated by the caller (the model checks
// them against its vocabulary before anything is computed).
#pragma once

#include <algorithm>

#include "mlstm/tensor.hpp"

namespace mlstm {
namespace detail {

template <typename T, typename Id>
void embedding_forward(const Id* ids, Index rows, const T* weight, Index dim, T* x) {
  for (Index r = 0; r < rows; ++r) {
    const T* row = weight + static_cast<Index>(ids[r]) * dim;
    std::copy(row, row + dim, x + r * dim);
  }
}

// dweight (V, E) accumulated, in row order (the result does not depend on threads).
template <typename T, typename Id>
void embedding_backward(const Id* ids, Index rows, Index dim, const T* dx, T* dweight) {
  for (Index r = 0; r < rows; ++r) {
    T* row = dweight + static_cast<Index>(ids[r]) * dim;
    const T* gradient = dx + r * dim;
    for (Index j = 0; j < dim; ++j) row[j] += gradient[j];
  }
}

}  // namespace detail
}  // namespace mlstm
