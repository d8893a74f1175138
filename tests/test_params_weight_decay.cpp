// Weight-decay groups: the two rules against the reference (a module on which they disagree),
// custom rules, overrides, combination of sub-modules and the checks.
#include <algorithm>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <mlstm/mlstm.hpp>

#include "params/golden_file.hpp"

namespace {

using mlstm::Registry;
using mlstm::WeightDecayRule;
using Names = std::vector<std::string>;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

template <typename Call>
std::string value_error_message(Call&& call) {
  try {
    call();
  } catch (const mlstm::ValueError& error) {
    return error.what();
  }
  FAIL("expected a ValueError");
  return "";
}

// The reference's toy module (make_params_golden.py, ToyModule), registered in the same order.
void register_toy(Registry<float>& registry, const mlstm::test::GoldenFile& golden) {
  const auto shapes = golden.json("shapes");
  const auto requires_grad = golden.json("requires_grad");
  for (const auto& name : golden.json("names")) {
    const std::string text = name.get<std::string>();
    registry.add(text, shapes.at(text).get<mlstm::Shape>(), requires_grad.at(text).get<bool>());
  }
  registry.tie("head.weight", registry.get("proj.weight"));
}

}  // namespace

TEST_CASE("params weight decay: both rules match the reference on a module where they disagree",
          "[params][weight_decay][golden]") {
  const mlstm::test::GoldenFile golden("params_toy_groups.safetensors");
  Registry<float> registry;
  register_toy(registry, golden);
  CHECK(registry.names() == golden.json("names").get<Names>());
  CHECK(registry.state_dict_names() == golden.json("state_dict_names").get<Names>());

  for (const auto& [rule, key] : {std::pair{WeightDecayRule::name, "groups_name_rule"},
                                  std::pair{WeightDecayRule::rank, "groups_rank_rule"}}) {
    INFO(key);
    mlstm::WeightDecayOptions options;
    options.rule = rule;
    const auto names = mlstm::get_weight_decay_optim_group_param_names(registry, options);
    const auto expected = golden.json(key);
    CHECK(names.decay == expected.at("decay").get<Names>());
    CHECK(names.no_decay == expected.at("no_decay").get<Names>());
    const auto groups = mlstm::get_weight_decay_optim_groups(registry, options);
    REQUIRE(groups.decay.size() == names.decay.size());
    for (std::size_t i = 0; i < groups.decay.size(); ++i)
      CHECK(groups.decay[i] == &registry.get(names.decay[i]));
  }
  // The rules really differ here.
  CHECK(golden.json("groups_name_rule") != golden.json("groups_rank_rule"));
}

TEST_CASE("params weight decay: the rules look at names relative to the module",
          "[params][weight_decay]") {
  Registry<float> registry;
  registry.add("post_norm_block.proj.weight", {4, 4});
  registry.add("post_norm_block.proj.bias", {4});
  auto block = registry.scope("post_norm_block");
  // From the root, "norm" is in the name; from the block's own view it is not.
  CHECK(mlstm::get_weight_decay_optim_group_param_names(registry).decay.empty());
  CHECK(mlstm::get_weight_decay_optim_group_param_names(block).decay == Names{"proj.weight"});
}

TEST_CASE("params weight decay: a custom rule, and its errors", "[params][weight_decay]") {
  Registry<double> registry;
  registry.add("encoder.w", {3, 3});
  registry.add("encoder.gain", {3});
  registry.add("decoder.w", {3, 3});
  mlstm::WeightDecayOptions options;
  options.rule = WeightDecayRule::custom;
  options.decays = [](const std::string& name, const mlstm::Shape& shape) {
    return name.rfind("decoder.", 0) == 0 && shape.size() == 2;
  };
  const auto names = mlstm::get_weight_decay_optim_group_param_names(registry, options);
  CHECK(names.decay == Names{"decoder.w"});
  CHECK(names.no_decay == Names{"encoder.w", "encoder.gain"});

  options.decays = nullptr;
  CHECK(contains(
      value_error_message([&] { mlstm::get_weight_decay_optim_groups(registry, options); }),
      "options.decays"));

  registry.add("temperature", {});
  mlstm::WeightDecayOptions rank;
  rank.rule = WeightDecayRule::rank;
  CHECK(contains(value_error_message([&] { mlstm::get_weight_decay_optim_groups(registry, rank); }),
                 "temperature: the rank rule places parameters of rank >= 1 only"));
  // The name rule places it (no "weight" in its name: no decay).
  CHECK(mlstm::get_weight_decay_optim_group_param_names(registry).no_decay.back() == "temperature");
}

TEST_CASE("params weight decay: frozen parameters are in no group", "[params][weight_decay]") {
  Registry<float> registry;
  registry.add("a.weight", {2, 2});
  registry.add("b.weight", {2, 2}, /*requires_grad=*/false);
  registry.add("c.bias", {2}, /*requires_grad=*/false);
  const auto names = mlstm::get_weight_decay_optim_group_param_names(registry);
  CHECK(names.decay == Names{"a.weight"});
  CHECK(names.no_decay.empty());
}

TEST_CASE("params weight decay: overrides act on the parameter, tied names included",
          "[params][weight_decay]") {
  Registry<float> registry;
  registry.add("xlstm_block_stack.blocks.0.xlstm.proj_up.weight", {4, 2});
  auto& embedding = registry.add("token_embedding.weight", {8, 2});
  registry.tie("lm_head.weight", embedding);
  mlstm::LMModelConfig config;
  config.vocab_size = 8;
  config.context_length = 4;
  for (const bool on_embedding : {false, true}) {
    config.weight_decay_on_embedding = on_embedding;
    const auto names = mlstm::get_weight_decay_optim_group_param_names(
        registry, mlstm::lm_weight_decay_options(config));
    const Names& with = on_embedding ? names.decay : names.no_decay;
    CHECK(std::count(with.begin(), with.end(), "token_embedding.weight") == 1);
    CHECK(names.decay.size() + names.no_decay.size() == 2);  // the head is the embedding
  }
  mlstm::WeightDecayOptions by_alias;
  by_alias.overrides = {{"lm_head.weight", false}};
  CHECK(mlstm::get_weight_decay_optim_group_param_names(registry, by_alias).no_decay ==
        Names{"token_embedding.weight"});
  mlstm::WeightDecayOptions typo;
  typo.overrides = {{"token_embeding.weight", false}};
  CHECK(contains(value_error_message([&] { mlstm::get_weight_decay_optim_groups(registry, typo); }),
                 "no parameter named 'token_embeding.weight'"));
}

TEST_CASE("params weight decay: groups of sub-modules combine, and the checks name what is wrong",
          "[params][weight_decay][errors]") {
  Registry<float> registry;
  for (const std::string block : {"blocks.0", "blocks.1"}) {
    registry.add(block + ".norm.weight", {4});
    registry.add(block + ".proj.weight", {4, 4});
    registry.add(block + ".proj.bias", {4});
  }
  registry.add("head.weight", {4, 4});
  const auto whole = mlstm::get_weight_decay_optim_groups(registry);

  const auto block0 = mlstm::get_weight_decay_optim_groups(registry.scope("blocks.0"));
  const auto block1 = mlstm::get_weight_decay_optim_groups(registry.scope("blocks.1"));
  const auto head = mlstm::get_weight_decay_optim_groups(registry.scope("head"));
  const auto combined = mlstm::combine_weight_decay_optim_groups(registry, {block0, block1, head});
  CHECK(combined.decay == whole.decay);
  CHECK(combined.no_decay == whole.no_decay);

  // A forgotten sub-module.
  const std::string missing = value_error_message([&] {
    mlstm::combine_weight_decay_optim_groups(registry, {block0, head});
  });
  CHECK(contains(
      missing,
      "in neither group: [blocks.1.norm.weight, blocks.1.proj.weight, blocks.1.proj.bias]"));
  // Overlapping sub-modules put parameters in a group twice.
  const auto all_blocks = mlstm::get_weight_decay_optim_groups(registry.scope("blocks"));
  const std::string twice = value_error_message([&] {
    mlstm::combine_weight_decay_optim_groups(registry, {all_blocks, block1, head});
  });
  CHECK(contains(twice,
                 "listed twice in one group: [blocks.1.proj.weight, blocks.1.norm.weight, "
                 "blocks.1.proj.bias]"));
  // A parameter in both groups.
  auto both = whole;
  both.no_decay.push_back(&registry.get("head.weight"));
  const std::string in_both = value_error_message([&] {
    mlstm::check_weight_decay_optim_groups(mlstm::ParameterScope<float>(registry), both);
  });
  CHECK(contains(in_both, "in both the decay and the no_decay group: [head.weight]"));
  auto with_null = whole;
  with_null.decay.push_back(nullptr);
  CHECK(contains(value_error_message([&] {
                   mlstm::check_weight_decay_optim_groups(mlstm::ParameterScope<float>(registry),
                                                          with_null);
                 }),
                 "groups: holds a null parameter"));
  // Groups from outside the module.
  const std::string foreign = value_error_message([&] {
    mlstm::combine_weight_decay_optim_groups(registry.scope("blocks.0"), {block0, head});
  });
  CHECK(contains(foreign, "from outside 'blocks.0' in the groups: [head.weight]"));
}
