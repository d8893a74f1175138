// The configuration of xLSTM-Large, the architecture of xLSTM 7B: the reference's
// xLSTMLargeConfig (xlstm/xlstm_large/model.py) and transformers' xLSTMConfig, of which only the
// fields that shape the model or its arithmetic are kept (the kernel names, modes and dtypes
// choose PyTorch code paths and mean nothing here).
//
//   mlstm::XLSTMLargeConfig config;             // the 7B model's values by default
//   config = mlstm::xlstm_large_config_from_json(text, "config.json");   // HF or reference JSON
//   config.validate();                          // ValueError naming the first bad field
//
// Derived sizes, as the reference computes them:
//   qk_dim  = int(E * qk_dim_factor)    DQK = qk_dim / NH   (256 in the 7B model)
//   v_dim   = int(E * v_dim_factor)     DV  = v_dim / NH    (512)
//   ffn_dim = round_up(E * ffn_proj_factor, ffn_round_up_to_multiple_of)   (10944)
#pragma once

#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "mlstm/errors.hpp"
#include "mlstm/io/detail/json_parse.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

// Separate q, k, v, o, i, f and FFN projections, or q|k|v|o, i|f and gate|up in one matrix each.
enum class WeightMode { single, fused };

struct XLSTMLargeConfig {
  Index embedding_dim = 4096;  // E (transformers: hidden_size)
  Index num_heads = 8;         // NH
  Index num_blocks = 32;       // transformers: num_hidden_layers
  Index vocab_size = 50304;    // V
  bool use_bias = false;       // biases of the linear maps and the norms (the gates always have)
  double norm_eps = 1e-6;      // of the RMS norms and the per-head layer norm
  bool add_out_norm = true;    // RMS norm after the last block
  double qk_dim_factor = 0.5;
  double v_dim_factor = 1.0;
  Index chunk_size = 64;  // of the chunkwise kernel that prefill runs
  double eps = 1e-6;      // the mLSTM kernels' eps
  double ffn_proj_factor = 2.667;
  Index ffn_round_up_to_multiple_of = 64;
  std::optional<double> gate_soft_cap = 15.0;          // none: no cap
  std::optional<double> output_logit_soft_cap = 30.0;  // none: no cap
  WeightMode weight_mode = WeightMode::single;

  Index qk_dim() const {
    return static_cast<Index>(static_cast<double>(embedding_dim) * qk_dim_factor);
  }
  Index v_dim() const {
    return static_cast<Index>(static_cast<double>(embedding_dim) * v_dim_factor);
  }
  Index qk_head_dim() const { return qk_dim() / num_heads; }
  Index v_head_dim() const { return v_dim() / num_heads; }
  Index ffn_dim() const {
    // The reference's round_up_to_next_multiple_of on a float: ((x + m - 1) // m) * m.
    const double m = static_cast<double>(ffn_round_up_to_multiple_of);
    return static_cast<Index>(
        std::floor((static_cast<double>(embedding_dim) * ffn_proj_factor + m - 1) / m) * m);
  }

  // ValueError("config.<field>") for the first field out of range.
  void validate() const {
    const auto at_least = [](Index value, Index minimum, const char* field) {
      if (value < minimum)
        throw ValueError(field, "expected an integer >= " + std::to_string(minimum) + ", got " +
                                    std::to_string(value));
    };
    at_least(embedding_dim, 1, "config.embedding_dim");
    at_least(num_heads, 1, "config.num_heads");
    at_least(num_blocks, 1, "config.num_blocks");
    at_least(vocab_size, 1, "config.vocab_size");
    at_least(chunk_size, 1, "config.chunk_size");
    at_least(ffn_round_up_to_multiple_of, 1, "config.ffn_round_up_to_multiple_of");
    const auto positive = [](double value, const char* field) {
      if (!(std::isfinite(value) && value > 0))
        throw ValueError(field, "expected a finite number > 0, got " + std::to_string(value));
    };
    positive(norm_eps, "config.norm_eps");
    positive(eps, "config.eps");
    positive(qk_dim_factor, "config.qk_dim_factor");
    positive(v_dim_factor, "config.v_dim_factor");
    positive(ffn_proj_factor, "config.ffn_proj_factor");
    if (gate_soft_cap) positive(*gate_soft_cap, "config.gate_soft_cap");
    if (output_logit_soft_cap) positive(*output_logit_soft_cap, "config.output_logit_soft_cap");
    const auto divisible = [&](Index dim, const char* field, const char* what) {
      if (dim < num_heads || dim % num_heads != 0)
        throw ValueError(
            field, std::string(what) + " = " + std::to_string(dim) +
                       " must be a positive multiple of num_heads = " + std::to_string(num_heads));
    };
    divisible(qk_dim(), "config.qk_dim_factor", "int(embedding_dim * qk_dim_factor)");
    divisible(v_dim(), "config.v_dim_factor", "int(embedding_dim * v_dim_factor)");
    // Sizes past 2^40 elements are not a model this library can hold; this also keeps the
    // products below from overflowing.
    const double largest = static_cast<double>(vocab_size) * static_cast<double>(embedding_dim);
    if (!(static_cast<double>(ffn_dim()) * static_cast<double>(embedding_dim) < 0x1.0p40) ||
        !(largest < 0x1.0p40))
      throw ValueError("config", "the model's matrices would exceed 2^40 elements");
  }
};

namespace detail {

inline const nlohmann::json* json_field(const nlohmann::json& json, const char* primary,
                                        const char* alias = nullptr) {
  if (json.contains(primary) && !json[primary].is_null()) return &json[primary];
  if (alias != nullptr && json.contains(alias) && !json[alias].is_null()) return &json[alias];
  return nullptr;
}

}  // namespace detail

// The configuration in `text`: transformers' config.json (hidden_size, num_hidden_layers, ...)
// or the reference's xLSTMLargeConfig fields (embedding_dim, num_blocks, ...); fields it does
// not know are ignored (a config.json carries many), fields it knows must have the right type.
// A null cap means no cap. `source` names the text in messages. Throws ValueError("config.<field>")
// for a missing or invalid field, ValueError("config") for text that is not a JSON object.
inline XLSTMLargeConfig xlstm_large_config_from_json(const std::string& text,
                                                     const std::string& source = "config") {
  const nlohmann::json json = detail::parse_json(text, [&](const std::string& reason) {
    return ValueError("config", source + ": the text " + reason);
  });
  if (!json.is_object()) throw ValueError("config", source + ": expected a JSON object");
  if (json.contains("model_type") && json["model_type"] != "xlstm")
    throw ValueError("config.model_type",
                     source + ": expected \"xlstm\", got " + json["model_type"].dump());

  XLSTMLargeConfig config;
  const auto field_error = [&](const char* name, const char* expected, const nlohmann::json& v) {
    return ValueError(std::string("config.") + name,
                      source + ": expected " + expected + ", got " + v.dump());
  };
  const auto integer = [&](Index& target, const char* name, const char* alias, bool required) {
    const nlohmann::json* value = detail::json_field(json, name, alias);
    const nlohmann::json* other = alias != nullptr ? detail::json_field(json, alias) : nullptr;
    if (value != nullptr && other != nullptr && *value != *other)
      throw ValueError(std::string("config.") + name,
                       source + ": is " + value->dump() + " but " + alias + " is " + other->dump());
    if (value == nullptr) {
      if (required)
        throw ValueError(std::string("config.") + name, source + ": missing (an integer)");
      return;
    }
    if (!value->is_number_integer()) throw field_error(name, "an integer", *value);
    target = value->get<Index>();
  };
  const auto number = [&](double& target, const char* name) {
    const nlohmann::json* value = detail::json_field(json, name);
    if (value == nullptr) return;
    if (!value->is_number()) throw field_error(name, "a number", *value);
    target = value->get<double>();
  };
  const auto boolean = [&](bool& target, const char* name) {
    const nlohmann::json* value = detail::json_field(json, name);
    if (value == nullptr) return;
    if (!value->is_boolean()) throw field_error(name, "true or false", *value);
    target = value->get<bool>();
  };
  const auto cap = [&](std::optional<double>& target, const char* name) {
    if (!json.contains(name)) return;
    if (json[name].is_null()) {
      target.reset();
    } else if (json[name].is_number()) {
      target = json[name].get<double>();
    } else {
      throw field_error(name, "a number or null", json[name]);
    }
  };
  integer(config.embedding_dim, "embedding_dim", "hidden_size", true);
  integer(config.num_blocks, "num_blocks", "num_hidden_layers", true);
  integer(config.num_heads, "num_heads", nullptr, true);
  integer(config.vocab_size, "vocab_size", nullptr, true);
  integer(config.chunk_size, "chunk_size", nullptr, false);
  integer(config.ffn_round_up_to_multiple_of, "ffn_round_up_to_multiple_of", nullptr, false);
  boolean(config.use_bias, "use_bias");
  boolean(config.add_out_norm, "add_out_norm");
  number(config.norm_eps, "norm_eps");
  number(config.eps, "eps");
  number(config.qk_dim_factor, "qk_dim_factor");
  number(config.v_dim_factor, "v_dim_factor");
  number(config.ffn_proj_factor, "ffn_proj_factor");
  cap(config.gate_soft_cap, "gate_soft_cap");
  cap(config.output_logit_soft_cap, "output_logit_soft_cap");
  if (const nlohmann::json* mode = detail::json_field(json, "weight_mode")) {
    if (*mode == "single") {
      config.weight_mode = WeightMode::single;
    } else if (*mode == "fused") {
      config.weight_mode = WeightMode::fused;
    } else {
      throw field_error("weight_mode", "\"single\" or \"fused\"", *mode);
    }
  }
  bool tied = false;
  boolean(tied, "tie_word_embeddings");
  if (tied)
    throw ValueError("config.tie_word_embeddings",
                     source + ": tied embeddings are not part of xLSTM-Large");
  config.validate();
  return config;
}

}  // namespace mlstm
