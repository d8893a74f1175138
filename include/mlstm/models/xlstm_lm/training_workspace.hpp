// What LanguageModel::forward_backward keeps from one call to the next: the activations of the
// forward and the working buffers of the backward.
//
// The first call at a (batch, seq_len) sizes every buffer; a later call at the same shape writes
// into the same memory, so that a training step makes no large allocation (with the parallel
// forward kernel; the chunkwise kernel still allocates its own working memory per call). A call
// at another shape resizes the buffers, with the same results as a fresh workspace.
#pragma once

#include <vector>

#include "mlstm/models/xlstm_lm/mlstm_block.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

template <typename T>
struct LMTrainingWorkspace {
  std::vector<Tensor<T, 3>> inputs;        // (B, S, E): each block's input, then the last output
  std::vector<MLSTMBlockCache<T>> caches;  // each block's training cache
  Tensor<T, 3> normed;                     // (B, S, E): the post-blocks norm's output
  Tensor<T, 3> logits;                     // (B, S, V), overwritten by their gradient
  Tensor<T, 3> dx, dnext;                  // (B, S, E): gradients flowing back through the blocks
  MLSTMBlockBackwardBuffers<T> backward;   // the blocks' backward buffers, shared by all blocks
};

}  // namespace mlstm
