// Data-parallel training over MPI: every rank holds the whole model, runs forward_backward on its
// own shard of the batch, and the gradients are then averaged across ranks:
//
//   MPI_Init(&argc, &argv);
//   ... each rank: optimizer.zero_grad(); loss = model.forward_backward(shard_tokens,
//   shard_targets); mlstm::all_reduce_gradients(model.registry(), MPI_COMM_WORLD);     // sum, then
//   / ranks loss = mlstm::all_reduce_mean(loss, MPI_COMM_WORLD);
//   mlstm::clip_grad_norm(model.registry(), clip);  optimizer.step();  // the same on every rank
//
// With shards of equal size and no ignored targets, the averaged gradient is the gradient of the
// mean loss over the whole batch, so R ranks with batch B train as one process with batch R * B
// (to rounding: the sums are grouped differently). Every rank applies the same update to the
// same parameters, so they stay identical; only rank 0 needs to write checkpoints and logs.
//
// Not included by the umbrella headers: include it in a program built against MPI (the CMake
// option MLSTM_MPI finds MPI::MPI_CXX for the project's own MPI programs).
#pragma once

#include <mpi.h>

#include <string>
#include <type_traits>

#include "mlstm/errors.hpp"
#include "mlstm/params/registry.hpp"

namespace mlstm {
namespace detail {

template <typename T>
MPI_Datatype mpi_type() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double");
  return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

inline void check_mpi(int code, const char* what) {
  if (code != MPI_SUCCESS)
    throw ValueError("comm", std::string(what) + " failed with MPI error " + std::to_string(code));
}

}  // namespace detail

// Replaces every gradient (of the parameters requiring one) by its mean over the ranks of
// `comm`, in place: MPI_Allreduce with MPI_SUM, then a division by the number of ranks. All
// ranks must hold registries with the same parameters in the same order.
template <typename T>
void all_reduce_gradients(Registry<T>& registry, MPI_Comm comm) {
  int ranks = 1;
  detail::check_mpi(MPI_Comm_size(comm, &ranks), "MPI_Comm_size");
  for (Parameter<T>& param : registry) {
    if (!param.requires_grad()) continue;
    detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, param.grad_data(), static_cast<int>(param.size()),
                                    detail::mpi_type<T>(), MPI_SUM, comm),
                      "MPI_Allreduce");
    const T scale = static_cast<T>(ranks);
    T* grad = param.grad_data();
    for (Index i = 0; i < param.size(); ++i) grad[i] /= scale;
  }
}

// The mean of `value` over the ranks of `comm` (e.g. the loss of each rank's shard).
inline double all_reduce_mean(double value, MPI_Comm comm) {
  int ranks = 1;
  detail::check_mpi(MPI_Comm_size(comm, &ranks), "MPI_Comm_size");
  double sum = 0;
  detail::check_mpi(MPI_Allreduce(&value, &sum, 1, MPI_DOUBLE, MPI_SUM, comm), "MPI_Allreduce");
  return sum / static_cast<double>(ranks);
}

}  // namespace mlstm
