// Training the language model against PyTorch (tests/reference/make_training_golden.py): the
// loss and every parameter's gradient at step 0, then ten AdamW steps over the reference's
// weight-decay groups with clipping, each step's loss; in double and in float.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mlstm/io/training_checkpoint.hpp>
#include <mlstm/mlstm.hpp>
#include <mlstm/params/clip.hpp>
#include <mlstm/params/lr_schedule.hpp>

#include "support/errors.hpp"
#include "support/golden.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;

struct TrainingGolden {
  mlstm::safetensors::File file = mlstm::test::golden_file("training_small");
  mlstm::LMModelConfig config = mlstm::lm_model_config_from_json(file.metadata("config"));
  nlohmann::json optimizer = nlohmann::json::parse(file.metadata("optimizer"));
  mlstm::CrossEntropyOptions loss_options{std::stoll(file.metadata("ignore_index"))};
  Tensor<std::int64_t, 3> tokens = file.read<std::int64_t, 3>("tokens");
  Tensor<std::int64_t, 3> targets = file.read<std::int64_t, 3>("targets");

  Index steps() const { return tokens.dimension(0); }

  static Tensor<std::int64_t, 2> batch(const Tensor<std::int64_t, 3>& all, Index step) {
    const Index B = all.dimension(1), S = all.dimension(2);
    Tensor<std::int64_t, 2> out(B, S);
    std::copy(all.data() + step * B * S, all.data() + (step + 1) * B * S, out.data());
    return out;
  }

  // Tensor `name` of the file, of the parameter's shape, flat, as T.
  template <typename T, typename P>
  Tensor<T, 1> flat(const std::string& name, const mlstm::Parameter<P>& like) const {
    Tensor<T, 1> out(like.size());
    mlstm::detail::decode_tensor(file, name, out.data(), static_cast<std::size_t>(like.size()));
    return out;
  }

  // The model at the reference's start (its float64 values, rounded for float).
  template <typename T>
  mlstm::LanguageModel<T> model() const {
    mlstm::LanguageModel<T> model(config);
    for (auto& param : model.registry()) {
      const Tensor<T, 1> start = flat<T>("param." + param.name(), param);
      std::copy(start.data(), start.data() + param.size(), param.data());
    }
    return model;
  }

  mlstm::AdamWOptions adamw() const {
    mlstm::AdamWOptions options;
    options.lr = optimizer["lr"].get<double>();
    options.beta1 = optimizer["betas"][0].get<double>();
    options.beta2 = optimizer["betas"][1].get<double>();
    options.eps = optimizer["eps"].get<double>();
    options.weight_decay = optimizer["weight_decay"].get<double>();
    return options;
  }
};

template <typename T>
std::vector<std::string> names_of(const std::vector<mlstm::Parameter<T>*>& group) {
  std::vector<std::string> names;
  for (const auto* param : group) names.push_back(param->name());
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> sorted(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  return names;
}

template <typename T>
void check_first_gradients(const TrainingGolden& golden) {
  mlstm::LanguageModel<T> model = golden.model<T>();
  const double loss =
      model.forward_backward(TrainingGolden::batch(golden.tokens, 0),
                             TrainingGolden::batch(golden.targets, 0), 1.0, golden.loss_options);
  const auto losses = golden.file.read<double, 1>("losses");
  const auto losses_f32 = golden.file.read<double, 1>("losses_f32");
  const double reference_loss_error = std::abs(losses_f32(0) - losses(0));
  const double loss_budget =
      mlstm::test::golden_budget<T>(reference_loss_error, std::abs(losses(0)));
  INFO("loss " << loss << " vs " << losses(0) << ", budget " << loss_budget);
  CHECK(std::abs(loss - losses(0)) <= loss_budget);
  for (auto& param : model.registry()) {
    const Tensor<double, 1> expected = golden.flat<double>("grad." + param.name(), param);
    const Tensor<double, 1> reference_f32 = golden.flat<double>("grad_f32." + param.name(), param);
    const double scale = mlstm::test::magnitude(expected);
    const double reference_error = mlstm::test::max_difference(reference_f32, expected).max_abs;
    const double budget = mlstm::test::golden_budget<T>(reference_error, scale);
    const mlstm::ConstTensorMap<T, 1> actual(param.grad_data(), param.size());
    INFO(param.name());
    MLSTM_CHECK_CLOSE(actual, expected, budget);
    mlstm::test::report_golden("training gradient " + param.name(), actual, expected, scale,
                               reference_error);
  }
}

template <typename T>
void check_steps(const TrainingGolden& golden) {
  mlstm::LanguageModel<T> model = golden.model<T>();
  const auto groups = mlstm::get_weight_decay_optim_groups(
      model.registry(), mlstm::lm_weight_decay_options(model.config()));
  CHECK(names_of(groups.decay) ==
        sorted(nlohmann::json::parse(golden.file.metadata("decay_names"))));
  CHECK(names_of(groups.no_decay) ==
        sorted(nlohmann::json::parse(golden.file.metadata("no_decay_names"))));
  mlstm::AdamW<T> optimizer(groups, golden.adamw());
  const double clip = golden.optimizer["clip"].get<double>();
  const auto losses = golden.file.read<double, 1>("losses");
  const auto losses_f32 = golden.file.read<double, 1>("losses_f32");
  const auto norms = golden.file.read<double, 1>("grad_norms");
  const auto norms_f32 = golden.file.read<double, 1>("grad_norms_f32");
  mlstm::test::TrajectoryLoss loss_trajectory, norm_trajectory;
  for (Index step = 0; step < golden.steps(); ++step) {
    optimizer.zero_grad();
    const double loss = model.forward_backward(TrainingGolden::batch(golden.tokens, step),
                                               TrainingGolden::batch(golden.targets, step), 1.0,
                                               golden.loss_options);
    const double norm = mlstm::clip_grad_norm(model.registry(), clip);
    optimizer.step();
    // double: within 1e-5 relative (the bar), and in fact to rounding.
    const double reference_error = std::abs(losses_f32(step) - losses(step));
    const double reference_norm_error = std::abs(norms_f32(step) - norms(step));
    const double budget =
        mlstm::test::golden_budget<T>(loss_trajectory.add(reference_error), std::abs(losses(step)));
    const double norm_budget =
        mlstm::test::golden_budget<T>(norm_trajectory.add(reference_norm_error), norms(step));
    INFO("step " << step << ": loss " << loss << " vs " << losses(step) << " (relative "
                 << std::abs(loss - losses(step)) / std::abs(losses(step)) << "), budget " << budget
                 << "; norm " << norm << " vs " << norms(step) << ", budget " << norm_budget);
    CHECK(std::abs(loss - losses(step)) <= budget);
    CHECK(std::abs(norm - norms(step)) <= norm_budget);
    if (std::getenv("MLSTM_GOLDEN_REPORT") != nullptr) {
      std::printf(
          "training step %ld (%s): loss relative error %.3g (reference float32 %.3g), gradient "
          "norm %.3g (reference float32 %.3g)\n",
          static_cast<long>(step), std::is_same_v<T, double> ? "double" : "float",
          std::abs(loss - losses(step)) / std::abs(losses(step)),
          reference_error / std::abs(losses(step)), std::abs(norm - norms(step)) / norms(step),
          reference_norm_error / norms(step));
    }
  }
}

// A model of two blocks of two heads, small enough for many runs.
mlstm::LMModelConfig two_block_config(Index context_length) {
  mlstm::LMModelConfig config;
  config.vocab_size = 40;
  config.embedding_dim = 32;
  config.num_heads = 2;
  config.num_blocks = 2;
  config.context_length = context_length;
  return config;
}

}  // namespace

TEST_CASE("step-0 loss and gradients match the reference's autograd", "[training][golden]") {
  const TrainingGolden golden;
  SECTION("double") { check_first_gradients<double>(golden); }
  SECTION("float") { check_first_gradients<float>(golden); }
}

TEST_CASE("ten AdamW steps with clipping match the reference's losses", "[training][golden]") {
  const TrainingGolden golden;
  SECTION("double") { check_steps<double>(golden); }
  SECTION("float") { check_steps<float>(golden); }
}

TEST_CASE("forward_backward's kept workspace gives a fresh one's results, also across shapes",
          "[training][workspace]") {
  const mlstm::LMModelConfig config = two_block_config(24);
  for (const auto kernel : {mlstm::SequenceKernel::parallel, mlstm::SequenceKernel::chunkwise}) {
    CAPTURE(static_cast<int>(kernel));
    mlstm::KernelOptions options;
    options.forward_kernel = kernel;
    options.chunk_size = 8;
    // `kept` keeps its workspace from call to call; `fresh` starts each call without one.
    mlstm::LanguageModel<float> kept(config, options), fresh(config, options);
    mlstm::Generator generator(3);
    kept.reset_parameters(generator);
    for (auto& param : kept.registry()) {
      const auto* values = param.data();
      std::copy(values, values + param.size(), fresh.registry().find(param.name())->data());
    }
    // Shapes (B, S): repeated, then larger, smaller and with other factors of the same size.
    const Index shapes[][2] = {{2, 12}, {2, 12}, {3, 7}, {1, 24}, {4, 6}, {2, 12}};
    for (const auto& shape : shapes) {
      CAPTURE(shape[0], shape[1]);
      Tensor<int, 2> tokens(shape[0], shape[1]), targets(shape[0], shape[1]);
      for (Index i = 0; i < tokens.size(); ++i) {
        tokens.data()[i] = static_cast<int>((i * 7 + shape[1]) % config.vocab_size);
        targets.data()[i] = static_cast<int>((i * 11 + 3) % config.vocab_size);
      }
      for (auto* model : {&kept, &fresh})
        for (auto& param : model->registry()) param.zero_grad();
      fresh.release_training_workspace();
      const double kept_loss = kept.forward_backward(tokens, targets);
      const double fresh_loss = fresh.forward_backward(tokens, targets);
      CHECK(kept_loss == fresh_loss);
      for (const auto& param : kept.registry()) {
        INFO(param.name());
        const float* expected = fresh.registry().find(param.name())->grad_data();
        CHECK(std::equal(param.grad_data(), param.grad_data() + param.size(), expected));
      }
    }
  }
}

// The training cell scans the gates (which a non-finite q, k or v makes non-finite) before its
// parallel kernel, and dh before that kernel's backward; the chunkwise kernel scans its inputs
// and dh chunk by chunk. A non-finite weight that reaches one of them is named as the kernels
// name their inputs, on 1 and 2 threads: in q, v or the forget gate's bias in the forward, and
// in the last block's proj_down (after its cell) in dh, in the backward.
TEST_CASE("forward_backward names a non-finite input of a block's cell", "[training][errors]") {
  const mlstm::LMModelConfig config = two_block_config(16);
  struct Case {
    const char* parameter;
    const char* input;
  };
  const std::string block = "xlstm_block_stack.blocks.1.xlstm.";
  for (const Case& bad :
       {Case{"q_proj.weight", "q"}, Case{"v_proj.weight", "v"},
        Case{"mlstm_cell.fgate.bias", "fgate_preact"}, Case{"proj_down.weight", "dh"}}) {
    for (const auto kernel : {mlstm::SequenceKernel::parallel, mlstm::SequenceKernel::chunkwise}) {
      for (const int threads : {1, 2}) {
        CAPTURE(bad.parameter, static_cast<int>(kernel), threads);
        mlstm::KernelOptions options;
        options.forward_kernel = kernel;
        options.chunk_size = 8;
        options.num_threads = threads;
        mlstm::LanguageModel<float> model(config, options);
        mlstm::Generator generator(5);
        model.reset_parameters(generator);
        Tensor<int, 2> tokens(2, 16), targets(2, 16);
        for (Index i = 0; i < tokens.size(); ++i) {
          tokens.data()[i] = static_cast<int>(i % config.vocab_size);
          targets.data()[i] = static_cast<int>((i * 3 + 1) % config.vocab_size);
        }
        CHECK_NOTHROW(model.forward_backward(tokens, targets));
        auto* parameter = model.registry().find(block + bad.parameter);
        REQUIRE(parameter != nullptr);
        parameter->data()[parameter->size() - 1] = NAN;
        std::string argument;
        const std::string text = mlstm::test::message_of<mlstm::ValueError>(
            [&] { model.forward_backward(tokens, targets); }, &argument);
        CHECK(argument == bad.input);
        CHECK_THAT(text, Catch::Contains("expected finite values"));
      }
    }
  }
}

TEST_CASE("clip_grad_norm scales to max_norm, only above it", "[training]") {
  mlstm::Registry<double> registry;
  auto& a = registry.add("a", {2});
  auto& b = registry.add("b", {1});
  a.grad_data()[0] = 3;
  a.grad_data()[1] = 0;
  b.grad_data()[0] = 4;
  CHECK(mlstm::clip_grad_norm(registry, 10.0) == 5.0);
  CHECK(b.grad_data()[0] == 4.0);
  CHECK(mlstm::clip_grad_norm(registry, 1.0) == 5.0);
  CHECK(mlstm::global_grad_norm(registry) == Approx(1.0 / (1.0 + 2e-7)).epsilon(1e-12));
  CHECK_THROWS_AS(mlstm::clip_grad_norm(registry, 0.0), mlstm::ValueError);
}

TEST_CASE("the global gradient norm sums every value, the same on any thread count", "[training]") {
  // Sizes off the eight running sums and across pieces of 2^15 values, on one thread and on
  // several (3 asked for: the pool may give so few pieces fewer); the clipped values against the
  // scale applied one by one.
  mlstm::Registry<float> registry;
  const Index sizes[] = {1, 7, 9, 40001, 100003};
  long double sum = 0;
  for (const Index size : sizes) {
    auto& param = registry.add("p" + std::to_string(size), {size});
    for (Index i = 0; i < size; ++i) {
      param.grad_data()[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i + size)));
      sum += static_cast<long double>(param.grad_data()[i]) * param.grad_data()[i];
    }
  }
  const double expected = static_cast<double>(std::sqrt(sum));
  const int saved_threads = mlstm::get_num_threads();
  mlstm::set_num_threads(1);
  const double one = mlstm::global_grad_norm(registry);
  mlstm::set_num_threads(3);
  const double three = mlstm::global_grad_norm(registry);
  std::vector<float> before(registry.find("p100003")->grad_data(),
                            registry.find("p100003")->grad_data() + 100003);
  CHECK(mlstm::clip_grad_norm(registry, 1.0) == three);
  mlstm::set_num_threads(saved_threads);
  CHECK(one == three);
  CHECK(std::abs(one - expected) <= 1e-13 * expected);
  const float scale = static_cast<float>(1.0 / (three + 1e-6));
  const float* clipped = registry.find("p100003")->grad_data();
  Index differing = 0;
  for (Index i = 0; i < 100003; ++i)
    differing += clipped[i] != before[static_cast<size_t>(i)] * scale;
  CHECK(differing == 0);
}

TEST_CASE("warm-up then cosine learning rate", "[training]") {
  mlstm::WarmupCosineSchedule schedule;
  schedule.max_lr = 1.0;
  schedule.min_lr = 0.1;
  schedule.warmup = 4;
  schedule.decay_steps = 14;
  schedule.validate();
  CHECK(schedule.lr(0) == 0.25);
  CHECK(schedule.lr(3) == 1.0);
  CHECK(schedule.lr(4) == 1.0);
  CHECK(schedule.lr(9) == Approx(0.55).epsilon(1e-12));
  CHECK(schedule.lr(14) == Approx(0.1).epsilon(1e-12));
  CHECK(schedule.lr(100) == Approx(0.1).epsilon(1e-12));
  schedule.min_lr = 2.0;
  CHECK_THROWS_AS(schedule.validate(), mlstm::ValueError);
}

namespace {

// `steps` training steps of the golden case from `first` on, as check_steps runs them.
void train_steps(const TrainingGolden& golden, mlstm::LanguageModel<float>& model,
                 mlstm::AdamW<float>& optimizer, Index first, Index steps) {
  for (Index step = first; step < first + steps; ++step) {
    optimizer.zero_grad();
    model.forward_backward(TrainingGolden::batch(golden.tokens, step),
                           TrainingGolden::batch(golden.targets, step), 1.0, golden.loss_options);
    mlstm::clip_grad_norm(model.registry(), golden.optimizer["clip"].get<double>());
    optimizer.step();
  }
}

mlstm::AdamW<float> optimizer_of(const TrainingGolden& golden, mlstm::LanguageModel<float>& model) {
  return mlstm::AdamW<float>(mlstm::get_weight_decay_optim_groups(
                                 model.registry(), mlstm::lm_weight_decay_options(model.config())),
                             golden.adamw());
}

}  // namespace

TEST_CASE("resuming from a training checkpoint continues bit for bit", "[training][checkpoint]") {
  const TrainingGolden golden;
  const std::string directory =
      (std::filesystem::temp_directory_path() / "mlstm_test_training_checkpoint").string();
  std::filesystem::remove_all(directory);

  mlstm::LanguageModel<float> straight = golden.model<float>();
  mlstm::AdamW<float> straight_optimizer = optimizer_of(golden, straight);
  train_steps(golden, straight, straight_optimizer, 0, 6);

  {
    mlstm::LanguageModel<float> first = golden.model<float>();
    mlstm::AdamW<float> first_optimizer = optimizer_of(golden, first);
    train_steps(golden, first, first_optimizer, 0, 3);
    mlstm::save_training_checkpoint(directory, first.registry(), first_optimizer, {{"step", "3"}});
  }
  mlstm::LanguageModel<float> resumed(golden.config);  // zero parameters until loaded
  mlstm::AdamW<float> resumed_optimizer = optimizer_of(golden, resumed);
  const auto metadata =
      mlstm::load_training_checkpoint(directory, resumed.registry(), resumed_optimizer);
  CHECK(metadata.at("step") == "3");
  CHECK(resumed_optimizer.step_count() == 3);
  train_steps(golden, resumed, resumed_optimizer, 3, 3);

  for (const auto& param : straight.registry()) {
    const auto& other = resumed.registry().get(param.name());
    INFO(param.name());
    CHECK(std::equal(param.data(), param.data() + param.size(), other.data()));
    CHECK(std::equal(straight_optimizer.exp_avg_sq(param).data(),
                     straight_optimizer.exp_avg_sq(param).data() + param.size(),
                     resumed_optimizer.exp_avg_sq(other).data()));
  }

  // An optimizer of another model does not fit: nothing is written.
  mlstm::LMModelConfig bigger = golden.config;
  bigger.num_blocks += 1;
  mlstm::LanguageModel<float> other(bigger);
  mlstm::AdamW<float> other_optimizer = optimizer_of(golden, other);
  CHECK_THROWS_AS(mlstm::load_training_checkpoint(directory, other.registry(), other_optimizer),
                  mlstm::ValueError);
  CHECK(other_optimizer.step_count() == 0);
  for (const auto& param : other.registry())
    CHECK(std::all_of(param.data(), param.data() + param.size(), [](float x) { return x == 0; }));
  std::filesystem::remove_all(directory);
}
