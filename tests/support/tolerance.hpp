// Error budgets of the tests, all in one place, and the comparison that reports the largest
// difference and where it is.
//
// Budgets are absolute bounds derived from the magnitude of the reference (its largest |value|)
// and the dtype:
// - double vs a float64 reference: `double_relative` of the reference's magnitude.
// - float vs a float64 reference: `float_reference_loss_factor` times what the reference itself
//   loses when run in float32 on the same case (measured by the golden data as
//   |h_f32ref - h|), never below float rounding (`float_relative_floor` of the magnitude).
// - double vs a float64 reference where the quantity is ill-conditioned (a gradient that is a
//   small difference of large terms): also within what the reference lost in float32, scaled
//   from float to double rounding (`double_budget`).
// - float results where the normalizer's sum nearly cancels on some rows (the parallel form's
//   golden outputs and gradients; gradients of a whole sequence, recurrent or chunkwise
//   backward, carried through every step or chunk): `float_cancellation_loss_factor` instead of
//   `float_reference_loss_factor`. There two equally valid float evaluations differ by a widely
//   varying multiple: measured up to 7.7 on backward_sequence_prime37 with one step per chunk,
//   and on parallel_s256 the reference's own float32 form with q k^T summed in 200 other orders
//   lost 0.68 to 6.16 times its committed loss, in h and in every gradient
//   (tests/reference/measure_float_spread.py).
// - a training run in float against the float64 reference, step by step: as above, with the
//   reference's float32 loss the largest over the steps so far (`TrajectoryLoss`). The weights
//   carry every earlier step's rounding, and AdamW magnifies it: the reference's own float32
//   gradient norm lost 3.6e-5 of its value at step 7, 6.2e-7 at step 8 and 4.9e-5 at step 9 of
//   the golden run, so one step's loss alone is a draw, not the noise level.
// - two forms of the library computed in the same dtype (different summation orders):
//   `forms_relative<T>` of the magnitude (`forms_budget`).
// - an analytic gradient in double against central finite differences: the differences'
//   truncation and rounding error (about 1e-10 of the loss's scale at step 1e-6) with a wide
//   margin, `finite_difference_relative` of the magnitude (`finite_difference_budget`).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>

#include <catch2/catch.hpp>

#include <mlstm/tensor.hpp>

namespace mlstm::test {

inline constexpr double double_relative = 1e-12;
inline constexpr double float_reference_loss_factor = 4.0;
inline constexpr double float_relative_floor = 2e-6;
inline constexpr double float_cancellation_loss_factor = 10.0;
// A whole language model in float against the float64 reference, where the reference's own
// float32 run is one draw of float rounding through every layer and ours another: measured up
// to 3.8 times the reference's loss (xLSTM-Large, case single, logits), so twice that.
inline constexpr double float_model_loss_factor = 8.0;

inline constexpr double finite_difference_relative = 1e-7;

// A bfloat16 model whose products round their inputs to bfloat16 (InputRounding::bfloat16)
// against the same model with float inputs: each input moves by up to 2^-9 of itself, and the
// tiny random golden model magnifies that. Measured on the golden folder's model: 2.2e-2 of the
// logits' magnitude (rounding its weights to bfloat16, a move of the same relative size, moved
// them by 3.7e-2); budget 2^-4.
inline constexpr double bfloat16_inputs_relative = 0x1.0p-4;
// Two forms of such a model (prefill and steps against the forward): their float differences can
// move an input across a bfloat16 rounding boundary, by 2^-8 of itself; one such step of the
// magnitude. Measured 4.3e-8 on the golden folder's model.
inline constexpr double bfloat16_inputs_forms_relative = 0x1.0p-8;

template <typename T>
inline constexpr double forms_relative = std::is_same_v<T, double> ? 1e-12 : 2e-5;

struct Difference {
  double max_abs = 0.0;  // largest |actual - expected| (infinite where one side is not finite)
  double scale = 0.0;    // largest |expected|
  std::string where;     // multi-index of max_abs
  double actual = 0.0;
  double expected = 0.0;
  bool shapes_match = true;
  std::string shapes;

  bool within(double budget) const { return shapes_match && max_abs <= budget; }
  std::string describe() const {
    std::ostringstream text;
    if (!shapes_match) return "shape mismatch: " + shapes;
    text << "max |difference| = " << max_abs << " at " << where << " (actual " << actual
         << ", expected " << expected << "), reference magnitude " << scale;
    if (scale > 0) text << ", relative " << max_abs / scale;
    return text.str();
  }
};

// Largest difference between two tensors (or maps) of the same shape, with its position.
// A non-finite value on one side where the other is finite, or NaN on both, counts as infinite;
// equal infinities count as 0.
template <typename A, typename E>
Difference max_difference(const A& actual, const E& expected) {
  constexpr int rank = mlstm::rank_of<A>;
  static_assert(rank == mlstm::rank_of<E>, "compare tensors of one rank");
  Difference result;
  for (int axis = 0; axis < rank; ++axis)
    result.shapes_match = result.shapes_match && actual.dimension(axis) == expected.dimension(axis);
  if (!result.shapes_match) {
    result.shapes = mlstm::shape_string(actual.dimensions()) + " vs expected " +
                    mlstm::shape_string(expected.dimensions());
    return result;
  }
  Index worst = -1;
  for (Index flat = 0; flat < expected.size(); ++flat) {
    const double a = static_cast<double>(actual.data()[flat]);
    const double e = static_cast<double>(expected.data()[flat]);
    if (std::isfinite(e)) result.scale = std::max(result.scale, std::abs(e));
    double diff;
    if (std::isfinite(a) && std::isfinite(e)) diff = std::abs(a - e);
    else diff = (a == e) ? 0.0 : HUGE_VAL;
    if (worst < 0 || diff > result.max_abs) {
      result.max_abs = diff;
      worst = flat;
    }
  }
  if (worst >= 0) {
    result.where = mlstm::shape_string(mlstm::detail::multi_index<rank>(expected, worst));
    result.actual = static_cast<double>(actual.data()[worst]);
    result.expected = static_cast<double>(expected.data()[worst]);
  }
  return result;
}

template <typename E>
double magnitude(const E& reference) {
  double scale = 0.0;
  for (Index flat = 0; flat < reference.size(); ++flat) {
    const double value = static_cast<double>(reference.data()[flat]);
    if (std::isfinite(value)) scale = std::max(scale, std::abs(value));
  }
  return scale;
}

// Budget of two forms of the library computed in T against each other.
template <typename T>
double forms_budget(const Tensor<T, 4>& reference) {
  return forms_relative<T> * std::max(1.0, magnitude(reference));
}

// Budget of an analytic gradient in double against central finite differences.
template <int Rank>
double finite_difference_budget(const Tensor<double, Rank>& reference) {
  return finite_difference_relative * std::max(1.0, magnitude(reference));
}

// The magnitude a budget for d(fgate_preact) scales with. The backward passes of the parallel and
// chunkwise forms compute it as a difference of cumulative sums of terms of d(igate_preact)'s
// size (the gate exponents are differences of cumulative log forget gates), so its rounding is
// relative to the larger of the two magnitudes.
template <typename DF, typename DI>
double forget_gradient_magnitude(const DF& dfgate, const DI& digate) {
  return std::max(magnitude(dfgate), magnitude(digate));
}

// Budget for a float result against a float64 reference whose float32 run lost
// `reference_float_loss` (absolute) on the same case.
inline double float_budget(double reference_float_loss, double reference_magnitude,
                           double loss_factor = float_reference_loss_factor) {
  return std::max(loss_factor * reference_float_loss, float_relative_floor * reference_magnitude);
}

// Budget for a double result against a float64 reference whose float32 run lost
// `reference_float_loss` on the same case: that loss is the conditioning of the quantity, scaled
// by the ratio of double to float rounding (2^-29).
inline double double_budget(double reference_float_loss, double reference_magnitude) {
  return std::max(float_reference_loss_factor * reference_float_loss * 0x1.0p-29,
                  double_relative * reference_magnitude);
}

// The largest of the reference's float32 losses over the steps of a run so far.
class TrajectoryLoss {
 public:
  double add(double step_loss) { return largest_ = std::max(largest_, step_loss); }

 private:
  double largest_ = 0.0;
};

// Budget for a result in T against a float64 reference whose float32 run lost
// `reference_float_loss`: double_budget for double, float_budget (with `float_loss_factor`) for
// float.
template <typename T>
double golden_budget(double reference_float_loss, double reference_magnitude,
                     double float_loss_factor = float_reference_loss_factor) {
  return std::is_same_v<T, double>
             ? double_budget(reference_float_loss, reference_magnitude)
             : float_budget(reference_float_loss, reference_magnitude, float_loss_factor);
}

// Budget for a result of dtype T against the plain loops of tests/support/naive.hpp run in T:
// forms_relative of the magnitude, or, where the case's conditioning makes more of rounding
// (a normalizer near zero magnifies it a hundredfold; strong gates make the log decay a
// difference of sums in the thousands), float_reference_loss_factor times the plain loops' own
// loss in T, `plain_loss`, measured against the plain loops in long double.
template <typename T>
double plain_budget(double plain_loss, double reference_magnitude) {
  return std::max(forms_relative<T> * std::max(1.0, reference_magnitude),
                  float_reference_loss_factor * plain_loss);
}

// Budget for one element of a matrix product in T over `depth` terms against the exact sum: the
// classic bound for a sum of products rounded one by one, depth * u times the sum of the terms'
// absolute values (`absolute_sum`), u the unit roundoff of T (2^-24 for float), whatever the
// order of the sums.
template <typename T = float>
double product_budget(Index depth, double absolute_sum) {
  return static_cast<double>(std::max<Index>(depth, 1)) * std::numeric_limits<T>::epsilon() / 2 *
         absolute_sum;
}

}  // namespace mlstm::test

// Checks |actual - expected| <= budget elementwise; on failure prints the largest difference,
// where it is, and the budget.
#define MLSTM_CHECK_CLOSE(actual, expected, budget)                                    \
  do {                                                                                 \
    const auto mlstm_difference = ::mlstm::test::max_difference((actual), (expected)); \
    const double mlstm_budget = (budget);                                              \
    INFO(#actual " vs " #expected ": " << mlstm_difference.describe() << "; budget "   \
                                       << mlstm_budget);                               \
    CHECK(mlstm_difference.within(mlstm_budget));                                      \
  } while (false)
