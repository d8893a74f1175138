// The model configuration as JSON, with the field names of the reference's xLSTMLMModelConfig
// and mLSTMLayerConfig (flattened: one object), as checkpoints store it in their metadata:
//
//   {"vocab_size": 50304, "embedding_dim": 768, "num_heads": 4, "num_blocks": 12,
//    "context_length": 2048, "proj_factor": 2.0, "round_proj_up_dim_up": true,
//    "round_proj_up_to_multiple_of": 64, "conv1d_kernel_size": 4, "qkv_proj_blocksize": 4,
//    "bias": false, "add_post_blocks_norm": true, "tie_weights": false,
//    "weight_decay_on_embedding": false, "inner_embedding_dim": 1536}
//
// Reading: every field is optional (absent fields keep the reference's defaults), except that
// the result must validate; "inner_embedding_dim" is derived, and checked when present. An
// unknown field, a value of the wrong type, or malformed JSON is a ValueError naming it.
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "mlstm/errors.hpp"
#include "mlstm/io/detail/json_parse.hpp"
#include "mlstm/models/xlstm_lm/config.hpp"

namespace mlstm {

inline std::string lm_model_config_to_json(const LMModelConfig& config) {
  const nlohmann::json json = {
      {"vocab_size", config.vocab_size},
      {"embedding_dim", config.embedding_dim},
      {"num_heads", config.num_heads},
      {"num_blocks", config.num_blocks},
      {"context_length", config.context_length},
      {"proj_factor", config.proj_factor},
      {"round_proj_up_dim_up", config.round_proj_up_dim_up},
      {"round_proj_up_to_multiple_of", config.round_proj_up_to_multiple_of},
      {"conv1d_kernel_size", config.conv1d_kernel_size},
      {"qkv_proj_blocksize", config.qkv_proj_blocksize},
      {"bias", config.bias},
      {"add_post_blocks_norm", config.add_post_blocks_norm},
      {"tie_weights", config.tie_weights},
      {"weight_decay_on_embedding", config.weight_decay_on_embedding},
      {"inner_embedding_dim", config.inner_embedding_dim()}};
  return json.dump();
}

inline LMModelConfig lm_model_config_from_json(const std::string& text) {
  const nlohmann::json json = detail::parse_json(
      text, [](const std::string& reason) { return ValueError("text", "the text " + reason); });
  if (!json.is_object()) throw ValueError("text", "expected a JSON object, got " + json.dump());

  LMModelConfig config;
  const std::map<std::string, Index*> integers{
      {"vocab_size", &config.vocab_size},
      {"embedding_dim", &config.embedding_dim},
      {"num_heads", &config.num_heads},
      {"num_blocks", &config.num_blocks},
      {"context_length", &config.context_length},
      {"round_proj_up_to_multiple_of", &config.round_proj_up_to_multiple_of},
      {"conv1d_kernel_size", &config.conv1d_kernel_size},
      {"qkv_proj_blocksize", &config.qkv_proj_blocksize}};
  const std::map<std::string, bool*> booleans{
      {"round_proj_up_dim_up", &config.round_proj_up_dim_up},
      {"bias", &config.bias},
      {"add_post_blocks_norm", &config.add_post_blocks_norm},
      {"tie_weights", &config.tie_weights},
      {"weight_decay_on_embedding", &config.weight_decay_on_embedding}};
  for (const auto& [key, value] : json.items()) {
    const std::string field = "config." + key;
    if (integers.count(key) != 0) {
      if (!value.is_number_integer())
        throw ValueError(field, "expected an integer, got " + value.dump());
      *integers.at(key) = value.get<Index>();
    } else if (booleans.count(key) != 0) {
      if (!value.is_boolean())
        throw ValueError(field, "expected true or false, got " + value.dump());
      *booleans.at(key) = value.get<bool>();
    } else if (key == "proj_factor") {
      if (!value.is_number()) throw ValueError(field, "expected a number, got " + value.dump());
      config.proj_factor = value.get<double>();
    } else if (key != "inner_embedding_dim") {
      throw ValueError(field, "unknown field of an mLSTM language model configuration");
    }
  }
  config.validate();
  if (json.contains("inner_embedding_dim")) {
    const auto& stated = json["inner_embedding_dim"];
    if (!stated.is_number_integer() || stated.get<Index>() != config.inner_embedding_dim()) {
      throw ValueError("config.inner_embedding_dim",
                       "is " + stated.dump() +
                           ", but proj_factor, embedding_dim and the rounding "
                           "fields give " +
                           std::to_string(config.inner_embedding_dim()));
    }
  }
  return config;
}

}  // namespace mlstm
