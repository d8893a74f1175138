// Elementwise sums of activations on the worker pool.
#pragma once

#include "mlstm/detail/thread_pool.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::detail {

// y (rows, dim) += x (rows, dim), in blocks of rows on up to `threads` threads. Each element is
// one addition, so the result does not depend on the thread count.
template <typename T>
void add_rows(const T* x, Index rows, Index dim, T* y, int threads) {
  parallel_rows(rows, 64, threads, memory_pass_cost_per_value * static_cast<double>(dim),
                [&](Index begin, Index end) {
                  for (Index i = begin * dim; i < end * dim; ++i) y[i] += x[i];
                });
}

}  // namespace mlstm::detail
