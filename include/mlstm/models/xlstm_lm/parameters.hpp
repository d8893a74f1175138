// The parameters of an mLSTM-only xLSTM language model, one parameter table per module
// (params/parameter_table.hpp): the reference's names and shapes, its initialization and its
// weight-decay override. Registration, the init plan, the forward's views
// (bind_lm_model_weights) and the configuration of a bare checkpoint (infer_lm_model_config)
// all come from these tables.
//
//   mlstm::LMModelConfig config;  ... set fields ...
//   mlstm::Registry<float> registry;
//   mlstm::register_lm_model(registry, config);    // names as in the reference's state_dict
//   mlstm::Generator gen(0);
//   mlstm::apply_init_plan(mlstm::lm_model_init_plan(config), registry, gen);
//   auto groups = mlstm::get_weight_decay_optim_groups(registry,
//                                                      mlstm::lm_weight_decay_options(config));
//
// Each module's table names its parameters relative to the module; a module's table is the same
// standing alone (e.g. registered under a scope) or inside the model. Rows are in the
// reference's named_parameters() order. Shapes, with E = embedding_dim, I = inner_embedding_dim,
// NH = num_heads, P = num_proj_heads = I / qkv_proj_blocksize, Q = I / P, K =
// conv1d_kernel_size, V = vocab_size, and [ ] when config.bias; the named extents (what a
// checkpoint's shapes give back) are V, E, I, NH, P and K:
//
//   model (lm_model_table)        xlstm_block_stack.<stack>   token_embedding.weight (V, E)
//                                 lm_head.weight (V, E): a second name of the embedding if tied
//   stack (block_stack_table)     blocks.<b>.<block>          post_blocks_norm.weight (E)
//   block (mlstm_block_table)     xlstm_norm.weight (E)       xlstm.<layer>
//   layer (mlstm_layer_table)     learnable_skip (I)          proj_up.weight (2I, E) [.bias (2I)]
//                                 q_proj.weight (P, Q, Q) [q_proj.bias (I)], k_proj..., v_proj...
//                                 conv1d.conv.weight (I, 1, K)  conv1d.conv.bias (I)
//                                 mlstm_cell.<cell>           proj_down.weight (E, I) [.bias (E)]
//   cell (mlstm_cell_table)       igate.weight (NH, 3I)  igate.bias (NH)  fgate.weight (NH, 3I)
//                                 fgate.bias (NH)        outnorm.weight (I)
//
// The norms' weights are residual: the reference applies 1 + weight, so zero is the identity.
//
// Initialization. The reference's xLSTMLMModel.reset_parameters() makes these calls, in order
// (each module's reset order below):
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
// nn.Conv1d gave it on construction, U(-b, b) with b = default_weight_init_bound(K) for the
// weight and default_bias_init_bound(K) for the bias (the convolution is depthwise: fan_in = K).
// Those rules have stage construction, so that the plan (reset calls, then the construction
// calls block by block) initializes every parameter of a new model exactly once.
//
// Weight decay: the group rule for every parameter, except the token embedding (and a head tied
// to it), which goes to the group config.weight_decay_on_embedding chooses.
#pragma once

#include <string>
#include <vector>

#include "mlstm/models/xlstm_lm/config.hpp"
#include "mlstm/params/init_plan.hpp"
#include "mlstm/params/parameter_table.hpp"
#include "mlstm/params/registry.hpp"
#include "mlstm/params/weight_decay.hpp"

namespace mlstm {

// mLSTMCell: the gates and the output norm, on the inner dimension.
inline ParameterTable mlstm_cell_table(const MLSTMCellConfig& config) {
  config.validate();
  const Extent inner = named_extent("inner_embedding_dim", config.embedding_dim);
  const Extent heads = named_extent("num_heads", config.num_heads);
  ParameterTable table;
  table.add("igate.weight", {heads, 3 * inner.value}, InitRule::zeros());
  table.add("igate.bias", {heads}, InitRule::normal(0.0, 0.1));
  table.add("fgate.weight", {heads, 3 * inner.value}, InitRule::zeros());
  table.add("fgate.bias", {heads}, InitRule::bias_linspace(3.0, 6.0));
  table.add("outnorm.weight", {inner}, InitRule::zeros());
  table.set_reset_order({"outnorm", "fgate", "igate"});
  return table;
}

// mLSTMLayer: up-projection, convolution, head-wise q/k/v, the cell, down-projection.
inline ParameterTable mlstm_layer_table(const MLSTMLayerConfig& config) {
  config.validate();
  const Extent embedding = named_extent("embedding_dim", config.embedding_dim);
  const Extent inner = named_extent("inner_embedding_dim", config.inner_embedding_dim);
  const Extent kernel = named_extent("conv1d_kernel_size", config.conv1d_kernel_size);
  const Index I = inner.value, E = embedding.value;
  const auto bias = [&](ParameterTable& table, const std::string& name, Index size) {
    if (config.bias) table.add(name, {size}, InitRule::zeros());
  };
  ParameterTable table;
  table.add("learnable_skip", {inner}, InitRule::ones());
  table.add("proj_up.weight", {2 * I, embedding}, InitRule::small_init(E));
  bias(table, "proj_up.bias", 2 * I);
  for (const std::string projection : {"q_proj", "k_proj", "v_proj"}) {
    table.add(projection + ".weight",
              {named_extent("num_proj_heads", config.num_proj_heads()), config.qkv_block_dim(),
               config.qkv_block_dim()},
              InitRule::small_init(E));  // the outer dim, as the reference has it
    bias(table, projection + ".bias", I);
  }
  const double weight_bound = default_weight_init_bound(kernel.value);
  const double bias_bound = default_bias_init_bound(kernel.value);
  table.add("conv1d.conv.weight", {inner, 1, kernel},
            InitRule::uniform(-weight_bound, weight_bound).at_stage(InitStage::construction));
  table.add("conv1d.conv.bias", {inner},
            InitRule::uniform(-bias_bound, bias_bound).at_stage(InitStage::construction));
  table.add_module("mlstm_cell", mlstm_cell_table(config.cell()));
  table.add("proj_down.weight", {embedding, inner}, InitRule::wang(E, config.num_blocks));
  bias(table, "proj_down.bias", E);
  table.set_reset_order(
      {"proj_up", "proj_down", "learnable_skip", "q_proj", "k_proj", "v_proj", "mlstm_cell"});
  return table;
}

// mLSTMBlock: pre-norm and the layer.
inline ParameterTable mlstm_block_table(const MLSTMLayerConfig& config) {
  ParameterTable table;
  table.add("xlstm_norm.weight", {named_extent("embedding_dim", config.embedding_dim)},
            InitRule::zeros());
  table.add_module("xlstm", mlstm_layer_table(config));
  table.set_reset_order({"xlstm", "xlstm_norm"});
  return table;
}

// xLSTMBlockStack: the blocks and the optional post-blocks norm.
inline ParameterTable block_stack_table(const LMModelConfig& config) {
  config.validate();
  const ParameterTable block = mlstm_block_table(config.layer());
  ParameterTable table;
  for (Index b = 0; b < config.num_blocks; ++b)
    table.add_module("blocks." + std::to_string(b), block);
  if (config.add_post_blocks_norm) {
    table.add("post_blocks_norm.weight", {named_extent("embedding_dim", config.embedding_dim)},
              InitRule::zeros());
  }
  return table;
}

// xLSTMLMModel: the block stack between the token embedding and the head.
inline ParameterTable lm_model_table(const LMModelConfig& config) {
  ParameterTable table;
  table.add_module("xlstm_block_stack", block_stack_table(config));
  const std::vector<Extent> embedding_shape{named_extent("vocab_size", config.vocab_size),
                                            named_extent("embedding_dim", config.embedding_dim)};
  table.add("token_embedding.weight", embedding_shape, InitRule::small_init(config.embedding_dim))
      .weight_decay = config.weight_decay_on_embedding;
  if (config.tie_weights) {
    table.tie("lm_head.weight", "token_embedding.weight");
  } else {
    table.add("lm_head.weight", embedding_shape, InitRule::small_init(config.embedding_dim));
  }
  return table;
}

// The whole language model under `model` (with tie_weights, lm_head.weight is a second name of
// token_embedding.weight).
template <typename T>
void register_lm_model(const ParameterScope<T>& model, const LMModelConfig& config) {
  register_parameters(model, lm_model_table(config));
}

template <typename T>
void register_lm_model(Registry<T>& registry, const LMModelConfig& config) {
  register_lm_model(ParameterScope<T>(registry), config);
}

// Every parameter of a new model once: the reference's reset_parameters calls, then the
// construction values of the convolutions, block by block.
inline std::vector<InitCall> lm_model_init_plan(const LMModelConfig& config,
                                                const std::string& prefix = "") {
  return lm_model_table(config).init_plan(prefix);
}

// The language model's groups: `rule` for every parameter, except the token embedding (and a
// head tied to it), which goes to the group config.weight_decay_on_embedding chooses.
inline WeightDecayOptions lm_weight_decay_options(const LMModelConfig& config,
                                                  WeightDecayRule rule = WeightDecayRule::name) {
  return weight_decay_options(lm_model_table(config), rule);
}

}  // namespace mlstm
