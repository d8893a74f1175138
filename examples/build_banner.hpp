// The line each example prints first: which instruction sets its code was compiled for, so that
// a speed seen is read against the right code path. CMake builds the examples with
// -march=native unless MLSTM_NATIVE_EXAMPLES is OFF (portable binaries), and says which.
#pragma once

#include <cstdio>

#include <mlstm/build_info.hpp>

namespace example {

inline void print_build_banner(const char* program) {
#ifdef MLSTM_EXAMPLES_NATIVE
  const char* build = "-march=native: this machine";
#else
  const char* build = "portable: no -march";
#endif
  std::fprintf(stderr,
               "%s: built for %s (%s); float products: %s, linear layers: %s, with bfloat16 "
               "inputs: %s\n",
               program, mlstm::compiled_instruction_sets, build, mlstm::float_product_name(),
               mlstm::linear_product_name(), mlstm::bfloat16_inputs_product_name());
}

}  // namespace example
