// The backend of the mLSTM layer: chooses and runs a kernel for a whole sequence, configured as
// the mlstm_kernels backend is (mode, kernel, chunk size, return of the last state).
//
//   mlstm::BackendConfig config;
//   config.assign_model_config_params(model_config);   // copies model_config.context_length
//   config.kernel = mlstm::SequenceKernel::chunkwise;
//   mlstm::Backend backend(config);
//   auto h = backend.forward(q, k, v, igate_preact, fgate_preact);   // (B, NH, S, DV)
//
//   config.mode = mlstm::BackendMode::inference;                     // prompt, then generation
//   mlstm::Backend generate(config);
//   auto out = generate.run(q, k, v, igate_preact, fgate_preact);    // h and out.last_state
//   auto next = generate.run(q1, k1, v1, i1, f1, *out.last_state);   // S = 1: one recurrent step
//
// Modes:
//   train      config.kernel runs from the zero state (chunkwise and recurrent also from a given
//              initial state); run() returns the last state when config.return_last_state.
//   inference  S > 1: the chunkwise kernel (config.chunk_size); S = 1: one recurrent step; from
//              the given state or the zero state. run() always returns the last state.
//
// The reference backend builds a causal (context_length, context_length) mask once and fails on
// sequences longer than context_length. The kernels here apply the causal mask implicitly, so
// nothing is prepared and sequences of any length work.
#pragma once

#include <optional>
#include <string>

#include "mlstm/kernels/chunkwise.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/kernels/parallel.hpp"
#include "mlstm/kernels/recurrent.hpp"
#include "mlstm/kernels/state.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

enum class SequenceKernel {
  parallel,   // parallel_stabilized: from the zero state, no state out
  chunkwise,  // chunkwise_stabilized with config.chunk_size
  recurrent,  // recurrent_sequence
};

enum class BackendMode {
  train,      // config.kernel
  inference,  // chunkwise for S > 1, a recurrent step for S = 1; always returns the last state
};

struct BackendConfig {
  Index context_length = -1;  // informational: the model's training context; -1 = not set
  double eps = 1e-6;
  BackendMode mode = BackendMode::train;
  SequenceKernel kernel = SequenceKernel::parallel;  // the kernel of train mode
  Index chunk_size = 64;                             // of the chunkwise kernel (>= 1)
  bool return_last_state = false;                    // train mode: run() returns the last state too
  int num_threads = 0;  // 0: the library default (mlstm::set_num_threads)

  // Copies the context length of a model configuration (any type with a `context_length`).
  template <typename ModelConfig>
  void assign_model_config_params(const ModelConfig& model_config) {
    context_length = static_cast<Index>(model_config.context_length);
  }
};

// What run() returns: h (B, NH, S, DV), and the state after the last step when the configuration
// asks for it (inference mode, or return_last_state).
template <typename T>
struct BackendOutput {
  Tensor<T, 4> h;
  std::optional<RecurrentState<T>> last_state;
};

class Backend {
 public:
  // Throws ValueError for an invalid eps, chunk size or thread count, and for return_last_state
  // with the parallel kernel in train mode (the parallel form has no state).
  explicit Backend(BackendConfig config = {}) : config_(config) {
    detail::expect_valid_eps(config_.eps, "config.eps");
    if (config_.chunk_size < 1) {
      throw ValueError("config.chunk_size",
                       "expected a chunk size >= 1, got " + std::to_string(config_.chunk_size));
    }
    detail::resolve_num_threads(config_.num_threads, "config.num_threads");
    if (config_.mode == BackendMode::train && config_.kernel == SequenceKernel::parallel &&
        config_.return_last_state) {
      throw ValueError("config.return_last_state",
                       "the parallel kernel has no state to return: use the chunkwise or the "
                       "recurrent kernel, or inference mode");
    }
  }

  const BackendConfig& config() const { return config_; }

  // q, k (B, NH, S, DQK); v (B, NH, S, DV); gates (B, NH, S, 1) -> h (B, NH, S, DV), from the
  // zero state.
  template <typename Q, typename K, typename V, typename I, typename F>
  Tensor<detail::scalar_of<Q>, 4> forward(const Q& q, const K& k, const V& v, const I& igate_preact,
                                          const F& fgate_preact) const {
    return run(q, k, v, igate_preact, fgate_preact).h;
  }

  // As forward, and the last state when the configuration asks for it.
  template <typename Q, typename K, typename V, typename I, typename F>
  BackendOutput<detail::scalar_of<Q>> run(const Q& q, const K& k, const V& v, const I& igate_preact,
                                          const F& fgate_preact) const {
    return run_from(q, k, v, igate_preact, fgate_preact, nullptr);
  }

  // As run, from `initial_state` (c (B, NH, DQK, DV), n (B, NH, DQK, 1), m (B, NH, 1, 1)).
  // Throws ValueError in train mode with the parallel kernel, which starts from the zero state.
  template <typename Q, typename K, typename V, typename I, typename F>
  BackendOutput<detail::scalar_of<Q>> run(
      const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact,
      const RecurrentState<detail::scalar_of<Q>>& initial_state) const {
    return run_from(q, k, v, igate_preact, fgate_preact, &initial_state);
  }

  // The backend has no parameters; present so that layer code can call it uniformly.
  void reset_parameters() {}

 private:
  template <typename Q, typename K, typename V, typename I, typename F>
  BackendOutput<detail::scalar_of<Q>> run_from(
      const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact,
      const RecurrentState<detail::scalar_of<Q>>* initial_state) const {
    using T = detail::scalar_of<Q>;
    const bool inference = config_.mode == BackendMode::inference;
    const bool keep_state = inference || config_.return_last_state;
    SequenceKernel kernel = config_.kernel;
    if (inference) {
      const Index seq_len = detail::const_view<4>(q, "q", "(B, NH, S, DQK)").dimension(2);
      kernel = seq_len == 1 ? SequenceKernel::recurrent : SequenceKernel::chunkwise;
    }
    BackendOutput<T> out;
    switch (kernel) {
      case SequenceKernel::parallel: {
        if (initial_state != nullptr) {
          throw ValueError("initial_state",
                           "the parallel kernel starts from the zero state: use the chunkwise "
                           "or the recurrent kernel to continue from a state");
        }
        ParallelOptions options;
        options.eps = config_.eps;
        options.num_threads = config_.num_threads;
        out.h = parallel_stabilized(q, k, v, igate_preact, fgate_preact, options);
        break;
      }
      case SequenceKernel::chunkwise: {
        ChunkwiseOptions options;
        options.chunk_size = config_.chunk_size;
        options.eps = config_.eps;
        options.num_threads = config_.num_threads;
        auto result =
            initial_state != nullptr
                ? chunkwise_stabilized(q, k, v, igate_preact, fgate_preact, options, *initial_state)
                : chunkwise_stabilized(q, k, v, igate_preact, fgate_preact, options);
        out.h = std::move(result.h);
        if (keep_state) out.last_state = std::move(result.state);
        break;
      }
      case SequenceKernel::recurrent: {
        auto result = initial_state != nullptr
                          ? recurrent_sequence(q, k, v, igate_preact, fgate_preact, *initial_state,
                                               config_.eps, config_.num_threads)
                          : recurrent_sequence(q, k, v, igate_preact, fgate_preact, config_.eps,
                                               config_.num_threads);
        out.h = std::move(result.h);
        if (keep_state) out.last_state = std::move(result.state);
        break;
      }
    }
    return out;
  }

  BackendConfig config_;
};

}  // namespace mlstm
