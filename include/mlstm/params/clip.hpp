// Clipping by the global gradient norm, torch.nn.utils.clip_grad_norm_(parameters, max_norm)
// with the 2-norm:
//
//   total = sqrt(sum over parameters p requiring a gradient of sum(p.grad^2))
//   coef  = max_norm / (total + 1e-6);  every gradient is scaled by coef when coef < 1
//
// Returns total (before clipping). The sum of squares is taken in double, over fixed pieces of
// the parameters in the registry's order on the thread pool (each piece in eight running sums,
// lane_sum.hpp's sum_of_squares: one running sum took as long as the optimizer's update of the
// same values), and the pieces' sums are added in that order, so the result does not depend
// on the thread count; the scaling runs on the pool too. A tied parameter counts once (the
// registry holds it once under several names). clip_coefficient gives coef for AdamW::step,
// which then clips within its update instead.
#pragma once

#include <cmath>
#include <sstream>
#include <vector>

#include "mlstm/detail/lane_sum.hpp"
#include "mlstm/detail/pieces.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/params/registry.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

namespace detail {

// The parameters of a registry that require a gradient (Param: Parameter<T>, const for reading),
// cut into pieces (pieces.hpp) for the thread pool.
template <typename Param>
struct GradientPieces {
  std::vector<Param*> params;
  std::vector<Piece> pieces;

  template <typename Parameters>
  explicit GradientPieces(Parameters& registry) {
    for (Param& param : registry) {
      if (!param.requires_grad()) continue;
      append_pieces(pieces, params.size(), param.size());
      params.push_back(&param);
    }
  }
  Index count() const { return static_cast<Index>(pieces.size()); }
  auto* grad(const Piece& piece) const { return params[piece.array]->grad_data() + piece.begin; }
};

inline void check_max_norm(double max_norm) {
  if (!(std::isfinite(max_norm) && max_norm > 0.0)) {
    std::ostringstream text;
    text << "expected a finite value > 0, got " << max_norm;
    throw ValueError("max_norm", text.str());
  }
}

// The global norm of the pieces' gradients: sums of squares piece by piece on the pool, added
// in order.
template <typename Param>
double global_norm(const GradientPieces<Param>& gradients) {
  std::vector<double> squares(gradients.pieces.size());
  const Index count = gradients.count();
  const double work = 4.0 * piece_values * static_cast<double>(count);
  parallel_for(count, threads_for_work(get_num_threads(), count, work), [&](Index item) {
    const Piece& piece = gradients.pieces[static_cast<std::size_t>(item)];
    squares[static_cast<std::size_t>(item)] =
        sum_of_squares(gradients.grad(piece), piece.end - piece.begin);
  });
  double total = 0.0;
  for (const double sum : squares) total += sum;
  return std::sqrt(total);
}

}  // namespace detail

template <typename T>
double global_grad_norm(const Registry<T>& registry) {
  return detail::global_norm(detail::GradientPieces<const Parameter<T>>(registry));
}

// The factor clip_grad_norm scales the gradients by when their global norm is `total`:
// max_norm / (total + 1e-6) where that is below 1, else 1 (also for a non-finite total, which
// leaves the gradients as they are: torch scales them by NaN; the caller decides, the norm says
// it). ValueError unless max_norm is finite and > 0. AdamW::step takes it as its gradient scale:
// clipping fused into the update, without the pass that scales the gradients in place first (the
// same bits: each gradient is multiplied by the same factor, rounded to T).
inline double clip_coefficient(double total, double max_norm) {
  detail::check_max_norm(max_norm);
  const double coef = max_norm / (total + 1e-6);
  return std::isfinite(total) && coef < 1.0 ? coef : 1.0;
}

// Scales the gradients so that their global norm is at most max_norm (> 0); returns the norm
// before (see clip_coefficient).
template <typename T>
double clip_grad_norm(Registry<T>& registry, double max_norm) {
  detail::check_max_norm(max_norm);  // before the norm's pass, not only in clip_coefficient
  const detail::GradientPieces<Parameter<T>> gradients(registry);
  const double total = detail::global_norm(gradients);
  const double coef = clip_coefficient(total, max_norm);
  if (coef < 1.0) {
    const T scale = static_cast<T>(coef);
    const Index count = gradients.count();
    const double work =
        detail::memory_pass_cost_per_value * detail::piece_values * static_cast<double>(count);
    detail::parallel_for(
        count, detail::threads_for_work(get_num_threads(), count, work), [&](Index item) {
          const detail::Piece& piece = gradients.pieces[static_cast<std::size_t>(item)];
          T* grad = gradients.grad(piece);
          for (Index i = 0; i < piece.end - piece.begin; ++i) grad[i] *= scale;
        });
  }
  return total;
}

}  // namespace mlstm
