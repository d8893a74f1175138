// model_summary: registers and initializes the parameters of an mLSTM-only xLSTM language model
// from its parameter table (or loads them from a checkpoint) and prints them: name, shape, init
// call, weight-decay group, element count, and the standard deviation of the values; then the
// totals.
//
//   model_summary                                   # a small model (vocab 64, E 128, 2 blocks)
//   model_summary --vocab-size=50304 --embedding-dim=768 --num-blocks=12 --context-length=2048
//   model_summary --tie-weights --bias --rank-rule --seed=7
//   model_summary --num-blocks=12 --save=model.safetensors   # also write the model
//   model_summary --checkpoint=model.safetensors              # the parameters of a checkpoint
//   model_summary --help
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <mlstm/mlstm.hpp>

#include "build_banner.hpp"

namespace {

const char* const usage =
    "usage: model_summary [options]\n"
    "  --vocab-size=N --embedding-dim=N --num-heads=N --num-blocks=N --context-length=N\n"
    "  --proj-factor=X --conv1d-kernel-size=N --qkv-proj-blocksize=N\n"
    "  --bias --tie-weights --weight-decay-on-embedding --no-post-blocks-norm\n"
    "  --rank-rule       group by rank (xlstm 1.0.x) instead of by name\n"
    "  --seed=N          generator seed (default 0)\n"
    "  --save=PATH       write the model and its configuration (save_language_model)\n"
    "  --checkpoint=PATH load the model from a checkpoint instead (load_language_model)\n";

struct Options {
  mlstm::LMModelConfig config;
  mlstm::WeightDecayRule rule = mlstm::WeightDecayRule::name;
  std::uint64_t seed = 0;
  std::string save, checkpoint;
};

long long parse_integer(const std::string& flag, const std::string& text) {
  std::size_t used = 0;
  const long long value = std::stoll(text, &used);
  if (used != text.size()) throw std::invalid_argument(flag + ": not an integer: " + text);
  return value;
}

Options parse(int argc, char** argv) {
  Options options;
  auto& c = options.config;
  c.vocab_size = 64;
  c.embedding_dim = 128;
  c.num_heads = 4;
  c.num_blocks = 2;
  c.context_length = 32;
  const std::map<std::string, mlstm::Index*> integers{
      {"--vocab-size", &c.vocab_size},
      {"--embedding-dim", &c.embedding_dim},
      {"--num-heads", &c.num_heads},
      {"--num-blocks", &c.num_blocks},
      {"--context-length", &c.context_length},
      {"--conv1d-kernel-size", &c.conv1d_kernel_size},
      {"--qkv-proj-blocksize", &c.qkv_proj_blocksize}};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto equals = arg.find('=');
    const std::string flag = arg.substr(0, equals);
    const std::string value = equals == std::string::npos ? "" : arg.substr(equals + 1);
    if (integers.count(flag) != 0 && !value.empty()) {
      *integers.at(flag) = static_cast<mlstm::Index>(parse_integer(flag, value));
    } else if (flag == "--proj-factor" && !value.empty()) {
      c.proj_factor = std::stod(value);
    } else if (flag == "--save" && !value.empty()) {
      options.save = value;
    } else if (flag == "--checkpoint" && !value.empty()) {
      options.checkpoint = value;
    } else if (flag == "--seed" && !value.empty()) {
      options.seed = static_cast<std::uint64_t>(parse_integer(flag, value));
    } else if (arg == "--bias") {
      c.bias = true;
    } else if (arg == "--tie-weights") {
      c.tie_weights = true;
    } else if (arg == "--weight-decay-on-embedding") {
      c.weight_decay_on_embedding = true;
    } else if (arg == "--no-post-blocks-norm") {
      c.add_post_blocks_norm = false;
    } else if (arg == "--rank-rule") {
      options.rule = mlstm::WeightDecayRule::rank;
    } else if (arg == "--help" || arg == "-h") {
      std::cout << usage;
      std::exit(0);
    } else {
      throw std::invalid_argument("unknown option " + arg);
    }
  }
  return options;
}

std::string with_thousands(long long value) {
  std::string digits = std::to_string(value), text;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) text += ',';
    text += digits[i];
  }
  return text;
}

template <typename T>
double sample_std(const mlstm::Parameter<T>& param) {
  if (param.size() < 2) return 0.0;
  double sum = 0.0, squares = 0.0;
  for (mlstm::Index i = 0; i < param.size(); ++i) sum += param.data()[i];
  const double mean = sum / static_cast<double>(param.size());
  for (mlstm::Index i = 0; i < param.size(); ++i) {
    const double d = param.data()[i] - mean;
    squares += d * d;
  }
  return std::sqrt(squares / static_cast<double>(param.size() - 1));
}

}  // namespace

int main(int argc, char** argv) {
  example::print_build_banner("model_summary");
  Options options;
  try {
    options = parse(argc, argv);
    options.config.validate();
  } catch (const std::exception& error) {
    std::cerr << "model_summary: " << error.what() << "\n" << usage;
    return 2;
  }
  const bool loaded = !options.checkpoint.empty();
  mlstm::LanguageModel<float> model = loaded ? mlstm::load_language_model<float>(options.checkpoint)
                                             : mlstm::LanguageModel<float>(options.config);
  const mlstm::LMModelConfig& config = model.config();
  mlstm::Registry<float>& registry = model.registry();

  // Everything below comes from the model's parameter table.
  const mlstm::ParameterTable table = mlstm::lm_model_table(config);
  const std::vector<mlstm::InitCall> plan = table.init_plan();
  if (!loaded) {
    mlstm::Generator gen(options.seed);
    mlstm::apply_init_plan(plan, registry, gen);
  }
  if (!options.save.empty()) mlstm::save_language_model(model, options.save);
  const auto groups = mlstm::get_weight_decay_optim_groups(
      registry, mlstm::weight_decay_options(table, options.rule));

  std::map<const mlstm::Parameter<float>*, std::string> init_of, group_of;
  for (const auto& call : plan) {
    std::string text = call.describe();
    if (call.stage == mlstm::InitStage::construction) text += " [construction]";
    init_of[&registry.get(call.name)] = text;
  }
  for (const auto* param : groups.decay) group_of[param] = "decay";
  for (const auto* param : groups.no_decay) group_of[param] = "no_decay";

  struct Row {
    std::string name, shape, init, group, count, std;
  };
  std::vector<Row> rows{{"name", "shape", "init", "group", "count", "std"}};
  long long decay_elements = 0, no_decay_elements = 0;
  for (const auto& param : registry) {
    std::string name = param.name();
    for (std::size_t alias = 1; alias < param.names().size(); ++alias)
      name += " (= " + param.names()[alias] + ")";
    const std::string group = group_of.count(&param) ? group_of.at(&param) : "frozen";
    (group == "decay" ? decay_elements : no_decay_elements) += param.size();
    std::ostringstream std_text;
    std_text.precision(4);
    std_text << sample_std(param);
    rows.push_back({name, mlstm::shape_string(param.shape()), init_of.at(&param), group,
                    with_thousands(param.size()), std_text.str()});
  }

  std::size_t width[6] = {};
  for (const Row& row : rows) {
    const std::string* cells[] = {&row.name,  &row.shape, &row.init,
                                  &row.group, &row.count, &row.std};
    for (int c = 0; c < 6; ++c) width[c] = std::max(width[c], cells[c]->size());
  }
  std::printf(
      "mLSTM language model: vocab %lld, embedding %lld, %lld heads, %lld blocks, inner %lld, "
      "context %lld, seed %llu, %s rule\n\n",
      static_cast<long long>(config.vocab_size), static_cast<long long>(config.embedding_dim),
      static_cast<long long>(config.num_heads), static_cast<long long>(config.num_blocks),
      static_cast<long long>(config.inner_embedding_dim()),
      static_cast<long long>(config.context_length), static_cast<unsigned long long>(options.seed),
      options.rule == mlstm::WeightDecayRule::name ? "name" : "rank");
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const Row& row = rows[r];
    std::printf("%-*s  %-*s  %-*s  %-*s  %*s  %*s\n", int(width[0]), row.name.c_str(),
                int(width[1]), row.shape.c_str(), int(width[2]), row.init.c_str(), int(width[3]),
                row.group.c_str(), int(width[4]), row.count.c_str(), int(width[5]),
                row.std.c_str());
    if (r == 0) {
      std::size_t total = 10;
      for (const std::size_t w : width) total += w;
      std::printf("%s\n", std::string(total, '-').c_str());
    }
  }
  const long long total = registry.parameter_count();
  std::printf(
      "\n%lld parameters (%zu names), %s elements: decay %s (%zu parameters), "
      "no_decay %s (%zu parameters)\n",
      static_cast<long long>(registry.size()), registry.state_dict_names().size(),
      with_thousands(total).c_str(), with_thousands(decay_elements).c_str(), groups.decay.size(),
      with_thousands(no_decay_elements).c_str(), groups.no_decay.size());
  std::printf("memory: %.2f MiB for values (float); training adds as much for gradients\n",
              static_cast<double>(total) * sizeof(float) / (1024.0 * 1024.0));
  return 0;
}
