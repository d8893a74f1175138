// Plain-loop versions of the model's layer pieces, written from the reference's definitions
// with no code shared with the library: the yardstick of tests/test_model_layers.cpp.
// Every function works in double on double tensors and spells its indices out.
#pragma once

#include <cmath>
#include <optional>
#include <vector>

#include <mlstm/tensor.hpp>

#include "support/naive.hpp"

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

// The parameters of one block, in the reference's shapes (names in comments), in double.
struct BlockParams {
  Tensor1 xlstm_norm;                   // xlstm_norm.weight (E)
  Tensor2 proj_up;                      // xlstm.proj_up.weight (2I, E)
  std::optional<Tensor1> proj_up_bias;  // xlstm.proj_up.bias (2I)
  Tensor3 q_proj, k_proj, v_proj;       // xlstm.{q,k,v}_proj.weight (P, I/P, I/P)
  std::optional<Tensor1> q_bias, k_bias, v_bias;
  Tensor3 conv;                           // xlstm.conv1d.conv.weight (I, 1, KS)
  Tensor1 conv_bias;                      // xlstm.conv1d.conv.bias (I)
  Tensor2 igate, fgate;                   // xlstm.mlstm_cell.{i,f}gate.weight (NH, 3I)
  Tensor1 igate_bias, fgate_bias;         // (NH)
  Tensor1 outnorm;                        // xlstm.mlstm_cell.outnorm.weight (I)
  Tensor1 skip;                           // xlstm.learnable_skip (I)
  Tensor2 proj_down;                      // xlstm.proj_down.weight (E, I)
  std::optional<Tensor1> proj_down_bias;  // (E)
  Index num_heads = 1;
};

inline const Tensor1* bias_or_null(const std::optional<Tensor1>& bias) {
  return bias ? &*bias : nullptr;
}

// (B * S, F) rows -> (B, heads, S, F / heads) and back.
inline Tensor4 rows_to_heads(const Tensor2& x, Index B, Index S, Index heads) {
  const Index D = x.dimension(1) / heads;
  Tensor4 y(B, heads, S, D);
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < heads; ++h)
      for (Index s = 0; s < S; ++s)
        for (Index d = 0; d < D; ++d) y(b, h, s, d) = x(b * S + s, h * D + d);
  return y;
}
inline Tensor2 heads_to_rows(const Tensor4& x) {
  const Index B = x.dimension(0), H = x.dimension(1), S = x.dimension(2), D = x.dimension(3);
  Tensor2 y(B * S, H * D);
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index s = 0; s < S; ++s)
        for (Index d = 0; d < D; ++d) y(b * S + s, h * D + d) = x(b, h, s, d);
  return y;
}

// mLSTMCell.forward (state null: the parallel form) or the recurrent form from *state, on
// q, k, v rows (B * S, I).
inline Tensor2 mlstm_cell(const Tensor2& q, const Tensor2& k, const Tensor2& v, Index B, Index S,
                          const BlockParams& p, State<double>* state) {
  const Index I = q.dimension(1), NH = p.num_heads;
  Tensor2 concat(B * S, 3 * I);
  for (Index r = 0; r < B * S; ++r)
    for (Index j = 0; j < I; ++j) {
      concat(r, j) = q(r, j);
      concat(r, I + j) = k(r, j);
      concat(r, 2 * I + j) = v(r, j);
    }
  const Tensor4 igate = rows_to_heads(linear(concat, p.igate, &p.igate_bias), B, S, NH);
  const Tensor4 fgate = rows_to_heads(linear(concat, p.fgate, &p.fgate_bias), B, S, NH);
  const Tensor4 qh = rows_to_heads(q, B, S, NH), kh = rows_to_heads(k, B, S, NH),
                vh = rows_to_heads(v, B, S, NH);
  const Tensor4 h = state == nullptr
                        ? parallel<double>(qh, kh, vh, igate, fgate, std::nullopt, true, 1e-6)
                        : recurrent<double>(qh, kh, vh, igate, fgate, *state, 1e-6);
  return heads_to_rows(multi_head_layer_norm(h, p.outnorm, nullptr, 1e-5));
}

// mLSTMLayer.forward (state null) or step-by-step from (*cell_state, *conv_state), on x (B, S, E).
inline Tensor3 mlstm_layer(const Tensor3& x, const BlockParams& p, State<double>* cell_state,
                           Tensor3* conv_state) {
  const Index B = x.dimension(0), S = x.dimension(1), E = x.dimension(2);
  const Index I = p.skip.dimension(0);
  Tensor2 rows(B * S, E);
  for (Index i = 0; i < x.size(); ++i) rows.data()[i] = x.data()[i];
  const Tensor2 up = linear(rows, p.proj_up, bias_or_null(p.proj_up_bias));
  Tensor3 x_mlstm(B, S, I);
  Tensor2 z(B * S, I), x_mlstm_rows(B * S, I);
  for (Index r = 0; r < B * S; ++r)
    for (Index j = 0; j < I; ++j) {
      x_mlstm(r / S, r % S, j) = up(r, j);
      x_mlstm_rows(r, j) = up(r, j);
      z(r, j) = up(r, I + j);
    }
  Tensor3 conv(B, S, I);
  if (conv_state == nullptr) {
    conv = causal_conv1d(x_mlstm, p.conv, p.conv_bias, nullptr);
  } else {
    for (Index t = 0; t < S; ++t) {
      Tensor2 x_t(B, I);
      for (Index b = 0; b < B; ++b)
        for (Index j = 0; j < I; ++j) x_t(b, j) = x_mlstm(b, t, j);
      const Tensor2 y_t = causal_conv1d_step(x_t, p.conv, p.conv_bias, *conv_state);
      for (Index b = 0; b < B; ++b)
        for (Index j = 0; j < I; ++j) conv(b, t, j) = y_t(b, j);
    }
  }
  Tensor2 conv_act(B * S, I);
  for (Index r = 0; r < B * S; ++r)
    for (Index j = 0; j < I; ++j) conv_act(r, j) = silu(conv(r / S, r % S, j));
  const Tensor2 q = linear_headwise(conv_act, p.q_proj, bias_or_null(p.q_bias));
  const Tensor2 k = linear_headwise(conv_act, p.k_proj, bias_or_null(p.k_bias));
  const Tensor2 v = linear_headwise(x_mlstm_rows, p.v_proj, bias_or_null(p.v_bias));
  const Tensor2 h = mlstm_cell(q, k, v, B, S, p, cell_state);
  Tensor2 gated(B * S, I);
  for (Index r = 0; r < B * S; ++r)
    for (Index j = 0; j < I; ++j)
      gated(r, j) = (h(r, j) + p.skip(j) * conv_act(r, j)) * silu(z(r, j));
  const Tensor2 y = linear(gated, p.proj_down, bias_or_null(p.proj_down_bias));
  Tensor3 out(B, S, E);
  for (Index i = 0; i < out.size(); ++i) out.data()[i] = y.data()[i];
  return out;
}

// mLSTMBlock.forward: x + layer(layer_norm(x)).
inline Tensor3 mlstm_block(const Tensor3& x, const BlockParams& p, State<double>* cell_state,
                           Tensor3* conv_state) {
  const Index B = x.dimension(0), S = x.dimension(1), E = x.dimension(2);
  Tensor2 rows(B * S, E);
  for (Index i = 0; i < x.size(); ++i) rows.data()[i] = x.data()[i];
  const Tensor2 normed_rows = layer_norm(rows, p.xlstm_norm, nullptr, 1e-5, true);
  Tensor3 normed(B, S, E);
  for (Index i = 0; i < normed.size(); ++i) normed.data()[i] = normed_rows.data()[i];
  const Tensor3 y = mlstm_layer(normed, p, cell_state, conv_state);
  Tensor3 out(B, S, E);
  for (Index i = 0; i < out.size(); ++i) out.data()[i] = x.data()[i] + y.data()[i];
  return out;
}

}  // namespace mlstm::test::naive
