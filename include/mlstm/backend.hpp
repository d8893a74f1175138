// The backend of the mLSTM layer: chooses and runs a kernel for a whole sequence.
//
//   mlstm::BackendConfig config;
//   config.assign_model_config_params(model_config);   // copies model_config.context_length
//   mlstm::Backend backend(config);
//   auto h = backend.forward(q, k, v, igate_preact, fgate_preact);   // (B, NH, S, DV)
//
// The reference backend builds a causal (context_length, context_length) mask once and fails on
// sequences longer than context_length. The kernels here apply the causal mask implicitly, so
// nothing is prepared and sequences of any length work.
#pragma once

#include "mlstm/parallel.hpp"
#include "mlstm/recurrent.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

enum class SequenceKernel {
  parallel,   // parallel_stabilized
  recurrent,  // recurrent_sequence from the zero state
};

struct BackendConfig {
  Index context_length = -1;  // informational: the model's training context; -1 = not set
  double eps = 1e-6;
  SequenceKernel kernel = SequenceKernel::parallel;

  // Copies the context length of a model configuration (any type with a `context_length`).
  template <typename ModelConfig>
  void assign_model_config_params(const ModelConfig& model_config) {
    context_length = static_cast<Index>(model_config.context_length);
  }
};

class Backend {
 public:
  explicit Backend(BackendConfig config = {}) : config_(config) {
    detail::expect_valid_eps(config_.eps, "config.eps");
  }

  const BackendConfig& config() const { return config_; }

  // q, k (B, NH, S, DQK); v (B, NH, S, DV); gates (B, NH, S, 1) -> h (B, NH, S, DV).
  template <typename Q, typename K, typename V, typename I, typename F>
  Tensor<detail::scalar_of<Q>, 4> forward(const Q& q, const K& k, const V& v,
                                          const I& igate_preact, const F& fgate_preact) const {
    switch (config_.kernel) {
      case SequenceKernel::recurrent:
        return recurrent_sequence(q, k, v, igate_preact, fgate_preact, config_.eps).h;
      case SequenceKernel::parallel:
      default: {
        ParallelOptions options;
        options.eps = config_.eps;
        return parallel_stabilized(q, k, v, igate_preact, fgate_preact, options);
      }
    }
  }

  // The backend has no parameters; present so that layer code can call it uniformly.
  void reset_parameters() {}

 private:
  BackendConfig config_;
};

}  // namespace mlstm
