// Reads the parameter tests' golden files (safetensors, written by
// tests/reference/make_params_golden.py). Kept minimal and separate so that it can give way to
// the library's own safetensors reader.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mlstm/tensor.hpp>

namespace mlstm::test {

class GoldenFile {
 public:
  // `file` is relative to the reference data directory.
  explicit GoldenFile(const std::string& file) : path_(std::string(MLSTM_REFERENCE_DATA_DIR) + "/" + file) {
    std::ifstream in(path_, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open golden file " + path_);
    bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (bytes_.size() < 8) throw std::runtime_error(path_ + ": too short");
    std::uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<unsigned char>(bytes_[i]);
    if (8 + header_size > bytes_.size()) throw std::runtime_error(path_ + ": header too long");
    header_ = nlohmann::json::parse(bytes_.begin() + 8, bytes_.begin() + 8 + static_cast<long>(header_size));
    data_begin_ = 8 + header_size;
  }

  // A metadata string, and one parsed as JSON.
  std::string metadata(const std::string& key) const {
    return header_.at("__metadata__").at(key).get<std::string>();
  }
  nlohmann::json json(const std::string& key) const { return nlohmann::json::parse(metadata(key)); }

  bool has_tensor(const std::string& name) const { return header_.contains(name); }

  std::vector<Index> shape(const std::string& name) const {
    return header_.at(name).at("shape").get<std::vector<Index>>();
  }

  // The elements of tensor `name` (row-major); Scalar must match the stored dtype.
  template <typename Scalar>
  std::vector<Scalar> values(const std::string& name) const {
    const auto& entry = header_.at(name);
    const std::string dtype = entry.at("dtype").get<std::string>();
    const bool matches = (dtype == "F32" && std::is_same_v<Scalar, float>) ||
                         (dtype == "F64" && std::is_same_v<Scalar, double>) ||
                         (dtype == "U64" && std::is_same_v<Scalar, std::uint64_t>);
    if (!matches) throw std::runtime_error(path_ + ": tensor " + name + " has dtype " + dtype);
    const auto offsets = entry.at("data_offsets").get<std::vector<std::uint64_t>>();
    const std::size_t bytes = offsets[1] - offsets[0];
    if (data_begin_ + offsets[1] > bytes_.size() || bytes % sizeof(Scalar) != 0)
      throw std::runtime_error(path_ + ": tensor " + name + " lies outside the file");
    std::vector<Scalar> result(bytes / sizeof(Scalar));
    std::memcpy(result.data(), bytes_.data() + data_begin_ + offsets[0], bytes);  // little-endian host
    return result;
  }

  // Tensor `name` as an mlstm::Tensor of the given rank.
  template <typename Scalar, int Rank>
  Tensor<Scalar, Rank> tensor(const std::string& name) const {
    const auto dims = shape(name);
    if (static_cast<int>(dims.size()) != Rank)
      throw std::runtime_error(path_ + ": tensor " + name + " has another rank");
    std::array<Index, Rank> extents{};
    for (int axis = 0; axis < Rank; ++axis) extents[axis] = dims[static_cast<std::size_t>(axis)];
    Tensor<Scalar, Rank> result(extents);
    const auto data = values<Scalar>(name);
    std::copy(data.begin(), data.end(), result.data());
    return result;
  }

 private:
  std::string path_;
  std::vector<char> bytes_;
  nlohmann::json header_;
  std::size_t data_begin_ = 0;
};

}  // namespace mlstm::test
