// A language model to and from a checkpoint file, configuration included.
//
//   auto model = mlstm::load_language_model<float>("model.safetensors");
//   mlstm::save_language_model(model, "copy.safetensors");
//
// save_language_model writes the parameters (checkpoint.hpp) and the configuration as JSON
// (config_json.hpp) under the metadata key "mlstm.lm_model_config". load_language_model reads
// that configuration when the file has it; a state dict saved from PyTorch has none, and the
// configuration is then inferred from the tensors' names and shapes:
//
//   vocab_size, embedding_dim   token_embedding.weight (V, E) (or lm_head.weight when alone)
//   num_blocks                  the blocks xlstm_block_stack.blocks.<i> present (0 .. N-1)
//   inner_embedding_dim I       learnable_skip (I); proj_factor is set to I / E and the rounding
//                               fields so that they give I back
//   num_heads                   mlstm_cell.igate.weight (NH, 3I)
//   qkv_proj_blocksize          I / P for q_proj.weight (P, I/P, I/P)
//   conv1d_kernel_size          conv1d.conv.weight (I, 1, KS)
//   bias                        proj_up.bias present
//   add_post_blocks_norm        post_blocks_norm.weight present
//   tie_weights                 one of token_embedding.weight and lm_head.weight absent (as
//                               safetensors' save_model writes a tied model), or both present
//                               and equal
//   context_length              not in a state dict: the caller's `context_length` (it limits
//                               nothing here; the kernels take sequences of any length)
//
// The sizes come from the model's table (lm_model_table, solve_extents): built for the structure
// the names show, its named extents read the declared shapes, where every tensor with an extent
// gives it and all must agree (the tensors above are examples). Then the whole file is checked
// against the table of the configuration, stored or inferred, before the model is allocated,
// and the parameters are decoded into it (all or nothing, clear errors; see io/checkpoint.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "mlstm/errors.hpp"
#include "mlstm/io/checkpoint.hpp"
#include "mlstm/io/safetensors.hpp"
#include "mlstm/models/xlstm_lm/config.hpp"
#include "mlstm/models/xlstm_lm/config_json.hpp"
#include "mlstm/models/xlstm_lm/language_model.hpp"
#include "mlstm/models/xlstm_lm/parameters.hpp"
#include "mlstm/params/parameter_table.hpp"

namespace mlstm {

inline constexpr const char* lm_model_config_metadata_key = "mlstm.lm_model_config";

// The configuration of the model whose state dict `file` holds (see above): the structure from
// the names, then the sizes from the shapes through the model's table (solve_extents).
inline LMModelConfig infer_lm_model_config(const safetensors::File& file, Index context_length,
                                           const CheckpointOptions& options = {}) {
  const std::string& p = options.prefix;
  const std::string source = "checkpoint \"" + file.source_name() + "\"";

  // The structure, with the reference's default sizes as placeholders.
  LMModelConfig config;
  config.vocab_size = 1;
  config.context_length = context_length;
  const std::string blocks = "xlstm_block_stack.blocks.";
  std::set<Index> indices;
  for (const std::string& name : file.names()) {
    if (name.compare(0, p.size() + blocks.size(), p + blocks) != 0) continue;
    const std::string rest = name.substr(p.size() + blocks.size());
    const std::string index = rest.substr(0, rest.find('.'));
    if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos ||
        index.size() > 9) {
      throw ValueError("checkpoint", source + ": unexpected tensor \"" + name + "\"");
    }
    indices.insert(std::stoll(index));
  }
  config.num_blocks = static_cast<Index>(indices.size());
  if (indices.empty() || *indices.rbegin() != config.num_blocks - 1) {
    throw ValueError(
        "checkpoint",
        source + ": expected blocks 0 .. N-1 under \"" + p + blocks + "\", found " +
            std::to_string(indices.size()) + " block indices" +
            (indices.empty() ? std::string() : " up to " + std::to_string(*indices.rbegin())));
  }
  config.bias = file.contains(p + blocks + "0.xlstm.proj_up.bias");
  config.add_post_blocks_norm = file.contains(p + "xlstm_block_stack.post_blocks_norm.weight");
  // A tied model saved by safetensors' save_model keeps one of the two names (lm_head.weight,
  // the first in sorted order); PyTorch's state_dict keeps both, equal.
  const std::string embedding = p + "token_embedding.weight", head = p + "lm_head.weight";
  config.tie_weights = !file.contains(embedding) || !file.contains(head) ||
                       detail::same_tensor_values(file, embedding, head);

  // The sizes.
  std::map<std::string, Index> extents;
  const std::string not_lm = source + " is not the state dict of an mLSTM xLSTMLMModel: ";
  try {
    extents = solve_extents(lm_model_table(config), [&](const std::string& name) -> const Shape* {
      return file.contains(p + name) ? &file.info(p + name).shape : nullptr;
    });
  } catch (const ShapeError& error) {
    throw ShapeError("checkpoint", not_lm + error.what());
  } catch (const ValueError& error) {
    throw ValueError("checkpoint", not_lm + error.what());
  }
  config.vocab_size = extents.at("vocab_size");
  config.embedding_dim = extents.at("embedding_dim");
  config.num_heads = extents.at("num_heads");
  config.conv1d_kernel_size = extents.at("conv1d_kernel_size");
  const Index inner = extents.at("inner_embedding_dim");
  const Index proj_heads = extents.at("num_proj_heads");
  config.qkv_proj_blocksize = proj_heads > 0 ? inner / proj_heads : 0;
  // proj_factor = I / E gives back I with one of the two roundings (the quotient is within a
  // rounding error of an integer multiple of round_proj_up_to_multiple_of).
  config.round_proj_up_to_multiple_of = inner % 64 == 0 ? 64 : 1;
  config.proj_factor = static_cast<double>(inner) / static_cast<double>(config.embedding_dim);
  config.round_proj_up_dim_up = true;
  if (inner >= 1 && config.embedding_dim >= 1 && config.inner_embedding_dim() != inner)
    config.round_proj_up_dim_up = false;
  config.validate();
  if (config.inner_embedding_dim() != inner) {
    throw InternalError("infer_lm_model_config: no rounding gives back the inner dimension " +
                        std::to_string(inner));
  }
  return config;
}

// The configuration stored in `file`'s metadata, else the one inferred from its tensors. A stored
// configuration is checked to have no more blocks than the file has tensors, so that describing
// it (lm_model_table) costs no more than the header did.
inline LMModelConfig lm_model_config_of(const safetensors::File& file, Index context_length,
                                        const CheckpointOptions& options = {}) {
  const auto& metadata = file.metadata();
  const auto stored = metadata.find(lm_model_config_metadata_key);
  if (stored == metadata.end()) return infer_lm_model_config(file, context_length, options);
  const LMModelConfig config = lm_model_config_from_json(stored->second);
  const auto tensors = static_cast<Index>(file.names().size());
  if (config.num_blocks > tensors) {
    throw ValueError("checkpoint",
                     "checkpoint \"" + file.source_name() + "\": its stored configuration has " +
                         std::to_string(config.num_blocks) + " blocks, but the file holds " +
                         std::to_string(tensors) + " tensors");
  }
  return config;
}

// A model of the configuration of `path` (stored or inferred; `context_length` is used when it
// is inferred), with the file's parameters. The file is checked against the configuration's
// table before the model is built, then decoded straight into its parameters (check_state_dict,
// fill_state_dict): a file that does not fit costs memory and time in proportion to its header,
// whatever its configuration claims, and loading a valid one holds the model and a small piece
// of the (mapped) file.
template <typename T>
LanguageModel<T> load_language_model(const std::string& path, const KernelOptions& kernels = {},
                                     Index context_length = 2048,
                                     const CheckpointOptions& options = {}) {
  const safetensors::File file = safetensors::File::load(path);
  const LMModelConfig config = lm_model_config_of(file, context_length, options);
  const StateDictSources sources = check_state_dict(file, lm_model_table(config), options);
  LanguageModel<T> model(config, kernels);
  fill_state_dict(model.registry(), file, sources);
  return model;
}

// The model's parameters and configuration, stored as `dtype` (default: the model's type).
template <typename T>
void save_language_model(const LanguageModel<T>& model, const std::string& path,
                         std::optional<safetensors::DType> dtype = std::nullopt,
                         const CheckpointOptions& options = {}) {
  save_checkpoint(model.registry(), path,
                  {{lm_model_config_metadata_key, lm_model_config_to_json(model.config())}}, dtype,
                  options);
}

}  // namespace mlstm
