// How a linear map with bfloat16 weights takes its float inputs.
//
//   model.set_input_rounding(mlstm::InputRounding::bfloat16);  // xLSTM-Large, bfloat16 weights
//
// none (the default): as they are; every product of an input and a weight is exact and summed in
// float. bfloat16: rounded to bfloat16 (to nearest even) first, as a bfloat16 model in PyTorch
// rounds its activations, which lets a processor with AMX-BF16 multiply them on its tile unit
// (detail/amx_product.hpp), several times faster in a prefill. Maps whose weights are in the
// activations' scalar ignore it.
#pragma once

namespace mlstm {

enum class InputRounding { none, bfloat16 };

}  // namespace mlstm
