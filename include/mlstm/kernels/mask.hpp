// The optional (L, L) boolean mask of the parallel form, and the reference's rule for it.
//
//   no mask, or L > S : the causal mask of size S (s <= t)
//   L == S            : the mask as given (true = position s is visible from row t)
//   L < S             : the causal mask of size S if the given mask is the causal one (the
//                       reference crashes here; a causal mask simply extends), otherwise a
//                       ShapeError: a custom mask must cover the sequence.
#pragma once

#include <optional>
#include <string>

#include "mlstm/errors.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

using Mask = Tensor<bool, 2>;

// The causal (lower-triangular, diagonal included) mask of size `size`.
inline Mask causal_mask(Index size) {
  Mask mask(size, size);
  for (Index t = 0; t < size; ++t)
    for (Index s = 0; s < size; ++s) mask(t, s) = s <= t;
  return mask;
}

inline bool is_causal_mask(const Mask& mask) {
  const Index size = mask.dimension(0);
  if (mask.dimension(1) != size) return false;
  for (Index t = 0; t < size; ++t)
    for (Index s = 0; s < size; ++s)
      if (mask(t, s) != (s <= t)) return false;
  return true;
}

namespace detail {

// The mask a kernel applies to a sequence of length S: causal (visible == nullptr) or a given
// (S, S) row-major matrix.
struct SequenceMask {
  const bool* visible = nullptr;
  Index seq_len = 0;

  bool causal() const { return visible == nullptr; }
  bool allows(Index t, Index s) const { return causal() ? s <= t : visible[t * seq_len + s]; }

  // Whether any (t, s) with t in [t0, t1) and s in [s0, s1) is visible: kernels skip the rest.
  bool any_visible(Index t0, Index t1, Index s0, Index s1) const {
    if (causal()) return s0 < t1;
    for (Index t = t0; t < t1; ++t)
      for (Index s = s0; s < s1; ++s)
        if (visible[t * seq_len + s]) return true;
    return false;
  }
};

inline SequenceMask resolve_mask(const std::optional<Mask>& mask, Index seq_len,
                                 const char* name = "options.mask") {
  if (!mask) return SequenceMask{nullptr, seq_len};
  const Index rows = mask->dimension(0), cols = mask->dimension(1);
  if (rows != cols) {
    throw ShapeError(name, "expected a square (L, L) mask, got (" + std::to_string(rows) + ", " +
                               std::to_string(cols) + ")");
  }
  if (rows > seq_len) return SequenceMask{nullptr, seq_len};
  if (rows == seq_len) {
    return is_causal_mask(*mask) ? SequenceMask{nullptr, seq_len}
                                 : SequenceMask{mask->data(), seq_len};
  }
  if (is_causal_mask(*mask)) return SequenceMask{nullptr, seq_len};
  throw ShapeError(name, "a custom mask must cover the sequence: expected (L, L) with L >= S = " +
                             std::to_string(seq_len) + ", got (" + std::to_string(rows) + ", " +
                             std::to_string(cols) + ")");
}

}  // namespace detail
}  // namespace mlstm
