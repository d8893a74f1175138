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
// recurrent step in place on the state, a longer sequence the chunkwise form from it. A short
// sequence (up to options.parallel_prefill_max steps) from a state that is all zeros (a prompt's
// prefill) runs the parallel form instead, and the state after it is built as one chunk's
// contribution: the chunkwise form would spend most of its work at that length on the
// state's term q C, which is zero there. The forms agree as the chunkwise form's comment says.
//
// The reference backend builds a causal (context_length, context_length) mask once and fails on
// longer sequences. The kernels here apply the causal mask implicitly, so nothing is prepared
// and sequences of any length work.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

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
  // From an all-zero state, sequences of up to this many steps run the parallel form (see the
  // file comment); 0: always the chunkwise form. >= 0. For the 120M model's heads (DH = 384,
  // chunk 64) the parallel path measured 1.3 to 1.4x faster at 128 and 256 steps, level at 512
  // (bench_model_layers' kernel stage).
  Index parallel_prefill_max = 256;
};

namespace detail {

// ValueError naming the invalid option, so that a model can check its options once, up front.
inline void check_kernel_options(const KernelOptions& options) {
  expect_valid_eps(options.eps, "options.eps");
  expect_valid_chunk_size(options.chunk_size, "options.chunk_size");
  resolve_num_threads(options.num_threads, "options.num_threads");
  if (options.parallel_prefill_max < 0) {
    throw ValueError("options.parallel_prefill_max",
                     "expected >= 0, got " + std::to_string(options.parallel_prefill_max));
  }
}

inline ChunkwiseOptions chunkwise_options(const KernelOptions& options) {
  return {options.chunk_size, options.eps, options.num_threads};
}

// Whether every value of x (size values) is zero (+0 or -0); a block at a time, each block an OR
// of the values' bits but the sign, which runs in vector registers at the memory's speed (a
// comparison per value ran at a quarter of it on a prefill's state).
template <typename T>
bool all_zero(const T* x, Index size) {
  static_assert(std::is_floating_point_v<T>);
  using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  static_assert(sizeof(Bits) == sizeof(T));
  constexpr Bits magnitude = ~Bits(0) >> 1;
  constexpr Index block = 1024;
  for (Index start = 0; start < size; start += block) {
    const Index end = std::min(size, start + block);
    Bits any = 0;
    for (Index i = start; i < end; ++i) {
      Bits bits;
      std::memcpy(&bits, x + i, sizeof bits);
      any |= bits & magnitude;
    }
    if (any != 0) return false;
  }
  return true;
}

template <typename T>
bool is_zero_state(const RecurrentState<T>& state) {
  return all_zero(state.m.data(), state.m.size()) && all_zero(state.n.data(), state.n.size()) &&
         all_zero(state.c.data(), state.c.size());
}

// h by the parallel form and the state after the sequence from the zero state (replacing
// `state`, whose shape is checked) as one chunk: per batch-head, the chunk's contribution
// (kv, ksum) and advance_chunk_state from c = 0, n = 0, m = 0, the chunkwise form's own steps.
template <typename T>
Tensor<T, 4> parallel_prefill(const SequenceInputs<T>& in, RecurrentState<T>& state,
                              const KernelOptions& options) {
  const SequenceShape& s = in.shape;
  const int threads = resolve_num_threads(options.num_threads, "options.num_threads");
  const ParallelOptions parallel;  // the causal mask, the global stabilizer
  Tensor<T, 4> h(s.batch, s.heads, s.seq_len, s.v_dim);
  parallel_forward(operands_of(in), resolve_mask(parallel.mask, s.seq_len),
                   parallel.stabilize_rowwise, static_cast<T>(options.eps), threads, h.data());
  const Index heads = s.batch * s.heads, c_size = s.qk_dim * s.v_dim;
  const double flops = 2.0 * static_cast<double>(heads * s.seq_len * c_size);
  parallel_for(heads, threads_for_work(threads, heads, flops), [&](Index head) {
    const Index row = head * s.seq_len;
    ChunkGates gates;
    gates.compute(in.igate_preact.data() + row, in.fgate_preact.data() + row, s.seq_len);
    Eigen::Matrix<T, Eigen::Dynamic, 1> kv(c_size), ksum(s.qk_dim);
    RowMatrix<T> weighted_keys;
    chunk_state_contribution(in.k.data() + row * s.qk_dim, in.v.data() + row * s.v_dim, gates,
                             s.qk_dim, s.v_dim, kv.data(), ksum.data(), weighted_keys);
    T* c = state.c.data() + head * c_size;
    T* n = state.n.data() + head * s.qk_dim;
    double m = 0.0;
    advance_chunk_state(c, n, 0.0, kv.data(), ksum.data(), gates, s.qk_dim, s.v_dim, c, n, m);
    state.m.data()[head] = static_cast<T>(m);
  });
  return h;
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
// S > 1 the chunkwise form (options.chunk_size), or the parallel form from an all-zero state
// when S <= options.parallel_prefill_max. On error the state is left as it was.
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
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    if (v_view.dimension(2) <= options.parallel_prefill_max) {
      const int threads = detail::resolve_num_threads(options.num_threads, "options.num_threads");
      const auto in = detail::check_sequence_inputs(q, k, v, igate_preact, fgate_preact, threads);
      detail::check_state_argument(state, in.shape, detail::initial_state_names);
      if (detail::is_zero_state(state)) return detail::parallel_prefill(in, state, options);
    }
  }
  auto out = chunkwise_stabilized(q, k, v, igate_preact, fgate_preact,
                                  detail::chunkwise_options(options), state);
  state = std::move(out.state);
  return std::move(out.h);
}

}  // namespace mlstm
