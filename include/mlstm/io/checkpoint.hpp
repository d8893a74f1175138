// Checkpoints: a registry's parameters in the safetensors format PyTorch users save state dicts
// in, under the state dict's names.
//
//   mlstm::load_checkpoint(registry, "model.safetensors");     // all or nothing
//   mlstm::save_checkpoint(registry, "copy.safetensors");      // F32 for float, F64 for double
//
// In Python, the same file is `safetensors.torch.save_file({k: v.contiguous() for k, v in
// model.state_dict().items()}, path)` (or `save_model(model, path)`), and what save_checkpoint
// writes loads with `model.load_state_dict(safetensors.torch.load_file(path))`.
//
// Loading checks everything before writing anything:
//   - every name of registry.state_dict_names() (with `prefix` before it in the file) must be in
//     the file, and every tensor of the file must be one of them: missing and unexpected names
//     are listed together;
//   - shapes must match, and the dtype must be F64, F32, F16 or BF16 (converted to the registry's
//     type: F64 to float rounds to nearest, the others are exact);
//   - a tied parameter (two names, e.g. token_embedding.weight and lm_head.weight) needs one of
//     its names in the file; if several are there, their values must be equal (PyTorch's
//     state_dict lists both; safetensors' save_model keeps one).
// Then the values are converted into staging buffers, and only when every parameter has been
// read are they copied into the registry. A missing or unexpected name throws ValueError, a shape
// or dtype mismatch alone ShapeError, each message listing every problem found; a truncated or
// corrupt file, or a header that lies about its offsets, throws FormatError (from the reader).
// In every case the registry is left as it was.
//
// Saving writes every state-dict name (a tied parameter under each of its names, as PyTorch's
// state_dict has it), the metadata {"format": "pt"} that safetensors.torch writes, and the given
// metadata; the file is replaced atomically (a temporary file renamed when complete).
#pragma once

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mlstm/errors.hpp"
#include "mlstm/params/registry.hpp"
#include "mlstm/io/safetensors.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

struct CheckpointOptions {
  // Put before every registry name in the file ("module." for a DataParallel state dict,
  // "_orig_mod." for a torch.compile'd one, "model." for some trainers).
  std::string prefix;
};

namespace detail {

// Calls f(dims) with `shape` as a std::array<Index, Rank> of its rank (parameters have a rank
// known only at run time; tensors views need it at compile time).
template <int Rank = 0, typename F>
void with_static_rank(const Shape& shape, const std::string& name, const F& f) {
  if constexpr (Rank > 8) {
    throw ShapeError(name,
                     "checkpoints hold parameters of rank <= 8, got " + mlstm::shape_string(shape));
  } else {
    if (static_cast<int>(shape.size()) != Rank) {
      with_static_rank<Rank + 1>(shape, name, f);
      return;
    }
    std::array<Index, Rank> dims{};
    for (int axis = 0; axis < Rank; ++axis) dims[axis] = shape[static_cast<std::size_t>(axis)];
    f(dims);
  }
}

// Reads tensor `name` (already checked: a float dtype of `shape`) into `out`.
template <typename T>
void read_flat(const safetensors::File& file, const std::string& name, const Shape& shape, T* out) {
  with_static_rank(shape, name, [&](const auto& dims) {
    constexpr int rank = static_cast<int>(std::tuple_size_v<std::decay_t<decltype(dims)>>);
    file.read_into(name, TensorMap<T, rank>(out, dims));
  });
}

// Whether tensors `a` and `b` of `file` hold the same shape and values.
inline bool same_tensor_values(const safetensors::File& file, const std::string& a,
                               const std::string& b) {
  const Shape& shape = file.info(a).shape;
  if (file.info(b).shape != shape) return false;
  std::vector<double> first(static_cast<std::size_t>(file.info(a).numel()));
  std::vector<double> second(first.size());
  read_flat(file, a, shape, first.data());
  read_flat(file, b, shape, second.data());
  return first == second;
}

inline bool is_float_dtype(safetensors::DType dtype) {
  using safetensors::DType;
  return dtype == DType::F64 || dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

inline std::string listed(const std::vector<std::string>& items, std::size_t limit = 12) {
  std::string text;
  for (std::size_t i = 0; i < items.size() && i < limit; ++i)
    text += (i > 0 ? ", " : "") + items[i];
  if (items.size() > limit) text += ", ... (" + std::to_string(items.size()) + " in all)";
  return text;
}

}  // namespace detail

// Loads `file` into `registry` as described above.
template <typename T>
void load_state_dict(Registry<T>& registry, const safetensors::File& file,
                     const CheckpointOptions& options = {}) {
  std::vector<std::string> missing, unexpected, mismatched, conflicting;
  std::set<std::string> expected;
  for (const std::string& name : registry.state_dict_names())
    expected.insert(options.prefix + name);
  for (const std::string& name : file.names())
    if (expected.count(name) == 0) unexpected.push_back(name);

  // For each distinct parameter, the names under which the file holds it.
  std::vector<std::pair<Parameter<T>*, std::vector<std::string>>> sources;
  for (Parameter<T>& parameter : registry) {
    std::vector<std::string> present;
    for (const std::string& name : parameter.names()) {
      const std::string stored = options.prefix + name;
      if (!file.contains(stored)) continue;
      const safetensors::TensorInfo& info = file.info(stored);
      if (info.shape != parameter.shape() || !detail::is_float_dtype(info.dtype)) {
        mismatched.push_back(stored + " (file: " + safetensors::dtype_name(info.dtype) + " " +
                             shape_string(info.shape) + ", expected a float dtype " +
                             shape_string(parameter.shape()) + ")");
        continue;
      }
      present.push_back(stored);
    }
    if (present.empty()) {
      bool shape_problem = false;
      for (const std::string& name : parameter.names())
        shape_problem = shape_problem || file.contains(options.prefix + name);
      if (!shape_problem) {
        std::string names;
        for (const std::string& name : parameter.names())
          names += (names.empty() ? "" : " or ") + options.prefix + name;
        missing.push_back(names);
      }
    }
    sources.emplace_back(&parameter, std::move(present));
  }

  const std::string source = "checkpoint \"" + file.source_name() + "\"";
  if (!missing.empty() || !unexpected.empty()) {
    std::string message = source + " does not hold this model's parameters:";
    if (!missing.empty()) message += " missing " + detail::listed(missing) + ";";
    if (!unexpected.empty()) message += " unexpected " + detail::listed(unexpected) + ";";
    if (!mismatched.empty())
      message += " mis-shaped or not float " + detail::listed(mismatched) + ";";
    if (options.prefix.empty() && missing.size() == sources.size())
      message += " (no name matches: does the file use a prefix? see CheckpointOptions::prefix)";
    throw ValueError("checkpoint", message);
  }
  if (!mismatched.empty()) {
    throw ShapeError("checkpoint",
                     source + ": mis-shaped or not float " + detail::listed(mismatched));
  }

  // Stage every parameter, compare tied copies, then commit.
  std::vector<std::vector<T>> staged(sources.size());
  for (std::size_t p = 0; p < sources.size(); ++p) {
    const auto& [parameter, present] = sources[p];
    staged[p].resize(static_cast<std::size_t>(parameter->size()));
    detail::read_flat(file, present.front(), parameter->shape(), staged[p].data());
    for (std::size_t other = 1; other < present.size(); ++other) {
      std::vector<T> copy(staged[p].size());
      detail::read_flat(file, present[other], parameter->shape(), copy.data());
      if (copy != staged[p]) conflicting.push_back(present.front() + " and " + present[other]);
    }
  }
  if (!conflicting.empty()) {
    throw ValueError("checkpoint", source + ": tied parameters differ between their names: " +
                                       detail::listed(conflicting));
  }
  for (std::size_t p = 0; p < sources.size(); ++p)
    std::copy(staged[p].begin(), staged[p].end(), sources[p].first->data());
}

template <typename T>
void load_checkpoint(Registry<T>& registry, const std::string& path,
                     const CheckpointOptions& options = {}) {
  load_state_dict(registry, safetensors::File::load(path), options);
}

// Writes every state-dict name of `registry` to `path`, stored as `dtype` (F64, F32, F16 or
// BF16; default: the registry's own type), with {"format": "pt"} and `metadata`.
template <typename T>
void save_checkpoint(const Registry<T>& registry, const std::string& path,
                     const std::map<std::string, std::string>& metadata = {},
                     std::optional<safetensors::DType> dtype = std::nullopt,
                     const CheckpointOptions& options = {}) {
  safetensors::Writer writer;
  const safetensors::DType stored =
      dtype.value_or(std::is_same_v<T, double> ? safetensors::DType::F64 : safetensors::DType::F32);
  for (const std::string& name : registry.state_dict_names()) {
    const Parameter<T>& parameter = registry.get(name);
    detail::with_static_rank(parameter.shape(), name, [&](const auto& dims) {
      constexpr int rank = static_cast<int>(std::tuple_size_v<std::decay_t<decltype(dims)>>);
      writer.add_converted(options.prefix + name, ConstTensorMap<T, rank>(parameter.data(), dims),
                           stored);
    });
  }
  writer.set_metadata("format", "pt");
  for (const auto& [key, value] : metadata) writer.set_metadata(key, value);
  writer.save(path);
}

}  // namespace mlstm
