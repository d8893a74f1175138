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
// Loading checks the whole file before writing anything, and before allocating anything the size
// of a parameter (the checks read the header, and tied copies' values in small pieces):
//   - every name of the registry's state dict (with `prefix` before it in the file) must be in
//     the file, and every tensor of the file must be one of them: missing and unexpected names
//     are listed together;
//   - shapes must match, and the dtype must be F64, F32, F16 or BF16 (converted to the registry's
//     type: F64 to float rounds to nearest, the others are exact);
//   - a tied parameter (two names, e.g. token_embedding.weight and lm_head.weight) needs one of
//     its names in the file; if several are there, their values must be equal (PyTorch's
//     state_dict lists both; safetensors' save_model keeps one).
// Then each tensor is decoded straight into its parameter. A missing or unexpected name throws
// ValueError, a shape or dtype mismatch alone ShapeError, each message listing every problem
// found; a truncated or corrupt file, or a header that lies about its offsets, throws
// FormatError (from the reader). In every case the registry is left as it was.
//
// The same checks run against a parameter table (parameter_table.hpp) before the model exists:
// check_state_dict(file, table) first compares the number of elements the table describes with
// the number the file's tensors hold, so that a configuration claiming more than the file holds
// is rejected before anything is built from it; fill_state_dict then decodes into the registry
// made from that table. A model loader is
//
//   const auto sources = mlstm::check_state_dict(file, table);   // header and table only
//   Model model(config);                                         // allocates the parameters
//   mlstm::fill_state_dict(model.registry(), file, sources);
//
// Saving writes every state-dict name (a tied parameter under each of its names, as PyTorch's
// state_dict has it), the metadata {"format": "pt"} that safetensors.torch writes, and the given
// metadata; the file is replaced atomically (a temporary file renamed when complete).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mlstm/detail/text.hpp"
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "mlstm/errors.hpp"
#include "mlstm/io/safetensors.hpp"
#include "mlstm/params/parameter_table.hpp"
#include "mlstm/params/registry.hpp"
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

inline bool is_float_dtype(safetensors::DType dtype) {
  using safetensors::DType;
  return dtype == DType::F64 || dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

inline std::string listed(const std::vector<std::string>& items) { return list_string(items, 12); }

// Hands the pages holding [data, data + bytes) of a read-only file mapping back to the system:
// they are read again from the file if touched later, so releasing a page is always safe.
// Loading calls it on what it has decoded, so that the memory it holds is the parameters and a
// piece of the file, not the whole file too.
inline void release_mapped_pages(const std::uint8_t* data, std::size_t bytes) {
#if defined(MADV_DONTNEED)
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(data) / page * page;
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + bytes + page - 1) / page * page;
  if (bytes > 0) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
#else
  (void)data;
  (void)bytes;
#endif
}

// Elements decoded at a time: comparing tied copies needs no buffer the size of a parameter,
// and a mapped file's pages go back to the system a piece at a time.
inline constexpr std::size_t decode_piece_elements = std::size_t(1) << 16;

// Decodes elements [first, first + count) of tensor `name` (a float dtype) into `target`, then
// releases their pages if the file is mapped.
template <typename T>
void decode_piece(const safetensors::File& file, const std::string& name, std::size_t first,
                  std::size_t count, T* target) {
  const safetensors::TensorView view = file.view(name);
  const std::size_t width = safetensors::dtype_size(view.dtype);
  const std::uint8_t* bytes = view.data + first * width;
  decode_elements(view.dtype, bytes, count, target);
  if (file.mapped()) release_mapped_pages(bytes, count * width);
}

// Decodes tensor `name` (checked: a float dtype of `count` elements) into `target`.
template <typename T>
void decode_tensor(const safetensors::File& file, const std::string& name, T* target,
                   std::size_t count) {
  for (std::size_t done = 0; done < count; done += decode_piece_elements)
    decode_piece(file, name, done, std::min(decode_piece_elements, count - done), target + done);
}

// One parameter a checkpoint must hold: every name it goes by (more than one when tied) and its
// shape.
struct ExpectedParameter {
  std::vector<std::string> names;
  Shape shape;
};

template <typename T>
std::vector<ExpectedParameter> expected_parameters(const Registry<T>& registry) {
  std::vector<ExpectedParameter> expected;
  for (const Parameter<T>& parameter : registry)
    expected.push_back({parameter.names(), parameter.shape()});
  return expected;
}

inline std::vector<ExpectedParameter> expected_parameters(const ParameterTable& table) {
  std::vector<ExpectedParameter> expected;
  std::map<std::string, std::size_t> index;  // a parameter's first name -> its entry
  for (const ParameterRow& row : table.rows()) {
    if (row.tied()) {
      expected[index.at(row.tied_to)].names.push_back(row.name);
    } else {
      index.emplace(row.name, expected.size());
      expected.push_back({{row.name}, row.shape()});
    }
  }
  return expected;
}

// Whether tensors `a` and `b` of `file` hold the same shape and values (compared as double).
// Tensors of a non-float dtype hold no parameter values: false (matching them names the error).
inline bool same_tensor_values(const safetensors::File& file, const std::string& a,
                               const std::string& b) {
  const safetensors::TensorInfo& first = file.info(a);
  const safetensors::TensorInfo& second = file.info(b);
  if (first.shape != second.shape || !is_float_dtype(first.dtype) || !is_float_dtype(second.dtype))
    return false;
  std::vector<double> x(decode_piece_elements), y(decode_piece_elements);
  const std::size_t count = static_cast<std::size_t>(first.numel());
  for (std::size_t done = 0; done < count; done += decode_piece_elements) {
    const std::size_t n = std::min(decode_piece_elements, count - done);
    decode_piece(file, a, done, n, x.data());
    decode_piece(file, b, done, n, y.data());
    if (!std::equal(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(n), y.begin())) return false;
  }
  return true;
}

// For each expected parameter, the tensor of `file` to read it from, once everything described
// at the top of this file is checked (throws as described there).
inline std::vector<std::string> match_state_dict(const safetensors::File& file,
                                                 const std::vector<ExpectedParameter>& parameters,
                                                 const CheckpointOptions& options) {
  std::vector<std::string> missing, unexpected, mismatched, conflicting;
  std::set<std::string> expected;
  for (const ExpectedParameter& parameter : parameters)
    for (const std::string& name : parameter.names) expected.insert(options.prefix + name);
  for (const std::string& name : file.names())
    if (expected.count(name) == 0) unexpected.push_back(name);

  // For each parameter, the names under which the file holds it with a fitting shape.
  std::vector<std::vector<std::string>> present(parameters.size());
  for (std::size_t p = 0; p < parameters.size(); ++p) {
    bool in_file = false;
    for (const std::string& name : parameters[p].names) {
      const std::string stored = options.prefix + name;
      if (!file.contains(stored)) continue;
      in_file = true;
      const safetensors::TensorInfo& info = file.info(stored);
      if (info.shape != parameters[p].shape || !is_float_dtype(info.dtype)) {
        mismatched.push_back(stored + " (file: " + safetensors::dtype_name(info.dtype) + " " +
                             mlstm::shape_string(info.shape) + ", expected a float dtype " +
                             mlstm::shape_string(parameters[p].shape) + ")");
        continue;
      }
      present[p].push_back(stored);
    }
    if (!in_file) {
      std::string names;
      for (const std::string& name : parameters[p].names)
        names += (names.empty() ? "" : " or ") + options.prefix + name;
      missing.push_back(names);
    }
  }

  const std::string source = "checkpoint \"" + file.source_name() + "\"";
  if (!missing.empty() || !unexpected.empty()) {
    std::string message = source + " does not hold this model's parameters:";
    if (!missing.empty()) message += " missing " + listed(missing) + ";";
    if (!unexpected.empty()) message += " unexpected " + listed(unexpected) + ";";
    if (!mismatched.empty()) message += " mis-shaped or not float " + listed(mismatched) + ";";
    if (options.prefix.empty() && missing.size() == parameters.size())
      message += " (no name matches: does the file use a prefix? see CheckpointOptions::prefix)";
    throw ValueError("checkpoint", message);
  }
  if (!mismatched.empty()) {
    throw ShapeError("checkpoint", source + ": mis-shaped or not float " + listed(mismatched));
  }
  for (const std::vector<std::string>& names : present) {
    for (std::size_t other = 1; other < names.size(); ++other) {
      if (!same_tensor_values(file, names.front(), names[other]))
        conflicting.push_back(names.front() + " and " + names[other]);
    }
  }
  if (!conflicting.empty()) {
    throw ValueError("checkpoint", source + ": tied parameters differ between their names: " +
                                       listed(conflicting));
  }
  std::vector<std::string> sources;
  for (const std::vector<std::string>& names : present) sources.push_back(names.front());
  return sources;
}

}  // namespace detail

// Which tensor of a checked file holds each distinct parameter, in registration order.
struct StateDictSources {
  std::vector<std::string> tensors;
};

// Checks `file` against the parameters `table` describes (names relative to the table's root),
// as load_state_dict checks a registry, having first compared the elements the table describes
// with those the file's tensors hold (ValueError("checkpoint") if the table describes more).
// Allocates nothing the size of a parameter.
inline StateDictSources check_state_dict(const safetensors::File& file, const ParameterTable& table,
                                         const CheckpointOptions& options = {}) {
  Index held = 0;  // at most the file's length: every element takes a byte or more
  for (const std::string& name : file.names()) held += file.info(name).numel();
  const Index described = table.parameter_count();
  if (described > held) {
    throw ValueError("checkpoint", "checkpoint \"" + file.source_name() + "\" holds " +
                                       std::to_string(held) + " elements in its tensors, but " +
                                       "the configuration describes " + std::to_string(described) +
                                       " parameter elements");
  }
  return {detail::match_state_dict(file, detail::expected_parameters(table), options)};
}

template <typename T>
StateDictSources check_state_dict(const safetensors::File& file, const Registry<T>& registry,
                                  const CheckpointOptions& options = {}) {
  return {detail::match_state_dict(file, detail::expected_parameters(registry), options)};
}

// Decodes the tensors check_state_dict chose into `registry`'s parameters, which must be those
// it checked (ValueError("sources") otherwise, before anything is written).
template <typename T>
void fill_state_dict(Registry<T>& registry, const safetensors::File& file,
                     const StateDictSources& sources) {
  bool fits = sources.tensors.size() == static_cast<std::size_t>(registry.size());
  std::size_t p = 0;
  for (const Parameter<T>& parameter : registry) {
    if (!fits || p >= sources.tensors.size()) break;
    const safetensors::TensorInfo& info = file.info(sources.tensors[p++]);
    fits = info.shape == parameter.shape() && detail::is_float_dtype(info.dtype);
  }
  if (!fits) throw ValueError("sources", "were checked for another registry or file");
  p = 0;
  for (Parameter<T>& parameter : registry) {
    detail::decode_tensor(file, sources.tensors[p++], parameter.data(),
                          static_cast<std::size_t>(parameter.size()));
  }
}

// Loads `file` into `registry` as described above.
template <typename T>
void load_state_dict(Registry<T>& registry, const safetensors::File& file,
                     const CheckpointOptions& options = {}) {
  fill_state_dict(registry, file, check_state_dict(file, registry, options));
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
