// A model's parameters described once, as data: a parameter table. Each row is one parameter:
// its name, its shape as extents of the configuration, its init rule and, if it has one, a
// weight-decay override. Everything a model needs to know about its parameters comes from its
// table, so that the uses cannot drift apart:
//
//   register_parameters(registry, table)       the registry's parameters, in row order
//   table.init_plan()                          the init calls (init_plan.hpp), in init order
//   weight_decay_options(table, rule)          the group rule plus the table's overrides
//   ParameterViews<T>(registry, table)         the forward's views, each checked against its row
//   solve_extents(table, shape_of)             configuration quantities from a checkpoint's shapes
//   the checkpoint loader (io/checkpoint.hpp)  every tensor a file must hold, checked before
//                                              anything is allocated
//
//   mlstm::ParameterTable cell;
//   using mlstm::InitRule;
//   const mlstm::Extent heads = mlstm::named_extent("num_heads", NH);
//   cell.add("igate.weight", {heads, 3 * I}, InitRule::zeros());
//   cell.add("igate.bias", {heads}, InitRule::normal(0, 0.1));
//   cell.set_reset_order({"igate.bias", "igate.weight"});  // the order reset_parameters() visits
//   mlstm::ParameterTable layer;
//   layer.add_module("mlstm_cell", cell);                  // rows "mlstm_cell.igate.weight", ...
//
// Rows are listed in registration order (the reference's named_parameters() order; a tied name,
// table.tie(name, existing), sits where the reference's state_dict lists it). A table holds its
// modules' rows flattened under dotted names, so that a module's table is the same whether it
// stands alone or sits in a model.
//
// Init order. The plan runs every reset_parameters-stage rule in the order reset_parameters()
// visits the parameters, then every construction-stage rule (values a module gets when it is
// built and reset_parameters leaves alone) in row order. A module's visiting order is its rows'
// order unless set_reset_order names its children (a row's name, or a submodule's name standing
// for all of that submodule's rows in the submodule's own order).
//
// Extents. An extent is a number computed from the configuration; named_extent also names the
// configuration quantity it is (not one derived from it, like 2 * inner), so that the shapes a
// checkpoint declares give that quantity back: solve_extents.
//
// A new architecture (in include/mlstm/models/<name>/) uses the machinery in four steps:
//   1. a config struct with validate() that bounds what the table needs;
//   2. one function per module returning its ParameterTable from the config, building the
//      model's table from its modules' (add_module) the way its PyTorch module nests them;
//   3. its views struct, bound with ParameterViews: get<Rank>(name) for each row the forward
//      reads, then check_all_bound() so that a row the forward ignores is an error;
//   4. for a checkpoint without a stored configuration: read the structure (block count, which
//      optional parameters exist) from the names, build the table of that structure with
//      placeholder sizes, and take the sizes from solve_extents.
// Registration, init, weight decay and checkpoint validation then come without more code.
#pragma once

#include <cstddef>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mlstm/errors.hpp"
#include "mlstm/params/init_plan.hpp"
#include "mlstm/params/registry.hpp"
#include "mlstm/params/weight_decay.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

// One extent of a parameter's shape: its value under the configuration, and the name of the
// configuration quantity it is ("" for an extent derived from one).
struct Extent {
  Index value = 0;
  std::string symbol;

  Extent(Index value) : value(value) {}  // NOLINT(google-explicit-constructor): a derived extent
  Extent(std::string symbol, Index value) : value(value), symbol(std::move(symbol)) {}
};

// The configuration quantity `symbol` as an extent.
inline Extent named_extent(std::string symbol, Index value) {
  return Extent(std::move(symbol), value);
}

// One row of a table: a parameter, or a second name of one (tied_to).
struct ParameterRow {
  std::string name;                  // dotted, relative to the table
  std::vector<Extent> extents;       // the shape
  std::optional<InitRule> init;      // none for a tied name (the parameter is initialized once)
  std::optional<bool> weight_decay;  // overrides the group rule: true = decay
  std::string tied_to;               // the row this name is a second name of; "" if none

  bool tied() const { return !tied_to.empty(); }
  Shape shape() const {
    Shape shape;
    for (const Extent& extent : extents) shape.push_back(extent.value);
    return shape;
  }
};

class ParameterTable {
 public:
  // Adds a parameter. ValueError for an invalid or taken name, ShapeError for a negative extent.
  ParameterRow& add(std::string name, std::vector<Extent> extents, const InitRule& init) {
    check_new_name(name);
    for (const Extent& extent : extents) {
      if (extent.value < 0) {
        throw ShapeError(name, "extents must be >= 0, got " + shape_text(extents));
      }
    }
    if (init.stage == InitStage::reset_parameters) reset_sequence_.push_back(rows_.size());
    return append({std::move(name), std::move(extents), init, std::nullopt, ""});
  }

  // Adds `name` as a second name of the parameter of row `existing` (tied weights).
  void tie(std::string name, const std::string& existing) {
    check_new_name(name);
    const ParameterRow& target = row(existing);
    const std::string root = target.tied() ? target.tied_to : target.name;
    append({std::move(name), target.extents, std::nullopt, std::nullopt, root});
  }

  // Adds the rows of `module` under `name` ("name.<row>"), keeping its reset order.
  void add_module(const std::string& name, const ParameterTable& module) {
    detail::check_parameter_name(name, "name");
    const std::size_t base = rows_.size();
    for (const ParameterRow& child : module.rows_) {
      ParameterRow copy = child;
      copy.name = name + "." + child.name;
      if (copy.tied()) copy.tied_to = name + "." + child.tied_to;
      check_new_name(copy.name);
      append(std::move(copy));
    }
    for (const std::size_t index : module.reset_sequence_) reset_sequence_.push_back(base + index);
  }

  // The order reset_parameters() visits this module's children: each a row's name or a
  // submodule's name. Every row with a reset-stage rule must be covered exactly once
  // (ValueError otherwise).
  void set_reset_order(const std::vector<std::string>& children) {
    std::vector<std::size_t> sequence;
    std::vector<bool> taken(rows_.size(), false);
    for (const std::string& child : children) {
      bool found = false;
      for (const std::size_t index : reset_sequence_) {
        const std::string& name = rows_[index].name;
        if (name != child && !detail::is_under(name, child)) continue;
        if (taken[index]) throw ValueError("children", "'" + name + "' is covered twice");
        taken[index] = true;
        sequence.push_back(index);
        found = true;
      }
      if (!found) throw ValueError("children", "'" + child + "' names no row with a reset rule");
    }
    for (const std::size_t index : reset_sequence_) {
      if (!taken[index]) {
        throw ValueError("children", "'" + rows_[index].name +
                                         "' has a reset rule but is not "
                                         "covered by the reset order");
      }
    }
    reset_sequence_ = std::move(sequence);
  }

  // Every row, in registration order.
  const std::vector<ParameterRow>& rows() const { return rows_; }

  const ParameterRow* find(const std::string& name) const {
    const auto found = index_.find(name);
    return found == index_.end() ? nullptr : &rows_[found->second];
  }
  // ValueError("name") if there is no such row.
  const ParameterRow& row(const std::string& name) const {
    if (const ParameterRow* found = find(name)) return *found;
    throw ValueError("name", "the parameter table has no row '" + name + "'");
  }

  // The init calls of every parameter, names prefixed with `prefix`: the reset_parameters
  // stage in the reset order, then the construction stage in row order; `stage` keeps one.
  std::vector<InitCall> init_plan(const std::string& prefix = "",
                                  std::optional<InitStage> stage = std::nullopt) const {
    std::vector<InitCall> plan;
    const auto full_name = [&](const ParameterRow& r) {
      return prefix.empty() ? r.name : prefix + "." + r.name;
    };
    if (stage.value_or(InitStage::reset_parameters) == InitStage::reset_parameters) {
      for (const std::size_t index : reset_sequence_)
        plan.emplace_back(full_name(rows_[index]), *rows_[index].init);
    }
    if (stage.value_or(InitStage::construction) == InitStage::construction) {
      for (const ParameterRow& r : rows_) {
        if (r.init && r.init->stage == InitStage::construction)
          plan.emplace_back(full_name(r), *r.init);
      }
    }
    return plan;
  }

  // Elements over distinct parameters. ShapeError if the count does not fit in an Index (a
  // configuration no memory can hold).
  Index parameter_count() const {
    Index total = 0;
    for (const ParameterRow& r : rows_) {
      if (r.tied()) continue;
      const Index count = element_count(r);
      if (count > std::numeric_limits<Index>::max() - total) {
        throw ShapeError("config", "the parameters number more than 2^63 - 1 elements");
      }
      total += count;
    }
    return total;
  }

  // Elements of the parameter of row `r`; ShapeError naming it if the count overflows.
  static Index element_count(const ParameterRow& r) {
    Index count = 1;
    for (const Extent& extent : r.extents) {
      if (extent.value > 0 && count > std::numeric_limits<Index>::max() / extent.value) {
        throw ShapeError(r.name, "shape " + shape_text(r.extents) +
                                     " has more than 2^63 - 1 "
                                     "elements");
      }
      count *= extent.value;
    }
    return count;
  }

 private:
  static std::string shape_text(const std::vector<Extent>& extents) {
    Shape shape;
    for (const Extent& extent : extents) shape.push_back(extent.value);
    return mlstm::shape_string(shape);
  }

  void check_new_name(const std::string& name) const {
    detail::check_parameter_name(name, "name");
    if (find(name) != nullptr) {
      throw ValueError("name", "the parameter table already has a row '" + name + "'");
    }
  }

  ParameterRow& append(ParameterRow r) {
    index_.emplace(r.name, rows_.size());
    rows_.push_back(std::move(r));
    return rows_.back();
  }

  std::vector<ParameterRow> rows_;
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<std::size_t> reset_sequence_;  // rows with a reset-stage rule, in visiting order
};

// Registers every row of `table` under `scope`: a parameter per row, a tied name as a second
// name of its parameter.
template <typename T>
void register_parameters(const ParameterScope<T>& scope, const ParameterTable& table) {
  for (const ParameterRow& r : table.rows()) {
    if (r.tied()) {
      scope.tie(r.name, scope.get(r.tied_to));
    } else {
      scope.add(r.name, r.shape());
    }
  }
}

template <typename T>
void register_parameters(Registry<T>& registry, const ParameterTable& table) {
  register_parameters(ParameterScope<T>(registry), table);
}

// `rule` for every parameter, then the table's overrides (names relative to the table, as
// get_weight_decay_optim_groups sees them from the table's scope).
inline WeightDecayOptions weight_decay_options(const ParameterTable& table,
                                               WeightDecayRule rule = WeightDecayRule::name) {
  WeightDecayOptions options;
  options.rule = rule;
  for (const ParameterRow& r : table.rows()) {
    if (r.weight_decay) options.overrides.emplace_back(r.name, *r.weight_decay);
  }
  return options;
}

// Views of a registry's parameters through a table: each view is taken by its row's name, and
// its parameter's shape checked against the row. The registry holds the table's rows under
// `prefix`; scope(name) gives the views of a submodule. Copies share the record of what was
// bound, so that check_all_bound() on the root sees what every scope took.
template <typename T>
class ParameterViews {
 public:
  ParameterViews(const Registry<T>& registry, const ParameterTable& table,
                 const std::string& prefix = "")
      : registry_(&registry),
        table_(&table),
        prefix_(prefix.empty() ? "" : prefix + "."),
        bound_(std::make_shared<std::vector<bool>>(table.rows().size(), false)) {}

  // The view of row `name` (relative to this scope). InternalError if the table has no such
  // row or it has another rank; ValueError if the registry lacks the parameter; ShapeError if
  // the parameter's shape is not the row's.
  template <int Rank>
  ConstTensorMap<T, Rank> get(const std::string& name) const {
    const ParameterRow& r = checked_row(name, Rank);
    const std::string full = prefix_ + r.name;
    const Parameter<T>& parameter = registry_->get(full);
    if (parameter.shape() != r.shape()) {
      throw ShapeError(full, "expected " + mlstm::shape_string(r.shape()) +
                                 " of the configuration, got " +
                                 mlstm::shape_string(parameter.shape()));
    }
    (*bound_)[static_cast<std::size_t>(&r - table_->rows().data())] = true;
    return parameter.template map<Rank>();
  }

  // The view of row `name`, or nothing if the table has no such row (an optional parameter).
  template <int Rank>
  std::optional<ConstTensorMap<T, Rank>> optional(const std::string& name) const {
    if (table_->find(scope_ + name) == nullptr) return std::nullopt;
    return get<Rank>(name);
  }

  // The views of submodule `name`.
  ParameterViews scope(const std::string& name) const {
    ParameterViews views = *this;
    views.scope_ = scope_ + name + ".";
    return views;
  }

  // InternalError naming the rows no view was taken of: a parameter the forward ignores.
  void check_all_bound() const {
    std::string unbound;
    for (std::size_t i = 0; i < bound_->size(); ++i) {
      if (!(*bound_)[i]) unbound += (unbound.empty() ? "" : ", ") + table_->rows()[i].name;
    }
    if (!unbound.empty()) {
      throw InternalError("parameters of the table that the model does not read: " + unbound);
    }
  }

 private:
  const ParameterRow& checked_row(const std::string& name, int rank) const {
    const ParameterRow* r = table_->find(scope_ + name);
    if (r == nullptr) throw InternalError("the parameter table has no row '" + scope_ + name + "'");
    if (static_cast<int>(r->extents.size()) != rank) {
      throw InternalError("row '" + r->name + "' has rank " + std::to_string(r->extents.size()) +
                          ", viewed with rank " + std::to_string(rank));
    }
    return *r;
  }

  const Registry<T>* registry_;
  const ParameterTable* table_;
  std::string prefix_;  // of the table's rows in the registry, with its dot
  std::string scope_;   // of this view's rows in the table, with its dot
  std::shared_ptr<std::vector<bool>> bound_;
};

// The shapes of the tensors of a checkpoint: shape_of(name) is the declared shape, or null if
// the checkpoint has no tensor of that name.
using ShapeLookup = std::function<const Shape*(const std::string& name)>;

// The configuration quantities (named extents) that the declared shapes give: each row whose
// tensor shape_of finds gives, for each named extent, the tensor's extent on that axis (a tied
// name gives its parameter's). ShapeError naming the tensor if its rank is not its row's, or if
// it gives a quantity another tensor gave a different value; ValueError("checkpoint") naming a
// quantity that no tensor gives. Rows without a tensor are skipped: the loader checks every
// tensor against the table that the solved configuration gives.
inline std::map<std::string, Index> solve_extents(const ParameterTable& table,
                                                  const ShapeLookup& shape_of) {
  std::map<std::string, Index> values;
  std::map<std::string, std::string> given_by;  // quantity -> the tensor it came from
  std::map<std::string, std::string> wanted;    // quantity -> a row it is an extent of
  for (const ParameterRow& r : table.rows()) {
    for (const Extent& extent : r.extents) {
      if (!extent.symbol.empty()) wanted.emplace(extent.symbol, r.name);
    }
    const Shape* shape = shape_of(r.name);
    if (shape == nullptr) continue;
    if (shape->size() != r.extents.size()) {
      throw ShapeError(r.name, "has shape " + mlstm::shape_string(*shape) + ", expected rank " +
                                   std::to_string(r.extents.size()));
    }
    for (std::size_t axis = 0; axis < shape->size(); ++axis) {
      const std::string& symbol = r.extents[axis].symbol;
      if (symbol.empty()) continue;
      const Index value = (*shape)[axis];
      const auto [known, inserted] = values.emplace(symbol, value);
      if (inserted) {
        given_by.emplace(symbol, r.name);
      } else if (known->second != value) {
        throw ShapeError(r.name, "has shape " + mlstm::shape_string(*shape) + ", giving " + symbol +
                                     " = " + std::to_string(value) + ", but " +
                                     given_by.at(symbol) + " gives " +
                                     std::to_string(known->second));
      }
    }
  }
  for (const auto& [symbol, row_name] : wanted) {
    if (values.count(symbol) == 0) {
      throw ValueError("checkpoint", "no tensor gives " + symbol + " (an extent of " + row_name +
                                         ", which is absent)");
    }
  }
  return values;
}

}  // namespace mlstm
