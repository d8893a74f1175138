// Plain-loop versions of the model's layer pieces, written from the reference's definitions
// with no code shared with the library: the yardstick of tests/test_model_layers.cpp.
// Every function works in double on double tensors and spells its indices out.
#pragma once

#include <cmath>
#include <vector>

#include <mlstm/tensor.hpp>

namespace mlstm::test::naive {

using Tensor1 = Tensor<double, 1>;
using Tensor2 = Tensor<double, 2>;
using Tensor3 = Tensor<double, 3>;
using Tensor4 = Tensor<double, 4>;

// nn.Linear on (N, in): y[r, o] = sum_i x[r, i] w[o, i] + b[o].
inline Tensor2 linear(const Tensor2& x, const Tensor2& w, const Tensor1* b) {
  Tensor2 y(x.dimension(0), w.dimension(0));
  for (Index r = 0; r < x.dimension(0); ++r)
    for (Index o = 0; o < w.dimension(0); ++o) {
      double sum = b != nullptr ? (*b)(o) : 0.0;
      for (Index i = 0; i < x.dimension(1); ++i) sum += x(r, i) * w(o, i);
      y(r, o) = sum;
    }
  return y;
}

// LinearHeadwiseExpand on (N, P * din) with w (P, dout, din).
inline Tensor2 linear_headwise(const Tensor2& x, const Tensor3& w, const Tensor1* b) {
  const Index P = w.dimension(0), dout = w.dimension(1), din = w.dimension(2);
  Tensor2 y(x.dimension(0), P * dout);
  for (Index r = 0; r < x.dimension(0); ++r)
    for (Index p = 0; p < P; ++p)
      for (Index o = 0; o < dout; ++o) {
        double sum = b != nullptr ? (*b)(p * dout + o) : 0.0;
        for (Index d = 0; d < din; ++d) sum += x(r, p * din + d) * w(p, o, d);
        y(r, p * dout + o) = sum;
      }
  return y;
}

// F.layer_norm over the last axis of (N, D) with scale (1 + w) (residual) or w, and bias b.
inline Tensor2 layer_norm(const Tensor2& x, const Tensor1& w, const Tensor1* b, double eps,
                          bool residual_weight) {
  const Index D = x.dimension(1);
  Tensor2 y(x.dimension(0), D);
  for (Index r = 0; r < x.dimension(0); ++r) {
    double mean = 0.0;
    for (Index j = 0; j < D; ++j) mean += x(r, j);
    mean /= static_cast<double>(D);
    double var = 0.0;
    for (Index j = 0; j < D; ++j) var += (x(r, j) - mean) * (x(r, j) - mean);
    var /= static_cast<double>(D);
    for (Index j = 0; j < D; ++j) {
      const double scale = residual_weight ? 1.0 + w(j) : w(j);
      y(r, j) = (x(r, j) - mean) / std::sqrt(var + eps) * scale + (b != nullptr ? (*b)(j) : 0.0);
    }
  }
  return y;
}

// MultiHeadLayerNorm: F.group_norm with NH groups on h (B, NH, S, DH) seen as (B * S, NH * DH).
inline Tensor4 multi_head_layer_norm(const Tensor4& h, const Tensor1& w, const Tensor1* b,
                                     double eps) {
  const Index B = h.dimension(0), NH = h.dimension(1), S = h.dimension(2), DH = h.dimension(3);
  // The reference's layout: rows (b, s), channels head * DH + d, groups of DH channels.
  Tensor2 rows(B * S, NH * DH);
  for (Index bb = 0; bb < B; ++bb)
    for (Index hd = 0; hd < NH; ++hd)
      for (Index s = 0; s < S; ++s)
        for (Index d = 0; d < DH; ++d) rows(bb * S + s, hd * DH + d) = h(bb, hd, s, d);
  Tensor4 y(B, NH, S, DH);
  for (Index r = 0; r < B * S; ++r)
    for (Index g = 0; g < NH; ++g) {
      double mean = 0.0, var = 0.0;
      for (Index d = 0; d < DH; ++d) mean += rows(r, g * DH + d);
      mean /= static_cast<double>(DH);
      for (Index d = 0; d < DH; ++d)
        var += (rows(r, g * DH + d) - mean) * (rows(r, g * DH + d) - mean);
      var /= static_cast<double>(DH);
      for (Index d = 0; d < DH; ++d) {
        const Index channel = g * DH + d;
        const double value = (rows(r, channel) - mean) / std::sqrt(var + eps) * (1.0 + w(channel)) +
                             (b != nullptr ? (*b)(channel) : 0.0);
        y(r / S, g, r % S, d) = value;
      }
    }
  return y;
}

// nn.Conv1d(D, D, KS, padding=KS-1, groups=D) on x (B, S, D) transposed to (B, D, S), keeping
// the first S outputs: the reference's CausalConv1d.forward. `history` (B, KS, D), if given,
// is prepended as CausalConv1d.forward's conv_state is (all its rows; the padding then reaches
// only zeros before them, which the kept outputs do not see beyond the last KS-1 rows).
inline Tensor3 causal_conv1d(const Tensor3& x, const Tensor3& w, const Tensor1& bias,
                             const Tensor3* history) {
  const Index B = x.dimension(0), S = x.dimension(1), D = x.dimension(2), KS = w.dimension(2);
  const Index H = history != nullptr ? history->dimension(1) : 0;
  Tensor3 y(B, S, D);
  for (Index b = 0; b < B; ++b)
    for (Index d = 0; d < D; ++d) {
      // The padded input sequence: KS-1 zeros, the history, then x.
      std::vector<double> padded(static_cast<size_t>(KS - 1 + H + S), 0.0);
      for (Index r = 0; r < H; ++r) padded[KS - 1 + r] = (*history)(b, r, d);
      for (Index t = 0; t < S; ++t) padded[KS - 1 + H + t] = x(b, t, d);
      for (Index t = 0; t < S; ++t) {
        // Output position H + t of the padded convolution.
        double sum = bias(d);
        for (Index j = 0; j < KS; ++j) sum += w(d, 0, j) * padded[H + t + j];
        y(b, t, d) = sum;
      }
    }
  return y;
}

// CausalConv1d.step: state (B, KS, D) rolled by one, x_t written last, y = sum(state * w) + b.
inline Tensor2 causal_conv1d_step(const Tensor2& x, const Tensor3& w, const Tensor1& bias,
                                  Tensor3& state) {
  const Index B = x.dimension(0), D = x.dimension(1), KS = w.dimension(2);
  Tensor2 y(B, D);
  for (Index b = 0; b < B; ++b)
    for (Index d = 0; d < D; ++d) {
      for (Index r = 0; r + 1 < KS; ++r) state(b, r, d) = state(b, r + 1, d);
      state(b, KS - 1, d) = x(b, d);
      double sum = bias(d);
      for (Index j = 0; j < KS; ++j) sum += state(b, j, d) * w(d, 0, j);
      y(b, d) = sum;
    }
  return y;
}

inline double silu(double x) { return x / (1.0 + std::exp(-x)); }

}  // namespace mlstm::test::naive
