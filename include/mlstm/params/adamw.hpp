// AdamW over the two weight-decay groups: decoupled weight decay on the decay group only, as
// torch.optim.AdamW does with param groups [{decay, weight_decay}, {no_decay, 0}].
//
//   auto groups = mlstm::get_weight_decay_optim_groups(registry);
//   mlstm::AdamWOptions options;
//   options.lr = 1e-3;
//   options.weight_decay = 0.1;
//   mlstm::AdamW<float> optimizer(groups, options);
//   for (...) {
//     optimizer.zero_grad();
//     ... write the gradients into each parameter's grad() ...
//     optimizer.step();  // or, clipped by the global norm (clip.hpp):
//     // optimizer.step(mlstm::clip_coefficient(mlstm::global_grad_norm(registry), max_norm));
//   }
//
// One step, per parameter p with gradient g (times step's gradient scale, then negated when
// maximize), step count t (1, 2, ...):
//
//   p  <- p * (1 - lr * weight_decay)            weight_decay = 0 in the no_decay group
//   m  <- beta1 m + (1 - beta1) g
//   v  <- beta2 v + (1 - beta2) g^2
//   v_max <- max(v_max, v)                       amsgrad only; then v_max replaces v below
//   p  <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// m, v (and v_max) start at zero and are kept in T, as torch keeps them in the parameter's
// dtype; the scalar coefficients are computed in double and rounded to T. Parameters that do
// not require a gradient are skipped (torch skips parameters without a gradient).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include <Eigen/Core>

#include "mlstm/detail/aligned_array.hpp"
#include "mlstm/detail/pieces.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/params/registry.hpp"
#include "mlstm/params/weight_decay.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // applied to the decay group only
  bool amsgrad = false;
  bool maximize = false;
};

namespace detail {

inline void check_adamw_option(double value, double low, bool below_one, const char* argument) {
  if (!(std::isfinite(value) && value >= low && (!below_one || value < 1.0))) {
    std::ostringstream text;
    text << "expected a finite value " << (below_one ? "in [0, 1)" : ">= 0") << ", got " << value;
    throw ValueError(argument, text.str());
  }
}

inline void check_adamw_options(const AdamWOptions& options) {
  check_adamw_option(options.lr, 0.0, false, "options.lr");
  check_adamw_option(options.beta1, 0.0, true, "options.beta1");
  check_adamw_option(options.beta2, 0.0, true, "options.beta2");
  check_adamw_option(options.eps, 0.0, false, "options.eps");
  check_adamw_option(options.weight_decay, 0.0, false, "options.weight_decay");
}

}  // namespace detail

template <typename T>
class AdamW {
 public:
  // ValueError for an invalid option, a null parameter, or a parameter in more than one place.
  explicit AdamW(const WeightDecayGroups<T>& groups, AdamWOptions options = {})
      : options_(options) {
    detail::check_adamw_options(options_);
    std::unordered_set<const Parameter<T>*> seen;
    std::vector<std::string> repeated;
    for (const auto& [members, decays] :
         {std::pair{&groups.decay, true}, std::pair{&groups.no_decay, false}}) {
      for (Parameter<T>* param : *members) {
        if (param == nullptr) throw ValueError("groups", "holds a null parameter");
        if (!seen.insert(param).second) repeated.push_back(param->name());
      }
      for (Parameter<T>* param : *members) slots_.push_back(Slot(param, decays, options_.amsgrad));
    }
    if (!repeated.empty()) {
      throw ValueError("groups",
                       "parameters appear more than once: " + detail::name_list(repeated));
    }
  }

  const AdamWOptions& options() const { return options_; }

  // Learning-rate schedules change lr between steps.
  void set_lr(double lr) {
    detail::check_adamw_option(lr, 0.0, false, "lr");
    options_.lr = lr;
  }

  // Steps taken so far; set when resuming from a checkpoint (ValueError if negative).
  long step_count() const { return steps_; }
  void set_step_count(long steps) {
    if (steps < 0) throw ValueError("steps", "expected >= 0, got " + std::to_string(steps));
    steps_ = steps;
  }

  // Every parameter of the groups, in the optimizer's order (decay group first).
  std::vector<const Parameter<T>*> parameters() const {
    std::vector<const Parameter<T>*> out;
    for (const Slot& slot : slots_) out.push_back(slot.param);
    return out;
  }

  // One AdamW update of every parameter from its gradient buffer, each gradient multiplied by
  // gradient_scale (in [0, T's largest]) as it is read: clip_coefficient's factor clips by the
  // global norm within the update, to the bits of clip_grad_norm then step(), the buffers left as
  // they are. ValueError for a scale outside that range (NaN included), before anything is
  // updated.
  void step(double gradient_scale = 1.0) {
    if (!(gradient_scale >= 0.0 &&
          gradient_scale <= static_cast<double>(std::numeric_limits<T>::max()))) {
      std::ostringstream text;
      text << "expected a value in [0, " << std::numeric_limits<T>::max() << "], got "
           << gradient_scale;
      throw ValueError("gradient_scale", text.str());
    }
    const T scale = static_cast<T>(gradient_scale);
    ++steps_;
    const double bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
    const double bias_correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
    const T step_size = static_cast<T>(options_.lr / bias_correction1);
    const T bias_correction2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
    const T beta1 = static_cast<T>(options_.beta1), beta2 = static_cast<T>(options_.beta2);
    const T one_minus_beta1 = static_cast<T>(1.0 - options_.beta1);
    const T one_minus_beta2 = static_cast<T>(1.0 - options_.beta2);
    const T eps = static_cast<T>(options_.eps);
    const T sign = options_.maximize ? T(-1) : T(1);
    // Every value is updated on its own, so pieces of the parameters run on the pool.
    std::vector<detail::Piece> pieces;
    for (std::size_t s = 0; s < slots_.size(); ++s)
      if (slots_[s].param->requires_grad())
        detail::append_pieces(pieces, s, slots_[s].param->size());
    const auto update = [&](Index item) {
      const detail::Piece& piece = pieces[static_cast<std::size_t>(item)];
      Slot& slot = slots_[piece.array];
      const T shrink =
          static_cast<T>(1.0 - options_.lr * (slot.decays ? options_.weight_decay : 0.0));
      // Whole-array expressions, so that the compiler's vector units take them (a loop calling
      // std::sqrt per value stays scalar: the call may set errno); per value, the same
      // operations in the same order.
      using Values = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
      const Index begin = piece.begin, count = piece.end - piece.begin;
      Values values(slot.param->data() + begin, count);
      Values m(slot.exp_avg.data() + begin, count), v(slot.exp_avg_sq.data() + begin, count);
      const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> grads(
          slot.param->grad_data() + begin, count);
      const auto g = sign * (grads * scale);
      values *= shrink;
      m = m * beta1 + one_minus_beta1 * g;
      v = v * beta2 + one_minus_beta2 * g * g;
      const auto update_with = [&](const auto& second) {
        values -= step_size * m / (second.sqrt() / bias_correction2_sqrt + eps);
      };
      if (options_.amsgrad) {
        Values v_max(slot.max_exp_avg_sq.data() + begin, count);
        v_max = v_max.max(v);
        update_with(v_max);
      } else {
        update_with(v);
      }
    };
    const auto count = static_cast<Index>(pieces.size());
    const double work = 20.0 * detail::piece_values * static_cast<double>(count);
    detail::parallel_for(count, detail::threads_for_work(get_num_threads(), count, work), update);
  }

  // Zeroes the gradient of every parameter in the groups.
  void zero_grad() {
    for (Slot& slot : slots_) slot.param->zero_grad();
  }

  // The running averages of a parameter in the groups (ValueError otherwise), flat.
  ConstTensorMap<T, 1> exp_avg(const Parameter<T>& param) const {
    const Slot& slot = slot_of(param);
    return ConstTensorMap<T, 1>(slot.exp_avg.data(), param.size());
  }
  ConstTensorMap<T, 1> exp_avg_sq(const Parameter<T>& param) const {
    const Slot& slot = slot_of(param);
    return ConstTensorMap<T, 1>(slot.exp_avg_sq.data(), param.size());
  }
  // amsgrad only (size 0 otherwise).
  ConstTensorMap<T, 1> max_exp_avg_sq(const Parameter<T>& param) const {
    const Slot& slot = slot_of(param);
    return ConstTensorMap<T, 1>(slot.max_exp_avg_sq.data(), slot.max_exp_avg_sq.size());
  }
  // Writable views of the same, for restoring a checkpoint.
  TensorMap<T, 1> exp_avg(const Parameter<T>& param) {
    Slot& slot = slot_of(param);
    return TensorMap<T, 1>(slot.exp_avg.data(), param.size());
  }
  TensorMap<T, 1> exp_avg_sq(const Parameter<T>& param) {
    Slot& slot = slot_of(param);
    return TensorMap<T, 1>(slot.exp_avg_sq.data(), param.size());
  }
  TensorMap<T, 1> max_exp_avg_sq(const Parameter<T>& param) {
    Slot& slot = slot_of(param);
    return TensorMap<T, 1>(slot.max_exp_avg_sq.data(), slot.max_exp_avg_sq.size());
  }

 private:
  struct Slot {
    Slot(Parameter<T>* param_, bool decays_, bool amsgrad)
        : param(param_),
          decays(decays_),
          exp_avg(param_->size()),
          exp_avg_sq(param_->size()),
          max_exp_avg_sq(amsgrad ? param_->size() : 0) {}
    Parameter<T>* param;
    bool decays;
    detail::AlignedArray<T> exp_avg;
    detail::AlignedArray<T> exp_avg_sq;
    detail::AlignedArray<T> max_exp_avg_sq;
  };

  const Slot& slot_of(const Parameter<T>& param) const {
    for (const Slot& slot : slots_)
      if (slot.param == &param) return slot;
    throw ValueError("param", "'" + param.name() + "' is not in this optimizer's groups");
  }
  Slot& slot_of(const Parameter<T>& param) {
    return const_cast<Slot&>(static_cast<const AdamW&>(*this).slot_of(param));
  }

  AdamWOptions options_;
  std::vector<Slot> slots_;
  long steps_ = 0;
};

}  // namespace mlstm
