// generate: prefill a prompt with the chunkwise kernel in one call, then generate token by token
// from the state it leaves, streaming the text as it comes; prints the tokens per second of both
// phases at the end.
//
//   generate --model xLSTM-7b --prompt "The xLSTM is" --new-tokens 64    # a Hugging Face folder
//   generate --model DIR --prompt "Once" --temperature 0.8 --top-k 40 --seed 3
//   generate --checkpoint model.safetensors --tokens 12,7,431 --dump-logits prompt_logits.f32
//   generate --vocab-size=50304 --embedding-dim=768 --num-blocks=12 --prompt-length=512
//
// Text needs a tokenizer: DIR/tokenizer.json with --model, or --tokenizer PATH. Without one,
// prompts and outputs are token ids. Without --prompt or --tokens, the prompt is --prompt-length
// ids drawn from --seed. Greedy decoding by default (--temperature 0).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <mlstm/io/tokenizer.hpp>
#include <mlstm/mlstm.hpp>

#include "build_banner.hpp"
#include "example_model.hpp"

namespace {

const char* const usage_head =
    "usage: generate [options]   (--flag=value or --flag value)\n"
    "  --prompt=TEXT         the prompt as text (needs a tokenizer)\n"
    "  --tokens=ID,ID,...    the prompt as token ids\n"
    "  --prompt-length=N     else a prompt of N random ids (default 32)\n"
    "  --tokenizer=PATH      a tokenizer.json (default: the --model folder's, if it has one)\n"
    "  --new-tokens=N        tokens to generate (default 32)\n"
    "  --temperature=X       0: greedy (default); > 0: sample from softmax(logits / X)\n"
    "  --top-k=N             sample among the N most likely tokens (default: all)\n"
    "  --dump-logits=PATH    write the prompt's logits (S, V) as little-endian float32\n"
    "  --seed=N              also seeds the random prompt and sampling\n";

struct Options {
  example::ModelFlags model;
  std::optional<std::string> prompt_text;
  std::vector<std::int64_t> prompt;
  long long prompt_length = 32;
  std::string tokenizer;
  long long new_tokens = 32;
  double temperature = 0.0;
  long long top_k = 0;
  std::string dump_logits;
};

Options parse(int argc, char** argv) {
  Options options;
  example::parse_flags(argc, argv, std::string(usage_head) + example::model_usage,
                       [&](const std::string& flag, const std::string& value) {
                         if (example::parse_model_flag(flag, value, options.model)) return true;
                         if (flag == "--prompt") {
                           options.prompt_text = value;
                         } else if (flag == "--tokens") {
                           options.prompt = example::parse_integer_list(flag, value);
                         } else if (flag == "--prompt-length") {
                           options.prompt_length = example::parse_integer(flag, value);
                         } else if (flag == "--tokenizer") {
                           options.tokenizer = value;
                         } else if (flag == "--new-tokens") {
                           options.new_tokens = example::parse_integer(flag, value);
                         } else if (flag == "--temperature") {
                           options.temperature = example::parse_real(flag, value);
                         } else if (flag == "--top-k") {
                           options.top_k = example::parse_integer(flag, value);
                         } else if (flag == "--dump-logits") {
                           options.dump_logits = value;
                         } else {
                           return false;
                         }
                         return true;
                       });
  if (options.prompt_text && !options.prompt.empty())
    throw std::invalid_argument("--prompt and --tokens: give one of them");
  if (!options.prompt_text && options.prompt.empty() && options.prompt_length < 1)
    throw std::invalid_argument("--prompt-length must be >= 1");
  if (options.new_tokens < 0) throw std::invalid_argument("--new-tokens must be >= 0");
  if (!(options.temperature >= 0.0)) throw std::invalid_argument("--temperature must be >= 0");
  return options;
}

// The tokenizer: --tokenizer, else the --model folder's tokenizer.json if there is one.
std::optional<mlstm::Tokenizer> load_tokenizer(const Options& options) {
  if (!options.tokenizer.empty()) return mlstm::Tokenizer::from_file(options.tokenizer);
  const std::string in_folder = options.model.folder + "/tokenizer.json";
  if (!options.model.folder.empty() && std::ifstream(in_folder).good())
    return mlstm::Tokenizer::from_file(in_folder);
  return std::nullopt;
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

// Writes tokens' text as they come (only whole UTF-8 characters), or their ids without a
// tokenizer; ids the tokenizer does not have (a model's padding) show as [id].
class Printer {
 public:
  explicit Printer(const std::optional<mlstm::Tokenizer>& tokenizer) : tokenizer_(tokenizer) {
    if (tokenizer_) stream_.emplace(*tokenizer_);
  }

  void print(std::int64_t id) {
    if (!tokenizer_) {
      std::printf(" %lld", static_cast<long long>(id));
    } else if (tokenizer_->is_token(id)) {
      std::fputs(stream_->next(id).c_str(), stdout);
    } else {
      std::printf("%s[%lld]", stream_->finish().c_str(), static_cast<long long>(id));
    }
    std::fflush(stdout);
  }

  void finish() {
    if (stream_) std::fputs(stream_->finish().c_str(), stdout);
    std::printf("\n");
  }

 private:
  const std::optional<mlstm::Tokenizer>& tokenizer_;
  std::optional<mlstm::StreamDecoder> stream_;
};

void write_logits(const std::string& path, const mlstm::Tensor<float, 3>& logits) {
  static_assert(sizeof(float) == 4, "float32 expected");
  const std::uint16_t probe = 1;
  if (*reinterpret_cast<const unsigned char*>(&probe) != 1)
    throw std::runtime_error("--dump-logits writes little-endian float32 on little-endian hosts");
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(logits.data()),
            static_cast<std::streamsize>(logits.size() * sizeof(float)));
  if (!out) throw std::runtime_error("--dump-logits: cannot write " + path);
}

// Prefill, then generation, streaming the text; the model is the language model or xLSTM-Large
// (both have initial_state, prefill and step).
template <typename Model>
void generate(const Model& model, const std::optional<mlstm::Tokenizer>& tokenizer,
              Options& options) {
  const mlstm::Index vocab = model.config().vocab_size;
  std::mt19937_64 engine(options.model.seed);
  if (options.prompt_text) {
    if (!tokenizer)
      throw std::invalid_argument(
          "--prompt needs a tokenizer: --model DIR with tokenizer.json, "
          "or --tokenizer PATH");
    options.prompt = tokenizer->encode(*options.prompt_text);
    if (options.prompt.empty()) throw std::invalid_argument("--prompt: the text has no tokens");
  } else if (options.prompt.empty()) {
    std::uniform_int_distribution<std::int64_t> any_token(0, vocab - 1);
    for (long long t = 0; t < options.prompt_length; ++t)
      options.prompt.push_back(any_token(engine));
  }
  for (const std::int64_t id : options.prompt) {
    if (id < 0 || id >= vocab)
      throw std::invalid_argument("prompt token " + std::to_string(id) +
                                  " is outside the model's vocabulary of " + std::to_string(vocab));
  }
  const auto prompt_length = static_cast<mlstm::Index>(options.prompt.size());
  mlstm::Tensor<std::int64_t, 2> prompt(1, prompt_length);
  std::copy(options.prompt.begin(), options.prompt.end(), prompt.data());

  std::printf("prompt (%lld tokens):", static_cast<long long>(prompt_length));
  if (tokenizer) std::printf(" %s\n", tokenizer->decode(options.prompt).c_str());
  for (const auto id : options.prompt) std::printf(" %lld", static_cast<long long>(id));
  std::printf("\ngenerated (%s):\n", options.temperature == 0.0 ? "greedy" : "sampled");

  // Prefill: the whole prompt in one call (chunkwise kernel); every position's logits when they
  // are to be written, else the last one's.
  auto state = model.initial_state(1);
  const auto wanted = options.dump_logits.empty() ? mlstm::Logits::last : mlstm::Logits::all;
  auto start = std::chrono::steady_clock::now();
  const mlstm::Tensor<float, 3> prefill_logits = model.prefill(prompt, state, wanted);
  const double prefill_seconds = example::seconds_since(start);
  if (!options.dump_logits.empty()) write_logits(options.dump_logits, prefill_logits);

  // Generation: the first token from the prefill's last logits, then one step per token.
  Printer printer(tokenizer);
  mlstm::Tensor<std::int64_t, 1> next(1);
  double generate_seconds = 0.0;
  for (long long t = 0; t < options.new_tokens; ++t) {
    if (t == 0) {
      const float* last = &prefill_logits(0, prefill_logits.dimension(1) - 1, 0);
      next(0) = choose(last, vocab, options, engine);
    } else {
      start = std::chrono::steady_clock::now();
      const mlstm::Tensor<float, 2> logits = model.step(next, state);
      next(0) = choose(logits.data(), vocab, options, engine);
      generate_seconds += example::seconds_since(start);
    }
    printer.print(next(0));
  }
  printer.finish();

  std::printf("prefill:    %lld tokens in %.4f s = %.1f tokens/s (chunkwise, chunk %lld)\n",
              static_cast<long long>(prompt_length), prefill_seconds,
              static_cast<double>(prompt_length) / prefill_seconds,
              static_cast<long long>(example::chunk_size_of(model)));
  const long long steps = std::max(options.new_tokens - 1, 0LL);
  if (steps > 0) {
    std::printf("generation: %lld steps in %.4f s = %.1f tokens/s (recurrent step)\n", steps,
                generate_seconds, static_cast<double>(steps) / generate_seconds);
  }
  if (!options.dump_logits.empty()) {
    std::printf("logits (%lld, %lld) written to %s\n", static_cast<long long>(prompt_length),
                static_cast<long long>(vocab), options.dump_logits.c_str());
  }
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
    const std::optional<mlstm::Tokenizer> tokenizer = load_tokenizer(options);
    example::with_model(options.model,
                        [&](const auto& model) { generate(model, tokenizer, options); });
  } catch (const std::exception& error) {
    std::cerr << "generate: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
