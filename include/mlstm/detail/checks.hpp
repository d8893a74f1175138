// Boundary checks shared by the kernels: shapes of the sequence and state arguments, finite
// gates, a valid eps. Each failure throws a ShapeError or ValueError naming the argument with the
// expected and actual shape or value. Kernels call these before writing anything.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <sstream>
#include <string>

#include <Eigen/Core>

#include "mlstm/detail/thread_pool.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::detail {

// Sizes of one (B, NH, S, ·) problem.
struct SequenceShape {
  Index batch = 0;
  Index heads = 0;
  Index seq_len = 0;
  Index qk_dim = 0;  // DQK
  Index v_dim = 0;   // DV
};

template <typename T, int Rank, typename X>
void expect_shape(const X& x, const std::array<Index, Rank>& expected, const char* name,
                  const char* layout) {
  bool same = true;
  for (int axis = 0; axis < Rank; ++axis) same = same && x.dimension(axis) == expected[axis];
  if (!same) {
    throw ShapeError(name, std::string("expected shape ") + layout + " = " +
                               shape_string(expected) + ", got " + shape_string(x.dimensions()));
  }
}

inline void expect_positive_dims(const SequenceShape& shape, const char* name) {
  if (shape.batch < 1 || shape.heads < 1 || shape.seq_len < 1 || shape.qk_dim < 1 ||
      shape.v_dim < 1) {
    throw ShapeError(
        name, "every dimension must be at least 1, got B=" + std::to_string(shape.batch) +
                  " NH=" + std::to_string(shape.heads) + " S=" + std::to_string(shape.seq_len) +
                  " DQK=" + std::to_string(shape.qk_dim) + " DV=" + std::to_string(shape.v_dim));
  }
}

// Whether all `size` values are finite, at the speed of a vectorized sum: x * 0 is 0 for a finite
// x and NaN otherwise, so a sum of them is 0 exactly when every value is finite. Large inputs are
// read in blocks on up to `threads` threads: the scan reads at the memory's speed, and a kernel
// that checks its inputs on one thread and then runs on two spent a tenth of its time so.
template <typename T>
bool all_finite(const T* data, Index size, int threads = 1) {
  using Values = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  constexpr Index block = Index(1) << 18;
  if (threads <= 1 || size <= block) return (Values(data, size) * T(0)).sum() == T(0);
  const Index blocks = (size + block - 1) / block;
  std::atomic<bool> finite{true};
  parallel_for(blocks, threads, [&](Index item) {
    const Index begin = item * block, count = std::min(block, size - begin);
    if ((Values(data + begin, count) * T(0)).sum() != T(0)) finite = false;
  });
  return finite;
}

template <typename T, int Rank, typename X>
void expect_finite(const X& x, const char* name, int threads = 1) {
  const Index size = x.size();
  const T* data = x.data();
  if (all_finite(data, size, threads)) return;
  for (Index flat = 0; flat < size; ++flat) {
    if (!std::isfinite(data[flat])) {
      std::ostringstream text;
      text << "expected finite values, got " << data[flat] << " at "
           << shape_string(multi_index<Rank>(x, flat));
      throw ValueError(name, text.str());
    }
  }
}

template <typename T>
void expect_valid_eps(T eps, const char* name) {
  if (!(std::isfinite(eps) && eps > T(0))) {
    std::ostringstream text;
    text << "expected a finite value > 0, got " << eps;
    throw ValueError(name, text.str());
  }
}

// The chunk size of the chunkwise form: at least 1.
inline void expect_valid_chunk_size(Index chunk_size, const char* name) {
  if (chunk_size < 1) {
    throw ValueError(name, "expected a chunk size >= 1, got " + std::to_string(chunk_size));
  }
}

// The five inputs of a sequence kernel, validated: q, k (B, NH, S, DQK), v (B, NH, S, DV),
// igate_preact, fgate_preact (B, NH, S, 1); check_sequence_inputs also has them all finite
// (scanned on up to `threads` threads), check_sequence_shapes leaves that to the kernel
// (chunkwise.hpp and chunkwise_backward.hpp scan each chunk as they read it).
template <typename T>
struct SequenceInputs {
  ConstTensorMap<T, 4> q, k, v, igate_preact, fgate_preact;
  SequenceShape shape;
};

template <typename Q, typename K, typename V, typename I, typename F>
SequenceInputs<ScalarOf<Q>> check_sequence_shapes(const Q& q, const K& k, const V& v,
                                                  const I& igate_preact, const F& fgate_preact) {
  require_same_scalar<Q, K, V, I, F>();
  using T = ScalarOf<Q>;
  require_kernel_scalar<T>();
  SequenceInputs<T> in{const_view<4>(q, "q", "(B, NH, S, DQK)"),
                       const_view<4>(k, "k", "(B, NH, S, DQK)"),
                       const_view<4>(v, "v", "(B, NH, S, DV)"),
                       const_view<4>(igate_preact, "igate_preact", "(B, NH, S, 1)"),
                       const_view<4>(fgate_preact, "fgate_preact", "(B, NH, S, 1)"),
                       {}};
  SequenceShape& s = in.shape;
  s.batch = in.q.dimension(0);
  s.heads = in.q.dimension(1);
  s.seq_len = in.q.dimension(2);
  s.qk_dim = in.q.dimension(3);
  s.v_dim = in.v.dimension(3);
  expect_positive_dims(s, "q, v");
  expect_shape<T, 4>(in.k, {s.batch, s.heads, s.seq_len, s.qk_dim}, "k", "(B, NH, S, DQK) of q");
  expect_shape<T, 4>(in.v, {s.batch, s.heads, s.seq_len, s.v_dim}, "v", "(B, NH, S, DV) of q");
  expect_shape<T, 4>(in.igate_preact, {s.batch, s.heads, s.seq_len, 1}, "igate_preact",
                     "(B, NH, S, 1) of q");
  expect_shape<T, 4>(in.fgate_preact, {s.batch, s.heads, s.seq_len, 1}, "fgate_preact",
                     "(B, NH, S, 1) of q");
  return in;
}

// Non-finite inputs are rejected rather than propagated: which outputs a NaN would reach depends
// on the kernel's blocking (0 * NaN inside a tile), so no useful promise could be made. Throws
// ValueError naming the first input with a non-finite value, and where.
template <typename T>
void expect_sequence_inputs_finite(const SequenceInputs<T>& in, int threads = 1) {
  expect_finite<T, 4>(in.q, "q", threads);
  expect_finite<T, 4>(in.k, "k", threads);
  expect_finite<T, 4>(in.v, "v", threads);
  expect_finite<T, 4>(in.igate_preact, "igate_preact", threads);
  expect_finite<T, 4>(in.fgate_preact, "fgate_preact", threads);
}

template <typename Q, typename K, typename V, typename I, typename F>
SequenceInputs<ScalarOf<Q>> check_sequence_inputs(const Q& q, const K& k, const V& v,
                                                  const I& igate_preact, const F& fgate_preact,
                                                  int threads = 1) {
  auto in = check_sequence_shapes(q, k, v, igate_preact, fgate_preact);
  expect_sequence_inputs_finite(in, threads);
  return in;
}

// The gradient of a sequence output, dh (B, NH, S, DV), for a problem of the given shape;
// check_output_gradient also has it all finite, check_output_gradient_shape leaves that to the
// kernel (chunkwise_backward.hpp scans each chunk as it reads it).
template <typename DH>
ConstTensorMap<ScalarOf<DH>, 4> check_output_gradient_shape(const DH& dh, const SequenceShape& s,
                                                            const char* name) {
  const auto view = const_view<4>(dh, name, "(B, NH, S, DV)");
  expect_shape<ScalarOf<DH>, 4>(view, {s.batch, s.heads, s.seq_len, s.v_dim}, name,
                                "(B, NH, S, DV) of v");
  return view;
}

template <typename DH>
ConstTensorMap<ScalarOf<DH>, 4> check_output_gradient(const DH& dh, const SequenceShape& s,
                                                      const char* name, int threads = 1) {
  const auto view = check_output_gradient_shape(dh, s, name);
  expect_finite<ScalarOf<DH>, 4>(view, name, threads);
  return view;
}

// Names of the three state arguments in messages: the step's own (c, n, m) or an initial
// state's (initial_state.c, ...). Plain strings, so that checking allocates nothing.
struct StateNames {
  const char* c;
  const char* n;
  const char* m;
};
inline constexpr StateNames step_state_names{"c", "n", "m"};
inline constexpr StateNames initial_state_names{"initial_state.c", "initial_state.n",
                                                "initial_state.m"};

// The recurrent state (c, n, m) of a problem with the given sizes: c (B, NH, DQK, DV),
// n (B, NH, DQK, 1), m (B, NH, 1, 1) with m finite. c and n are not scanned for non-finite
// values: that would double the memory traffic of a step, which reads c once. A non-finite
// c or n reaches h and the new state of its own (batch, head) only.
template <typename T, typename StateMap>
void check_state(const StateMap& c, const StateMap& n, const StateMap& m, const SequenceShape& s,
                 const StateNames& names) {
  expect_shape<T, 4>(c, {s.batch, s.heads, s.qk_dim, s.v_dim}, names.c, "(B, NH, DQK, DV)");
  expect_shape<T, 4>(n, {s.batch, s.heads, s.qk_dim, 1}, names.n, "(B, NH, DQK, 1)");
  expect_shape<T, 4>(m, {s.batch, s.heads, 1, 1}, names.m, "(B, NH, 1, 1)");
  expect_finite<T, 4>(m, names.m);
}

}  // namespace mlstm::detail
