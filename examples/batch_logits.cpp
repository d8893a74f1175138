// batch_logits: run a model over a batch of token sequences in one call and summarize the
// logits: their range and spread, each sequence's next-token cross-entropy (how well the model
// predicts the sequence's own next token) and the most likely next tokens after it.
//
//   batch_logits                                           # a new small model, 4 random sequences
//   batch_logits --checkpoint=tests/reference/data/model_small.safetensors --batch=3 --length=16
//   batch_logits --checkpoint=model.safetensors --tokens="1,2,3,4;5,6,7,8" --kernel=chunkwise
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <mlstm/mlstm.hpp>

#include "build_banner.hpp"
#include "example_model.hpp"

namespace {

const char* const usage_head =
    "usage: batch_logits [options]\n"
    "  --tokens=ID,ID,...;ID,ID,...   the sequences (equal lengths), separated by ';'\n"
    "  --batch=N --length=N           else N random sequences of N tokens (default 4, 32)\n"
    "  --token-seed=N                 seed of the random tokens (default 0)\n"
    "  --kernel=parallel|chunkwise|recurrent   the whole-sequence kernel (default parallel)\n";

struct Options {
  example::ModelFlags model;
  std::vector<std::vector<std::int64_t>> sequences;
  long long batch = 4, length = 32;
  std::uint64_t token_seed = 0;
};

Options parse(int argc, char** argv) {
  Options options;
  example::parse_flags(
      argc, argv, std::string(usage_head) + example::model_usage,
      [&](const std::string& flag, const std::string& value) {
        if (example::parse_model_flag(flag, value, options.model)) return true;
        if (flag == "--tokens") {
          std::stringstream rows(value);
          for (std::string row; std::getline(rows, row, ';');)
            options.sequences.push_back(example::parse_integer_list(flag, row));
        } else if (flag == "--batch") {
          options.batch = example::parse_integer(flag, value);
        } else if (flag == "--length") {
          options.length = example::parse_integer(flag, value);
        } else if (flag == "--token-seed") {
          options.token_seed = static_cast<std::uint64_t>(example::parse_integer(flag, value));
        } else if (flag == "--kernel") {
          auto& kernel = options.model.kernels.forward_kernel;
          if (value == "parallel") kernel = mlstm::SequenceKernel::parallel;
          else if (value == "chunkwise") kernel = mlstm::SequenceKernel::chunkwise;
          else if (value == "recurrent") kernel = mlstm::SequenceKernel::recurrent;
          else throw std::invalid_argument("--kernel: expected parallel, chunkwise or recurrent");
        } else {
          return false;
        }
        return true;
      });
  for (const auto& sequence : options.sequences) {
    if (sequence.empty() || sequence.size() != options.sequences.front().size())
      throw std::invalid_argument("--tokens: sequences must be non-empty and of equal length");
  }
  return options;
}

// Runs the batch through `model` (the language model or xLSTM-Large) and prints the summary.
template <typename Model>
void summarize(const Model& model, Options& options) {
  const mlstm::Index vocab = model.config().vocab_size;

  if (options.sequences.empty()) {
    std::mt19937_64 engine(options.token_seed);
    std::uniform_int_distribution<std::int64_t> any_token(0, vocab - 1);
    options.sequences.assign(static_cast<std::size_t>(std::max(options.batch, 0LL)), {});
    for (auto& sequence : options.sequences)
      for (long long t = 0; t < options.length; ++t) sequence.push_back(any_token(engine));
  }
  const auto B = static_cast<mlstm::Index>(options.sequences.size());
  const auto S = static_cast<mlstm::Index>(B > 0 ? options.sequences.front().size() : 0);
  mlstm::Tensor<std::int64_t, 2> tokens(B, S);
  for (mlstm::Index b = 0; b < B; ++b)
    for (mlstm::Index t = 0; t < S; ++t) tokens(b, t) = options.sequences[b][t];

  const auto start = std::chrono::steady_clock::now();
  const mlstm::Tensor<float, 3> logits = model.forward(tokens);  // (B, S, V)
  const double seconds = example::seconds_since(start);

  double sum = 0.0, squares = 0.0;
  float low = logits.data()[0], high = logits.data()[0];
  for (mlstm::Index i = 0; i < logits.size(); ++i) {
    const double x = logits.data()[i];
    sum += x;
    squares += x * x;
    low = std::min(low, logits.data()[i]);
    high = std::max(high, logits.data()[i]);
  }
  const double mean = sum / static_cast<double>(logits.size());
  std::printf(
      "logits (%lld, %lld, %lld) in %.4f s (%.1f tokens/s): min %.4f, max %.4f, "
      "mean %.4f, std %.4f\n",
      static_cast<long long>(B), static_cast<long long>(S), static_cast<long long>(vocab), seconds,
      static_cast<double>(B * S) / seconds, low, high, mean,
      std::sqrt(std::max(0.0, squares / static_cast<double>(logits.size()) - mean * mean)));

  for (mlstm::Index b = 0; b < B; ++b) {
    // -log softmax(logits[t])[token t+1], averaged over the sequence.
    double cross_entropy = 0.0;
    for (mlstm::Index t = 0; t + 1 < S; ++t) {
      const float* row = &logits(b, t, 0);
      const double top = *std::max_element(row, row + vocab);
      double partition = 0.0;
      for (mlstm::Index v = 0; v < vocab; ++v) partition += std::exp(row[v] - top);
      cross_entropy += top + std::log(partition) - row[tokens(b, t + 1)];
    }
    std::vector<mlstm::Index> order(static_cast<std::size_t>(vocab));
    for (mlstm::Index v = 0; v < vocab; ++v) order[static_cast<std::size_t>(v)] = v;
    const float* last = &logits(b, S - 1, 0);
    const std::size_t shown = std::min<std::size_t>(3, order.size());
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(shown),
                      order.end(),
                      [&](mlstm::Index x, mlstm::Index y) { return last[x] > last[y]; });
    std::printf("sequence %lld: next-token cross-entropy %.4f nats", static_cast<long long>(b),
                S > 1 ? cross_entropy / static_cast<double>(S - 1) : 0.0);
    std::printf("; after it, most likely (logit):");
    for (std::size_t k = 0; k < shown; ++k)
      std::printf(" %lld (%.3f)", static_cast<long long>(order[k]), last[order[k]]);
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  example::print_build_banner("batch_logits");
  Options options;
  try {
    options = parse(argc, argv);
  } catch (const std::exception& error) {
    std::cerr << "batch_logits: " << error.what() << "\n" << usage_head << example::model_usage;
    return 2;
  }
  try {
    example::with_model(options.model, [&](const auto& model) { summarize(model, options); });
  } catch (const std::exception& error) {
    std::cerr << "batch_logits: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
