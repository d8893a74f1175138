// The configuration of an mLSTM-only xLSTM language model (the reference's xLSTMLMModelConfig
// with an mLSTMBlockConfig and no sLSTM blocks), and the per-module configurations derived from
// it (the reference's mLSTMLayerConfig and mLSTMCellConfig after their __post_init__).
//
//   mlstm::LMModelConfig config;
//   config.vocab_size = 50304;
//   config.embedding_dim = 768;
//   config.num_blocks = 12;
//   config.context_length = 2048;
//   config.validate();                          // ValueError naming the first bad field
//   config.inner_embedding_dim();               // 1536: proj_factor 2.0, rounded up to 64s
//   mlstm::MLSTMLayerConfig layer = config.layer();
//
// The inner (up-projected) dimension follows the reference's rounding:
//   multiplier = proj_factor * embedding_dim / round_proj_up_to_multiple_of
//   inner      = ceil(multiplier) * round_proj_up_to_multiple_of   (floor when
//                                                                   round_proj_up_dim_up = false)
// The q/k/v projections are head-wise with num_proj_heads = inner / qkv_proj_blocksize
// (integer division) blocks of size inner / num_proj_heads.
#pragma once

#include <cmath>
#include <sstream>
#include <string>

#include "mlstm/errors.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

namespace detail {

inline void expect_at_least(Index value, Index minimum, const char* argument) {
  if (value < minimum) {
    throw ValueError(argument, "expected an integer >= " + std::to_string(minimum) + ", got " +
                                   std::to_string(value));
  }
}

}  // namespace detail

// The reference's UpProjConfigMixin._set_proj_up_dim.
inline Index proj_up_dim(double proj_factor, Index embedding_dim, bool round_up,
                         Index multiple_of) {
  const double multiplier =
      proj_factor * static_cast<double>(embedding_dim) / static_cast<double>(multiple_of);
  const double rounded = round_up ? std::ceil(multiplier) : std::floor(multiplier);
  const double dim = rounded * static_cast<double>(multiple_of);
  if (!(dim < 0x1.0p62)) {  // also catches NaN; beyond this the cast would overflow
    std::ostringstream text;
    text << "proj_factor * embedding_dim = " << proj_factor * static_cast<double>(embedding_dim)
         << " is too large";
    throw ValueError("proj_factor", text.str());
  }
  return static_cast<Index>(dim);
}

// mLSTMCellConfig: the cell works on the inner dimension.
struct MLSTMCellConfig {
  Index context_length = -1;
  Index embedding_dim = -1;  // the layer's inner dimension
  Index num_heads = -1;

  Index head_dim() const { return embedding_dim / num_heads; }

  void validate() const {
    detail::expect_at_least(context_length, 1, "config.context_length");
    detail::expect_at_least(embedding_dim, 1, "config.embedding_dim");
    detail::expect_at_least(num_heads, 1, "config.num_heads");
    if (embedding_dim % num_heads != 0) {
      throw ValueError("config.num_heads", "must divide the cell's embedding dim " +
                                               std::to_string(embedding_dim) + " into heads, got " +
                                               std::to_string(num_heads));
    }
  }
};

// mLSTMLayerConfig after __post_init__.
struct MLSTMLayerConfig {
  Index embedding_dim = -1;
  Index inner_embedding_dim = -1;
  Index num_heads = 4;
  Index qkv_proj_blocksize = 4;
  Index conv1d_kernel_size = 4;
  bool bias = false;
  Index num_blocks = 1;  // of the whole model: the Wang init of proj_down depends on it
  Index context_length = -1;

  Index num_proj_heads() const { return inner_embedding_dim / qkv_proj_blocksize; }
  Index qkv_block_dim() const { return inner_embedding_dim / num_proj_heads(); }

  MLSTMCellConfig cell() const { return {context_length, inner_embedding_dim, num_heads}; }

  void validate() const {
    detail::expect_at_least(embedding_dim, 1, "config.embedding_dim");
    detail::expect_at_least(inner_embedding_dim, 1, "config.inner_embedding_dim");
    detail::expect_at_least(qkv_proj_blocksize, 1, "config.qkv_proj_blocksize");
    detail::expect_at_least(conv1d_kernel_size, 1, "config.conv1d_kernel_size");
    detail::expect_at_least(num_blocks, 1, "config.num_blocks");
    if (num_proj_heads() < 1) {
      throw ValueError("config.qkv_proj_blocksize", "must not exceed the inner embedding dim " +
                                                        std::to_string(inner_embedding_dim) +
                                                        ", got " +
                                                        std::to_string(qkv_proj_blocksize));
    }
    if (inner_embedding_dim % num_proj_heads() != 0) {
      throw ValueError("config.qkv_proj_blocksize",
                       "inner embedding dim " + std::to_string(inner_embedding_dim) +
                           " is not a multiple of its " + std::to_string(num_proj_heads()) +
                           " q/k/v projection blocks (inner / qkv_proj_blocksize = " +
                           std::to_string(inner_embedding_dim) + " / " +
                           std::to_string(qkv_proj_blocksize) + ")");
    }
    cell().validate();
  }
};

// xLSTMLMModelConfig with mlstm_block set and slstm_block = None; defaults are the reference's.
struct LMModelConfig {
  Index vocab_size = -1;
  Index embedding_dim = 128;
  Index num_heads = 4;
  Index num_blocks = 1;
  Index context_length = -1;
  double proj_factor = 2.0;
  bool round_proj_up_dim_up = true;
  Index round_proj_up_to_multiple_of = 64;
  Index conv1d_kernel_size = 4;
  Index qkv_proj_blocksize = 4;
  bool bias = false;
  bool add_post_blocks_norm = true;
  bool tie_weights = false;
  bool weight_decay_on_embedding = false;

  Index inner_embedding_dim() const {
    return proj_up_dim(proj_factor, embedding_dim, round_proj_up_dim_up,
                       round_proj_up_to_multiple_of);
  }

  MLSTMLayerConfig layer() const {
    MLSTMLayerConfig layer;
    layer.embedding_dim = embedding_dim;
    layer.inner_embedding_dim = inner_embedding_dim();
    layer.num_heads = num_heads;
    layer.qkv_proj_blocksize = qkv_proj_blocksize;
    layer.conv1d_kernel_size = conv1d_kernel_size;
    layer.bias = bias;
    layer.num_blocks = num_blocks;
    layer.context_length = context_length;
    return layer;
  }

  // ValueError naming the first invalid field.
  void validate() const {
    detail::expect_at_least(vocab_size, 1, "config.vocab_size");
    detail::expect_at_least(embedding_dim, 1, "config.embedding_dim");
    detail::expect_at_least(num_heads, 1, "config.num_heads");
    detail::expect_at_least(num_blocks, 1, "config.num_blocks");
    detail::expect_at_least(context_length, 1, "config.context_length");
    detail::expect_at_least(round_proj_up_to_multiple_of, 1, "config.round_proj_up_to_multiple_of");
    if (!(std::isfinite(proj_factor) && proj_factor > 0.0)) {
      std::ostringstream text;
      text << "expected a finite value > 0, got " << proj_factor;
      throw ValueError("config.proj_factor", text.str());
    }
    if (inner_embedding_dim() < 1) {
      std::ostringstream text;
      text << "proj_factor * embedding_dim = " << proj_factor * static_cast<double>(embedding_dim)
           << " rounds down to 0 multiples of " << round_proj_up_to_multiple_of;
      throw ValueError("config.proj_factor", text.str());
    }
    layer().validate();
  }
};

}  // namespace mlstm
