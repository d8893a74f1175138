// The model configuration and initialization manager against the reference's xLSTMLMModel:
// names, shapes, state_dict keys, weight-decay groups under both rules, the init calls of
// reset_parameters; then the initialized values and the configuration's checks.
#include <cmath>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <mlstm/mlstm.hpp>

#include "params/golden_file.hpp"
#include "params/statistics.hpp"

namespace {

using mlstm::Index;
using mlstm::InitCall;
using mlstm::InitRule;
using mlstm::InitScheme;
using mlstm::Registry;
using Names = std::vector<std::string>;

const char* const model_cases[] = {"small", "tied_bias", "odd", "round_down_tied_frozen"};

mlstm::LMModelConfig config_from(const nlohmann::json& json) {
  mlstm::LMModelConfig config;
  config.vocab_size = json.at("vocab_size").get<Index>();
  config.embedding_dim = json.at("embedding_dim").get<Index>();
  config.num_heads = json.at("num_heads").get<Index>();
  config.num_blocks = json.at("num_blocks").get<Index>();
  config.context_length = json.at("context_length").get<Index>();
  config.proj_factor = json.at("proj_factor").get<double>();
  config.round_proj_up_dim_up = json.at("round_proj_up_dim_up").get<bool>();
  config.round_proj_up_to_multiple_of = json.at("round_proj_up_to_multiple_of").get<Index>();
  config.conv1d_kernel_size = json.at("conv1d_kernel_size").get<Index>();
  config.qkv_proj_blocksize = json.at("qkv_proj_blocksize").get<Index>();
  config.bias = json.at("bias").get<bool>();
  config.add_post_blocks_norm = json.at("add_post_blocks_norm").get<bool>();
  config.tie_weights = json.at("tie_weights").get<bool>();
  config.weight_decay_on_embedding = json.at("weight_decay_on_embedding").get<bool>();
  return config;
}

std::string golden_name(const std::string& model_case) {
  return "params_model_" + model_case + ".safetensors";
}

std::string scheme_name(InitScheme scheme) {
  switch (scheme) {
    case InitScheme::zeros: return "zeros";
    case InitScheme::ones: return "ones";
    case InitScheme::normal: return "normal";
    case InitScheme::uniform: return "uniform";
    case InitScheme::bias_linspace: return "bias_linspace";
    case InitScheme::small_init: return "small_init";
    case InitScheme::wang: return "wang";
  }
  return "?";
}

// The call as the golden script records it (numbers compared exactly).
nlohmann::json as_json(const InitCall& call) {
  nlohmann::json json{{"name", call.name},
                      {"stage", mlstm::to_string(call.stage)},
                      {"scheme", scheme_name(call.scheme)}};
  switch (call.scheme) {
    case InitScheme::zeros:
    case InitScheme::ones: break;
    case InitScheme::normal:
      json["mean"] = call.mean;
      json["std"] = call.std_dev;
      break;
    case InitScheme::uniform:
      json["low"] = call.low;
      json["high"] = call.high;
      break;
    case InitScheme::bias_linspace:
      json["start"] = call.start;
      json["end"] = call.end;
      break;
    case InitScheme::small_init: json["dim"] = call.dim; break;
    case InitScheme::wang:
      json["dim"] = call.dim;
      json["num_blocks"] = call.num_blocks;
      break;
  }
  return json;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("params model: names, shapes and state_dict keys match the reference",
          "[params][model][golden]") {
  for (const char* model_case : model_cases) {
    INFO("case " << model_case);
    const mlstm::test::GoldenFile golden(golden_name(model_case));
    const auto json = golden.json("config");
    const auto config = config_from(json);
    CHECK(config.inner_embedding_dim() == json.at("inner_embedding_dim").get<Index>());
    Registry<float> registry;
    mlstm::register_lm_model(registry, config);
    CHECK(registry.names() == golden.json("names").get<Names>());
    CHECK(registry.state_dict_names() == golden.json("state_dict_names").get<Names>());
    const auto shapes = golden.json("shapes");
    for (const auto& param : registry) {
      INFO(param.name());
      CHECK(param.shape() == shapes.at(param.name()).get<mlstm::Shape>());
    }
    Index elements = 0;
    for (const auto& [name, shape] : shapes.items()) {
      Index count = 1;
      for (const Index extent : shape.get<mlstm::Shape>()) count *= extent;
      elements += count;
    }
    CHECK(registry.parameter_count() == elements);
  }
}

TEST_CASE("params model: weight-decay groups match the reference under both rules",
          "[params][model][golden]") {
  for (const char* model_case : model_cases) {
    INFO("case " << model_case);
    const mlstm::test::GoldenFile golden(golden_name(model_case));
    const auto config = config_from(golden.json("config"));
    Registry<double> registry;
    mlstm::register_lm_model(registry, config);
    for (const auto& name : golden.json("frozen"))
      registry.get(name.get<std::string>()).set_requires_grad(false);
    for (const auto& [rule, key] : {std::pair{mlstm::WeightDecayRule::name, "groups_name_rule"},
                                    std::pair{mlstm::WeightDecayRule::rank, "groups_rank_rule"}}) {
      INFO(key);
      const auto names = mlstm::get_weight_decay_optim_group_param_names(
          registry, mlstm::lm_weight_decay_options(config, rule));
      const auto expected = golden.json(key);
      CHECK(names.decay == expected.at("decay").get<Names>());
      CHECK(names.no_decay == expected.at("no_decay").get<Names>());
    }
  }
}

TEST_CASE(
    "params model: the init plan is the reference's reset_parameters calls, then construction",
    "[params][model][golden]") {
  for (const char* model_case : model_cases) {
    INFO("case " << model_case);
    const mlstm::test::GoldenFile golden(golden_name(model_case));
    const auto config = config_from(golden.json("config"));
    const auto expected = golden.json("init_calls");
    const auto plan = mlstm::lm_model_init_plan(config);
    REQUIRE(plan.size() == expected.size());
    for (std::size_t i = 0; i < plan.size(); ++i) {
      INFO("call " << i << ": " << plan[i].name << " " << plan[i].describe());
      CHECK(as_json(plan[i]) == expected[i]);
    }
    // reset_parameters alone is the reset stage of that plan.
    const auto reset =
        mlstm::lm_model_table(config).init_plan("", mlstm::InitStage::reset_parameters);
    std::size_t reset_calls = 0;
    for (const auto& call : expected) reset_calls += call.at("stage") == "reset_parameters";
    CHECK(reset.size() == reset_calls);
    // Every parameter is initialized exactly once.
    Registry<float> registry;
    mlstm::register_lm_model(registry, config);
    Names planned;
    for (const auto& call : plan) planned.push_back(registry.get(call.name).name());
    std::sort(planned.begin(), planned.end());
    Names all = registry.names();
    std::sort(all.begin(), all.end());
    CHECK(planned == all);
  }
}

TEST_CASE("params model: initialized values follow the plan", "[params][model]") {
  const mlstm::test::GoldenFile golden(golden_name("tied_bias"));
  const auto config = config_from(golden.json("config"));
  Registry<float> registry;
  mlstm::register_lm_model(registry, config);
  mlstm::Generator gen(0);
  const auto plan = mlstm::lm_model_init_plan(config);
  mlstm::apply_init_plan(plan, registry, gen);

  // The forget-gate bias is the reference's, bit for bit.
  const auto reference_bias = golden.values<float>("fgate_bias");
  const auto& bias = registry.get("xlstm_block_stack.blocks.0.xlstm.mlstm_cell.fgate.bias");
  CHECK(std::vector<float>(bias.data(), bias.data() + bias.size()) == reference_bias);

  using namespace mlstm::test;
  for (const auto& call : plan) {
    const auto& param = registry.get(call.name);
    const auto* values = param.data();
    const long n = static_cast<long>(param.size());
    INFO(call.name << " " << call.describe());
    switch (call.scheme) {
      case InitScheme::zeros:
      case InitScheme::ones: {
        const float value = call.scheme == InitScheme::ones ? 1.0f : 0.0f;
        bool all = true;
        for (long i = 0; i < n; ++i) all = all && values[i] == value;
        CHECK(all);
        break;
      }
      case InitScheme::small_init:
      case InitScheme::wang: {
        const double sigma = call.scheme == InitScheme::wang
                                 ? mlstm::wang_init_std(call.dim, call.num_blocks)
                                 : mlstm::small_init_std(call.dim);
        const auto m = moments(values, n);
        CHECK(std::abs(m.mean) <= mean_bound(sigma, n));
        CHECK(std::abs(m.std - sigma) <= normal_std_bound(sigma, n));
        break;
      }
      case InitScheme::uniform: {
        bool inside = true;
        for (long i = 0; i < n; ++i)
          inside = inside && values[i] >= call.low && values[i] <= call.high;
        CHECK(inside);
        CHECK(ks_statistic(values, n, [&](double x) {
                return uniform_cdf(x, call.low, call.high);
              }) <= ks_critical_value(n));
        break;
      }
      case InitScheme::normal:  // igate.bias: 4 values; the statistics are tested in
                                // test_params_init
      case InitScheme::bias_linspace: break;
    }
  }
  // Tied: the head is the embedding, initialized once with small_init (dim = E).
  CHECK(&registry.get("lm_head.weight") == &registry.get("token_embedding.weight"));

  // The same seed gives the same model.
  Registry<float> again;
  mlstm::register_lm_model(again, config);
  mlstm::Generator same(0);
  mlstm::apply_init_plan(plan, again, same);
  for (auto& param : again) {
    const auto& first = registry.get(param.name());
    CHECK(std::equal(param.data(), param.data() + param.size(), first.data()));
  }
}

TEST_CASE("params model: a plan with an unknown name or bad arguments writes nothing",
          "[params][model][errors]") {
  Registry<float> registry;
  auto& a = registry.add("a", {3});
  auto& b = registry.add("b", {2, 2});
  mlstm::Generator gen(1);
  const InitCall ones_a{"a", InitRule::ones()};
  CHECK_THROWS_AS(mlstm::apply_init_plan({ones_a, {"c", InitRule::ones()}}, registry, gen),
                  mlstm::ValueError);
  CHECK(a.flat()(0) == 0.0f);
  CHECK_THROWS_AS(
      mlstm::apply_init_plan({ones_a, {"b", InitRule::bias_linspace(0, 1)}}, registry, gen),
      mlstm::ShapeError);
  CHECK(a.flat()(0) == 0.0f);
  CHECK_THROWS_AS(mlstm::apply_init_plan({ones_a, {"b", InitRule::wang(4, 0)}}, registry, gen),
                  mlstm::ValueError);
  CHECK(a.flat()(0) == 0.0f);
  CHECK(b.flat()(3) == 0.0f);
  CHECK(InitRule::wang(4, 2).describe() == "wang_init_(dim=4, num_blocks=2)");
  CHECK(InitRule::normal(0, 0.1).describe() == "normal_(mean=0, std=0.1)");
}

TEST_CASE("params model: a module's table gives the same names alone and in the model",
          "[params][model]") {
  mlstm::LMModelConfig config;
  config.vocab_size = 32;
  config.embedding_dim = 64;
  config.num_heads = 2;
  config.num_blocks = 3;
  config.context_length = 16;
  Registry<float> registry;
  mlstm::register_lm_model(registry, config);
  // A layer registered on its own, in any scope, gets the names the model's layer has.
  const std::string scope = "xlstm_block_stack.blocks.2.xlstm";
  const mlstm::ParameterTable layer = mlstm::mlstm_layer_table(config.layer());
  Registry<float> single;
  mlstm::register_parameters(single.scope(scope), layer);
  for (const auto& name : single.names()) CHECK(registry.contains(name));
  // Its plan is the model's plan restricted to the layer, in the same order.
  Names in_model;
  for (const auto& call : mlstm::lm_model_init_plan(config))
    if (call.name.compare(0, scope.size() + 1, scope + ".") == 0) in_model.push_back(call.name);
  Names alone;
  for (const auto& call : layer.init_plan(scope)) alone.push_back(call.name);
  CHECK(alone == in_model);
  // The cell's parameters are found from the cell's scope.
  auto cell = registry.scope("xlstm_block_stack.blocks.1.xlstm.mlstm_cell");
  CHECK(cell.get("igate.weight").shape() == mlstm::Shape{2, 3 * 128});
  CHECK(cell.get("outnorm.weight").shape() == mlstm::Shape{128});
  CHECK(config.layer().cell().head_dim() == 64);
  CHECK(config.layer().num_proj_heads() == 32);
  CHECK(config.layer().qkv_block_dim() == 4);
}

TEST_CASE("params model: the reference's rounding of the inner dimension", "[params][model]") {
  mlstm::LMModelConfig config;
  config.embedding_dim = 96;
  config.proj_factor = 1.3;  // 124.8 -> 128
  CHECK(config.inner_embedding_dim() == 128);
  config.round_proj_up_dim_up = false;  // -> 64
  CHECK(config.inner_embedding_dim() == 64);
  config.embedding_dim = 768;
  config.proj_factor = 2.0;  // exact multiple
  config.round_proj_up_dim_up = true;
  CHECK(config.inner_embedding_dim() == 1536);
  config.round_proj_up_to_multiple_of = 100;
  CHECK(config.inner_embedding_dim() == 1600);
  CHECK(mlstm::proj_up_dim(1.0, 1, true, 64) == 64);
}

TEST_CASE("params model: invalid configurations name the field", "[params][model][errors]") {
  mlstm::LMModelConfig valid;
  valid.vocab_size = 64;
  valid.context_length = 32;
  REQUIRE_NOTHROW(valid.validate());
  const auto expect = [&](auto&& change, const std::string& argument, const std::string& part) {
    mlstm::LMModelConfig config = valid;
    change(config);
    try {
      config.validate();
      FAIL("expected a ValueError for " << argument);
    } catch (const mlstm::ValueError& error) {
      CHECK(error.argument() == argument);
      INFO(error.what());
      CHECK(contains(error.what(), part));
    }
    Registry<float> registry;  // registration validates too, before registering anything
    CHECK_THROWS_AS(mlstm::register_lm_model(registry, config), mlstm::ValueError);
    CHECK(registry.empty());
  };
  expect([](auto& c) { c.vocab_size = -1; }, "config.vocab_size", "got -1");
  expect([](auto& c) { c.embedding_dim = 0; }, "config.embedding_dim", ">= 1");
  expect([](auto& c) { c.num_heads = 0; }, "config.num_heads", ">= 1");
  expect([](auto& c) { c.num_blocks = 0; }, "config.num_blocks", ">= 1");
  expect([](auto& c) { c.context_length = 0; }, "config.context_length", ">= 1");
  expect([](auto& c) { c.proj_factor = -1.0; }, "config.proj_factor", "finite value > 0");
  expect([](auto& c) { c.proj_factor = NAN; }, "config.proj_factor", "finite value > 0");
  expect(
      [](auto& c) {
        c.proj_factor = 0.25;
        c.round_proj_up_dim_up = false;
      },
      "config.proj_factor", "rounds down to 0");
  expect([](auto& c) { c.conv1d_kernel_size = 0; }, "config.conv1d_kernel_size", ">= 1");
  expect([](auto& c) { c.qkv_proj_blocksize = 0; }, "config.qkv_proj_blocksize", ">= 1");
  expect([](auto& c) { c.qkv_proj_blocksize = 512; }, "config.qkv_proj_blocksize",
         "must not exceed");
  expect([](auto& c) { c.qkv_proj_blocksize = 3; }, "config.qkv_proj_blocksize", "not a multiple");
  expect([](auto& c) { c.num_heads = 3; }, "config.num_heads", "must divide");
  expect([](auto& c) { c.round_proj_up_to_multiple_of = 0; }, "config.round_proj_up_to_multiple_of",
         ">= 1");
}
