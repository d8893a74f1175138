// What a program built on mlstm runs, for it to print at start so that a speed is read against
// the right code path:
//
//   std::printf("%s; float products: %s\n", mlstm::compiled_instruction_sets(),
//               mlstm::float_product_name());
//
// Eigen's SimdInstructionSetsInUse() names AVX for a build with AVX2 and FMA, which is why the
// library says it itself.
#pragma once

#include "mlstm/detail/matrix_product.hpp"

namespace mlstm {

// The widest vector instructions that the including translation unit was compiled for (its
// -march or -m flags), which Eigen's own vectorized code uses.
constexpr const char* compiled_instruction_sets() noexcept {
#if defined(__AVX512F__)
  return "AVX-512F, AVX2, FMA";
#elif defined(__AVX2__) && defined(__FMA__)
  return "AVX2, FMA";
#elif defined(__AVX2__)
  return "AVX2";
#elif defined(__AVX__)
  return "AVX";
#elif defined(__SSE4_2__)
  return "SSE4.2";
#elif defined(__SSE2__) || defined(_M_X64)
  return "SSE2";
#elif defined(__ARM_NEON)
  return "NEON";
#else
  return "no vector instructions";
#endif
}

// Which product runs the library's float matrix products of more than one row
// (detail/matrix_product.hpp): oneDNN's in a MLSTM_GEMM=oneDNN build, else the packed product,
// which carries its own AVX2 code and is chosen when the processor has AVX2 and FMA and the build
// is not for AVX-512, else Eigen's.
inline const char* float_product_name() {
#ifdef MLSTM_USE_ONEDNN
  return "oneDNN";
#else
  return detail::products_are_packed<float>() ? "packed product (AVX2, FMA)" : "Eigen";
#endif
}

}  // namespace mlstm
