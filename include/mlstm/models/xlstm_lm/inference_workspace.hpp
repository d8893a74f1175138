// What LanguageModel's inference calls over sequences (forward, prefill, loss) keep from one call
// to the next: the activations of one block, which the blocks use in turn, and the blocks' input
// and output. A call at the (batch, seq_len) of the one before writes into the same memory; a
// call at another shape resizes the buffers. Steps (one token) use small buffers of their own,
// so generation between two prompts leaves these as they are.
#pragma once

#include "mlstm/models/xlstm_lm/mlstm_block.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

template <typename T>
struct LMInferenceWorkspace {
  Tensor<T, 3> x, y;               // (B, S, E): the current block's input and output
  MLSTMBlockCache<T> activations;  // (B, S, ...): inside the current block
};

}  // namespace mlstm
