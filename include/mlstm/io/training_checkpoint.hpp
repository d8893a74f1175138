// Training checkpoints: what a run needs to continue exactly where it stopped, as two
// safetensors files in one directory:
//
//   <directory>/model.safetensors      the parameters (save_checkpoint: a state dict that PyTorch
//                                      and load_checkpoint read, e.g. to start another run from)
//   <directory>/optimizer.safetensors  AdamW's state: exp_avg.<name> and exp_avg_sq.<name> (and
//                                      max_exp_avg_sq.<name> with amsgrad) per parameter under its
//                                      first name, in the registry's type; metadata
//                                      "adamw.step_count" and the caller's (e.g. the data position)
//
//   mlstm::save_training_checkpoint("run/step100", model.registry(), optimizer, {{"step", "100"}});
//   auto metadata = mlstm::load_training_checkpoint("run/step100", model.registry(), optimizer);
//
// Values are stored in the registry's own type, so a resumed run continues bit for bit. Loading
// checks both files completely (names, shapes, dtypes, the step count) before anything is written:
// on any error the registry and the optimizer are left as they were. Each file is replaced
// atomically; the optimizer's is written first, so a model file is never newer than its
// optimizer state.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "mlstm/errors.hpp"
#include "mlstm/io/checkpoint.hpp"
#include "mlstm/io/safetensors.hpp"
#include "mlstm/params/adamw.hpp"
#include "mlstm/params/registry.hpp"

namespace mlstm {

namespace detail {

inline const char* const optimizer_step_key = "adamw.step_count";

template <typename T>
std::vector<std::pair<std::string, ConstTensorMap<T, 1>>> optimizer_tensors(
    const AdamW<T>& optimizer) {
  std::vector<std::pair<std::string, ConstTensorMap<T, 1>>> tensors;
  for (const Parameter<T>* param : optimizer.parameters()) {
    tensors.emplace_back("exp_avg." + param->name(), optimizer.exp_avg(*param));
    tensors.emplace_back("exp_avg_sq." + param->name(), optimizer.exp_avg_sq(*param));
    if (optimizer.options().amsgrad)
      tensors.emplace_back("max_exp_avg_sq." + param->name(), optimizer.max_exp_avg_sq(*param));
  }
  return tensors;
}

}  // namespace detail

template <typename T>
void save_training_checkpoint(const std::string& directory, const Registry<T>& registry,
                              const AdamW<T>& optimizer,
                              const std::map<std::string, std::string>& metadata = {}) {
  std::filesystem::create_directories(directory);
  safetensors::Writer writer;
  for (const auto& [name, values] : detail::optimizer_tensors(optimizer)) writer.add(name, values);
  writer.set_metadata(detail::optimizer_step_key, std::to_string(optimizer.step_count()));
  for (const auto& [key, value] : metadata) writer.set_metadata(key, value);
  writer.save(directory + "/optimizer.safetensors");
  save_checkpoint(registry, directory + "/model.safetensors", metadata);
}

// Restores the parameters and the optimizer's state; returns the optimizer file's metadata.
// ValueError naming "checkpoint" for a missing, unexpected or mis-sized optimizer tensor or a bad
// step count; as load_checkpoint for the model file.
template <typename T>
std::map<std::string, std::string> load_training_checkpoint(const std::string& directory,
                                                            Registry<T>& registry,
                                                            AdamW<T>& optimizer) {
  const std::string path = directory + "/optimizer.safetensors";
  const safetensors::File file = safetensors::File::load(path);
  const auto expected = detail::optimizer_tensors(static_cast<const AdamW<T>&>(optimizer));
  std::vector<std::string> problems;
  std::map<std::string, bool> known;
  for (const auto& [name, values] : expected) known[name] = true;
  for (const std::string& name : file.names())
    if (known.count(name) == 0) problems.push_back("unexpected " + name);
  std::vector<std::vector<T>> staged;
  for (const auto& [name, values] : expected) {
    if (!file.contains(name)) {
      problems.push_back("missing " + name);
      continue;
    }
    const safetensors::TensorInfo& info = file.info(name);
    if (info.shape != Shape{values.size()} || !detail::is_float_dtype(info.dtype)) {
      problems.push_back(name + " is " + safetensors::dtype_name(info.dtype) + " " +
                         shape_string(info.shape) + ", expected a float dtype (" +
                         std::to_string(values.size()) + ")");
      continue;
    }
    staged.emplace_back(static_cast<std::size_t>(values.size()));
    detail::decode_tensor(file, name, staged.back().data(), staged.back().size());
  }
  long step_count = -1;
  const auto step = file.metadata().find(detail::optimizer_step_key);
  if (step != file.metadata().end()) {
    try {
      std::size_t used = 0;
      step_count = std::stol(step->second, &used);
      if (used != step->second.size()) step_count = -1;
    } catch (const std::exception&) {
      step_count = -1;
    }
  }
  if (step_count < 0)
    problems.push_back(std::string("metadata ") + detail::optimizer_step_key +
                       " missing or not a count >= 0");
  if (!problems.empty()) {
    throw ValueError("checkpoint",
                     "optimizer state \"" + path +
                         "\" does not fit this optimizer: " + detail::listed(problems));
  }
  load_checkpoint(registry, directory + "/model.safetensors");  // all or nothing
  std::size_t next = 0;
  for (const Parameter<T>* param : optimizer.parameters()) {
    const auto restore = [&](TensorMap<T, 1> target) {
      std::copy(staged[next].begin(), staged[next].end(), target.data());
      ++next;
    };
    restore(optimizer.exp_avg(*param));
    restore(optimizer.exp_avg_sq(*param));
    if (optimizer.options().amsgrad) restore(optimizer.max_exp_avg_sq(*param));
  }
  optimizer.set_step_count(step_count);
  return file.metadata();
}

}  // namespace mlstm
