// Elementwise functions (exp, tanh, ...) whose every value takes Eigen's vectorized path, wherever
// the values lie.
//
// Eigen evaluates an expression into unaligned memory with scalar code for the elements before the
// first aligned vector and after the last whole one, and its scalar exp and tanh round differently
// from its vectorized ones. A value's result then depended on its address modulo the vector width
// (64 bytes with AVX-512): on buffers from malloc (16-byte aligned) a training step's loss changed
// from run to run on two threads, whose buffers come from other heap arenas. Here every result is
// written to a 64-byte aligned buffer in whole vectors (a piece whose length is not a multiple of
// the vector's is padded with its last value first), so that every value is computed by the same
// instructions.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>

#include "mlstm/detail/assert.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::detail {

// Values per piece: a multiple of every vector length (64 bytes of float or double).
inline constexpr Index vector_piece = 256;

// Values of T in 64 bytes (a vector of the widest instruction set).
template <typename T>
inline constexpr Index vector_values = 64 / static_cast<Index>(sizeof(T));

// Whether `data` lies on a 64-byte boundary.
template <typename T>
bool is_aligned64(const T* data) {
  return reinterpret_cast<std::uintptr_t>(data) % 64 == 0;
}

// result[0, count) = f(x[0, count)) for 1 <= count <= vector_piece, where f maps an
// Eigen::Map<const Eigen::Array<T, Dynamic, 1>> to an expression of the same length, and result
// lies on a 64-byte boundary with room for count rounded up to whole vectors (the values past
// count are padding: f of x's last value, an input f takes without overflow where x's values do).
template <typename T, typename F>
void evaluate_piece(const T* x, Index count, T* result, const F& f) {
  using Piece = Eigen::Array<T, Eigen::Dynamic, 1>;
  MLSTM_ASSERT(count >= 1 && count <= vector_piece, "a piece holds 1 to vector_piece values");
  MLSTM_ASSERT(is_aligned64(result), "a piece's result lies on a 64-byte boundary");
  const Index padded = round_up_to(count, vector_values<T>);
  alignas(64) T padded_x[vector_piece];
  const T* source = x;
  if (padded != count) {
    std::copy(x, x + count, padded_x);
    std::fill(padded_x + count, padded_x + padded, x[count - 1]);
    source = padded_x;
  }
  Eigen::Map<Piece, Eigen::Aligned64>(result, padded) = f(Eigen::Map<const Piece>(source, padded));
}

// y[i] = finish(x[i], f(x)[i]) for n values (y may be x), by evaluate_piece a piece at a time;
// finish may correct what the vectorized function gets wrong at the extremes.
template <typename T, typename F, typename Finish>
void evaluate_in_pieces(const T* x, Index n, T* y, const F& f, const Finish& finish) {
  alignas(64) T result[vector_piece];
  for (Index start = 0; start < n; start += vector_piece) {
    const Index count = std::min(vector_piece, n - start);
    evaluate_piece(x + start, count, result, f);
    for (Index i = 0; i < count; ++i) y[start + i] = finish(x[start + i], result[i]);
  }
}

// y[i] = f(x)[i] for n values (y may be x).
template <typename T, typename F>
void evaluate_in_pieces(const T* x, Index n, T* y, const F& f) {
  evaluate_in_pieces(x, n, y, f, [](T, T result) { return result; });
}

}  // namespace mlstm::detail
