// xLSTM-Large from safetensors files: a Hugging Face folder (io/hf_folder.hpp) or any set of
// files holding the parameters under either spelling (parameters.hpp).
//
//   auto model = mlstm::load_xlstm_large<float>("xLSTM-7b");   // config.json + shards
//   auto half = mlstm::load_xlstm_large<float, Eigen::bfloat16>("xLSTM-7b");   // BF16 in place
//
//   mlstm::XLSTMLarge<double> model(config);                    // or: parameters into a model
//   mlstm::load_xlstm_large_weights(model, {&file});
//
// All or nothing: every tensor's name, shape and dtype is checked against the configuration's
// parameter table (and every parameter must be found) before the model is allocated or any
// value is written. Errors are FormatError naming the file and the tensor, with the expected
// and the actual shape or dtype. Float tensors of any width load into either T (F64 into float
// rounds to nearest; BF16 and F16 widen exactly).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "mlstm/errors.hpp"
#include "mlstm/io/checkpoint.hpp"
#include "mlstm/io/hf_folder.hpp"
#include "mlstm/io/safetensors.hpp"
#include "mlstm/models/xlstm_large/config.hpp"
#include "mlstm/models/xlstm_large/model.hpp"
#include "mlstm/models/xlstm_large/parameters.hpp"

namespace mlstm {
namespace detail {

// What a checkpoint says about one tensor, and which file says it.
struct StoredTensor {
  std::vector<Index> shape;
  safetensors::DType dtype;
  std::string file;
};

inline XLSTMLargeNames xlstm_large_names_of(const std::map<std::string, StoredTensor>& tensors) {
  return tensors.count("backbone.embeddings.weight") != 0 ? XLSTMLargeNames::transformers
                                                          : XLSTMLargeNames::reference;
}

// FormatError unless `tensors` are exactly the parameters of `config` in spelling `names`, each
// of its shape and a float dtype. `source` names the checkpoint (and its configuration).
inline void check_xlstm_large_tensors(const XLSTMLargeConfig& config, XLSTMLargeNames names,
                                      const std::map<std::string, StoredTensor>& tensors,
                                      const std::string& source) {
  std::set<std::string> expected;
  const ParameterTable table = xlstm_large_table(config, names);
  for (const ParameterRow& row : table.rows()) {
    const Shape shape = row.shape();
    const std::string shape_text = shape_string(shape);
    expected.insert(row.name);
    const auto found = tensors.find(row.name);
    if (found == tensors.end())
      throw FormatError(source + ": no tensor \"" + row.name +
                        "\", which the configuration needs (shape " + shape_text + ")");
    const StoredTensor& stored = found->second;
    if (stored.shape != shape)
      throw FormatError("\"" + stored.file + "\": tensor \"" + row.name + "\" has shape " +
                        shape_string(stored.shape) + ", the configuration gives " + shape_text);
    if (!is_float_dtype(stored.dtype))
      throw FormatError("\"" + stored.file + "\": tensor \"" + row.name + "\" has dtype " +
                        safetensors::dtype_name(stored.dtype) +
                        ", expected a float dtype (F64, F32, F16, BF16)");
  }
  for (const auto& [name, stored] : tensors) {
    if (expected.count(name) == 0)
      throw FormatError("\"" + stored.file + "\": tensor \"" + name +
                        "\" is not a parameter of the configured model (" + source + ")");
  }
}

inline void collect_stored_tensors(const safetensors::File& file,
                                   std::map<std::string, StoredTensor>& tensors) {
  for (const std::string& name : file.names()) {
    const safetensors::TensorInfo& info = file.info(name);
    tensors[name] = StoredTensor{info.shape, info.dtype, file.source_name()};
  }
}

// Decodes tensor `name` of `file` into `count` elements of S (float, double or bfloat16).
template <typename S>
void decode_parameter(const safetensors::File& file, const std::string& name, S* out) {
  const auto count = static_cast<std::size_t>(file.info(name).numel());
  if constexpr (is_bfloat16<S>) {
    std::vector<float> wide(count);
    decode_tensor(file, name, wide.data(), count);
    std::transform(wide.begin(), wide.end(), out, [](float value) { return S(value); });
  } else {
    decode_tensor(file, name, out, count);
  }
}

// Decodes every tensor of `file` that the model holds itself.
template <typename T, typename W>
void fill_xlstm_large_parameters(XLSTMLarge<T, W>& model, const safetensors::File& file) {
  for (const std::string& name : file.names()) {
    if (!is_matrix(model.parameter(name))) {
      decode_parameter(file, name, model.vector(name).data());
    } else if (!model.in_place(name)) {
      decode_parameter(file, name, model.matrix(name).data());
    }
  }
}

}  // namespace detail

// Fills `model`'s parameters from `files`, which together must hold exactly its parameters
// (in model.names()'s spelling). Nothing is written unless all of them check out.
template <typename T, typename W>
void load_xlstm_large_weights(XLSTMLarge<T, W>& model,
                              const std::vector<const safetensors::File*>& files) {
  std::map<std::string, detail::StoredTensor> tensors;
  std::string source;
  for (const safetensors::File* file : files) {
    detail::collect_stored_tensors(*file, tensors);
    source += (source.empty() ? "\"" : ", \"") + file->source_name() + "\"";
  }
  detail::check_xlstm_large_tensors(model.config(), model.names(), tensors, source);
  for (const safetensors::File* file : files) detail::fill_xlstm_large_parameters(model, *file);
}

namespace detail {

// The data of tensor `name` of `file`, usable in place as W elements: the file is mapped, the
// tensor is stored in W (F32 for float, F64 for double, BF16 for bfloat16) and aligned for it,
// and the machine is little-endian. Null otherwise (the tensor is then decoded into the model).
template <typename W>
const W* in_place_data(const safetensors::File& file, const std::string& name) {
  const safetensors::TensorView view = file.view(name);
  const safetensors::DType wanted = is_bfloat16<W>              ? safetensors::DType::BF16
                                    : std::is_same_v<W, double> ? safetensors::DType::F64
                                                                : safetensors::DType::F32;
  const bool little_endian =
      Eigen::numext::bit_cast<std::uint16_t>(std::array<std::uint8_t, 2>{1, 0}) == 1;
  if (!file.mapped() || !little_endian || view.dtype != wanted || !view.aligned_to(sizeof(W)))
    return nullptr;
  return reinterpret_cast<const W*>(view.data);
}

}  // namespace detail

// The model of the Hugging Face folder `path` (config.json and the weights in either spelling):
// checked in full, then allocated and filled. Matrices stored in W in the (memory-mapped) files
// are used where they lie, so that a bfloat16 checkpoint runs in about its file size; the rest is
// decoded into the model. FormatError for a missing or inconsistent file,
// ValueError("config.<field>") for a configuration the model cannot take.
template <typename T, typename W = T>
XLSTMLarge<T, W> load_xlstm_large(const std::string& path, int num_threads = 0) {
  const HFFolder folder = HFFolder::open(path);
  const XLSTMLargeConfig config =
      xlstm_large_config_from_json(folder.config_text(), folder.config_path());
  auto files = std::make_shared<std::vector<safetensors::File>>(folder.open_shards());
  std::map<std::string, detail::StoredTensor> tensors;
  std::map<std::string, const safetensors::File*> file_of;
  for (const safetensors::File& file : *files) {
    detail::collect_stored_tensors(file, tensors);
    for (const std::string& name : file.names()) file_of[name] = &file;
  }
  const XLSTMLargeNames names = detail::xlstm_large_names_of(tensors);
  detail::check_xlstm_large_tensors(config, names, tensors,
                                    "model folder \"" + path + "\" with " + folder.config_path());
  XLSTMLarge<T, W> model(config, names, num_threads, files, [&](const ParameterRow& p) {
    return detail::in_place_data<W>(*file_of.at(p.name), p.name);
  });
  for (const safetensors::File& file : *files) detail::fill_xlstm_large_parameters(model, file);
  return model;
}

}  // namespace mlstm
