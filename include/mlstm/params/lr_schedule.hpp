// The learning-rate schedule of the training loop: linear warm-up, then a cosine decay.
//
//   step < warmup:  lr(step) = max_lr * (step + 1) / warmup
//   else:           p = min(1, (step - warmup) / max(1, decay_steps - warmup))
//                   lr(step) = min_lr + (max_lr - min_lr) (1 + cos(pi p)) / 2
//
// Steps count from 0. decay_steps <= warmup (or min_lr = max_lr) gives a constant max_lr after
// the warm-up; warmup = 0 and decay_steps = 0 give a constant learning rate.
#pragma once

#include <algorithm>
#include <cmath>
#include <sstream>

#include "mlstm/errors.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

struct WarmupCosineSchedule {
  double max_lr = 1e-3;
  double min_lr = 0.0;
  long warmup = 0;       // steps of linear warm-up
  long decay_steps = 0;  // the step at which the cosine reaches min_lr

  void validate() const {
    const auto fail = [](const char* name, const auto& value, const char* expected) {
      std::ostringstream text;
      text << "expected " << expected << ", got " << value;
      throw ValueError(name, text.str());
    };
    if (!(std::isfinite(max_lr) && max_lr >= 0.0)) fail("schedule.max_lr", max_lr, "finite >= 0");
    if (!(std::isfinite(min_lr) && min_lr >= 0.0 && min_lr <= max_lr))
      fail("schedule.min_lr", min_lr, "finite in [0, max_lr]");
    if (warmup < 0) fail("schedule.warmup", warmup, ">= 0");
    if (decay_steps < 0) fail("schedule.decay_steps", decay_steps, ">= 0");
  }

  double lr(long step) const {
    if (step < warmup) {
      return max_lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
    }
    if (decay_steps <= warmup) return max_lr;
    const double progress = std::min(
        1.0, static_cast<double>(step - warmup) / static_cast<double>(decay_steps - warmup));
    const double pi = std::acos(-1.0);
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + std::cos(pi * progress));
  }
};

}  // namespace mlstm
