// A language model of mLSTM blocks, of the given sizes, initialized as the reference does from a
// seed: for tests that need some model rather than the golden ones.
#pragma once

#include <cstdint>

#include <mlstm/mlstm.hpp>

namespace mlstm::test {

struct ModelSizes {
  Index vocab_size, embedding_dim, num_blocks, context_length;
};

inline LanguageModel<float> seeded_model(const ModelSizes& sizes, const KernelOptions& options,
                                         std::uint64_t seed) {
  LMModelConfig config;
  config.vocab_size = sizes.vocab_size;
  config.embedding_dim = sizes.embedding_dim;
  config.num_blocks = sizes.num_blocks;
  config.context_length = sizes.context_length;
  LanguageModel<float> model(config, options);
  Generator generator(seed);
  model.reset_parameters(generator);
  return model;
}

}  // namespace mlstm::test
