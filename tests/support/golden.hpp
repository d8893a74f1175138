// Reads the golden data files (tests/reference/data/*.safetensors) for the tests.
//
// Minimal on purpose: float tensors become Tensor<double, 4> (whatever their rank up to 4, with
// leading axes of size 1 added), boolean rank-2 tensors become a Mask, metadata a string map.
// To be replaced by the library's safetensors reader once it exists.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mlstm/mask.hpp>
#include <mlstm/tensor.hpp>

namespace mlstm::test {

struct GoldenFile {
  std::map<std::string, Tensor<double, 4>> tensors;
  std::map<std::string, Mask> masks;
  std::map<std::string, std::string> metadata;

  const Tensor<double, 4>& at(const std::string& name) const {
    const auto found = tensors.find(name);
    if (found == tensors.end()) throw std::runtime_error("golden file has no tensor " + name);
    return found->second;
  }
  bool has(const std::string& name) const { return tensors.count(name) > 0; }
};

inline std::string golden_path(const std::string& stem) {
  return std::string(MLSTM_REFERENCE_DATA_DIR) + "/" + stem + ".safetensors";
}

inline GoldenFile read_golden(const std::string& stem) {
  const std::string path = golden_path(stem);
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot open " + path);
  const std::vector<char> raw((std::istreambuf_iterator<char>(file)),
                              std::istreambuf_iterator<char>());
  if (raw.size() < 8) throw std::runtime_error(path + ": too short");
  std::uint64_t header_size = 0;
  for (int byte = 7; byte >= 0; --byte)
    header_size = (header_size << 8) | static_cast<unsigned char>(raw[byte]);
  if (8 + header_size > raw.size()) throw std::runtime_error(path + ": header past the end");
  const auto header = nlohmann::json::parse(raw.begin() + 8, raw.begin() + 8 + header_size);
  const char* data = raw.data() + 8 + header_size;
  const std::size_t data_size = raw.size() - 8 - header_size;

  GoldenFile golden;
  for (const auto& item : header.items()) {
    if (item.key() == "__metadata__") {
      for (const auto& entry : item.value().items())
        golden.metadata[entry.key()] = entry.value().get<std::string>();
      continue;
    }
    const std::string dtype = item.value().at("dtype").get<std::string>();
    const auto shape = item.value().at("shape").get<std::vector<Index>>();
    const auto offsets = item.value().at("data_offsets").get<std::vector<std::size_t>>();
    if (offsets.size() != 2 || offsets[0] > offsets[1] || offsets[1] > data_size)
      throw std::runtime_error(path + ": bad offsets for " + item.key());
    Index count = 1;
    for (Index extent : shape) count *= extent;
    const char* begin = data + offsets[0];
    if (dtype == "BOOL") {
      if (shape.size() != 2 || offsets[1] - offsets[0] != static_cast<std::size_t>(count))
        throw std::runtime_error(path + ": unexpected mask " + item.key());
      Mask mask(shape[0], shape[1]);
      for (Index flat = 0; flat < count; ++flat) mask.data()[flat] = begin[flat] != 0;
      golden.masks.emplace(item.key(), std::move(mask));
      continue;
    }
    const std::size_t width = dtype == "F64" ? 8 : dtype == "F32" ? 4 : 0;
    if (width == 0 || shape.size() > 4 ||
        offsets[1] - offsets[0] != width * static_cast<std::size_t>(count))
      throw std::runtime_error(path + ": unexpected tensor " + item.key());
    std::array<Index, 4> dims{1, 1, 1, 1};
    std::copy(shape.begin(), shape.end(), dims.end() - shape.size());
    Tensor<double, 4> tensor(dims);
    for (Index flat = 0; flat < count; ++flat) {
      if (width == 8) {
        double value;
        std::memcpy(&value, begin + 8 * flat, 8);
        tensor.data()[flat] = value;
      } else {
        float value;
        std::memcpy(&value, begin + 4 * flat, 4);
        tensor.data()[flat] = value;
      }
    }
    golden.tensors.emplace(item.key(), std::move(tensor));
  }
  return golden;
}

}  // namespace mlstm::test
