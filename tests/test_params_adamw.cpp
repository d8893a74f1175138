// AdamW over the weight-decay groups against torch.optim.AdamW (golden, several steps), and its
// properties and errors.
#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include <catch2/catch.hpp>

#include <mlstm/mlstm.hpp>

#include "params/golden_file.hpp"
#include "support/tolerance.hpp"

namespace {

using mlstm::AdamW;
using mlstm::AdamWOptions;
using mlstm::Registry;

const char* const parameter_names[] = {"w2", "w3", "b"};

template <typename T>
void run_golden_case(const std::string& name, const std::string& tag) {
  const mlstm::test::GoldenFile golden("params_adamw.safetensors");
  const auto hyper = golden.json(name);
  const auto params = golden.json("params");

  Registry<T> registry;
  mlstm::WeightDecayGroups<T> groups;
  for (const char* pname : parameter_names) {
    const std::string prefix = name + "." + tag + "." + pname;
    auto& param = registry.add(pname, params.at(pname).at("shape").get<mlstm::Shape>());
    const auto initial = golden.values<T>(prefix + ".initial");
    std::copy(initial.begin(), initial.end(), param.data());
    (params.at(pname).at("decay").get<bool>() ? groups.decay : groups.no_decay).push_back(&param);
  }
  AdamWOptions options;
  const auto lrs = hyper.at("lrs").get<std::vector<double>>();
  options.lr = lrs.at(0);
  options.beta1 = hyper.at("beta1").get<double>();
  options.beta2 = hyper.at("beta2").get<double>();
  options.eps = hyper.at("eps").get<double>();
  options.weight_decay = hyper.at("weight_decay").get<double>();
  options.amsgrad = hyper.at("amsgrad").get<bool>();
  options.maximize = hyper.at("maximize").get<bool>();
  AdamW<T> optimizer(groups, options);

  const int steps = hyper.at("steps").get<int>();
  for (int k = 0; k < steps; ++k) {
    optimizer.set_lr(lrs.at(static_cast<std::size_t>(k)));
    for (const char* pname : parameter_names) {
      const auto grad =
          golden.values<T>(name + "." + tag + "." + pname + ".grad" + std::to_string(k));
      std::copy(grad.begin(), grad.end(), registry.get(pname).grad_data());
    }
    optimizer.step();
    for (const char* pname : parameter_names) {
      const std::string key = name + "." + tag + "." + pname + ".step" + std::to_string(k);
      const auto expected = golden.values<T>(key);
      const auto& param = registry.get(pname);
      const mlstm::ConstTensorMap<T, 1> actual(param.data(), param.size());
      const mlstm::ConstTensorMap<T, 1> reference(expected.data(),
                                                  static_cast<mlstm::Index>(expected.size()));
      // torch computes in the parameter's dtype as we do, but its vectorized kernels fuse some
      // multiply-adds: the results differ by rounding only.
      const double budget = (std::is_same_v<T, double> ? mlstm::test::double_relative
                                                       : mlstm::test::float_relative_floor) *
                            mlstm::test::magnitude(reference);
      INFO(key);
      MLSTM_CHECK_CLOSE(actual, reference, budget);
    }
  }
  CHECK(optimizer.step_count() == steps);
}

}  // namespace

TEST_CASE("params adamw: matches torch.optim.AdamW on decay / no_decay groups",
          "[params][adamw][golden]") {
  for (const std::string name : {"default", "amsgrad_schedule", "maximize"}) {
    SECTION(name) {
      run_golden_case<double>(name, "f64");
      run_golden_case<float>(name, "f32");
    }
  }
}

TEST_CASE("params adamw: decoupled decay acts on the decay group only", "[params][adamw]") {
  Registry<double> registry;
  auto& weight = registry.add("proj.weight", {2, 2});
  auto& bias = registry.add("proj.bias", {2});
  weight.flat().setConstant(2.0);
  bias.flat().setConstant(3.0);
  const auto groups = mlstm::get_weight_decay_optim_groups(registry);
  REQUIRE(groups.decay.size() == 1);
  AdamWOptions options;
  options.lr = 0.1;
  options.weight_decay = 0.5;
  AdamW<double> optimizer(groups, options);
  optimizer.step();  // zero gradients: m = 0, so only the decay moves anything
  CHECK(weight.flat()(0) == 2.0 * (1.0 - 0.1 * 0.5));
  CHECK(bias.flat()(0) == 3.0);
  CHECK(optimizer.exp_avg(weight)(0) == 0.0);
  CHECK(optimizer.exp_avg_sq(bias)(1) == 0.0);
}

TEST_CASE("params adamw: first step moves each element by lr against its gradient's sign",
          "[params][adamw]") {
  // With bias correction, step 1 gives m_hat = g, v_hat = g^2: p -= lr * g / (|g| + eps).
  Registry<double> registry;
  auto& p = registry.add("p", {3});
  const double g[] = {0.5, -2.0, 1e-3};
  std::copy(g, g + 3, p.grad_data());
  mlstm::WeightDecayGroups<double> groups;
  groups.no_decay.push_back(&p);
  AdamWOptions options;
  options.lr = 0.01;
  AdamW<double> optimizer(groups, options);
  optimizer.step();
  for (int i = 0; i < 3; ++i) {
    const double expected = -0.01 * g[i] / (std::abs(g[i]) + options.eps);
    CHECK(std::abs(p.flat()(i) - expected) <= 1e-15);
  }
  optimizer.zero_grad();
  CHECK(p.grad_flat()(1) == 0.0);
}

TEST_CASE("params adamw: frozen parameters are left alone", "[params][adamw]") {
  Registry<float> registry;
  auto& p = registry.add("p.weight", {2, 2});
  p.flat().setConstant(1.0f);
  p.grad_flat().setConstant(1.0f);
  mlstm::WeightDecayGroups<float> groups;
  groups.decay.push_back(&p);
  AdamW<float> optimizer(groups);
  p.set_requires_grad(false);
  optimizer.step();
  CHECK(p.flat()(0) == 1.0f);
}

TEST_CASE("params adamw: invalid options and groups are ValueErrors", "[params][adamw][errors]") {
  Registry<float> registry;
  auto& p = registry.add("p.weight", {2});
  mlstm::WeightDecayGroups<float> groups;
  groups.decay.push_back(&p);
  const auto expect = [&](auto&& change, const std::string& argument) {
    AdamWOptions options;
    change(options);
    try {
      AdamW<float> optimizer(groups, options);
      FAIL("expected a ValueError naming " << argument);
    } catch (const mlstm::ValueError& error) {
      CHECK(error.argument() == argument);
    }
  };
  expect([](AdamWOptions& o) { o.lr = -1e-3; }, "options.lr");
  expect([](AdamWOptions& o) { o.beta1 = 1.0; }, "options.beta1");
  expect([](AdamWOptions& o) { o.beta2 = -0.1; }, "options.beta2");
  expect([](AdamWOptions& o) { o.eps = -1.0; }, "options.eps");
  expect([](AdamWOptions& o) { o.weight_decay = NAN; }, "options.weight_decay");

  auto twice = groups;
  twice.no_decay.push_back(&p);
  try {
    AdamW<float> optimizer(twice);
    FAIL("expected a ValueError");
  } catch (const mlstm::ValueError& error) {
    CHECK(std::string(error.what()) == "groups: parameters appear more than once: [p.weight]");
  }
  auto null = groups;
  null.decay.push_back(nullptr);
  CHECK_THROWS_AS(AdamW<float>(null), mlstm::ValueError);

  AdamW<float> optimizer(groups);
  CHECK_THROWS_AS(optimizer.set_lr(INFINITY), mlstm::ValueError);
  auto& other = registry.add("other", {1});
  CHECK_THROWS_AS(optimizer.exp_avg(other), mlstm::ValueError);
}

TEST_CASE("params adamw: clipping within the step gives clip_grad_norm then step, bit for bit",
          "[params][adamw]") {
  // Two registries with the same values and gradients (a norm of about 13, clipped to 1), over
  // three steps, for each of amsgrad and maximize on and off; one clips its buffers first, the
  // other passes the factor to step and keeps its gradients. The moments are compared as well as
  // the parameters, which depend little on the gradients' scale.
  for (int variant = 0; variant < 4; ++variant) {
    Registry<float> clipped, fused;
    for (Registry<float>* registry : {&clipped, &fused}) {
      auto& w = registry->add("w.weight", {5, 7});
      auto& b = registry->add("b", {3});
      for (mlstm::Index i = 0; i < w.size(); ++i)
        w.data()[i] = std::sin(0.3f * static_cast<float>(i));
      for (mlstm::Index i = 0; i < b.size(); ++i) b.data()[i] = 0.1f * static_cast<float>(i);
    }
    AdamWOptions options;
    options.weight_decay = 0.1;
    options.amsgrad = (variant & 1) != 0;
    options.maximize = (variant & 2) != 0;
    const auto optimizer_of = [&](Registry<float>& registry) {
      mlstm::WeightDecayGroups<float> groups;
      groups.decay.push_back(&registry.get("w.weight"));
      groups.no_decay.push_back(&registry.get("b"));
      return AdamW<float>(groups, options);
    };
    AdamW<float> clipping = optimizer_of(clipped), fusing = optimizer_of(fused);
    const auto same = [](const auto& x, const auto& y) {
      return x.size() == y.size() && std::equal(x.data(), x.data() + x.size(), y.data());
    };
    for (int step = 0; step < 3; ++step) {
      for (Registry<float>* registry : {&clipped, &fused})
        for (mlstm::Parameter<float>& param : *registry)
          for (mlstm::Index i = 0; i < param.size(); ++i)
            param.grad_data()[i] = 3.0f * std::cos(static_cast<float>(i + step));
      const double norm = mlstm::clip_grad_norm(clipped, 1.0);
      clipping.step();
      const double factor = mlstm::clip_coefficient(mlstm::global_grad_norm(fused), 1.0);
      CHECK(factor < 1.0);
      fusing.step(factor);
      CHECK(mlstm::global_grad_norm(fused) == norm);  // the buffers as they were
      for (const char* name : {"w.weight", "b"}) {
        const auto& a = clipped.get(name);
        const auto& c = fused.get(name);
        INFO(name << ", step " << step << ", amsgrad " << options.amsgrad << ", maximize "
                  << options.maximize);
        CHECK(std::equal(a.data(), a.data() + a.size(), c.data()));
        CHECK(same(clipping.exp_avg(a), fusing.exp_avg(c)));
        CHECK(same(clipping.exp_avg_sq(a), fusing.exp_avg_sq(c)));
        CHECK(same(clipping.max_exp_avg_sq(a), fusing.max_exp_avg_sq(c)));
      }
    }
  }
}

TEST_CASE("params adamw: an invalid gradient scale is a ValueError, nothing updated",
          "[params][adamw][errors]") {
  Registry<float> registry;
  auto& p = registry.add("p", {2});
  p.grad_flat().setConstant(1.0f);
  mlstm::WeightDecayGroups<float> groups;
  groups.no_decay.push_back(&p);
  AdamW<float> optimizer(groups);
  for (const double scale : {-1.0, double(NAN), double(INFINITY), 1e300}) {
    try {
      optimizer.step(scale);
      FAIL("expected a ValueError for " << scale);
    } catch (const mlstm::ValueError& error) {
      CHECK(error.argument() == "gradient_scale");
    }
  }
  CHECK(optimizer.step_count() == 0);
  CHECK(p.flat()(0) == 0.0f);
  // A scale of 0 (clip_coefficient's factor can underflow to it) is a step without gradients.
  optimizer.step(0.0);
  CHECK(optimizer.step_count() == 1);
  CHECK(mlstm::clip_coefficient(5.0, 10.0) == 1.0);
  CHECK(mlstm::clip_coefficient(double(NAN), 1.0) == 1.0);
  CHECK_THROWS_AS(mlstm::clip_coefficient(1.0, 0.0), mlstm::ValueError);
}
