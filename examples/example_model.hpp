// What the model examples share: parsing `--flag=value` / `--flag value` arguments, the flags that
// choose a model (a folder, a checkpoint, or a new model of a given configuration initialized
// from a seed) and how to build it.
//
//   --model=DIR            a model folder: a Hugging Face xLSTM-Large folder (config.json and
//                          safetensors shards, as save_pretrained writes them), or a folder with
//                          model.safetensors (as --checkpoint); and, for the examples that read
//                          text, tokenizer.json
//   --weights=bfloat16|float32   how an xLSTM-Large model stores its matrices (computing in float)
//   --inputs=float32|bfloat16    how its products with bfloat16 matrices take their activations:
//                          as they are, or rounded to bfloat16 (on AMX-BF16 tiles where the
//                          processor has them: a faster prefill)
//   --checkpoint=PATH      a safetensors state dict (from save_language_model, or from PyTorch:
//                          the configuration is then inferred from the tensors)
//   without a checkpoint:  --vocab-size --embedding-dim --num-heads --num-blocks
//                          --context-length --seed (the reference's initialization)
//   --threads=N            threads of the kernels and products (default: all)
//   --chunk-size=N         chunk size of the chunkwise kernel (prefill)
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <mlstm/mlstm.hpp>

namespace example {

struct ModelFlags {
  std::string folder;
  std::string checkpoint;
  bool bfloat16_weights = true;  // of an xLSTM-Large model
  bool bfloat16_inputs = false;  // of its products with bfloat16 weights
  mlstm::LMModelConfig config;
  std::uint64_t seed = 0;
  mlstm::KernelOptions kernels;

  ModelFlags() {
    config.vocab_size = 256;
    config.embedding_dim = 128;
    config.num_heads = 4;
    config.num_blocks = 2;
    config.context_length = 256;
  }
};

inline const char* const model_usage =
    "  --model=DIR           a model folder: Hugging Face xLSTM-Large (config.json + shards) or\n"
    "                        model.safetensors; and tokenizer.json where text is read\n"
    "  --weights=bfloat16|float32   an xLSTM-Large model's matrices (default bfloat16)\n"
    "  --inputs=float32|bfloat16    its products' activations: as they are (default) or\n"
    "                        rounded to bfloat16 (AMX-BF16 tiles where the processor has them)\n"
    "  --checkpoint=PATH     load a safetensors checkpoint (else: a new model from --seed)\n"
    "  --vocab-size=N --embedding-dim=N --num-heads=N --num-blocks=N --context-length=N\n"
    "                        the new model's configuration (default 256, 128, 4, 2, 256)\n"
    "  --seed=N              seed of the new model's initialization (default 0)\n"
    "  --threads=N           threads (default: MLSTM_NUM_THREADS or all cores)\n"
    "  --chunk-size=N        chunk size of the chunkwise kernel (default 64)\n";

// All of `text` read by convert(text, &characters_used) (std::stoll, std::stod, ...), else
// invalid_argument naming the flag and what was expected (`kind`).
template <typename Convert>
auto parse_whole(const std::string& flag, const std::string& text, const char* kind,
                 Convert convert) {
  std::size_t used = 0;
  decltype(convert(text, &used)) value{};
  try {
    value = convert(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty())
    throw std::invalid_argument(flag + ": not " + kind + ": '" + text + "'");
  return value;
}

inline long long parse_integer(const std::string& flag, const std::string& text) {
  return parse_whole(flag, text, "an integer",
                     [](const std::string& t, std::size_t* used) { return std::stoll(t, used); });
}

inline double parse_real(const std::string& flag, const std::string& text) {
  return parse_whole(flag, text, "a number",
                     [](const std::string& t, std::size_t* used) { return std::stod(t, used); });
}

// Hands each `--flag=value` or `--flag value` of the command line to handle(flag, value), which
// returns false for a flag it does not know (an error). --help or -h prints `usage` and exits.
template <typename Handle>
void parse_flags(int argc, char** argv, const std::string& usage, Handle handle) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << usage;
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0) throw std::invalid_argument("expected --flag=value, got " + arg);
    const auto equals = arg.find('=');
    const std::string flag = arg.substr(0, equals);
    std::string value;
    if (equals != std::string::npos) {
      value = arg.substr(equals + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      throw std::invalid_argument(flag + ": needs a value");
    }
    if (!handle(flag, value)) throw std::invalid_argument("unknown option " + flag);
  }
}

// "1,2,3" as integers.
inline std::vector<std::int64_t> parse_integer_list(const std::string& flag,
                                                    const std::string& text) {
  std::vector<std::int64_t> values;
  std::stringstream items(text);
  for (std::string item; std::getline(items, item, ',');)
    values.push_back(parse_integer(flag, item));
  return values;
}

// Consumes `flag`=`value` if it is a model flag; false if it is not one.
inline bool parse_model_flag(const std::string& flag, const std::string& value, ModelFlags& flags) {
  auto& c = flags.config;
  const std::map<std::string, mlstm::Index*> integers{
      {"--vocab-size", &c.vocab_size},         {"--embedding-dim", &c.embedding_dim},
      {"--num-heads", &c.num_heads},           {"--num-blocks", &c.num_blocks},
      {"--context-length", &c.context_length}, {"--chunk-size", &flags.kernels.chunk_size}};
  if (integers.count(flag) != 0) {
    *integers.at(flag) = static_cast<mlstm::Index>(parse_integer(flag, value));
  } else if (flag == "--model") {
    flags.folder = value;
  } else if (flag == "--checkpoint") {
    flags.checkpoint = value;
  } else if (flag == "--weights") {
    if (value != "bfloat16" && value != "float32")
      throw std::invalid_argument("--weights: expected bfloat16 or float32, got " + value);
    flags.bfloat16_weights = value == "bfloat16";
  } else if (flag == "--inputs") {
    if (value != "bfloat16" && value != "float32")
      throw std::invalid_argument("--inputs: expected float32 or bfloat16, got " + value);
    flags.bfloat16_inputs = value == "bfloat16";
  } else if (flag == "--seed") {
    flags.seed = static_cast<std::uint64_t>(parse_integer(flag, value));
  } else if (flag == "--threads") {
    mlstm::set_num_threads(static_cast<int>(parse_integer(flag, value)));
  } else {
    return false;
  }
  return true;
}

// The file a model is loaded from: the folder's model.safetensors, or the checkpoint.
inline std::string model_file(const ModelFlags& flags) {
  if (!flags.folder.empty() && !flags.checkpoint.empty())
    throw std::invalid_argument("--model and --checkpoint: give one of them");
  return flags.folder.empty() ? flags.checkpoint : flags.folder + "/model.safetensors";
}

// The folder's or checkpoint's model, or a new one of flags.config initialized from flags.seed.
inline mlstm::LanguageModel<float> make_model(const ModelFlags& flags) {
  const std::string file = model_file(flags);
  if (!file.empty()) {
    return mlstm::load_language_model<float>(file, flags.kernels, flags.config.context_length);
  }
  mlstm::LanguageModel<float> model(flags.config, flags.kernels);
  mlstm::Generator generator(flags.seed);
  model.reset_parameters(generator);
  return model;
}

inline void print_model(const mlstm::LanguageModel<float>& model, const ModelFlags& flags) {
  const mlstm::LMModelConfig& c = model.config();
  std::printf(
      "model: %s; vocab %lld, embedding %lld, %lld blocks, %lld heads, inner %lld, "
      "%lld parameters; %d threads\n",
      model_file(flags).empty() ? ("new, seed " + std::to_string(flags.seed)).c_str()
                                : model_file(flags).c_str(),
      static_cast<long long>(c.vocab_size), static_cast<long long>(c.embedding_dim),
      static_cast<long long>(c.num_blocks), static_cast<long long>(c.num_heads),
      static_cast<long long>(c.inner_embedding_dim()),
      static_cast<long long>(model.registry().parameter_count()), mlstm::get_num_threads());
}

template <typename W>
void print_model(const mlstm::XLSTMLarge<float, W>& model, const ModelFlags& flags) {
  const mlstm::XLSTMLargeConfig& c = model.config();
  std::printf(
      "model: %s (xLSTM-Large, %s matrices, %s inputs); vocab %lld, embedding %lld, "
      "%lld blocks, %lld heads, %lld parameters; %d threads\n",
      flags.folder.c_str(), flags.bfloat16_weights ? "bfloat16" : "float32",
      model.input_rounding() == mlstm::InputRounding::bfloat16 ? "bfloat16" : "float32",
      static_cast<long long>(c.vocab_size), static_cast<long long>(c.embedding_dim),
      static_cast<long long>(c.num_blocks), static_cast<long long>(c.num_heads),
      static_cast<long long>(model.table().parameter_count()), mlstm::get_num_threads());
}

// The chunk size of the chunkwise kernel that prefill runs.
inline mlstm::Index chunk_size_of(const mlstm::LanguageModel<float>& model) {
  return model.options().chunk_size;
}
template <typename W>
mlstm::Index chunk_size_of(const mlstm::XLSTMLarge<float, W>& model) {
  return model.config().chunk_size;
}

// Builds the model the flags choose, prints what it is, and calls run(model): an xLSTM-Large
// model for a folder with config.json, else the language model of make_model.
template <typename Run>
void with_model(const ModelFlags& flags, Run run) {
  const bool hugging_face_folder =
      !flags.folder.empty() && std::filesystem::exists(flags.folder + "/config.json");
  if (flags.bfloat16_inputs && !(hugging_face_folder && flags.bfloat16_weights))
    throw std::invalid_argument(
        "--inputs=bfloat16: needs an xLSTM-Large --model folder with "
        "--weights=bfloat16");
  if (hugging_face_folder && flags.bfloat16_weights) {
    auto model = mlstm::load_xlstm_large<float, Eigen::bfloat16>(flags.folder);
    if (flags.bfloat16_inputs) model.set_input_rounding(mlstm::InputRounding::bfloat16);
    print_model(model, flags);
    run(model);
  } else if (hugging_face_folder) {
    const auto model = mlstm::load_xlstm_large<float>(flags.folder);
    print_model(model, flags);
    run(model);
  } else {
    const mlstm::LanguageModel<float> model = make_model(flags);
    print_model(model, flags);
    run(model);
  }
}

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace example
