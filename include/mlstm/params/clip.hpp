// Clipping by the global gradient norm, torch.nn.utils.clip_grad_norm_(parameters, max_norm)
// with the 2-norm:
//
//   total = sqrt(sum over parameters p requiring a gradient of sum(p.grad^2))
//   coef  = max_norm / (total + 1e-6);  every gradient is scaled by coef when coef < 1
//
// Returns total (before clipping). The sum of squares is taken in double, over fixed pieces of
// the parameters in the registry's order on the thread pool, and the pieces' sums are added in
// that order, so the result does not depend on the thread count. A tied parameter counts once (the
// registry holds it once under several names).
#pragma once

#include <cmath>
#include <sstream>
#include <vector>

#include "mlstm/detail/pieces.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/params/registry.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

template <typename T>
double global_grad_norm(const Registry<T>& registry) {
  // Sums of squares piece by piece on the pool, added in order.
  std::vector<const Parameter<T>*> params;
  std::vector<detail::Piece> pieces;
  for (const Parameter<T>& param : registry) {
    if (!param.requires_grad()) continue;
    detail::append_pieces(pieces, params.size(), param.size());
    params.push_back(&param);
  }
  std::vector<double> squares(pieces.size());
  const auto count = static_cast<Index>(pieces.size());
  const double work = 4.0 * detail::piece_values * static_cast<double>(count);
  detail::parallel_for(count, detail::threads_for_work(get_num_threads(), count, work),
                       [&](Index item) {
                         const detail::Piece& piece = pieces[static_cast<std::size_t>(item)];
                         const T* grad = params[piece.array]->grad_data();
                         double sum = 0.0;
                         for (Index i = piece.begin; i < piece.end; ++i) {
                           const double g = static_cast<double>(grad[i]);
                           sum += g * g;
                         }
                         squares[static_cast<std::size_t>(item)] = sum;
                       });
  double total = 0.0;
  for (const double sum : squares) total += sum;
  return std::sqrt(total);
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
