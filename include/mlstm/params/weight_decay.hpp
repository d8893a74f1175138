// Weight-decay groups: which parameters an optimizer decays and which it leaves alone.
//
//   auto groups = mlstm::get_weight_decay_optim_groups(registry);           // (decay, no_decay)
//   auto names = mlstm::get_weight_decay_optim_group_param_names(registry);
//   mlstm::AdamW<float> optimizer(groups, adamw_options);
//
// A parameter is placed by the rule of `options.rule`, looking at its name relative to the
// scope (as the reference looks at a module's named_parameters()):
//
//   WeightDecayRule::name    (default, the reference's current rule) decays when the name
//                            contains "weight" and does not contain "norm"
//   WeightDecayRule::rank    (the rule of xlstm 1.0.x) decays rank > 1, not rank 1; a rank-0
//                            parameter is a ValueError
//   WeightDecayRule::custom  options.decays(name, shape) decides
//
// then `options.overrides` ((name, decay) pairs) put named parameters in the group given,
// whatever the rule says; a model's parameter table lists them (weight_decay_options in
// parameter_table.hpp), e.g. the language model's for its token embedding. An override acts on
// the parameter, so a tied parameter follows it whichever of its names is given. Only
// parameters that require a gradient are placed, as in the reference (which would also add a
// frozen token embedding to a group; here a frozen parameter stays out, so that an optimizer
// never touches it).
//
// Groups list parameters in registration order. Group sets are checked as the reference checks
// them, with errors (mlstm::ValueError) that list the offending names: no parameter in both
// groups or twice in one, none that requires a gradient left out, none from outside the module.
// combine_weight_decay_optim_groups joins the groups of several sub-modules into one pair and
// checks it against the whole module (the reference's _get_weight_decay_optim_groups_for_modules
// followed by its check).
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "mlstm/detail/text.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/params/registry.hpp"

namespace mlstm {

enum class WeightDecayRule { name, rank, custom };

struct WeightDecayOptions {
  WeightDecayRule rule = WeightDecayRule::name;
  // Used with WeightDecayRule::custom: true = decay. Gets the name relative to the scope.
  std::function<bool(const std::string& name, const Shape& shape)> decays;
  // (name relative to the scope, decay?) applied after the rule.
  std::vector<std::pair<std::string, bool>> overrides;
};

template <typename T>
struct WeightDecayGroups {
  std::vector<Parameter<T>*> decay;
  std::vector<Parameter<T>*> no_decay;
};

struct WeightDecayGroupNames {
  std::vector<std::string> decay;
  std::vector<std::string> no_decay;
};

namespace detail {

inline bool decays_by_rule(const std::string& name, const Shape& shape,
                           const WeightDecayOptions& options) {
  switch (options.rule) {
    case WeightDecayRule::name:
      return name.find("weight") != std::string::npos && name.find("norm") == std::string::npos;
    case WeightDecayRule::rank:
      if (shape.empty()) {
        throw ValueError(name, "the rank rule places parameters of rank >= 1 only, got shape ()");
      }
      return shape.size() > 1;
    case WeightDecayRule::custom:
    default: return options.decays(name, shape);
  }
}

inline std::string name_list(const std::vector<std::string>& names) {
  return "[" + list_string(names) + "]";
}

}  // namespace detail

// Checks a pair of groups against the module `scope`: every parameter of the groups is in the
// scope, none is in both groups or twice in one, and every parameter of the scope that
// requires a gradient is in a group. ValueError listing the names otherwise.
template <typename T>
void check_weight_decay_optim_groups(const ParameterScope<T>& scope,
                                     const WeightDecayGroups<T>& groups) {
  const auto named = scope.named_parameters();
  std::unordered_set<const Parameter<T>*> in_scope;
  for (const auto& entry : named) in_scope.insert(entry.parameter);

  std::unordered_map<const Parameter<T>*, int> group_of;  // 1 decay, 2 no_decay, 3 both
  std::vector<std::string> twice, both, foreign;
  for (const auto& [members, bit] : {std::pair{&groups.decay, 1}, std::pair{&groups.no_decay, 2}}) {
    std::unordered_set<const Parameter<T>*> seen;
    for (const Parameter<T>* param : *members) {
      if (param == nullptr) throw ValueError("groups", "holds a null parameter");
      if (!seen.insert(param).second) twice.push_back(param->name());
      int& where = group_of[param];
      if (where == 0 && in_scope.count(param) == 0) foreign.push_back(param->name());
      if (where != 0 && where != bit) both.push_back(param->name());
      where |= bit;
    }
  }
  std::vector<std::string> unassigned;
  for (const auto& entry : named) {
    if (entry.parameter->requires_grad() && group_of.count(entry.parameter) == 0)
      unassigned.push_back(entry.parameter->name());
  }
  if (!both.empty()) {
    throw ValueError("groups", "parameters in both the decay and the no_decay group: " +
                                   detail::name_list(both));
  }
  if (!twice.empty()) {
    throw ValueError("groups", "parameters listed twice in one group: " + detail::name_list(twice));
  }
  if (!unassigned.empty()) {
    throw ValueError("groups", "parameters that require a gradient but are in neither group: " +
                                   detail::name_list(unassigned));
  }
  if (!foreign.empty()) {
    throw ValueError("groups", "parameters from outside '" + scope.prefix() +
                                   "' in the groups: " + detail::name_list(foreign));
  }
}

// The (decay, no_decay) groups of the parameters of `scope` that require a gradient.
template <typename T>
WeightDecayGroups<T> get_weight_decay_optim_groups(const ParameterScope<T>& scope,
                                                   const WeightDecayOptions& options = {}) {
  if (options.rule == WeightDecayRule::custom && !options.decays) {
    throw ValueError("options.decays", "WeightDecayRule::custom needs a predicate");
  }
  std::unordered_map<const Parameter<T>*, bool> overridden;
  for (const auto& [name, decay] : options.overrides) overridden[&scope.get(name)] = decay;

  WeightDecayGroups<T> groups;
  for (const auto& named : scope.named_parameters()) {
    Parameter<T>* param = named.parameter;
    if (!param->requires_grad()) continue;
    const auto override_entry = overridden.find(param);
    const bool decay = override_entry != overridden.end()
                           ? override_entry->second
                           : detail::decays_by_rule(named.name, param->shape(), options);
    (decay ? groups.decay : groups.no_decay).push_back(param);
  }
  check_weight_decay_optim_groups(scope, groups);
  return groups;
}

template <typename T>
WeightDecayGroups<T> get_weight_decay_optim_groups(Registry<T>& registry,
                                                   const WeightDecayOptions& options = {}) {
  return get_weight_decay_optim_groups(ParameterScope<T>(registry), options);
}

// The names (relative to `scope`, in registration order) of the groups above.
template <typename T>
WeightDecayGroupNames get_weight_decay_optim_group_param_names(
    const ParameterScope<T>& scope, const WeightDecayOptions& options = {}) {
  const WeightDecayGroups<T> groups = get_weight_decay_optim_groups(scope, options);
  const std::unordered_set<const Parameter<T>*> decay(groups.decay.begin(), groups.decay.end());
  const std::unordered_set<const Parameter<T>*> no_decay(groups.no_decay.begin(),
                                                         groups.no_decay.end());
  WeightDecayGroupNames names;
  for (const auto& named : scope.named_parameters()) {
    if (decay.count(named.parameter) != 0) names.decay.push_back(named.name);
    if (no_decay.count(named.parameter) != 0) names.no_decay.push_back(named.name);
  }
  return names;
}

template <typename T>
WeightDecayGroupNames get_weight_decay_optim_group_param_names(
    Registry<T>& registry, const WeightDecayOptions& options = {}) {
  return get_weight_decay_optim_group_param_names(ParameterScope<T>(registry), options);
}

// The groups of several sub-modules of `whole`, concatenated in order, then checked against
// `whole`: a sub-module left out, or two that overlap, is an error naming the parameters.
template <typename T>
WeightDecayGroups<T> combine_weight_decay_optim_groups(
    const ParameterScope<T>& whole, const std::vector<WeightDecayGroups<T>>& parts) {
  WeightDecayGroups<T> combined;
  for (const auto& part : parts) {
    combined.decay.insert(combined.decay.end(), part.decay.begin(), part.decay.end());
    combined.no_decay.insert(combined.no_decay.end(), part.no_decay.begin(), part.no_decay.end());
  }
  check_weight_decay_optim_groups(whole, combined);
  return combined;
}

template <typename T>
WeightDecayGroups<T> combine_weight_decay_optim_groups(
    Registry<T>& whole, const std::vector<WeightDecayGroups<T>>& parts) {
  return combine_weight_decay_optim_groups(ParameterScope<T>(whole), parts);
}

}  // namespace mlstm
