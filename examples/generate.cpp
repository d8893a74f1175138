// generate: prefill a prompt with the chunkwise kernel in one call, then generate token by token
// from the state it leaves; prints the tokens and the tokens per second of both phases.
//
//   generate                                          # a new small model from seed 0
//   generate --checkpoint=model.safetensors --prompt=12,7,431 --new-tokens=64
//   generate --checkpoint=model.safetensors --temperature=0.8 --top-k=40 --sample-seed=3
//   generate --vocab-size=50304 --embedding-dim=768 --num-blocks=12 --prompt-length=512
//
// There is no tokenizer here: prompts and outputs are token ids. Without --prompt, the prompt
// is --prompt-length ids drawn from --sample-seed. Greedy decoding by default (--temperature=0).
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
    "usage: generate [options]\n"
    "  --prompt=ID,ID,...    prompt token ids (else --prompt-length random ids)\n"
    "  --prompt-length=N     length of the random prompt (default 32)\n"
    "  --new-tokens=N        tokens to generate (default 32)\n"
    "  --temperature=X       0: greedy (default); > 0: sample from softmax(logits / X)\n"
    "  --top-k=N             sample among the N most likely tokens (default: all)\n"
    "  --sample-seed=N       seed of the random prompt and of sampling (default 0)\n";

struct Options {
  example::ModelFlags model;
  std::vector<std::int64_t> prompt;
  long long prompt_length = 32;
  long long new_tokens = 32;
  double temperature = 0.0;
  long long top_k = 0;
  std::uint64_t sample_seed = 0;
};

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << usage_head << example::model_usage;
      std::exit(0);
    }
    const auto equals = arg.find('=');
    if (equals == std::string::npos)
      throw std::invalid_argument("expected --flag=value, got " + arg);
    const std::string flag = arg.substr(0, equals), value = arg.substr(equals + 1);
    if (example::parse_model_flag(flag, value, options.model)) continue;
    if (flag == "--prompt") {
      std::stringstream ids(value);
      for (std::string id; std::getline(ids, id, ',');)
        options.prompt.push_back(example::parse_integer(flag, id));
    } else if (flag == "--prompt-length") {
      options.prompt_length = example::parse_integer(flag, value);
    } else if (flag == "--new-tokens") {
      options.new_tokens = example::parse_integer(flag, value);
    } else if (flag == "--temperature") {
      options.temperature = std::stod(value);
    } else if (flag == "--top-k") {
      options.top_k = example::parse_integer(flag, value);
    } else if (flag == "--sample-seed") {
      options.sample_seed = static_cast<std::uint64_t>(example::parse_integer(flag, value));
    } else {
      throw std::invalid_argument("unknown option " + arg);
    }
  }
  if (options.prompt.empty() && options.prompt_length < 1)
    throw std::invalid_argument("--prompt-length must be >= 1");
  if (options.new_tokens < 0) throw std::invalid_argument("--new-tokens must be >= 0");
  if (!(options.temperature >= 0.0)) throw std::invalid_argument("--temperature must be >= 0");
  return options;
}

// The next token from one row of logits: the most likely, or a draw from the softmax at
// `temperature` among the top_k most likely (all when top_k is 0).
std::int64_t choose(const float* logits, mlstm::Index vocab, const Options& options,
                    std::mt19937_64& engine) {
  if (options.temperature == 0.0) return std::max_element(logits, logits + vocab) - logits;
  std::vector<std::int64_t> order(static_cast<std::size_t>(vocab));
  for (mlstm::Index i = 0; i < vocab; ++i) order[static_cast<std::size_t>(i)] = i;
  const auto keep = static_cast<std::size_t>(
      options.top_k > 0 ? std::min<long long>(options.top_k, vocab) : vocab);
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(),
                    [&](std::int64_t a, std::int64_t b) { return logits[a] > logits[b]; });
  std::vector<double> weights(keep);
  const double top = logits[order[0]];
  for (std::size_t i = 0; i < keep; ++i)
    weights[i] = std::exp((logits[order[i]] - top) / options.temperature);
  std::discrete_distribution<std::size_t> draw(weights.begin(), weights.end());
  return order[draw(engine)];
}

}  // namespace

int main(int argc, char** argv) {
  example::print_build_banner("generate");
  Options options;
  try {
    options = parse(argc, argv);
  } catch (const std::exception& error) {
    std::cerr << "generate: " << error.what() << "\n" << usage_head << example::model_usage;
    return 2;
  }
  try {
    const mlstm::LanguageModel<float> model = example::make_model(options.model);
    const mlstm::Index vocab = model.config().vocab_size;
    example::print_model(model, options.model);

    std::mt19937_64 engine(options.sample_seed);
    if (options.prompt.empty()) {
      std::uniform_int_distribution<std::int64_t> any_token(0, vocab - 1);
      for (long long t = 0; t < options.prompt_length; ++t)
        options.prompt.push_back(any_token(engine));
    }
    const auto prompt_length = static_cast<mlstm::Index>(options.prompt.size());
    mlstm::Tensor<std::int64_t, 2> prompt(1, prompt_length);
    std::copy(options.prompt.begin(), options.prompt.end(), prompt.data());

    // Prefill: the whole prompt in one call (chunkwise kernel), logits of its last position.
    auto state = model.initial_state(1);
    auto start = std::chrono::steady_clock::now();
    const mlstm::Tensor<float, 3> last = model.prefill(prompt, state, mlstm::Logits::last);
    const double prefill_seconds = example::seconds_since(start);

    // Generation: one token at a time from the state.
    std::vector<std::int64_t> generated;
    mlstm::Tensor<std::int64_t, 1> next(1);
    start = std::chrono::steady_clock::now();
    if (options.new_tokens > 0) {
      next(0) = choose(last.data(), vocab, options, engine);
      generated.push_back(next(0));
      for (long long t = 1; t < options.new_tokens; ++t) {
        const mlstm::Tensor<float, 2> logits = model.step(next, state);
        next(0) = choose(logits.data(), vocab, options, engine);
        generated.push_back(next(0));
      }
    }
    const double generate_seconds = example::seconds_since(start);

    std::printf("prompt (%lld tokens):", static_cast<long long>(prompt_length));
    for (const auto id : options.prompt) std::printf(" %lld", static_cast<long long>(id));
    std::printf("\ngenerated (%zu tokens, %s):", generated.size(),
                options.temperature == 0.0 ? "greedy" : "sampled");
    for (const auto id : generated) std::printf(" %lld", static_cast<long long>(id));
    std::printf("\nprefill:    %lld tokens in %.4f s = %.1f tokens/s (chunkwise, chunk %lld)\n",
                static_cast<long long>(prompt_length), prefill_seconds,
                static_cast<double>(prompt_length) / prefill_seconds,
                static_cast<long long>(model.options().chunk_size));
    // The first generated token comes from the prefill's logits; the others each take a step.
    const auto steps = static_cast<long long>(std::max<std::size_t>(generated.size(), 1) - 1);
    if (steps > 0) {
      std::printf("generation: %lld steps in %.4f s = %.1f tokens/s (recurrent step)\n", steps,
                  generate_seconds, static_cast<double>(steps) / generate_seconds);
    }
  } catch (const std::exception& error) {
    std::cerr << "generate: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
