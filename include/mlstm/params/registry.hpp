// A registry of named parameters: the C++ counterpart of a PyTorch module's named_parameters().
//
//   mlstm::Registry<float> registry;
//   auto block = registry.scope("xlstm_block_stack.blocks.0");       // a module's view
//   auto& w = block.add("xlstm.proj_up.weight", {512, 128});         // zero-filled, requires grad
//   registry.get("xlstm_block_stack.blocks.0.xlstm.proj_up.weight"); // the same parameter
//   mlstm::TensorMap<float, 2> view = w.map<2>();                     // (512, 128), row-major
//   registry.tie("lm_head.weight", registry.get("token_embedding.weight"));
//   for (auto& p : registry) ...                                      // registration order
//
// Names are dotted paths, as in a PyTorch state_dict. A scope registers under its prefix so that
// a module's code names its own parameters without knowing where the module sits. A parameter
// may be registered under a second name (tied weights); iteration and named_parameters() then
// list it once, under the name it got first, as PyTorch does, while state_dict_names() lists
// every name (what a checkpoint holds).
//
// Data type: Registry<T> holds parameters of one scalar type, float or double, fixed at compile
// time. The kernels are templates over the same T, so a mismatch is a compile error rather than
// a run-time check; a checkpoint of another dtype is converted when it is loaded.
//
// Every parameter owns its values, zero-filled and 64-byte aligned, row-major (the layout of a
// contiguous PyTorch tensor). Its gradient buffer, of the same shape and layout, is allocated
// zero-filled when something first asks for it (grad_data(), grad(), grad_flat()), so that a
// model used for inference holds its weights once. That first request is not safe to make from
// two threads at once for the same parameter; later ones are. Parameters never move: references
// and pointers stay valid for the registry's lifetime (also when the registry itself is moved;
// scopes refer to the registry and must not outlive it).
#pragma once

#include <algorithm>
#include <array>
#include <deque>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "mlstm/detail/aligned_array.hpp"
#include "mlstm/detail/text.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

using Shape = std::vector<Index>;

template <typename T>
class Registry;

template <typename T>
class Parameter {
 public:
  // Only a Registry makes parameters (Registry::add); the key enforces it.
  class Key {
    friend class Registry<T>;
    Key() {}
  };

  Parameter(Key, std::string name, Shape shape, bool requires_grad)
      : names_{std::move(name)},
        shape_(std::move(shape)),
        size_(element_count(shape_, names_.front())),
        data_(size_),
        requires_grad_(requires_grad) {}

  Parameter(const Parameter&) = delete;
  Parameter& operator=(const Parameter&) = delete;

  // The name it was registered under first (the one named_parameters() lists).
  const std::string& name() const { return names_.front(); }
  // Every name it was registered under, in order (more than one when tied).
  const std::vector<std::string>& names() const { return names_; }

  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  Index dimension(int axis) const {
    if (axis < 0 || axis >= rank()) {
      throw ShapeError(name(), "dimension(" + std::to_string(axis) + ") of a rank-" +
                                   std::to_string(rank()) + " parameter with shape " +
                                   shape_string(shape_));
    }
    return shape_[static_cast<std::size_t>(axis)];
  }
  Index size() const { return size_; }  // number of elements (1 for rank 0)

  T* data() { return data_.data(); }
  const T* data() const { return data_.data(); }
  // The gradient, allocated zero-filled by the first of these calls (see above).
  T* grad_data() { return gradient().data(); }
  const T* grad_data() const { return gradient().data(); }
  // Whether the gradient buffer exists (it is all zeros until then).
  bool has_grad() const noexcept { return grad_.has_value(); }

  bool requires_grad() const { return requires_grad_; }
  void set_requires_grad(bool requires_grad) { requires_grad_ = requires_grad; }

  // Views of the values / the gradient with the parameter's shape; Rank must be its rank.
  template <int Rank>
  TensorMap<T, Rank> map() {
    return TensorMap<T, Rank>(data(), dims<Rank>("map"));
  }
  template <int Rank>
  ConstTensorMap<T, Rank> map() const {
    return ConstTensorMap<T, Rank>(data(), dims<Rank>("map"));
  }
  template <int Rank>
  TensorMap<T, Rank> grad() {
    return TensorMap<T, Rank>(grad_data(), dims<Rank>("grad"));
  }
  template <int Rank>
  ConstTensorMap<T, Rank> grad() const {
    return ConstTensorMap<T, Rank>(grad_data(), dims<Rank>("grad"));
  }

  // All elements as one vector, whatever the rank (row-major order).
  TensorMap<T, 1> flat() { return TensorMap<T, 1>(data(), size_); }
  ConstTensorMap<T, 1> flat() const { return ConstTensorMap<T, 1>(data(), size_); }
  TensorMap<T, 1> grad_flat() { return TensorMap<T, 1>(grad_data(), size_); }
  ConstTensorMap<T, 1> grad_flat() const { return ConstTensorMap<T, 1>(grad_data(), size_); }

  // Zeroes the gradient; one that was never asked for stays unallocated (it is zero).
  void zero_grad() {
    if (grad_) std::fill(grad_->data(), grad_->data() + size_, T(0));
  }

 private:
  friend class Registry<T>;

  static Index element_count(const Shape& shape, const std::string& name) {
    Index count = 1;
    for (const Index extent : shape) {
      if (extent < 0) {
        throw ShapeError("shape",
                         "of '" + name + "': dimensions must be >= 0, got " + shape_string(shape));
      }
      if (extent > 0 && count > std::numeric_limits<Index>::max() / Index(sizeof(T)) / extent) {
        throw ShapeError("shape", "of '" + name + "': " + shape_string(shape) +
                                      " has more elements than memory can address");
      }
      count *= extent;
    }
    return count;
  }

  detail::AlignedArray<T>& gradient() const {
    if (!grad_) grad_.emplace(size_);
    return *grad_;
  }

  template <int Rank>
  std::array<Index, Rank> dims(const char* view) const {
    if (Rank != rank()) {
      throw ShapeError(name(), std::string(view) + "<" + std::to_string(Rank) +
                                   ">() asks for rank " + std::to_string(Rank) +
                                   ", but the parameter has rank " + std::to_string(rank()) +
                                   " with shape " + shape_string(shape_));
    }
    std::array<Index, Rank> result{};
    for (int axis = 0; axis < Rank; ++axis) result[axis] = shape_[static_cast<std::size_t>(axis)];
    return result;
  }

  std::vector<std::string> names_;
  Shape shape_;
  Index size_;
  detail::AlignedArray<T> data_;
  mutable std::optional<detail::AlignedArray<T>> grad_;  // logically const: zero until asked for
  bool requires_grad_;
};

// One row of named_parameters(): a name (full, or relative to a scope) and its parameter.
template <typename T>
struct NamedParameter {
  std::string name;
  Parameter<T>* parameter;
};

namespace detail {

// A name is a dotted path of non-empty components without whitespace or control characters.
inline void check_parameter_name(const std::string& name, const char* argument) {
  bool valid = !name.empty() && name.front() != '.' && name.back() != '.' &&
               name.find("..") == std::string::npos;
  for (const char c : name) valid = valid && static_cast<unsigned char>(c) > ' ' && c != 0x7f;
  if (!valid) {
    throw ValueError(argument,
                     "expected a dotted name with non-empty components and no "
                     "whitespace (like 'blocks.0.proj_up.weight'), got '" +
                         name + "'");
  }
}

// "a.b.c" -> {"a", "a.b"}: the scopes a name sits in.
inline std::vector<std::string> enclosing_scopes(const std::string& name) {
  std::vector<std::string> scopes;
  for (std::size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1))
    scopes.push_back(name.substr(0, dot));
  return scopes;
}

inline bool is_under(const std::string& name, const std::string& prefix) {
  return prefix.empty() ||
         (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
          name[prefix.size()] == '.');
}

inline std::string relative_to(const std::string& name, const std::string& prefix) {
  return prefix.empty() ? name : name.substr(prefix.size() + 1);
}

}  // namespace detail

template <typename T>
class ParameterScope;

template <typename T>
class Registry {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "mlstm::Registry holds float or double parameters");

 public:
  using Scalar = T;
  using iterator = typename std::deque<Parameter<T>>::iterator;
  using const_iterator = typename std::deque<Parameter<T>>::const_iterator;

  Registry() = default;
  Registry(Registry&&) = default;
  Registry& operator=(Registry&&) = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registers a new zero-filled parameter. ValueError if the name is invalid, taken, used as a
  // scope of other parameters ("a.b" when "a.b.c" exists) or inside a parameter ("a.b.c" when
  // "a.b" is a parameter); ShapeError for a negative dimension.
  Parameter<T>& add(const std::string& name, Shape shape, bool requires_grad = true) {
    check_new_name(name, "name");
    Parameter<T>& parameter = parameters_.emplace_back(typename Parameter<T>::Key(), name,
                                                       std::move(shape), requires_grad);
    record_name(name, &parameter);
    return parameter;
  }

  // Registers `existing` (a parameter of this registry) under a second name: tied weights.
  Parameter<T>& tie(const std::string& name, Parameter<T>& existing) {
    if (find(existing.name()) != &existing) {
      throw ValueError("existing",
                       "parameter '" + existing.name() + "' does not belong to this registry");
    }
    check_new_name(name, "name");
    existing.names_.push_back(name);
    record_name(name, &existing);
    return existing;
  }
  Parameter<T>& tie(const std::string& name, const std::string& existing_name) {
    return tie(name, get(existing_name));
  }

  // The parameter registered under `name` (any of its names). ValueError naming the closest
  // scope's parameters if there is none.
  Parameter<T>& get(const std::string& name) {
    if (Parameter<T>* parameter = find(name)) return *parameter;
    throw ValueError("name", unknown_name_message(name));
  }
  const Parameter<T>& get(const std::string& name) const {
    return const_cast<Registry*>(this)->get(name);
  }
  Parameter<T>* find(const std::string& name) noexcept {
    const auto found = by_name_.find(name);
    return found == by_name_.end() ? nullptr : found->second;
  }
  const Parameter<T>* find(const std::string& name) const noexcept {
    return const_cast<Registry*>(this)->find(name);
  }
  bool contains(const std::string& name) const noexcept { return find(name) != nullptr; }

  // A view that registers and looks up names under `prefix` (a dotted name).
  ParameterScope<T> scope(const std::string& prefix);

  // Distinct parameters (tied ones once), in registration order.
  iterator begin() { return parameters_.begin(); }
  iterator end() { return parameters_.end(); }
  const_iterator begin() const { return parameters_.begin(); }
  const_iterator end() const { return parameters_.end(); }
  Index size() const { return static_cast<Index>(parameters_.size()); }
  bool empty() const { return parameters_.empty(); }

  // Total number of elements over distinct parameters.
  Index parameter_count() const {
    Index count = 0;
    for (const auto& parameter : parameters_) count += parameter.size();
    return count;
  }

  // (full name, parameter) of each distinct parameter, in registration order.
  std::vector<NamedParameter<T>> named_parameters() { return named_parameters_under(""); }

  // Names of the distinct parameters, in registration order.
  std::vector<std::string> names() const {
    std::vector<std::string> result;
    for (const auto& parameter : parameters_) result.push_back(parameter.name());
    return result;
  }

  // Every registered name, tied ones included, in registration order: the keys of the
  // reference's state_dict when the registration order mirrors the module tree.
  std::vector<std::string> state_dict_names() const {
    std::vector<std::string> result;
    for (const auto& entry : entries_) result.push_back(entry.first);
    return result;
  }

  void zero_grad() {
    for (auto& parameter : parameters_) parameter.zero_grad();
  }

 private:
  friend class ParameterScope<T>;

  // Distinct parameters with a name under `prefix` ("" = all), named relative to it; a
  // parameter is listed under the first of its names that is under the prefix.
  std::vector<NamedParameter<T>> named_parameters_under(const std::string& prefix) {
    std::vector<NamedParameter<T>> result;
    std::unordered_set<const Parameter<T>*> listed;
    for (const auto& [name, parameter] : entries_) {
      if (detail::is_under(name, prefix) && listed.insert(parameter).second)
        result.push_back({detail::relative_to(name, prefix), parameter});
    }
    return result;
  }

  void check_new_name(const std::string& name, const char* argument) const {
    detail::check_parameter_name(name, argument);
    if (const Parameter<T>* existing = find(name)) {
      throw ValueError(argument, "a parameter named '" + name + "' is already registered (shape " +
                                     shape_string(existing->shape()) + ")");
    }
    if (scopes_.count(name) != 0) {
      throw ValueError(argument, "'" + name + "' already holds other parameters (" +
                                     names_under(name, 3) + "), so it cannot be a parameter");
    }
    for (const auto& scope : detail::enclosing_scopes(name)) {
      if (contains(scope)) {
        throw ValueError(argument, "'" + scope + "' is a parameter, so '" + name +
                                       "' cannot be registered under it");
      }
    }
  }

  void record_name(const std::string& name, Parameter<T>* parameter) {
    entries_.emplace_back(name, parameter);
    by_name_.emplace(name, parameter);
    for (auto& scope : detail::enclosing_scopes(name)) scopes_.insert(std::move(scope));
  }

  // Up to `limit` names under `scope`, relative to it, then how many there are in all.
  std::string names_under(const std::string& scope, std::size_t limit) const {
    std::vector<std::string> names;
    for (const auto& entry : entries_) {
      if (detail::is_under(entry.first, scope))
        names.push_back(detail::relative_to(entry.first, scope));
    }
    return detail::list_string(names, limit);
  }

  std::string unknown_name_message(const std::string& name) const {
    std::string message = "no parameter named '" + name + "'";
    if (scopes_.count(name) != 0)
      return message + "; it is a scope holding " + names_under(name, 8);
    const auto enclosing = detail::enclosing_scopes(name);
    for (auto scope = enclosing.rbegin(); scope != enclosing.rend(); ++scope) {
      if (scopes_.count(*scope) != 0)
        return message + "; '" + *scope + "' holds " + names_under(*scope, 8);
    }
    if (entries_.empty()) return message + "; the registry is empty";
    return message + "; the registry holds " + names_under("", 8);
  }

  std::deque<Parameter<T>> parameters_;                         // distinct, registration order
  std::vector<std::pair<std::string, Parameter<T>*>> entries_;  // every name, registration order
  std::unordered_map<std::string, Parameter<T>*> by_name_;
  std::unordered_set<std::string> scopes_;  // every proper prefix of a registered name
};

// A registry seen from a module: names are relative to `prefix()`. Cheap to copy; refers to the
// registry, which must outlive it. The root scope (prefix "") sees the whole registry.
template <typename T>
class ParameterScope {
 public:
  // The root scope of `registry`.
  explicit ParameterScope(Registry<T>& registry) : registry_(&registry) {}

  const std::string& prefix() const { return prefix_; }
  Registry<T>& registry() const { return *registry_; }

  std::string full_name(const std::string& name) const {
    detail::check_parameter_name(name, "name");
    return prefix_.empty() ? name : prefix_ + "." + name;
  }

  Parameter<T>& add(const std::string& name, Shape shape, bool requires_grad = true) const {
    return registry_->add(full_name(name), std::move(shape), requires_grad);
  }
  Parameter<T>& tie(const std::string& name, Parameter<T>& existing) const {
    return registry_->tie(full_name(name), existing);
  }
  Parameter<T>& get(const std::string& name) const { return registry_->get(full_name(name)); }
  Parameter<T>* find(const std::string& name) const { return registry_->find(full_name(name)); }
  bool contains(const std::string& name) const { return find(name) != nullptr; }

  ParameterScope scope(const std::string& name) const {
    return ParameterScope(*registry_, full_name(name));
  }

  // Distinct parameters under this scope, named relative to it, in registration order (a
  // submodule's named_parameters()).
  std::vector<NamedParameter<T>> named_parameters() const {
    return registry_->named_parameters_under(prefix_);
  }

  Index parameter_count() const {
    Index count = 0;
    for (const auto& named : named_parameters()) count += named.parameter->size();
    return count;
  }

 private:
  friend class Registry<T>;
  ParameterScope(Registry<T>& registry, std::string prefix)
      : registry_(&registry), prefix_(std::move(prefix)) {}

  Registry<T>* registry_;
  std::string prefix_;
};

template <typename T>
ParameterScope<T> Registry<T>::scope(const std::string& prefix) {
  detail::check_parameter_name(prefix, "prefix");
  return ParameterScope<T>(*this, prefix);
}

}  // namespace mlstm
