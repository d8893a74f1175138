// Clipping by the global gradient norm, torch.nn.utils.clip_grad_norm_(parameters, max_norm)
// with the 2-norm:
//
//   total = sqrt(sum over parameters p requiring a gradient of sum(p.grad^2))
//   coef  = max_norm / (total + 1e-6);  every gradient is scaled by coef when coef < 1
//
// Returns total (before clipping). The sum of squares is taken in double, in the registry's
// order, so the result does not depend on threads. A tied parameter counts once (the registry
// holds it once under several names).
#pragma once

#include <cmath>
#include <sstream>

#include "mlstm/errors.hpp"
#include "mlstm/params/registry.hpp"

namespace mlstm {

template <typename T>
double global_grad_norm(const Registry<T>& registry) {
  double squares = 0.0;
  for (const Parameter<T>& param : registry) {
    if (!param.requires_grad()) continue;
    const T* grad = param.grad_data();
    for (Index i = 0; i < param.size(); ++i) {
      const double g = static_cast<double>(grad[i]);
      squares += g * g;
    }
  }
  return std::sqrt(squares);
}

// Scales the gradients so that their global norm is at most max_norm (> 0); returns the norm
// before. A non-finite norm leaves the gradients as they are (torch scales them by NaN; the
// caller decides: the returned norm says it).
template <typename T>
double clip_grad_norm(Registry<T>& registry, double max_norm) {
  if (!(std::isfinite(max_norm) && max_norm > 0.0)) {
    std::ostringstream text;
    text << "expected a finite value > 0, got " << max_norm;
    throw ValueError("max_norm", text.str());
  }
  const double total = global_grad_norm(registry);
  const double coef = max_norm / (total + 1e-6);
  if (std::isfinite(total) && coef < 1.0) {
    const T scale = static_cast<T>(coef);
    for (Parameter<T>& param : registry) {
      if (!param.requires_grad()) continue;
      T* grad = param.grad_data();
      for (Index i = 0; i < param.size(); ++i) grad[i] *= scale;
    }
  }
  return total;
}

}  // namespace mlstm
