// Tests built for the machine they run on (-march=native, as the examples and benchmarks are;
// tests/CMakeLists.txt). The other tests are built portable, where Eigen's vectors are 16 bytes
// wide, the alignment malloc gives every buffer; with AVX-512 they are 64 bytes wide, and code
// whose result depends on where a buffer lies shows it only here.
#include <catch2/catch.hpp>

#include <algorithm>
#include <utility>
#include <vector>

#include <mlstm/mlstm.hpp>
#include <mlstm/model.hpp>

namespace {

using mlstm::Index;
using mlstm::Tensor;

TEST_CASE("a training step gives the same loss and gradients from run to run, on any thread count",
          "[training][threads]") {
  // Large enough that the passes run on several threads, whose buffers come from other heap
  // arenas at addresses that move from run to run (an inference forward between the steps moves
  // them further). The output gate's silu had made the loss follow them: 15 distinct losses in
  // 40 runs on 2 threads (vector_pieces.hpp; test_model_layers' "exp, tanh and silu give each
  // value the same bits wherever it lies" checks that cause in any build).
  mlstm::LMModelConfig config;
  config.vocab_size = 256;
  config.embedding_dim = 128;
  config.num_heads = 4;
  config.num_blocks = 2;
  config.context_length = 64;
  mlstm::LanguageModel<float> model(config);
  mlstm::Generator generator(5);
  model.reset_parameters(generator);
  Tensor<int, 2> tokens(3, 64), targets(3, 64);
  for (Index i = 0; i < tokens.size(); ++i) {
    tokens.data()[i] = static_cast<int>((i * 17 + 5) % config.vocab_size);
    targets.data()[i] = static_cast<int>((i * 29 + 3) % config.vocab_size);
  }
  const auto step = [&](int threads) {
    mlstm::KernelOptions options = model.options();
    options.num_threads = threads;
    model.set_options(options);
    for (auto& param : model.registry()) param.zero_grad();
    const double loss = model.forward_backward(tokens, targets);
    std::vector<float> gradients;
    for (const auto& param : model.registry())
      gradients.insert(gradients.end(), param.grad_data(), param.grad_data() + param.size());
    return std::make_pair(loss, gradients);
  };
  const auto [expected_loss, expected_gradients] = step(1);
  const double expected_inference_loss = model.loss(tokens, targets);
  for (int run = 0; run < 16; ++run) {
    const int threads = run < 12 ? 2 : 3;
    CAPTURE(run, threads);
    const auto [loss, gradients] = step(threads);
    CHECK(loss == expected_loss);
    // The first differing gradient value, if any (the vectors are too long to print).
    const auto differ =
        std::mismatch(gradients.begin(), gradients.end(), expected_gradients.begin());
    const Index first = differ.first - gradients.begin();
    INFO("first difference at value " << first << " of " << gradients.size());
    CHECK(differ.first == gradients.end());
    CHECK(model.loss(tokens, targets) == expected_inference_loss);
  }
}

}  // namespace
