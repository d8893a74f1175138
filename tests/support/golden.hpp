// The golden data of tests/reference/data, read with the library's safetensors reader.
#pragma once

#include <string>

#include <mlstm/safetensors.hpp>

namespace mlstm::test {

// tests/reference/data/<stem>.safetensors
inline safetensors::File golden_file(const std::string& stem) {
  return safetensors::File::load(std::string(MLSTM_REFERENCE_DATA_DIR) + "/" + stem +
                                 ".safetensors");
}

}  // namespace mlstm::test
