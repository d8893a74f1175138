// An init plan: the init calls a model makes, as data. Each call names a parameter, one of the
// init functions of init.hpp and its arguments (an InitRule); a plan can be printed, compared
// with the calls the reference makes, and applied in order to a registry. A model's plan comes
// from its parameter table (parameter_table.hpp: ParameterTable::init_plan).
//
//   std::vector<mlstm::InitCall> plan = {
//       {"token_embedding.weight", mlstm::InitRule::small_init(128)},
//       {"blocks.0.mlstm_cell.fgate.bias", mlstm::InitRule::bias_linspace(3.0, 6.0)}};
//   mlstm::Generator gen(0);
//   mlstm::apply_init_plan(plan, registry, gen);
#pragma once

#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "mlstm/params/generator.hpp"
#include "mlstm/params/init.hpp"
#include "mlstm/params/registry.hpp"

namespace mlstm {

enum class InitScheme { zeros, ones, normal, uniform, bias_linspace, small_init, wang };

// Where the reference makes the call: in reset_parameters(), or only while constructing the
// module (a parameter that reset_parameters leaves alone keeps the value it got then).
enum class InitStage { reset_parameters, construction };

inline const char* to_string(InitScheme scheme) {
  switch (scheme) {
    case InitScheme::zeros: return "zeros_";
    case InitScheme::ones: return "ones_";
    case InitScheme::normal: return "normal_";
    case InitScheme::uniform: return "uniform_";
    case InitScheme::bias_linspace: return "bias_linspace_init_";
    case InitScheme::small_init: return "small_init_init_";
    case InitScheme::wang: return "wang_init_";
  }
  return "unknown";
}

inline const char* to_string(InitStage stage) {
  return stage == InitStage::reset_parameters ? "reset_parameters" : "construction";
}

// What one init call does, without the parameter it acts on: the scheme, its arguments and
// the stage. A parameter table (parameter_table.hpp) gives each parameter its rule.
struct InitRule {
  InitScheme scheme = InitScheme::zeros;
  InitStage stage = InitStage::reset_parameters;
  // Arguments; only those of `scheme` are used.
  Index dim = 0;         // small_init, wang
  Index num_blocks = 0;  // wang
  double mean = 0.0;     // normal
  double std_dev = 0.0;  // normal (the reference's std)
  double low = 0.0;      // uniform
  double high = 0.0;     // uniform
  double start = 0.0;    // bias_linspace
  double end = 0.0;      // bias_linspace

  static InitRule zeros() { return with_scheme(InitScheme::zeros); }
  static InitRule ones() { return with_scheme(InitScheme::ones); }
  static InitRule normal(double mean, double std_dev) {
    InitRule rule = with_scheme(InitScheme::normal);
    rule.mean = mean;
    rule.std_dev = std_dev;
    return rule;
  }
  static InitRule uniform(double low, double high) {
    InitRule rule = with_scheme(InitScheme::uniform);
    rule.low = low;
    rule.high = high;
    return rule;
  }
  static InitRule bias_linspace(double start, double end) {
    InitRule rule = with_scheme(InitScheme::bias_linspace);
    rule.start = start;
    rule.end = end;
    return rule;
  }
  static InitRule small_init(Index dim) {
    InitRule rule = with_scheme(InitScheme::small_init);
    rule.dim = dim;
    return rule;
  }
  static InitRule wang(Index dim, Index num_blocks) {
    InitRule rule = with_scheme(InitScheme::wang);
    rule.dim = dim;
    rule.num_blocks = num_blocks;
    return rule;
  }

  InitRule at_stage(InitStage new_stage) const {
    InitRule rule = *this;
    rule.stage = new_stage;
    return rule;
  }

  // The call as code, e.g. "wang_init_(dim=128, num_blocks=2)".
  std::string describe() const {
    std::ostringstream text;
    text << to_string(scheme) << "(";
    switch (scheme) {
      case InitScheme::zeros:
      case InitScheme::ones: break;
      case InitScheme::normal: text << "mean=" << mean << ", std=" << std_dev; break;
      case InitScheme::uniform: text << "low=" << low << ", high=" << high; break;
      case InitScheme::bias_linspace: text << "start=" << start << ", end=" << end; break;
      case InitScheme::small_init: text << "dim=" << dim; break;
      case InitScheme::wang: text << "dim=" << dim << ", num_blocks=" << num_blocks; break;
    }
    text << ")";
    return text.str();
  }

 private:
  static InitRule with_scheme(InitScheme scheme) {
    InitRule rule;
    rule.scheme = scheme;
    return rule;
  }
};

// A rule applied to the parameter registered under `name` (its full name in the registry).
struct InitCall : InitRule {
  std::string name;

  InitCall(std::string name, const InitRule& rule) : InitRule(rule), name(std::move(name)) {}
};

namespace detail {

template <typename T>
void check_init_call(const InitCall& call, const Parameter<T>& param) {
  switch (call.scheme) {
    case InitScheme::zeros:
    case InitScheme::ones: break;
    case InitScheme::normal: check_normal_arguments(call.mean, call.std_dev); break;
    case InitScheme::uniform: check_uniform_arguments(call.low, call.high); break;
    case InitScheme::bias_linspace:
      check_bias_linspace_arguments(param.rank(), param.name(), mlstm::shape_string(param.shape()),
                                    call.start, call.end);
      break;
    case InitScheme::small_init: expect_positive_integer(call.dim, "dim"); break;
    case InitScheme::wang: check_wang_arguments(call.dim, call.num_blocks); break;
  }
}

}  // namespace detail

// Runs one call on `param` (its name is not consulted).
template <typename T>
void apply_init(const InitCall& call, Parameter<T>& param, Generator& gen) {
  switch (call.scheme) {
    case InitScheme::zeros: zeros_(param); break;
    case InitScheme::ones: ones_(param); break;
    case InitScheme::normal: normal_(param, call.mean, call.std_dev, gen); break;
    case InitScheme::uniform: uniform_(param, call.low, call.high, gen); break;
    case InitScheme::bias_linspace: bias_linspace_init_(param, call.start, call.end); break;
    case InitScheme::small_init: small_init_init_(param, call.dim, gen); break;
    case InitScheme::wang: wang_init_(param, call.dim, call.num_blocks, gen); break;
  }
}

// Runs every call in order on the registry's parameter of that name, drawing from `gen`. Every
// name is looked up and every call's arguments checked first: on an error nothing is written.
template <typename T>
void apply_init_plan(const std::vector<InitCall>& plan, Registry<T>& registry, Generator& gen) {
  std::vector<Parameter<T>*> targets;
  targets.reserve(plan.size());
  for (const InitCall& call : plan) {
    Parameter<T>& param = registry.get(call.name);
    detail::check_init_call(call, param);
    targets.push_back(&param);
  }
  for (std::size_t i = 0; i < plan.size(); ++i) apply_init(plan[i], *targets[i], gen);
}

}  // namespace mlstm
