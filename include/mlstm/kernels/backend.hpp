// Choosing a kernel: what the mlstm_kernels backend does for the reference's layer. One options
// struct says which kernel runs a whole sequence and how; kernel_forward runs it.
//
//   mlstm::KernelOptions options;
//   options.forward_kernel = mlstm::SequenceKernel::chunkwise;
//   auto h = mlstm::kernel_forward(q, k, v, i, f, options);           // (B, NH, S, DV)
//
//   auto state = mlstm::RecurrentState<float>::zeros(B, NH, DQK, DV);  // a prompt, then steps
//   auto h_prompt = mlstm::kernel_forward(q, k, v, i, f, state, options);      // chunkwise
//   auto h_next = mlstm::kernel_forward(q1, k1, v1, i1, f1, state, options);  // S = 1: a step
//
// From the zero state, options.forward_kernel runs (the reference's layer uses the parallel
// form). Continuing a state is the reference backend's inference mode: a single step runs the
// recurrent step in place on the state, a longer sequence the chunkwise form from it.
//
// The reference backend builds a causal (context_length, context_length) mask once and fails on
// longer sequences. The kernels here apply the causal mask implicitly, so nothing is prepared
// and sequences of any length work.
#pragma once

#include "mlstm/detail/checks.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/kernels/chunkwise.hpp"
#include "mlstm/kernels/parallel.hpp"
#include "mlstm/kernels/recurrent.hpp"
#include "mlstm/kernels/state.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

enum class SequenceKernel {
  parallel,   // parallel_stabilized
  chunkwise,  // chunkwise_stabilized with options.chunk_size
  recurrent,  // recurrent_sequence
};

struct KernelOptions {
  SequenceKernel forward_kernel = SequenceKernel::parallel;  // a whole sequence, zero state
  Index chunk_size = 64;  // of the chunkwise form (forward_kernel, and continuing a state)
  double eps = 1e-6;      // added to the normalizer; finite and > 0
  int num_threads = 0;    // 0: the library default (mlstm::set_num_threads)
};

namespace detail {

// ValueError naming the invalid option, so that a model can check its options once, up front.
inline void check_kernel_options(const KernelOptions& options) {
  expect_valid_eps(options.eps, "options.eps");
  expect_valid_chunk_size(options.chunk_size, "options.chunk_size");
  resolve_num_threads(options.num_threads, "options.num_threads");
}

inline ChunkwiseOptions chunkwise_options(const KernelOptions& options) {
  return {options.chunk_size, options.eps, options.num_threads};
}

}  // namespace detail

// q, k (B, NH, S, DQK); v (B, NH, S, DV); gates (B, NH, S, 1) -> h (B, NH, S, DV), from the zero
// state with options.forward_kernel.
template <typename Q, typename K, typename V, typename I, typename F>
Tensor<ScalarOf<Q>, 4> kernel_forward(const Q& q, const K& k, const V& v, const I& igate_preact,
                                      const F& fgate_preact, const KernelOptions& options = {}) {
  detail::check_kernel_options(options);
  switch (options.forward_kernel) {
    case SequenceKernel::parallel: {
      ParallelOptions parallel;
      parallel.eps = options.eps;
      parallel.num_threads = options.num_threads;
      return parallel_stabilized(q, k, v, igate_preact, fgate_preact, parallel);
    }
    case SequenceKernel::chunkwise:
      return chunkwise_stabilized(q, k, v, igate_preact, fgate_preact,
                                  detail::chunkwise_options(options))
          .h;
    case SequenceKernel::recurrent:
      return recurrent_sequence(q, k, v, igate_preact, fgate_preact,
                                RecurrentOptions{options.eps, options.num_threads})
          .h;
  }
  throw ValueError("options.forward_kernel", "not a SequenceKernel");
}

// The same continuing from `state` (c (B, NH, DQK, DV), n (B, NH, DQK, 1), m (B, NH, 1, 1)),
// which is replaced by the state after the sequence: for S = 1 one recurrent step in place, for
// S > 1 the chunkwise form (options.chunk_size). On error the state is left as it was.
template <typename Q, typename K, typename V, typename I, typename F>
Tensor<ScalarOf<Q>, 4> kernel_forward(const Q& q, const K& k, const V& v, const I& igate_preact,
                                      const F& fgate_preact, RecurrentState<ScalarOf<Q>>& state,
                                      const KernelOptions& options = {}) {
  using T = ScalarOf<Q>;
  detail::check_kernel_options(options);
  const auto v_view = detail::const_view<4>(v, "v", "(B, NH, S, DV)");
  if (v_view.dimension(2) == 1) {
    Tensor<T, 4> h(v_view.dimension(0), v_view.dimension(1), 1, v_view.dimension(3));
    recurrent_step_stabilized_inplace(state, q, k, v, igate_preact, fgate_preact, h,
                                      RecurrentOptions{options.eps, options.num_threads});
    return h;
  }
  auto out = chunkwise_stabilized(q, k, v, igate_preact, fgate_preact,
                                  detail::chunkwise_options(options), state);
  state = std::move(out.state);
  return std::move(out.h);
}

}  // namespace mlstm
