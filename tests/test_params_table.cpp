// Parameter tables: the generic machinery (rows, modules, reset order, ties, views, extents),
// then the language model's tables: the four uses (registration, init plan, the forward's
// views, the configuration inferred from a checkpoint) agree on names, shapes and order.
#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <mlstm/mlstm.hpp>

namespace {

using mlstm::Extent;
using mlstm::Index;
using mlstm::InitRule;
using mlstm::ParameterTable;
using mlstm::Registry;
using Names = std::vector<std::string>;

// A toy module with a submodule, a construction-stage rule and a reset order.
ParameterTable toy_table(Index width) {
  ParameterTable inner;
  inner.add("a", {mlstm::named_extent("width", width)}, InitRule::ones());
  inner.add("b", {2 * width}, InitRule::zeros());
  inner.set_reset_order({"b", "a"});
  ParameterTable table;
  table
      .add("embedding", {mlstm::named_extent("vocab", 5), mlstm::named_extent("width", width)},
           InitRule::small_init(width))
      .weight_decay = false;
  table.add("conv", {width, 3}, InitRule::uniform(-1, 1).at_stage(mlstm::InitStage::construction));
  table.add_module("inner", inner);
  table.tie("head", "embedding");
  table.set_reset_order({"inner", "embedding"});
  return table;
}

Names names_of(const std::vector<mlstm::InitCall>& plan) {
  Names names;
  for (const auto& call : plan) names.push_back(call.name);
  return names;
}

Names row_names(const ParameterTable& table) {
  Names names;
  for (const auto& row : table.rows()) names.push_back(row.name);
  return names;
}

std::vector<mlstm::Shape> row_shapes(const ParameterTable& table) {
  std::vector<mlstm::Shape> shapes;
  for (const auto& row : table.rows()) shapes.push_back(row.shape());
  return shapes;
}

}  // namespace

TEST_CASE("parameter table: rows, modules, ties and the init plan", "[params][table]") {
  const ParameterTable table = toy_table(4);
  CHECK(row_names(table) == Names{"embedding", "conv", "inner.a", "inner.b", "head"});
  CHECK(table.row("head").tied_to == "embedding");
  CHECK(table.row("inner.b").shape() == mlstm::Shape{8});
  CHECK(table.parameter_count() == 5 * 4 + 4 * 3 + 4 + 8);  // the tied name counts once
  // Reset calls in the reset order (the submodule's own order inside it), then construction.
  const auto plan = table.init_plan("model");
  CHECK(names_of(plan) == Names{"model.inner.b", "model.inner.a", "model.embedding", "model.conv"});
  CHECK(plan[2].describe() == "small_init_init_(dim=4)");
  CHECK(plan[3].stage == mlstm::InitStage::construction);
  CHECK(names_of(table.init_plan("", mlstm::InitStage::construction)) == Names{"conv"});

  Registry<float> registry;
  mlstm::register_parameters(registry.scope("model"), table);
  CHECK(registry.state_dict_names() ==
        Names{"model.embedding", "model.conv", "model.inner.a", "model.inner.b", "model.head"});
  CHECK(&registry.get("model.head") == &registry.get("model.embedding"));
  mlstm::Generator gen(0);
  mlstm::apply_init_plan(plan, registry, gen);
  CHECK(registry.get("model.inner.a").flat()(3) == 1.0f);

  const auto options = mlstm::weight_decay_options(table, mlstm::WeightDecayRule::rank);
  REQUIRE(options.overrides.size() == 1);
  CHECK(options.overrides[0] == std::pair<std::string, bool>{"embedding", false});
}

TEST_CASE("parameter table: building errors name the row", "[params][table][errors]") {
  ParameterTable table;
  table.add("w", {2}, InitRule::zeros());
  CHECK_THROWS_AS(table.add("w", {2}, InitRule::zeros()), mlstm::ValueError);
  CHECK_THROWS_AS(table.add("bad name", {2}, InitRule::zeros()), mlstm::ValueError);
  CHECK_THROWS_AS(table.add("n", {-1}, InitRule::zeros()), mlstm::ShapeError);
  CHECK_THROWS_AS(table.tie("t", "absent"), mlstm::ValueError);
  table.add("v", {2}, InitRule::ones());
  CHECK_THROWS_WITH(table.set_reset_order({"w"}),
                    Catch::Contains("'v'") && Catch::Contains("not covered"));
  CHECK_THROWS_WITH(table.set_reset_order({"w", "v", "w"}), Catch::Contains("twice"));
  CHECK_THROWS_WITH(table.set_reset_order({"w", "v", "x"}), Catch::Contains("'x'"));
  table.set_reset_order({"v", "w"});
  CHECK(names_of(table.init_plan()) == Names{"v", "w"});
  ParameterTable huge;
  huge.add("w", {Index(1) << 40, Index(1) << 40}, InitRule::zeros());
  CHECK_THROWS_AS(huge.parameter_count(), mlstm::ShapeError);
}

TEST_CASE("parameter table: views check shapes and that every row is read", "[params][table]") {
  const ParameterTable table = toy_table(4);
  Registry<double> registry;
  mlstm::register_parameters(registry, table);
  const mlstm::ParameterViews<double> views(registry, table);
  CHECK(views.get<2>("embedding").data() == registry.get("embedding").data());
  CHECK(views.get<2>("head").data() == registry.get("embedding").data());
  CHECK_FALSE(views.optional<1>("absent").has_value());
  CHECK_THROWS_AS(views.get<1>("embedding"), mlstm::InternalError);  // the row has rank 2
  CHECK_THROWS_AS(views.get<1>("absent"), mlstm::InternalError);
  views.get<2>("conv");
  const auto inner = views.scope("inner");
  inner.get<1>("a");
  CHECK_THROWS_WITH(views.check_all_bound(), Catch::Contains("inner.b"));
  CHECK(inner.optional<1>("b").has_value());
  CHECK_NOTHROW(views.check_all_bound());

  // A registry made for another configuration: the row names the expected shape.
  Registry<double> other;
  mlstm::register_parameters(other, toy_table(3));
  const mlstm::ParameterViews<double> mismatched(other, table);
  CHECK_THROWS_WITH(mismatched.get<2>("conv"), Catch::Contains("conv") &&
                                                   Catch::Contains("(4, 3)") &&
                                                   Catch::Contains("(3, 3)"));
}

TEST_CASE("parameter table: named extents come back from declared shapes", "[params][table]") {
  const ParameterTable table = toy_table(6);
  std::map<std::string, mlstm::Shape> file{{"embedding", {7, 6}}, {"inner.a", {6}}};
  const auto lookup = [&](const std::string& name) -> const mlstm::Shape* {
    const auto found = file.find(name);
    return found == file.end() ? nullptr : &found->second;
  };
  const auto extents = mlstm::solve_extents(table, lookup);
  CHECK(extents == std::map<std::string, Index>{{"vocab", 7}, {"width", 6}});
  file["inner.a"] = {5};  // disagrees with the embedding's width
  CHECK_THROWS_WITH(mlstm::solve_extents(table, lookup), Catch::Contains("inner.a") &&
                                                             Catch::Contains("width = 5") &&
                                                             Catch::Contains("gives 6"));
  file["inner.a"] = {6, 1};
  CHECK_THROWS_AS(mlstm::solve_extents(table, lookup), mlstm::ShapeError);
  file.erase("inner.a");
  file.erase("embedding");
  file["head"] = {7, 6};  // a tied name gives its parameter's extents
  CHECK(mlstm::solve_extents(table, lookup).at("vocab") == 7);
  file.erase("head");
  CHECK_THROWS_AS(mlstm::solve_extents(table, lookup), mlstm::ValueError);
}

namespace {

mlstm::LMModelConfig lm_config(bool bias, bool tie, bool post_norm, double proj_factor) {
  mlstm::LMModelConfig config;
  config.vocab_size = 37;
  config.embedding_dim = 48;
  config.num_heads = 2;
  config.num_blocks = 3;
  config.context_length = 16;
  config.bias = bias;
  config.tie_weights = tie;
  config.add_post_blocks_norm = post_norm;
  config.proj_factor = proj_factor;
  config.round_proj_up_to_multiple_of = 16;
  config.conv1d_kernel_size = 3;
  return config;
}

// The data of every view of the model's weights.
template <typename T>
std::set<const T*> view_data(const mlstm::LMModelWeights<T>& weights) {
  std::set<const T*> data{weights.token_embedding.data(), weights.lm_head.data()};
  if (weights.post_blocks_norm) data.insert(weights.post_blocks_norm->data());
  for (const auto& block : weights.blocks) {
    const auto& l = block.xlstm;
    for (const T* p :
         {block.xlstm_norm_weight.data(), l.proj_up_weight.data(), l.q_proj_weight.data(),
          l.k_proj_weight.data(), l.v_proj_weight.data(), l.conv_weight.data(), l.conv_bias.data(),
          l.cell.igate_weight.data(), l.cell.igate_bias.data(), l.cell.fgate_weight.data(),
          l.cell.fgate_bias.data(), l.cell.outnorm_weight.data(), l.learnable_skip.data(),
          l.proj_down_weight.data()})
      data.insert(p);
    for (const auto* bias :
         {&l.proj_up_bias, &l.q_proj_bias, &l.k_proj_bias, &l.v_proj_bias, &l.proj_down_bias})
      if (*bias) data.insert((*bias)->data());
  }
  return data;
}

}  // namespace

TEST_CASE("lm model table: registration, init plan, views and inference agree",
          "[params][table][model]") {
  const auto scratch =
      std::filesystem::temp_directory_path() / "mlstm_test_params_table.safetensors";
  for (const bool bias : {false, true}) {
    for (const bool tie : {false, true}) {
      for (const double proj_factor : {2.0, 1.3}) {
        const auto config = lm_config(bias, tie, /*post_norm=*/!bias, proj_factor);
        CAPTURE(bias, tie, proj_factor);
        const ParameterTable table = mlstm::lm_model_table(config);
        mlstm::LanguageModel<float> model(config);
        const auto& registry = model.registry();

        // Registration: the rows, names and shapes in order.
        CHECK(registry.state_dict_names() == row_names(table));
        for (const auto& row : table.rows()) CHECK(registry.get(row.name).shape() == row.shape());
        CHECK(registry.parameter_count() == table.parameter_count());

        // Init plan: every distinct parameter once.
        Names planned = names_of(table.init_plan());
        std::sort(planned.begin(), planned.end());
        Names distinct = registry.names();
        std::sort(distinct.begin(), distinct.end());
        CHECK(planned == distinct);

        // Views: the forward reads exactly the registered parameters.
        std::set<const float*> parameters;
        for (const auto& parameter : registry) parameters.insert(parameter.data());
        CHECK(view_data(model.weights()) == parameters);

        // Inference: a bare state dict gives back a configuration of the same table.
        mlstm::Generator gen(1);
        model.reset_parameters(gen);
        mlstm::save_checkpoint(registry, scratch.string());
        const auto inferred = mlstm::infer_lm_model_config(
            mlstm::safetensors::File::load(scratch.string()), config.context_length);
        const ParameterTable again = mlstm::lm_model_table(inferred);
        CHECK(row_names(again) == row_names(table));
        CHECK(row_shapes(again) == row_shapes(table));
      }
    }
  }
  std::filesystem::remove(scratch);
}
