// The parameters of an mLSTM-only xLSTM language model: registration with the reference's names
// and shapes, the reference's initialization as an init plan, and its weight-decay rule.
//
//   mlstm::LMModelConfig config;  ... set fields ...
//   mlstm::Registry<float> registry;
//   mlstm::register_lm_model(registry, config);            // names as in the reference's state_dict
//   mlstm::Generator gen(0);
//   mlstm::apply_init_plan(mlstm::lm_model_init_plan(config), registry, gen);
//   auto groups = mlstm::get_weight_decay_optim_groups(registry, mlstm::lm_weight_decay_options(config));
//
// Each module has its own registration and plan functions, which register and name the
// module's parameters relative to the scope (plan: the prefix) it is given, so that the model
// code finds them under the same names. Registration order is the reference's
// named_parameters() order. Shapes, with E = embedding_dim, I = inner_embedding_dim,
// NH = num_heads, P = num_proj_heads = I / qkv_proj_blocksize, Q = I / P, K = conv1d_kernel_size,
// V = vocab_size, and [ ] when config.bias:
//
//   token embedding / head    token_embedding.weight (V, E)      lm_head.weight (V, E), tied or not
//   block stack               blocks.<b>.<block>                 post_blocks_norm.weight (E)
//   block                     xlstm_norm.weight (E)              xlstm.<layer>
//   layer                     learnable_skip (I)                 proj_up.weight (2I, E) [proj_up.bias (2I)]
//                             q_proj.weight (P, Q, Q) [q_proj.bias (I)], k_proj..., v_proj...
//                             conv1d.conv.weight (I, 1, K)       conv1d.conv.bias (I)
//                             mlstm_cell.<cell>                  proj_down.weight (E, I) [proj_down.bias (E)]
//   cell                      igate.weight (NH, 3I)  igate.bias (NH)  fgate.weight (NH, 3I)
//                             fgate.bias (NH)        outnorm.weight (I)
//
// The norms' weights are residual: the reference applies 1 + weight, so zero is the identity.
//
// Initialization. The reference's xLSTMLMModel.reset_parameters() makes these calls, in order
// (lm_model_reset_plan; stage reset_parameters):
//
//   for each block b (xLSTMBlock.reset_parameters):
//     mLSTMLayer.reset_parameters:
//       proj_up.weight               small_init_init_(dim=E)
//       proj_up.bias                 zeros_                              (bias only)
//       proj_down.weight             wang_init_(dim=E, num_blocks=num_blocks)
//       proj_down.bias               zeros_                              (bias only)
//       learnable_skip               ones_
//       q_proj, k_proj, v_proj       .weight small_init_init_(dim=E): the outer dim, not I
//                                    .bias zeros_                        (bias only)
//       mLSTMCell.reset_parameters:
//         outnorm.weight             zeros_
//         fgate.weight               zeros_
//         fgate.bias                 bias_linspace_init_(start=3.0, end=6.0)
//         igate.weight               zeros_
//         igate.bias                 normal_(mean=0, std=0.1)
//     xlstm_norm.weight              zeros_
//   post_blocks_norm.weight          zeros_                              (if present)
//   token_embedding.weight           small_init_init_(dim=E)
//   lm_head.weight                   small_init_init_(dim=E)             (untied only; tied, it
//                                                                         is the embedding)
//
// reset_parameters leaves the causal convolution alone: it keeps the values PyTorch's
// nn.Conv1d gave it on construction, kaiming_uniform_(a = sqrt(5)) for the weight, that is
// U(-b, b) with b = sqrt(3) * sqrt(2 / (1 + a^2)) / sqrt(fan_in), and U(-1/sqrt(fan_in),
// 1/sqrt(fan_in)) for the bias, where fan_in = K (the convolution is depthwise). Those two
// calls follow, per block, as stage construction (mlstm_layer_construction_plan), so that
// lm_model_init_plan initializes every parameter of a new model exactly once.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "mlstm/params/init_plan.hpp"
#include "mlstm/models/xlstm_lm/config.hpp"
#include "mlstm/params/registry.hpp"
#include "mlstm/params/weight_decay.hpp"

namespace mlstm {

// The bounds of PyTorch's default initialization of a convolution (and linear layer):
// kaiming_uniform_(weight, a = sqrt(5)) and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias.
inline double default_weight_init_bound(Index fan_in) {
  const double a = std::sqrt(5.0);
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  return std::sqrt(3.0) * (gain / std::sqrt(static_cast<double>(fan_in)));
}
inline double default_bias_init_bound(Index fan_in) {
  return 1.0 / std::sqrt(static_cast<double>(fan_in));
}

namespace detail {

inline std::string child_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

inline void append(std::vector<InitCall>& plan, const std::vector<InitCall>& more) {
  plan.insert(plan.end(), more.begin(), more.end());
}

}  // namespace detail

// ---- registration ----------------------------------------------------------------------------

// LayerNorm / MultiHeadLayerNorm of the reference with weight and no bias: "weight" (ndim).
template <typename T>
void register_layer_norm(const ParameterScope<T>& norm, Index ndim) {
  norm.add("weight", {ndim});
}

// nn.Linear(in_features, out_features, bias): "weight" (out, in) and "bias" (out).
template <typename T>
void register_linear(const ParameterScope<T>& linear, Index in_features, Index out_features,
                     bool bias) {
  linear.add("weight", {out_features, in_features});
  if (bias) linear.add("bias", {out_features});
}

template <typename T>
void register_mlstm_cell(const ParameterScope<T>& cell, const MLSTMCellConfig& config) {
  config.validate();
  register_linear(cell.scope("igate"), 3 * config.embedding_dim, config.num_heads, true);
  register_linear(cell.scope("fgate"), 3 * config.embedding_dim, config.num_heads, true);
  register_layer_norm(cell.scope("outnorm"), config.embedding_dim);
}

template <typename T>
void register_mlstm_layer(const ParameterScope<T>& layer, const MLSTMLayerConfig& config) {
  config.validate();
  const Index inner = config.inner_embedding_dim;
  layer.add("learnable_skip", {inner});
  register_linear(layer.scope("proj_up"), config.embedding_dim, 2 * inner, config.bias);
  for (const char* projection : {"q_proj", "k_proj", "v_proj"}) {
    const auto scope = layer.scope(projection);
    scope.add("weight", {config.num_proj_heads(), config.qkv_block_dim(), config.qkv_block_dim()});
    if (config.bias) scope.add("bias", {inner});
  }
  const auto conv = layer.scope("conv1d.conv");
  conv.add("weight", {inner, 1, config.conv1d_kernel_size});
  conv.add("bias", {inner});
  register_mlstm_cell(layer.scope("mlstm_cell"), config.cell());
  register_linear(layer.scope("proj_down"), inner, config.embedding_dim, config.bias);
}

template <typename T>
void register_mlstm_block(const ParameterScope<T>& block, const MLSTMLayerConfig& config) {
  config.validate();
  register_layer_norm(block.scope("xlstm_norm"), config.embedding_dim);
  register_mlstm_layer(block.scope("xlstm"), config);
}

template <typename T>
void register_block_stack(const ParameterScope<T>& stack, const LMModelConfig& config) {
  config.validate();
  const MLSTMLayerConfig layer = config.layer();
  for (Index b = 0; b < config.num_blocks; ++b)
    register_mlstm_block(stack.scope("blocks." + std::to_string(b)), layer);
  if (config.add_post_blocks_norm)
    register_layer_norm(stack.scope("post_blocks_norm"), config.embedding_dim);
}

// The whole language model. With tie_weights, lm_head.weight is a second name of
// token_embedding.weight.
template <typename T>
void register_lm_model(const ParameterScope<T>& model, const LMModelConfig& config) {
  config.validate();
  register_block_stack(model.scope("xlstm_block_stack"), config);
  Parameter<T>& embedding =
      model.add("token_embedding.weight", {config.vocab_size, config.embedding_dim});
  if (config.tie_weights) {
    model.tie("lm_head.weight", embedding);
  } else {
    register_linear(model.scope("lm_head"), config.embedding_dim, config.vocab_size, false);
  }
}

template <typename T>
void register_lm_model(Registry<T>& registry, const LMModelConfig& config) {
  register_lm_model(ParameterScope<T>(registry), config);
}

// ---- initialization ----------------------------------------------------------------------------

inline std::vector<InitCall> mlstm_cell_reset_plan(const std::string& prefix,
                                                   const MLSTMCellConfig& config) {
  config.validate();
  const auto name = [&](const std::string& child) { return detail::child_name(prefix, child); };
  return {InitCall::zeros(name("outnorm.weight")),
          InitCall::zeros(name("fgate.weight")),
          InitCall::bias_linspace(name("fgate.bias"), 3.0, 6.0),
          InitCall::zeros(name("igate.weight")),
          InitCall::normal(name("igate.bias"), 0.0, 0.1)};
}

inline std::vector<InitCall> mlstm_layer_reset_plan(const std::string& prefix,
                                                    const MLSTMLayerConfig& config) {
  config.validate();
  const auto name = [&](const std::string& child) { return detail::child_name(prefix, child); };
  std::vector<InitCall> plan;
  plan.push_back(InitCall::small_init(name("proj_up.weight"), config.embedding_dim));
  if (config.bias) plan.push_back(InitCall::zeros(name("proj_up.bias")));
  plan.push_back(InitCall::wang(name("proj_down.weight"), config.embedding_dim, config.num_blocks));
  if (config.bias) plan.push_back(InitCall::zeros(name("proj_down.bias")));
  plan.push_back(InitCall::ones(name("learnable_skip")));
  for (const std::string projection : {"q_proj", "k_proj", "v_proj"}) {
    plan.push_back(InitCall::small_init(name(projection + ".weight"), config.embedding_dim));
    if (config.bias) plan.push_back(InitCall::zeros(name(projection + ".bias")));
  }
  detail::append(plan, mlstm_cell_reset_plan(name("mlstm_cell"), config.cell()));
  return plan;
}

// What the layer's parameters untouched by reset_parameters get on construction.
inline std::vector<InitCall> mlstm_layer_construction_plan(const std::string& prefix,
                                                           const MLSTMLayerConfig& config) {
  config.validate();
  const Index fan_in = config.conv1d_kernel_size;  // depthwise: 1 input channel per group
  const double weight_bound = default_weight_init_bound(fan_in);
  const double bias_bound = default_bias_init_bound(fan_in);
  return {InitCall::uniform(detail::child_name(prefix, "conv1d.conv.weight"), -weight_bound,
                            weight_bound)
              .at_stage(InitStage::construction),
          InitCall::uniform(detail::child_name(prefix, "conv1d.conv.bias"), -bias_bound, bias_bound)
              .at_stage(InitStage::construction)};
}

inline std::vector<InitCall> mlstm_block_reset_plan(const std::string& prefix,
                                                    const MLSTMLayerConfig& config) {
  std::vector<InitCall> plan = mlstm_layer_reset_plan(detail::child_name(prefix, "xlstm"), config);
  plan.push_back(InitCall::zeros(detail::child_name(prefix, "xlstm_norm.weight")));
  return plan;
}

inline std::vector<InitCall> block_stack_reset_plan(const std::string& prefix,
                                                    const LMModelConfig& config) {
  config.validate();
  std::vector<InitCall> plan;
  for (Index b = 0; b < config.num_blocks; ++b) {
    detail::append(plan, mlstm_block_reset_plan(
                             detail::child_name(prefix, "blocks." + std::to_string(b)),
                             config.layer()));
  }
  if (config.add_post_blocks_norm)
    plan.push_back(InitCall::zeros(detail::child_name(prefix, "post_blocks_norm.weight")));
  return plan;
}

// The calls of the reference's xLSTMLMModel.reset_parameters(), in order.
inline std::vector<InitCall> lm_model_reset_plan(const LMModelConfig& config,
                                                 const std::string& prefix = "") {
  std::vector<InitCall> plan =
      block_stack_reset_plan(detail::child_name(prefix, "xlstm_block_stack"), config);
  plan.push_back(
      InitCall::small_init(detail::child_name(prefix, "token_embedding.weight"), config.embedding_dim));
  if (!config.tie_weights) {
    plan.push_back(
        InitCall::small_init(detail::child_name(prefix, "lm_head.weight"), config.embedding_dim));
  }
  return plan;
}

// Every parameter of a new model once: the reset_parameters calls, then the construction
// values of the convolutions, block by block.
inline std::vector<InitCall> lm_model_init_plan(const LMModelConfig& config,
                                                const std::string& prefix = "") {
  std::vector<InitCall> plan = lm_model_reset_plan(config, prefix);
  for (Index b = 0; b < config.num_blocks; ++b) {
    const std::string block =
        detail::child_name(prefix, "xlstm_block_stack.blocks." + std::to_string(b));
    detail::append(plan, mlstm_layer_construction_plan(detail::child_name(block, "xlstm"),
                                                       config.layer()));
  }
  return plan;
}

// ---- weight decay ----------------------------------------------------------------------------

// The language model's groups: `rule` for every parameter, except the token embedding (and a
// head tied to it), which goes to the group config.weight_decay_on_embedding chooses.
inline WeightDecayOptions lm_weight_decay_options(const LMModelConfig& config,
                                                  WeightDecayRule rule = WeightDecayRule::name) {
  WeightDecayOptions options;
  options.rule = rule;
  options.overrides.emplace_back("token_embedding.weight", config.weight_decay_on_embedding);
  return options;
}

}  // namespace mlstm
