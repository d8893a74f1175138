// The parameter tests' golden files (written by tests/reference/make_params_golden.py), read
// through the library's safetensors reader, with the accessors those tests use.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mlstm/io/safetensors.hpp>
#include <mlstm/tensor.hpp>

namespace mlstm::test {

class GoldenFile {
 public:
  // `file` is relative to the reference data directory.
  explicit GoldenFile(const std::string& file)
      : file_(safetensors::File::load(std::string(MLSTM_REFERENCE_DATA_DIR) + "/" + file)) {}

  // A metadata string, and one parsed as JSON.
  std::string metadata(const std::string& key) const { return file_.metadata(key); }
  nlohmann::json json(const std::string& key) const { return nlohmann::json::parse(metadata(key)); }

  bool has_tensor(const std::string& name) const { return file_.contains(name); }

  std::vector<Index> shape(const std::string& name) const { return file_.info(name).shape; }

  // The elements of tensor `name`, row-major, whatever its rank.
  template <typename Scalar>
  std::vector<Scalar> values(const std::string& name) const {
    std::vector<Scalar> result(static_cast<std::size_t>(file_.info(name).numel()));
    const std::vector<Index> dims = shape(name);
    switch (dims.size()) {
      case 0: file_.read_into(name, TensorMap<Scalar, 0>(result.data())); break;
      case 1: file_.read_into(name, TensorMap<Scalar, 1>(result.data(), dims[0])); break;
      case 2: file_.read_into(name, TensorMap<Scalar, 2>(result.data(), dims[0], dims[1])); break;
      case 3:
        file_.read_into(name, TensorMap<Scalar, 3>(result.data(), dims[0], dims[1], dims[2]));
        break;
      default:
        file_.read_into(name,
                        TensorMap<Scalar, 4>(result.data(), dims[0], dims[1], dims[2], dims[3]));
    }
    return result;
  }

  template <typename Scalar, int Rank>
  Tensor<Scalar, Rank> tensor(const std::string& name) const {
    return file_.read<Scalar, Rank>(name);
  }

 private:
  safetensors::File file_;
};

}  // namespace mlstm::test
