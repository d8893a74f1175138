// The parameter registry: names, scopes, storage, views, tied parameters and errors.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include <mlstm/mlstm.hpp>

namespace {

using mlstm::Index;
using mlstm::Registry;

std::vector<std::string> names_of(const std::vector<mlstm::NamedParameter<float>>& named) {
  std::vector<std::string> names;
  for (const auto& entry : named) names.push_back(entry.name);
  return names;
}

template <typename Call>
std::string value_error_message(Call&& call, const std::string& argument) {
  try {
    call();
  } catch (const mlstm::ValueError& error) {
    CHECK(error.argument() == argument);
    return error.what();
  }
  FAIL("expected a ValueError");
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("params registry: parameters have a name, a shape, zeroed aligned storage and a gradient",
          "[params][registry]") {
  Registry<float> registry;
  auto& w = registry.add("layer.proj_up.weight", {512, 128});
  CHECK(w.name() == "layer.proj_up.weight");
  CHECK(w.shape() == mlstm::Shape{512, 128});
  CHECK(w.rank() == 2);
  CHECK(w.dimension(0) == 512);
  CHECK(w.size() == 512 * 128);
  CHECK(w.requires_grad());
  CHECK_FALSE(w.has_grad());  // allocated when first asked for
  for (const float* buffer :
       {static_cast<const float*>(w.data()), static_cast<const float*>(w.grad_data())}) {
    CHECK(reinterpret_cast<std::uintptr_t>(buffer) % 64 == 0);
    bool all_zero = true;
    for (Index i = 0; i < w.size(); ++i) all_zero = all_zero && buffer[i] == 0.0f;
    CHECK(all_zero);
  }
  CHECK(w.has_grad());
  CHECK(w.data() != w.grad_data());
  CHECK_THROWS_AS(w.dimension(2), mlstm::ShapeError);

  auto& frozen = registry.add("layer.frozen", {3}, /*requires_grad=*/false);
  CHECK_FALSE(frozen.requires_grad());
  frozen.set_requires_grad(true);
  CHECK(frozen.requires_grad());

  auto& scalar = registry.add("scale", {});
  CHECK(scalar.rank() == 0);
  CHECK(scalar.size() == 1);
  auto& empty = registry.add("empty", {0, 5});
  CHECK(empty.size() == 0);
  CHECK(registry.size() == 4);
  CHECK(registry.parameter_count() == 512 * 128 + 3 + 1 + 0);
}

TEST_CASE("params registry: views of the right rank write through, the wrong rank is a ShapeError",
          "[params][registry]") {
  Registry<double> registry;
  auto& w = registry.add("q_proj.weight", {4, 2, 3});
  auto view = w.map<3>();
  view(3, 1, 2) = 5.0;
  CHECK(w.data()[3 * 6 + 1 * 3 + 2] == 5.0);  // row-major, like a contiguous torch tensor
  CHECK(w.flat()(w.size() - 1) == 5.0);
  w.grad<3>()(0, 0, 1) = 2.0;
  CHECK(w.grad_flat()(1) == 2.0);
  const auto& constant = w;
  CHECK(constant.map<3>()(3, 1, 2) == 5.0);
  CHECK(constant.grad<3>()(0, 0, 1) == 2.0);
  w.zero_grad();
  CHECK(w.grad_flat()(1) == 0.0);

  try {
    w.map<2>();
    FAIL("expected a ShapeError");
  } catch (const mlstm::ShapeError& error) {
    const std::string message = error.what();
    CHECK(error.argument() == "q_proj.weight");
    CHECK(contains(message, "map<2>() asks for rank 2"));
    CHECK(contains(message, "rank 3 with shape (4, 2, 3)"));
  }
  CHECK_THROWS_AS(w.grad<1>(), mlstm::ShapeError);
}

TEST_CASE("params registry: scopes register and look up relative names", "[params][registry]") {
  Registry<float> registry;
  auto stack = registry.scope("xlstm_block_stack");
  auto block = stack.scope("blocks.0");
  CHECK(block.prefix() == "xlstm_block_stack.blocks.0");
  block.add("xlstm_norm.weight", {8});
  auto layer = block.scope("xlstm");
  auto& skip = layer.add("learnable_skip", {16});
  layer.add("proj_up.weight", {32, 8});
  stack.add("post_blocks_norm.weight", {8});

  CHECK(&registry.get("xlstm_block_stack.blocks.0.xlstm.learnable_skip") == &skip);
  CHECK(&layer.get("learnable_skip") == &skip);
  CHECK(&block.get("xlstm.learnable_skip") == &skip);
  CHECK(block.find("xlstm.nothing") == nullptr);
  CHECK(layer.contains("proj_up.weight"));
  CHECK(names_of(block.named_parameters()) == std::vector<std::string>{"xlstm_norm.weight",
                                                                       "xlstm.learnable_skip",
                                                                       "xlstm.proj_up.weight"});
  CHECK(names_of(registry.named_parameters()) ==
        std::vector<std::string>{"xlstm_block_stack.blocks.0.xlstm_norm.weight",
                                 "xlstm_block_stack.blocks.0.xlstm.learnable_skip",
                                 "xlstm_block_stack.blocks.0.xlstm.proj_up.weight",
                                 "xlstm_block_stack.post_blocks_norm.weight"});
  CHECK(block.parameter_count() == 8 + 16 + 32 * 8);
  // A root scope sees everything with full names.
  CHECK(names_of(mlstm::ParameterScope<float>(registry).named_parameters()) ==
        names_of(registry.named_parameters()));
  // "blocks.0" must not match "blocks.01".
  stack.add("blocks.01.extra", {1});
  CHECK(block.named_parameters().size() == 3);
}

TEST_CASE("params registry: iteration and names follow registration order", "[params][registry]") {
  Registry<float> registry;
  const std::vector<std::string> order{"z.weight", "a.weight", "m.bias", "b"};
  for (const auto& name : order) registry.add(name, {2});
  std::vector<std::string> iterated;
  for (auto& param : registry) iterated.push_back(param.name());
  CHECK(iterated == order);
  CHECK(registry.names() == order);
  CHECK(registry.state_dict_names() == order);
}

TEST_CASE("params registry: a tied parameter is listed once, under its first name",
          "[params][registry]") {
  Registry<float> registry;
  auto& embedding = registry.add("token_embedding.weight", {64, 16});
  registry.add("post_norm.weight", {16});
  auto& head = registry.tie("lm_head.weight", embedding);
  CHECK(&head == &embedding);
  CHECK(&registry.get("lm_head.weight") == &embedding);
  CHECK(embedding.names() == std::vector<std::string>{"token_embedding.weight", "lm_head.weight"});
  CHECK(registry.size() == 2);
  CHECK(registry.parameter_count() == 64 * 16 + 16);
  CHECK(registry.names() == std::vector<std::string>{"token_embedding.weight", "post_norm.weight"});
  CHECK(registry.state_dict_names() ==
        std::vector<std::string>{"token_embedding.weight", "post_norm.weight", "lm_head.weight"});
  // Seen from the head's module, the tied parameter is its "weight".
  CHECK(names_of(registry.scope("lm_head").named_parameters()) ==
        std::vector<std::string>{"weight"});
  // Tying by name, through a scope.
  auto& again = registry.scope("decoder").tie("weight", registry.get("lm_head.weight"));
  CHECK(&again == &embedding);
  auto& by_name = registry.tie("output.weight", "token_embedding.weight");
  CHECK(&by_name == &embedding);

  Registry<float> other;
  auto& stranger = other.add("token_embedding.weight", {64, 16});
  value_error_message([&] { registry.tie("x.weight", stranger); }, "existing");
}

TEST_CASE("params registry: invalid, duplicate and conflicting names are ValueErrors",
          "[params][registry][errors]") {
  Registry<float> registry;
  registry.add("blocks.0.proj.weight", {2, 2});
  for (const std::string bad : {"", ".a", "a.", "a..b", "a b", "tab\tname"}) {
    INFO("name '" << bad << "'");
    CHECK(contains(value_error_message([&] { registry.add(bad, {1}); }, "name"),
                   "expected a dotted name"));
  }
  CHECK_THROWS_AS(registry.scope(""), mlstm::ValueError);
  CHECK_THROWS_AS(registry.scope("blocks").add("", {1}), mlstm::ValueError);

  CHECK(contains(value_error_message([&] { registry.add("blocks.0.proj.weight", {3}); }, "name"),
                 "already registered (shape (2, 2))"));
  CHECK(contains(value_error_message([&] { registry.add("blocks.0", {3}); }, "name"),
                 "already holds other parameters (proj.weight)"));
  CHECK(contains(value_error_message([&] { registry.add("blocks.0.proj.weight.x", {3}); }, "name"),
                 "'blocks.0.proj.weight' is a parameter"));
  auto& param = registry.get("blocks.0.proj.weight");
  CHECK_THROWS_AS(registry.tie("blocks.0.proj.weight", param), mlstm::ValueError);
  CHECK(registry.size() == 1);
  CHECK(registry.state_dict_names().size() == 1);  // nothing half-registered

  CHECK_THROWS_AS(registry.add("negative", {3, -1}), mlstm::ShapeError);
  CHECK_THROWS_AS(registry.add("huge", {Index(1) << 40, Index(1) << 40}), mlstm::ShapeError);
  CHECK(registry.size() == 1);
}

TEST_CASE("params registry: unknown names say what is there", "[params][registry][errors]") {
  Registry<float> registry;
  CHECK(contains(value_error_message([&] { registry.get("x"); }, "name"), "the registry is empty"));
  registry.add("blocks.0.xlstm.proj_up.weight", {2, 2});
  registry.add("blocks.0.xlstm.proj_down.weight", {2, 2});
  registry.add("token_embedding.weight", {4, 2});
  const std::string typo =
      value_error_message([&] { registry.get("blocks.0.xlstm.proj_upp.weight"); }, "name");
  CHECK(contains(typo, "no parameter named 'blocks.0.xlstm.proj_upp.weight'"));
  CHECK(contains(typo, "'blocks.0.xlstm' holds proj_up.weight, proj_down.weight"));
  const std::string scope = value_error_message([&] { registry.get("blocks.0"); }, "name");
  CHECK(contains(scope, "it is a scope holding xlstm.proj_up.weight"));
  const std::string elsewhere =
      value_error_message([&] { registry.get("lm_head.weight"); }, "name");
  CHECK(contains(elsewhere, "the registry holds blocks.0.xlstm.proj_up.weight"));
  CHECK(registry.find("lm_head.weight") == nullptr);
  CHECK_FALSE(registry.contains("lm_head.weight"));
  const auto& constant = registry;
  CHECK_THROWS_AS(constant.get("nothing"), mlstm::ValueError);
}

TEST_CASE("params registry: moving the registry keeps parameters where they are",
          "[params][registry]") {
  Registry<float> registry;
  auto& w = registry.add("w", {3});
  w.data()[1] = 2.5f;
  Registry<float> moved(std::move(registry));
  CHECK(&moved.get("w") == &w);
  CHECK(moved.get("w").data()[1] == 2.5f);
  Registry<float> assigned;
  assigned = std::move(moved);
  CHECK(&assigned.get("w") == &w);
}

TEST_CASE("params registry: zero_grad clears every gradient", "[params][registry]") {
  Registry<double> registry;
  auto& a = registry.add("a", {2});
  auto& b = registry.add("b", {2, 2});
  auto& c = registry.add("c", {3});
  a.grad_flat().setConstant(1.0);
  b.grad_flat().setConstant(2.0);
  registry.zero_grad();
  CHECK(a.grad_flat()(0) == 0.0);
  CHECK(b.grad<2>()(1, 1) == 0.0);
  CHECK_FALSE(c.has_grad());  // zero without a buffer
}

TEST_CASE("params registry: a gradient exists once asked for, from any accessor",
          "[params][registry]") {
  Registry<float> registry;
  auto& a = registry.add("a", {2, 3});
  const auto& constant = registry.add("b", {4});
  CHECK(constant.grad<1>()(3) == 0.0f);  // a const request allocates it too (zero-filled)
  CHECK(constant.has_grad());
  CHECK_FALSE(a.has_grad());
  a.grad_flat()(5) = 1.5f;
  CHECK(a.has_grad());
  CHECK(a.grad<2>()(1, 2) == 1.5f);
  CHECK(a.grad_data() == a.grad_data());  // one buffer, kept
  // A model built for inference holds no gradient at all.
  mlstm::LMModelConfig config;
  config.vocab_size = 16;
  config.embedding_dim = 32;
  config.context_length = 8;
  const mlstm::LanguageModel<float> model(config);
  for (const auto& parameter : model.registry()) CHECK_FALSE(parameter.has_grad());
}
