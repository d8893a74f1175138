// What a program built on mlstm runs, for it to print at start so that a speed is read against
// the right code path:
//
//   std::printf("%s; products: %s, linear layers: %s\n", mlstm::compiled_instruction_sets,
//               mlstm::float_product_name(), mlstm::linear_product_name());
//   mlstm::bfloat16_inputs_product_name()   // bfloat16 weights with InputRounding::bfloat16
//
// Eigen's SimdInstructionSetsInUse() names AVX for a build with AVX2 and FMA, which is why the
// library says it itself.
#pragma once

#include <type_traits>

#include "mlstm/detail/linear_product.hpp"
#include "mlstm/detail/matrix_product.hpp"

namespace mlstm {

// The widest vector instructions that the including translation unit was compiled for (its
// -march or -m flags), which Eigen's own vectorized code uses. A constant of each translation
// unit (internal linkage), as units built with different flags may differ.
#if defined(__AVX512F__)
constexpr const char* compiled_instruction_sets = "AVX-512F, AVX2, FMA";
#elif defined(__AVX2__) && defined(__FMA__)
constexpr const char* compiled_instruction_sets = "AVX2, FMA";
#elif defined(__AVX2__)
constexpr const char* compiled_instruction_sets = "AVX2";
#elif defined(__AVX__)
constexpr const char* compiled_instruction_sets = "AVX";
#elif defined(__SSE4_2__)
constexpr const char* compiled_instruction_sets = "SSE4.2";
#elif defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
constexpr const char* compiled_instruction_sets = "SSE2";
#elif defined(__ARM_NEON)
constexpr const char* compiled_instruction_sets = "NEON";
#else
constexpr const char* compiled_instruction_sets = "no vector instructions";
#endif

// Which product runs the library's float matrix products of more than one row in the kernels
// and the backward passes (detail/matrix_product.hpp): oneDNN's in a MLSTM_GEMM=oneDNN build,
// else the packed product, which carries its own AVX2 and AVX-512 code and is chosen when the
// processor has AVX2 and FMA (with its AVX-512 tile where the processor has AVX-512), else Eigen's.
inline const char* float_product_name() {
#ifdef MLSTM_USE_ONEDNN
  return "oneDNN";
#else
#if MLSTM_DETAIL_X86_KERNELS
  if (detail::products_are_packed<float>()) {
    return detail::with_packed_tile([](auto tile) {
      return std::is_same_v<decltype(tile), detail::Avx512Tile>
                 ? "packed product (AVX-512, 8 x 32 tiles)"
                 : "packed product (AVX2, 6 x 16 tiles)";
    });
  }
#endif
  return "Eigen";
#endif
}

// Which product runs the float32 linear layers on a prefill's rows (detail/linear_product.hpp):
// the library's AVX-512 kernel where the processor has it, else float_product_name()'s, which
// also takes a training step's many rows by few inputs (detail::uses_broadcast_product).
inline const char* linear_product_name() {
  const bool broadcast = detail::uses_broadcast_product<float, float>(
      detail::widened_dot_max_rows + 1, detail::packed_float_weights_max_inputs + 1);
  return broadcast ? "AVX-512 broadcast kernel" : float_product_name();
}

// Which product runs a prefill's products with bfloat16 weights and InputRounding::bfloat16:
// the processor's AMX-BF16 tile unit where it has one (and the system lets the process use it),
// else a copy of the rounded inputs through the products of bfloat16 weights.
inline const char* bfloat16_inputs_product_name() {
#if MLSTM_DETAIL_AMX_KERNELS
  if (detail::processor_has_amx_bf16()) return "AMX-BF16 tiles";
#endif
  return "a rounded copy of the inputs";
}

}  // namespace mlstm
