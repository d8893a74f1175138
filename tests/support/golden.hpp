// The golden data of tests/reference/data, read with the library's safetensors reader.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include <mlstm/io/safetensors.hpp>

#include "support/tolerance.hpp"

namespace mlstm::test {

// tests/reference/data/<stem>.safetensors
inline safetensors::File golden_file(const std::string& stem) {
  return safetensors::File::load(std::string(MLSTM_REFERENCE_DATA_DIR) + "/" + stem +
                                 ".safetensors");
}

// With MLSTM_GOLDEN_REPORT set, prints a result's error against the golden value: relative to
// `scale` (the magnitude its budget uses), and as a multiple of the reference's own float32 error.
template <typename A, typename E>
void report_golden(const std::string& what, const A& actual, const E& expected, double scale,
                   double reference_float_loss) {
  if (std::getenv("MLSTM_GOLDEN_REPORT") == nullptr) return;
  const double error = max_difference(actual, expected).max_abs;
  std::printf("%-60s relative %.3g  (x%.2f the reference's float32 error)\n", what.c_str(),
              scale > 0 ? error / scale : error,
              reference_float_loss > 0 ? error / reference_float_loss : 0.0);
}

}  // namespace mlstm::test
