// Where the language model's backward accumulates: the gradient buffers of its parameters in the
// registry, bound under the same names as the weights (bind_lm_model_weights). A tied head and
// embedding share one buffer, so both paths add into it.
#pragma once

#include <string>
#include <vector>

#include "mlstm/models/xlstm_lm/config.hpp"
#include "mlstm/models/xlstm_lm/mlstm_block.hpp"
#include "mlstm/params/registry.hpp"

namespace mlstm {

template <typename T>
struct LMModelGradients {
  T* token_embedding;  // (V, E)
  std::vector<MLSTMBlockGradients<T>> blocks;
  T* post_blocks_norm;  // (E), null without the norm
  T* lm_head;           // (V, E), the embedding's buffer when tied
};

namespace detail {

template <typename T>
T* gradient_of(Registry<T>& registry, const std::string& name) {
  return registry.get(name).grad_data();
}

template <typename T>
MLSTMLayerGradients<T> bind_layer_gradients(Registry<T>& registry, const std::string& prefix,
                                            bool bias) {
  const auto grad = [&](const char* name) { return gradient_of(registry, prefix + name); };
  const auto bias_of = [&](const char* name) { return bias ? grad(name) : nullptr; };
  return MLSTMLayerGradients<T>{
      grad("proj_up.weight"),
      bias_of("proj_up.bias"),
      grad("q_proj.weight"),
      bias_of("q_proj.bias"),
      grad("k_proj.weight"),
      bias_of("k_proj.bias"),
      grad("v_proj.weight"),
      bias_of("v_proj.bias"),
      grad("conv1d.conv.weight"),
      grad("conv1d.conv.bias"),
      MLSTMCellGradients<T>{grad("mlstm_cell.igate.weight"), grad("mlstm_cell.igate.bias"),
                            grad("mlstm_cell.fgate.weight"), grad("mlstm_cell.fgate.bias"),
                            grad("mlstm_cell.outnorm.weight")},
      grad("learnable_skip"),
      grad("proj_down.weight"),
      bias_of("proj_down.bias")};
}

}  // namespace detail

// The gradient buffers of the model `config` describes, registered in `registry` under `prefix`
// (register_lm_model's names). Throws ValueError for a missing parameter.
template <typename T>
LMModelGradients<T> bind_lm_model_gradients(Registry<T>& registry, const LMModelConfig& config,
                                            const std::string& prefix = "") {
  const std::string stack = prefix + "xlstm_block_stack.";
  LMModelGradients<T> grads{detail::gradient_of(registry, prefix + "token_embedding.weight"),
                            {},
                            config.add_post_blocks_norm
                                ? detail::gradient_of(registry, stack + "post_blocks_norm.weight")
                                : nullptr,
                            detail::gradient_of(registry, prefix + "lm_head.weight")};
  for (Index b = 0; b < config.num_blocks; ++b) {
    const std::string block = stack + "blocks." + std::to_string(b) + ".";
    grads.blocks.push_back(MLSTMBlockGradients<T>{
        detail::gradient_of(registry, block + "xlstm_norm.weight"),
        detail::bind_layer_gradients(registry, block + "xlstm.", config.bias)});
  }
  return grads;
}

}  // namespace mlstm
