// xLSTM-Large against the reference package's xLSTMLarge and transformers' xLSTMForCausalLM
// (golden data of tests/reference/make_xlstm_large_golden.py): the forward, a prefill followed
// by steps, the final states; double and float; weight modes single and fused; both spellings
// of the names; a sharded Hugging Face folder and its errors; the new layers against plain loops.
//
// States are compared unstabilized (c * exp(m), n * exp(m)) and in mlstm_kernels' units (its q
// carries the 1/sqrt(DQK) that the library puts on k).
//
// Budgets (scaled by the magnitude of the reference's values):
// - double: `double_budget` of the reference's own float32 loss on the case, at least double
//   rounding.
// - float: `float_budget` with `float_model_loss_factor`, a small multiple of what the reference
//   loses in float32 (metadata f32ref_*_error), never below float rounding.
// Set MLSTM_GOLDEN_REPORT=1 to print the measured errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <mlstm/io/hf_folder.hpp>
#include <mlstm/io/safetensors.hpp>
#include <mlstm/layers/rms_norm.hpp>
#include <mlstm/layers/soft_cap.hpp>
#include <mlstm/layers/swiglu.hpp>
#include <mlstm/models/xlstm_large/checkpoint.hpp>
#include <mlstm/params/generator.hpp>
#include <set>
#include <string>

#include "support/golden.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;
namespace fs = std::filesystem;

std::string data_path(const std::string& name) {
  return std::string(MLSTM_REFERENCE_DATA_DIR) + "/" + name;
}

// What the reference computed for one case (see the generating script's docstring).
struct Golden {
  mlstm::safetensors::File outputs;
  Tensor<std::int64_t, 2> tokens;
  Index prefill;
  Tensor<double, 3> logits, logits_steps;
  double f32_logits, f32_steps, f32_state;  // the reference's float32 errors, relative

  explicit Golden(const std::string& stem)
      : outputs(mlstm::test::golden_file(stem)),
        tokens(outputs.read<std::int64_t, 2>("tokens")),
        prefill(std::stol(outputs.metadata("prefill_length"))),
        logits(outputs.read<double, 3>("logits")),
        logits_steps(outputs.read<double, 3>("logits_steps")),
        f32_logits(std::stod(outputs.metadata("f32ref_logits_error"))),
        f32_steps(std::stod(outputs.metadata("f32ref_steps_error"))),
        f32_state(std::stod(outputs.metadata("f32ref_state_error"))) {}
};

template <typename T>
double budget(double reference_f32_relative, double magnitude) {
  const double loss = reference_f32_relative * magnitude;
  return mlstm::test::golden_budget<T>(loss, magnitude, mlstm::test::float_model_loss_factor);
}

template <typename A, typename E>
void check_close(const std::string& what, const A& actual, const E& expected, double budget,
                 double reference_loss) {
  const mlstm::test::Difference difference = mlstm::test::max_difference(actual, expected);
  mlstm::test::report_golden(what, actual, expected, difference.scale, reference_loss);
  INFO(what << ": " << difference.describe() << ", budget " << budget);
  CHECK(difference.within(budget));
}

// Logits of a prefill of the first P tokens, then one step per remaining token: (B, S, V).
template <typename T, typename W>
Tensor<T, 3> prefill_then_steps(const mlstm::XLSTMLarge<T, W>& model,
                                const Tensor<std::int64_t, 2>& tokens, Index prefill,
                                mlstm::XLSTMLargeState<T>& state) {
  const Index B = tokens.dimension(0), S = tokens.dimension(1), V = model.config().vocab_size;
  Tensor<T, 3> out(B, S, V);
  const Tensor<std::int64_t, 2> prompt =
      tokens.slice(std::array<Index, 2>{0, 0}, std::array<Index, 2>{B, prefill});
  out.slice(std::array<Index, 3>{0, 0, 0}, std::array<Index, 3>{B, prefill, V}) =
      model.prefill(prompt, state);
  for (Index t = prefill; t < S; ++t) {
    const Tensor<std::int64_t, 1> next = tokens.chip<1>(t);
    out.template chip<1>(t) = model.step(next, state);
  }
  return out;
}

// The unstabilized state: c * exp(m), n * exp(m) (the forms' stabilizers may differ), times
// `scale`.
template <typename T>
Tensor<double, 4> unstabilized(const Tensor<T, 4>& x, const Tensor<T, 4>& m, double scale = 1) {
  Tensor<double, 4> y = x.template cast<double>();
  const Index per_head = x.dimension(2) * x.dimension(3);
  for (Index i = 0; i < y.size(); ++i)
    y.data()[i] *= scale * std::exp(static_cast<double>(m.data()[i / per_head]));
  return y;
}

template <typename T>
void check_against_golden(const std::string& name, const mlstm::XLSTMLarge<T>& model,
                          const Golden& golden) {
  const std::string dtype = std::is_same_v<T, double> ? " double" : " float";
  const double scale = mlstm::test::magnitude(golden.logits);
  check_close(name + dtype + " forward logits", model.forward(golden.tokens), golden.logits,
              budget<T>(golden.f32_logits, scale), golden.f32_logits * scale);

  auto state = model.initial_state(golden.tokens.dimension(0));
  const Tensor<T, 3> steps = prefill_then_steps(model, golden.tokens, golden.prefill, state);
  check_close(name + dtype + " prefill + steps logits", steps, golden.logits_steps,
              budget<T>(golden.f32_steps, scale), golden.f32_steps * scale);

  // mlstm_kernels scales q by 1/sqrt(DQK) where the library scales k: its c and n are the
  // library's times sqrt(DQK).
  const double k_scale = std::sqrt(static_cast<double>(model.config().qk_head_dim()));
  for (std::size_t b = 0; b < state.blocks.size(); ++b) {
    const std::string block = "block_" + std::to_string(b);
    const auto m = golden.outputs.read<double, 4>(block + "_m");
    const auto c = unstabilized(golden.outputs.read<double, 4>(block + "_c"), m);
    const auto n = unstabilized(golden.outputs.read<double, 4>(block + "_n"), m);
    const double c_scale = mlstm::test::magnitude(c), n_scale = mlstm::test::magnitude(n);
    check_close(name + dtype + " " + block + " c",
                unstabilized(state.blocks[b].c, state.blocks[b].m, k_scale), c,
                budget<T>(golden.f32_state, c_scale), golden.f32_state * c_scale);
    check_close(name + dtype + " " + block + " n",
                unstabilized(state.blocks[b].n, state.blocks[b].m, k_scale), n,
                budget<T>(golden.f32_state, n_scale), golden.f32_state * n_scale);
  }
}

// A model of a reference case: configuration from the weights file's metadata, then its weights.
template <typename T>
mlstm::XLSTMLarge<T> reference_model(const std::string& name) {
  const auto weights = mlstm::test::golden_file("xlstm_large_" + name);
  mlstm::XLSTMLarge<T> model(mlstm::xlstm_large_config_from_json(weights.metadata("config")));
  mlstm::load_xlstm_large_weights(model, {&weights});
  return model;
}

const std::string hf_folder = data_path("xlstm_large_hf");

}  // namespace

TEMPLATE_TEST_CASE("xLSTM-Large matches the reference's xLSTMLarge", "[xlstm_large][golden]",
                   double, float) {
  for (const std::string name : {"single", "fused_bias"}) {
    const Golden golden("xlstm_large_" + name + "_outputs");
    check_against_golden(name, reference_model<TestType>(name), golden);
  }
}

TEMPLATE_TEST_CASE("xLSTM-Large loads transformers' sharded save_pretrained folder",
                   "[xlstm_large][golden][hf_folder]", double, float) {
  const mlstm::HFFolder folder = mlstm::HFFolder::open(hf_folder);
  CHECK(folder.shards().size() >= 2);
  const auto model = mlstm::load_xlstm_large<TestType>(hf_folder);
  CHECK(model.names() == mlstm::XLSTMLargeNames::transformers);
  check_against_golden("transformers folder", model, Golden("xlstm_large_hf_outputs"));
}

TEST_CASE("xLSTM-Large: a prefill in pieces of any length continues exactly",
          "[xlstm_large][golden]") {
  // Pieces of 5 and 15 tokens (chunks of 16: a partial chunk, then one crossing the boundary)
  // against the reference's forward over all 20.
  const auto model = reference_model<double>("single");
  const Golden golden("xlstm_large_single_outputs");
  const Index B = golden.tokens.dimension(0), S = golden.tokens.dimension(1);
  const Index V = golden.logits.dimension(2), first = 5;
  const auto piece = [&](Index begin, Index count) {
    return Tensor<std::int64_t, 2>(
        golden.tokens.slice(std::array<Index, 2>{0, begin}, std::array<Index, 2>{B, count}));
  };
  const auto expected = [&](Index begin, Index count) {
    return Tensor<double, 3>(
        golden.logits.slice(std::array<Index, 3>{0, begin, 0}, std::array<Index, 3>{B, count, V}));
  };
  auto state = model.initial_state(B);
  const Tensor<double, 3> head = model.prefill(piece(0, first), state);
  const Tensor<double, 3> last = model.prefill(piece(first, S - first), state, mlstm::Logits::last);
  const double scale = mlstm::test::magnitude(golden.logits);
  const double budget = mlstm::test::double_budget(golden.f32_logits * scale, scale);
  check_close("first piece", head, expected(0, first), budget, golden.f32_logits * scale);
  check_close("second piece, last position", last, expected(S - 1, 1), budget,
              golden.f32_logits * scale);
  // A state set to zero in place starts over: the pieces again give the same logits, bit for bit.
  state.set_zero();
  CHECK(mlstm::test::max_difference(model.prefill(piece(0, first), state), head).max_abs == 0.0);
  CHECK(mlstm::test::max_difference(
            model.prefill(piece(first, S - first), state, mlstm::Logits::last), last)
            .max_abs == 0.0);
}

TEST_CASE("xLSTM-Large's parameter table is the reference's state dict, in both spellings",
          "[xlstm_large][parameters]") {
  const auto names_of = [](const mlstm::ParameterTable& table) {
    std::set<std::string> names;
    for (const mlstm::ParameterRow& row : table.rows()) names.insert(row.name);
    return names;
  };
  for (const std::string name : {"single", "fused_bias"}) {
    const auto weights = mlstm::test::golden_file("xlstm_large_" + name);
    const auto config = mlstm::xlstm_large_config_from_json(weights.metadata("config"));
    const mlstm::ParameterTable table = mlstm::xlstm_large_table(config);
    CHECK(names_of(table) == std::set<std::string>(weights.names().begin(), weights.names().end()));
    for (const mlstm::ParameterRow& row : table.rows())
      CHECK(weights.info(row.name).shape == row.shape());
    // The table registers and initializes a trainable model like any other.
    mlstm::Registry<float> registry;
    mlstm::register_parameters(registry, table);
    mlstm::Generator generator(7);
    mlstm::apply_init_plan(table.init_plan(), registry, generator);
    CHECK(registry.size() == static_cast<Index>(table.rows().size()));
  }
  const mlstm::HFFolder folder = mlstm::HFFolder::open(hf_folder);
  std::set<std::string> indexed;
  for (const auto& entry : folder.weight_map()) indexed.insert(entry.first);
  CHECK(names_of(mlstm::xlstm_large_table(mlstm::xlstm_large_config_from_json(folder.config_text()),
                                          mlstm::XLSTMLargeNames::transformers)) == indexed);
}

TEST_CASE("xLSTM-Large rejects bad tokens and states", "[xlstm_large][errors]") {
  const auto model = reference_model<float>("single");
  Tensor<std::int64_t, 2> tokens(1, 3);
  tokens.setValues({{0, 1, 24}});
  CHECK_THROWS_AS(model.forward(tokens), mlstm::ValueError);
  auto state = model.initial_state(2);
  tokens.setValues({{0, 1, 2}});
  CHECK_THROWS_AS(model.prefill(tokens, state), mlstm::ShapeError);
  state.blocks.pop_back();
  CHECK_THROWS_AS(model.prefill(tokens, state), mlstm::ShapeError);
}

namespace {

// A copy of the golden folder in a fresh temporary directory, removed afterwards.
struct FolderCopy {
  fs::path path;
  explicit FolderCopy(const std::string& tag)
      : path(fs::temp_directory_path() / ("mlstm_xlstm_large_" + tag)) {
    fs::remove_all(path);
    fs::copy(hf_folder, path);
  }
  ~FolderCopy() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

template <typename Error>
void check_load_fails(const FolderCopy& folder, const std::string& expected_words) {
  try {
    (void)mlstm::load_xlstm_large<float>(folder.path.string());
    FAIL("loading succeeded, expected an error mentioning " << expected_words);
  } catch (const Error& error) {
    INFO(error.what());
    CHECK(std::string(error.what()).find(expected_words) != std::string::npos);
  }
}

void replace_in_file(const std::string& path, const std::string& from, const std::string& to) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  text.replace(at, from.size(), to);
  std::ofstream(path, std::ios::trunc) << text;
}

}  // namespace

TEST_CASE("xLSTM-Large folder errors name the file and what is wrong",
          "[xlstm_large][hf_folder][errors]") {
  SECTION("no config") {
    FolderCopy folder("no_config");
    fs::remove(folder.file("config.json"));
    check_load_fails<mlstm::FormatError>(folder, "config.json");
  }
  SECTION("a shard missing") {
    FolderCopy folder("missing_shard");
    fs::remove(folder.file("model-00002-of-00003.safetensors"));
    check_load_fails<mlstm::FormatError>(folder, "model-00002-of-00003.safetensors");
  }
  SECTION("no weights at all") {
    FolderCopy folder("no_weights");
    for (const auto& entry : fs::directory_iterator(folder.path))
      if (entry.path().filename() != "config.json") fs::remove(entry.path());
    check_load_fails<mlstm::FormatError>(folder, "model.safetensors");
  }
  SECTION("a config that does not match the tensors") {
    FolderCopy folder("mismatched_config");
    replace_in_file(folder.file("config.json"), "\"vocab_size\": 24", "\"vocab_size\": 25");
    check_load_fails<mlstm::FormatError>(folder, "backbone.embeddings.weight");
  }
  SECTION("a config with a bad field") {
    FolderCopy folder("bad_field");
    replace_in_file(folder.file("config.json"), "\"weight_mode\": \"single\"",
                    "\"weight_mode\": \"triple\"");
    check_load_fails<mlstm::ValueError>(folder, "weight_mode");
  }
  SECTION("an index that misplaces a tensor") {
    FolderCopy folder("misplaced");
    replace_in_file(folder.file("model.safetensors.index.json"),
                    "\"lm_head.weight\": \"model-00003-of-00003.safetensors\"",
                    "\"lm_head.weight\": \"model-00001-of-00003.safetensors\"");
    check_load_fails<mlstm::FormatError>(folder, "lm_head.weight");
  }
  SECTION("an index that is not JSON") {
    FolderCopy folder("index_not_json");
    replace_in_file(folder.file("model.safetensors.index.json"), "}", "]");
    check_load_fails<mlstm::FormatError>(folder, "model.safetensors.index.json");
  }
  SECTION("a config nested without bound") {
    FolderCopy folder("deep_config");
    replace_in_file(folder.file("config.json"), "\"weight_mode\": \"single\"",
                    "\"weight_mode\": " + std::string(100, '[') + std::string(100, ']'));
    check_load_fails<mlstm::ValueError>(folder, "nests deeper");
  }
}

namespace {

// The golden folder with its weights rounded to bfloat16 (what a bfloat16 checkpoint holds), in a
// folder named by `tag`: each test case its own, as CTest runs them in parallel.
struct BFloat16Folder : FolderCopy {
  explicit BFloat16Folder(const std::string& tag) : FolderCopy(tag) {
    const mlstm::HFFolder golden = mlstm::HFFolder::open(hf_folder);
    for (const std::string& shard : golden.shards()) {
      const auto source = mlstm::safetensors::File::load(data_path("xlstm_large_hf/" + shard));
      mlstm::safetensors::Writer writer;
      for (const std::string& name : source.names()) {
        if (source.info(name).shape.size() == 2) {
          writer.add_converted(name, source.read<float, 2>(name), mlstm::safetensors::DType::BF16);
        } else {
          writer.add_converted(name, source.read<float, 1>(name), mlstm::safetensors::DType::BF16);
        }
      }
      writer.save(file(shard));
    }
  }
};

}  // namespace

TEST_CASE("xLSTM-Large runs bfloat16 weights in place, as float weights of the same values",
          "[xlstm_large][hf_folder][bfloat16]") {
  const BFloat16Folder folder("bf16");
  const auto in_place = mlstm::load_xlstm_large<float, Eigen::bfloat16>(folder.path.string());
  const auto widened = mlstm::load_xlstm_large<float>(folder.path.string());
  const mlstm::ParameterTable table = in_place.table();
  for (const mlstm::ParameterRow& row : table.rows())
    if (mlstm::is_matrix(row)) CHECK(in_place.in_place(row.name));

  // The same weight values, summed in float either way: the forms' float budget.
  const Golden golden("xlstm_large_hf_outputs");
  const Tensor<float, 3> expected = widened.forward(golden.tokens);
  const double scale = mlstm::test::magnitude(expected);
  check_close("bfloat16 weights vs the same in float", in_place.forward(golden.tokens), expected,
              mlstm::test::forms_relative<float> * scale, 0);
  auto state = in_place.initial_state(golden.tokens.dimension(0));
  check_close("bfloat16 weights, prefill + steps",
              prefill_then_steps(in_place, golden.tokens, golden.prefill, state), expected,
              mlstm::test::forms_relative<float> * scale, 0);
  // What rounding the weights to bfloat16 costs against the float64 reference (reported only:
  // it measures the checkpoint's precision, not the library).
  mlstm::test::report_golden("bfloat16 weights vs the float64 reference", expected, golden.logits,
                             mlstm::test::magnitude(golden.logits),
                             golden.f32_logits * mlstm::test::magnitude(golden.logits));
}

// InputRounding::bfloat16 rounds each product's inputs to bfloat16: against the same model with
// float inputs, the logits move by about what bfloat16 rounding moves them (measured with
// MLSTM_GOLDEN_REPORT=1: bfloat16_inputs_relative in support/tolerance.hpp), and not by nothing;
// prefill and steps agree with the forward within bfloat16_inputs_forms_relative. A float model
// refuses it.
TEST_CASE("xLSTM-Large rounds its products' inputs to bfloat16 when asked",
          "[xlstm_large][hf_folder][bfloat16]") {
  const BFloat16Folder folder("bf16_rounded_inputs");
  auto model = mlstm::load_xlstm_large<float, Eigen::bfloat16>(folder.path.string());
  const Golden golden("xlstm_large_hf_outputs");
  const Tensor<float, 3> exact = model.forward(golden.tokens);
  const double scale = mlstm::test::magnitude(exact);
  const double budget = mlstm::test::bfloat16_inputs_relative * scale;
  CHECK(model.input_rounding() == mlstm::InputRounding::none);
  model.set_input_rounding(mlstm::InputRounding::bfloat16);
  CHECK(model.input_rounding() == mlstm::InputRounding::bfloat16);
  const Tensor<float, 3> rounded = model.forward(golden.tokens);
  check_close("bfloat16 inputs vs float inputs, forward", rounded, exact, budget, 0);
  mlstm::test::report_golden("bfloat16 weights and inputs vs the float64 reference", rounded,
                             golden.logits, mlstm::test::magnitude(golden.logits),
                             golden.f32_logits * mlstm::test::magnitude(golden.logits));
  CHECK(mlstm::test::max_difference(rounded, exact).max_abs > 0.0);
  auto state = model.initial_state(golden.tokens.dimension(0));
  check_close("bfloat16 inputs, prefill + steps vs forward",
              prefill_then_steps(model, golden.tokens, golden.prefill, state), rounded,
              mlstm::test::bfloat16_inputs_forms_relative * scale, 0);
  model.set_input_rounding(mlstm::InputRounding::none);
  const Tensor<bool, 0> restored = (model.forward(golden.tokens) == exact).all();
  CHECK(restored());

  mlstm::XLSTMLarge<float> float_model(model.config());
  CHECK_THROWS_AS(float_model.set_input_rounding(mlstm::InputRounding::bfloat16),
                  mlstm::ValueError);
}

// The layers xLSTM-Large adds, against plain loops over their equations.
TEST_CASE("rms_norm_forward, soft_cap_forward and swiglu_forward match plain loops",
          "[xlstm_large][layers]") {
  const Index rows = 3, E = 5, F = 7;
  Tensor<double, 2> x(rows, E), gate(F, E), up(F, E), down(E, F);
  Tensor<double, 1> weight(E), bias(E);
  x.setRandom();
  gate.setRandom();
  up.setRandom();
  down.setRandom();
  weight.setRandom();
  bias.setRandom();
  x = x * 4.0 - 2.0;

  const Tensor<double, 2> normed = mlstm::rms_norm_forward(x, weight, bias, {1e-3});
  const Tensor<double, 2> capped = mlstm::soft_cap_forward(x, 1.5);
  const Tensor<double, 2> ffn = mlstm::swiglu_forward(x, gate, up, down);
  double worst = 0;
  for (Index r = 0; r < rows; ++r) {
    double squares = 0;
    for (Index j = 0; j < E; ++j) squares += x(r, j) * x(r, j);
    const double rms = std::sqrt(squares / E + 1e-3);
    std::vector<double> hidden(F);
    for (Index f = 0; f < F; ++f) {
      double g = 0, u = 0;
      for (Index j = 0; j < E; ++j) {
        g += x(r, j) * gate(f, j);
        u += x(r, j) * up(f, j);
      }
      hidden[f] = g / (1 + std::exp(-g)) * u;
    }
    for (Index j = 0; j < E; ++j) {
      worst = std::max(worst, std::abs(normed(r, j) - (x(r, j) / rms * weight(j) + bias(j))));
      worst = std::max(worst, std::abs(capped(r, j) - 1.5 * std::tanh(x(r, j) / 1.5)));
      double y = 0;
      for (Index f = 0; f < F; ++f) y += hidden[f] * down(j, f);
      worst = std::max(worst, std::abs(ffn(r, j) - y));
    }
  }
  CHECK(worst <= mlstm::test::forms_relative<double>);
  // In float the cap runs in vector registers (Eigen's tanh): held to std::tanh in double from
  // values near 0 to far past the cap.
  Tensor<float, 1> wide(2001);
  Tensor<double, 1> expected(wide.size());
  for (Index i = 0; i < wide.size(); ++i) {
    const double t = static_cast<double>(i - 1000) / 1000.0;
    wide(i) = static_cast<float>(400.0 * t * t * t);
    expected(i) = 30.0 * std::tanh(static_cast<double>(wide(i)) / 30.0);
  }
  MLSTM_CHECK_CLOSE(mlstm::soft_cap_forward(wide, 30.0), expected,
                    mlstm::test::float_relative_floor * mlstm::test::magnitude(expected));
  CHECK_THROWS_AS(mlstm::soft_cap_forward(x, 0.0), mlstm::ValueError);
  CHECK_THROWS_AS(mlstm::swiglu_forward(x, gate, up, gate), mlstm::ShapeError);
  const Tensor<double, 1> short_weight(E - 1);
  CHECK_THROWS_AS(mlstm::rms_norm_forward(x, short_weight), mlstm::ShapeError);
}

TEST_CASE("xLSTM-Large configuration from JSON", "[xlstm_large][config]") {
  const mlstm::HFFolder folder = mlstm::HFFolder::open(hf_folder);
  const auto config = mlstm::xlstm_large_config_from_json(folder.config_text());
  CHECK(config.embedding_dim == 16);
  CHECK(config.qk_head_dim() == 4);
  CHECK(config.v_head_dim() == 8);
  CHECK(config.ffn_dim() == 24);    // round_up(16 * 1.3, 8)
  mlstm::XLSTMLargeConfig seven_b;  // the defaults are the 7B model's
  CHECK(seven_b.qk_head_dim() == 256);
  CHECK(seven_b.v_head_dim() == 512);
  CHECK(seven_b.ffn_dim() == 10944);
  CHECK_THROWS_AS(mlstm::xlstm_large_config_from_json(R"({"hidden_size": 16, "embedding_dim": 8,
      "num_hidden_layers": 1, "num_heads": 2, "vocab_size": 4})"),
                  mlstm::ValueError);
  CHECK_THROWS_AS(mlstm::xlstm_large_config_from_json(R"({"hidden_size": 16,
      "num_hidden_layers": 1, "num_heads": 3, "vocab_size": 4})"),
                  mlstm::ValueError);
}
