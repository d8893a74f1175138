// The language model against the reference package's own xLSTMLMModel (golden data of
// tests/reference/make_model_golden.py): whole sequences, prefill + token by token, past the
// context length, final states; double and float; the forms against each other; errors.
//
// Budgets (all scale with the magnitude of the reference's logits):
// - double, same form as the reference (forward with the parallel kernel vs the reference's
//   forward; step, prefill with the chunkwise kernel vs the reference's step, whose stabilizer
//   the chunkwise kernel shares): `double_relative`, i.e. double rounding.
// - float vs the float64 reference: `float_budget`, a small multiple of what the reference
//   itself loses in float32 on the same model and tokens (logits_f32ref), never below float
//   rounding. Parameters are float32 in both; the reference's float32 run is the yardstick of
//   how much float32 arithmetic through this network must lose.
// - parallel form vs the recurrent and chunkwise forms: they differ through eps * exp(m) in the
//   normalizer (see language_model.hpp), by what the reference's own forward and step differ by
//   on the same data (measured from the golden data: about 5e-8 relative); budget twice that
//   plus double rounding.
// Set MLSTM_GOLDEN_REPORT=1 to print the measured errors.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <mlstm/io/safetensors.hpp>
#include <mlstm/mlstm.hpp>

#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;

std::string data_path(const std::string& file) {
  return std::string(MLSTM_REFERENCE_DATA_DIR) + "/" + file;
}

// Positions [first, first + count) of x (B, S, V).
template <typename T>
Tensor<T, 3> positions(const Tensor<T, 3>& x, Index first, Index count) {
  return x.slice(std::array<Index, 3>{0, first, 0},
                 std::array<Index, 3>{x.dimension(0), count, x.dimension(2)});
}

struct Golden {
  std::string name;
  mlstm::safetensors::File outputs;
  mlstm::LMModelConfig config;
  Tensor<std::int64_t, 2> tokens;  // (B, S + extra)
  Index batch, context, steps;
  Tensor<double, 3> logits, logits_step;
  Tensor<float, 3> logits_f32ref, logits_step_f32ref;

  explicit Golden(const std::string& case_name)
      : name(case_name),
        outputs(mlstm::safetensors::File::load(
            data_path("model_" + case_name + "_outputs.safetensors"))),
        config(mlstm::lm_model_config_from_json(outputs.metadata("config"))),
        tokens(outputs.read<std::int64_t, 2>("tokens")),
        batch(tokens.dimension(0)),
        context(config.context_length),
        steps(tokens.dimension(1)),
        logits(outputs.read<double, 3>("logits")),
        logits_step(outputs.read<double, 3>("logits_step")),
        logits_f32ref(outputs.read<float, 3>("logits_f32ref")),
        logits_step_f32ref(outputs.read<float, 3>("logits_step_f32ref")) {}

  Tensor<std::int64_t, 2> prompt(Index length) const {
    return tokens.slice(std::array<Index, 2>{0, 0}, std::array<Index, 2>{batch, length});
  }
  Tensor<std::int64_t, 1> token_at(Index t) const {
    Tensor<std::int64_t, 1> column(batch);
    for (Index b = 0; b < batch; ++b) column(b) = tokens(b, t);
    return column;
  }

  template <typename T>
  mlstm::LanguageModel<T> model(const mlstm::KernelOptions& options = {}) const {
    mlstm::LanguageModel<T> loaded(config, options);
    mlstm::load_checkpoint(loaded.registry(), data_path("model_" + name + ".safetensors"));
    return loaded;
  }

  double magnitude() const { return mlstm::test::magnitude(logits_step); }
  double double_budget() const { return mlstm::test::double_relative * magnitude(); }
  // The reference's own gap between its forward and its step on the first S positions.
  double form_gap() const {
    return mlstm::test::max_difference(positions(logits_step, 0, context), logits).max_abs;
  }
  double float_budget_forward() const {
    return mlstm::test::float_budget(mlstm::test::max_difference(logits_f32ref, logits).max_abs,
                                     mlstm::test::magnitude(logits));
  }
  double float_budget_step() const {
    return mlstm::test::float_budget(
        mlstm::test::max_difference(logits_step_f32ref, logits_step).max_abs, magnitude());
  }
};

void report(const Golden& golden, const char* what, const mlstm::test::Difference& d) {
  if (std::getenv("MLSTM_GOLDEN_REPORT") == nullptr) return;
  std::printf("model_%-10s %-44s max |diff| %.3g, relative %.3g\n", golden.name.c_str(), what,
              d.max_abs, d.scale > 0 ? d.max_abs / d.scale : d.max_abs);
}

#define MLSTM_CHECK_GOLDEN(golden, what, actual, expected, budget)               \
  do {                                                                           \
    report((golden), (what), mlstm::test::max_difference((actual), (expected))); \
    MLSTM_CHECK_CLOSE(actual, expected, budget);                                 \
  } while (false)

// prefill of the first `prompt_length` tokens, then one step per remaining token: logits of
// every position (B, S + extra, V) and the final state.
template <typename T>
std::pair<Tensor<T, 3>, mlstm::ModelState<T>> prefill_then_steps(
    const mlstm::LanguageModel<T>& model, const Golden& golden, Index prompt_length) {
  auto state = model.initial_state(golden.batch);
  Tensor<T, 3> all(golden.batch, golden.steps, golden.config.vocab_size);
  if (prompt_length > 0) {
    all.slice(std::array<Index, 3>{0, 0, 0},
              std::array<Index, 3>{golden.batch, prompt_length, golden.config.vocab_size}) =
        model.prefill(golden.prompt(prompt_length), state);
  }
  for (Index t = prompt_length; t < golden.steps; ++t) {
    const Tensor<T, 2> step = model.step(golden.token_at(t), state);
    for (Index b = 0; b < golden.batch; ++b)
      for (Index v = 0; v < golden.config.vocab_size; ++v) all(b, t, v) = step(b, v);
  }
  return {all, std::move(state)};
}

const char* const cases[] = {"small", "tied_bias"};

}  // namespace

TEST_CASE("model forward reproduces the reference's logits in double", "[model][golden]") {
  for (const char* name : cases) {
    CAPTURE(name);
    const Golden golden(name);
    const auto model = golden.model<double>();
    MLSTM_CHECK_GOLDEN(golden, "forward (parallel), double",
                       model.forward(golden.prompt(golden.context)), golden.logits,
                       golden.double_budget());
  }
}

TEST_CASE("model step by step and prefill reproduce the reference's step in double",
          "[model][golden]") {
  for (const char* name : cases) {
    CAPTURE(name);
    const Golden golden(name);
    for (const Index chunk_size : {Index(3), Index(64)}) {
      CAPTURE(chunk_size);
      mlstm::KernelOptions options;
      options.chunk_size = chunk_size;
      options.parallel_prefill_max = 0;  // every prompt chunkwise (the parallel one: "forms")
      const auto model = golden.model<double>(options);
      // All steps; the prompt prefilled (chunkwise) then steps past the context length; the
      // whole sequence prefilled in one call.
      for (const Index prompt_length : {Index(0), golden.context, golden.steps}) {
        CAPTURE(prompt_length);
        const auto [logits, state] = prefill_then_steps(model, golden, prompt_length);
        MLSTM_CHECK_GOLDEN(golden, "prefill + steps vs reference step, double", logits,
                           golden.logits_step, golden.double_budget());
        // The final state: the reference's step state after every token.
        for (Index b = 0; b < golden.config.num_blocks; ++b) {
          CAPTURE(b);
          const std::string block = "block_" + std::to_string(b) + "_";
          const auto& mine = state.blocks[static_cast<std::size_t>(b)];
          const auto c = golden.outputs.read<double, 4>(block + "c");
          const auto n = golden.outputs.read<double, 4>(block + "n");
          const auto m = golden.outputs.read<double, 4>(block + "m");
          const auto conv = golden.outputs.read<double, 3>(block + "conv");
          MLSTM_CHECK_CLOSE(mine.mlstm_state.c, c,
                            1e-12 * std::max(1.0, mlstm::test::magnitude(c)));
          MLSTM_CHECK_CLOSE(mine.mlstm_state.n, n,
                            1e-12 * std::max(1.0, mlstm::test::magnitude(n)));
          MLSTM_CHECK_CLOSE(mine.mlstm_state.m, m,
                            1e-12 * std::max(1.0, mlstm::test::magnitude(m)));
          MLSTM_CHECK_CLOSE(mine.conv_state, conv,
                            1e-12 * std::max(1.0, mlstm::test::magnitude(conv)));
        }
      }
    }
  }
}

TEST_CASE("model forward with the chunkwise and recurrent kernels equals the reference's step",
          "[model][golden]") {
  for (const char* name : cases) {
    CAPTURE(name);
    const Golden golden(name);
    for (const auto kernel : {mlstm::SequenceKernel::chunkwise, mlstm::SequenceKernel::recurrent}) {
      mlstm::KernelOptions options;
      options.forward_kernel = kernel;
      options.chunk_size = 5;
      const auto model = golden.model<double>(options);
      // Past the context length too: the reference's forward stops there, its step does not.
      MLSTM_CHECK_GOLDEN(golden, "forward (chunkwise/recurrent) vs step, double",
                         model.forward(golden.tokens), golden.logits_step, golden.double_budget());
    }
  }
}

TEST_CASE("model: the parallel form and the step-by-step form differ by the eps term only",
          "[model][golden][forms]") {
  for (const char* name : cases) {
    CAPTURE(name);
    const Golden golden(name);
    const double gap = golden.form_gap();
    INFO("the reference's own forward vs step gap: " << gap << " (relative "
                                                     << gap / golden.magnitude() << ")");
    // The gap is real but small: eps * exp(m) against a normalizer of at least 1.
    CHECK(gap > 0.0);
    CHECK(gap < 1e-6 * golden.magnitude());
    const auto model = golden.model<double>();
    const auto parallel = model.forward(golden.tokens);  // past the context length as well
    MLSTM_CHECK_GOLDEN(golden, "forward (parallel) vs reference step, double", parallel,
                       golden.logits_step, 2.0 * gap + golden.double_budget());

    // A short prompt's prefill from the zero state runs the parallel form too (and builds the
    // state as one chunk); then steps.
    const Index prompt_length = golden.context;
    const auto parallel_prefill = prefill_then_steps(model, golden, prompt_length).first;
    MLSTM_CHECK_GOLDEN(golden, "prefill (parallel) + steps vs reference step, double",
                       parallel_prefill, golden.logits_step, 2.0 * gap + golden.double_budget());

    // With eps far below every normalizer the forms agree to rounding: forward against the
    // chunkwise prefill, and the parallel prefill + steps (logits and final state) against the
    // chunkwise prefill + steps.
    mlstm::KernelOptions tiny_eps;
    tiny_eps.eps = 1e-30;
    tiny_eps.parallel_prefill_max = 0;
    const auto exact = golden.model<double>(tiny_eps);
    auto state = exact.initial_state(golden.batch);
    const auto stepped = exact.prefill(golden.tokens, state);
    MLSTM_CHECK_CLOSE(exact.forward(golden.tokens), stepped, golden.double_budget());
    const auto [chunkwise_logits, chunkwise_state] =
        prefill_then_steps(exact, golden, prompt_length);
    tiny_eps.parallel_prefill_max = prompt_length;
    const auto [parallel_logits, parallel_state] =
        prefill_then_steps(golden.model<double>(tiny_eps), golden, prompt_length);
    MLSTM_CHECK_CLOSE(parallel_logits, chunkwise_logits, golden.double_budget());
    for (std::size_t b = 0; b < chunkwise_state.blocks.size(); ++b) {
      CAPTURE(b);
      const auto& expected = chunkwise_state.blocks[b].mlstm_state;
      const auto& actual = parallel_state.blocks[b].mlstm_state;
      for (const auto& [mine, theirs] :
           {std::pair{&actual.c, &expected.c}, {&actual.n, &expected.n}, {&actual.m, &expected.m}})
        MLSTM_CHECK_CLOSE(*mine, *theirs, mlstm::test::forms_budget(*theirs));
    }
  }
}

TEST_CASE("model in float is within the reference's own float32 error", "[model][golden]") {
  for (const char* name : cases) {
    CAPTURE(name);
    const Golden golden(name);
    const auto model = golden.model<float>();
    MLSTM_CHECK_GOLDEN(golden, "forward (parallel), float",
                       model.forward(golden.prompt(golden.context)), golden.logits,
                       golden.float_budget_forward());
    for (const Index prompt_length : {Index(0), golden.context}) {
      CAPTURE(prompt_length);
      const auto stepped = prefill_then_steps(model, golden, prompt_length).first;
      MLSTM_CHECK_GOLDEN(golden, "prefill + steps, float", stepped, golden.logits_step,
                         golden.float_budget_step());
    }
  }
}

TEST_CASE("model: Logits::last, batch rows and thread counts", "[model]") {
  const Golden golden("small");
  mlstm::KernelOptions options;
  options.num_threads = 1;
  const auto model = golden.model<float>(options);
  auto state_all = model.initial_state(golden.batch);
  auto state_last = model.initial_state(golden.batch);
  const auto all = model.prefill(golden.tokens, state_all);
  const auto last = model.prefill(golden.tokens, state_last, mlstm::Logits::last);
  REQUIRE(last.dimension(1) == 1);
  // The head's product runs on 3 rows instead of 72 (another blocking): float rounding apart.
  const Tensor<float, 3> last_of_all = positions(all, golden.steps - 1, 1);
  MLSTM_CHECK_CLOSE(last, last_of_all,
                    mlstm::test::forms_relative<float> * mlstm::test::magnitude(last_of_all));
  CHECK(mlstm::test::max_difference(state_last.blocks[1].mlstm_state.c,
                                    state_all.blocks[1].mlstm_state.c)
            .max_abs == 0.0);

  // Each sequence of a batch alone gives its row of the batch.
  for (Index b = 0; b < golden.batch; ++b) {
    CAPTURE(b);
    const Tensor<std::int64_t, 2> one =
        golden.tokens.slice(std::array<Index, 2>{b, 0}, std::array<Index, 2>{1, golden.steps});
    auto state = model.initial_state(1);
    const auto alone = model.prefill(one, state);
    const Tensor<float, 3> row =
        all.slice(std::array<Index, 3>{b, 0, 0},
                  std::array<Index, 3>{1, golden.steps, golden.config.vocab_size});
    MLSTM_CHECK_CLOSE(alone, row, 1e-5 * mlstm::test::magnitude(row));
  }

  // The thread count does not change a bit of the result.
  options.num_threads = 3;
  auto threaded = golden.model<float>(options);
  CHECK(mlstm::test::max_difference(threaded.forward(golden.tokens), model.forward(golden.tokens))
            .max_abs == 0.0);
  auto state_threaded = threaded.initial_state(golden.batch);
  CHECK(mlstm::test::max_difference(threaded.prefill(golden.tokens, state_threaded), all).max_abs ==
        0.0);
}

// Calls that reuse memory: a state set to zero in place, and the inference buffers the model
// keeps between calls over sequences, resized when the shape changes and left alone by steps.
// Every result equals that of a state or a model that never ran before, bit for bit.
TEST_CASE("model: reused states and inference buffers give a fresh run's results", "[model]") {
  const Golden golden("small");
  mlstm::KernelOptions options;
  options.num_threads = 1;
  auto model = golden.model<float>(options);
  const auto fresh_prefill = [&](const Tensor<std::int64_t, 2>& tokens) {
    const auto fresh_model = golden.model<float>(options);
    auto state = fresh_model.initial_state(tokens.dimension(0));
    auto logits = fresh_model.prefill(tokens, state);
    return std::make_pair(logits, state);
  };
  const Tensor<std::int64_t, 2> shorter =
      golden.tokens.slice(std::array<Index, 2>{0, 0}, std::array<Index, 2>{1, golden.steps - 3});
  const auto [expected_all, expected_state] = fresh_prefill(golden.tokens);
  const auto [expected_shorter, expected_shorter_state] = fresh_prefill(shorter);
  const Tensor<float, 3> expected_forward = golden.model<float>(options).forward(golden.tokens);

  auto state = model.initial_state(golden.batch);
  auto short_state = model.initial_state(1);
  Tensor<std::int64_t, 1> next(golden.batch);
  next.setConstant(1);
  for (int round = 0; round < 2; ++round) {
    CAPTURE(round);
    state.set_zero();
    const auto all = model.prefill(golden.tokens, state);
    CHECK(mlstm::test::max_difference(all, expected_all).max_abs == 0.0);
    for (std::size_t b = 0; b < state.blocks.size(); ++b) {
      const auto& got = state.blocks[b];
      const auto& want = expected_state.blocks[b];
      CHECK(mlstm::test::max_difference(got.mlstm_state.c, want.mlstm_state.c).max_abs == 0.0);
      CHECK(mlstm::test::max_difference(got.mlstm_state.n, want.mlstm_state.n).max_abs == 0.0);
      CHECK(mlstm::test::max_difference(got.mlstm_state.m, want.mlstm_state.m).max_abs == 0.0);
      CHECK(mlstm::test::max_difference(got.conv_state, want.conv_state).max_abs == 0.0);
    }
    model.step(next, state);  // a step between prompts
    short_state.set_zero();
    CHECK(mlstm::test::max_difference(model.prefill(shorter, short_state), expected_shorter)
              .max_abs == 0.0);
    CHECK(mlstm::test::max_difference(model.forward(golden.tokens), expected_forward).max_abs ==
          0.0);
  }
  model.release_inference_workspace();
  state.set_zero();
  CHECK(mlstm::test::max_difference(model.prefill(golden.tokens, state), expected_all).max_abs ==
        0.0);
  // set_zero is the zero state.
  const auto zero = model.initial_state(golden.batch);
  CHECK(mlstm::test::magnitude(zero.blocks[0].mlstm_state.c) == 0.0);
  state.set_zero();
  for (std::size_t b = 0; b < state.blocks.size(); ++b) {
    CHECK(mlstm::test::magnitude(state.blocks[b].mlstm_state.c) == 0.0);
    CHECK(mlstm::test::magnitude(state.blocks[b].mlstm_state.n) == 0.0);
    CHECK(mlstm::test::magnitude(state.blocks[b].mlstm_state.m) == 0.0);
    CHECK(mlstm::test::magnitude(state.blocks[b].conv_state) == 0.0);
  }
}

TEST_CASE("model: a new model from a seed is reproducible and runs", "[model]") {
  mlstm::LMModelConfig config;
  config.vocab_size = 30;
  config.embedding_dim = 32;
  config.num_blocks = 2;
  config.context_length = 8;
  mlstm::LanguageModel<float> first(config), second(config);
  mlstm::Generator gen_first(42), gen_second(42);
  first.reset_parameters(gen_first);
  second.reset_parameters(gen_second);
  Tensor<std::int64_t, 2> tokens(2, 6);
  for (Index i = 0; i < tokens.size(); ++i) tokens.data()[i] = (7 * i + 3) % config.vocab_size;
  const auto a = first.forward(tokens), b = second.forward(tokens);
  CHECK(mlstm::test::max_difference(a, b).max_abs == 0.0);
  CHECK(mlstm::test::magnitude(a) > 0.0);
  // The init draws every parameter: the embedding is not left at zero.
  CHECK(mlstm::test::magnitude(first.registry().get("token_embedding.weight").flat()) > 0.0);
}

TEST_CASE("model rejects bad tokens, states and options before writing", "[model][errors]") {
  const Golden golden("small");
  const auto model = golden.model<float>();
  Tensor<std::int64_t, 2> tokens = golden.prompt(4);
  tokens(1, 2) = golden.config.vocab_size;  // one past the vocabulary
  CHECK_THROWS_WITH(model.forward(tokens),
                    Catch::Contains("tokens") && Catch::Contains("token id 50") &&
                        Catch::Contains("(1, 2)") && Catch::Contains("[0, 50)"));
  tokens(1, 2) = -1;
  CHECK_THROWS_AS(model.forward(tokens), mlstm::ValueError);
  Tensor<std::int64_t, 2> empty(2, 0);
  CHECK_THROWS_AS(model.forward(empty), mlstm::ShapeError);

  auto state = model.initial_state(golden.batch);
  const Tensor<float, 4> c_before = state.blocks[0].mlstm_state.c;
  // A state for another batch size.
  Tensor<std::int64_t, 1> two_tokens(2);
  two_tokens.setZero();
  CHECK_THROWS_WITH(
      model.step(two_tokens, state),
      Catch::Contains("state.blocks[0].mlstm_state.c") && Catch::Contains("(2, 4, 16, 16)"));
  // A bad token in the step leaves the state alone.
  Tensor<std::int64_t, 1> step_tokens(golden.batch);
  step_tokens.setConstant(3);
  step_tokens(2) = 999;
  CHECK_THROWS_AS(model.step(step_tokens, state), mlstm::ValueError);
  // A state missing a block, and one with a mis-shaped conv state.
  auto short_state = state;
  short_state.blocks.pop_back();
  CHECK_THROWS_WITH(model.step(golden.token_at(0), short_state),
                    Catch::Contains("one block state per block (2), got 1"));
  auto bad_conv = state;
  bad_conv.blocks[1].conv_state = Tensor<float, 3>(golden.batch, 3, 64);
  CHECK_THROWS_WITH(model.prefill(golden.prompt(3), bad_conv),
                    Catch::Contains("state.blocks[1].conv_state") && Catch::Contains("(3, 4, 64)"));
  CHECK(mlstm::test::max_difference(state.blocks[0].mlstm_state.c, c_before).max_abs == 0.0);
  CHECK(mlstm::test::magnitude(bad_conv.blocks[0].conv_state) == 0.0);

  mlstm::KernelOptions options;
  options.eps = -1.0;
  CHECK_THROWS_WITH(mlstm::LanguageModel<float>(golden.config, options),
                    Catch::Contains("options.eps"));
  options = {};
  options.chunk_size = 0;
  mlstm::LanguageModel<float> other(golden.config);
  CHECK_THROWS_WITH(other.set_options(options), Catch::Contains("options.chunk_size"));
  CHECK_THROWS_WITH(model.initial_state(0), Catch::Contains("batch"));
}
