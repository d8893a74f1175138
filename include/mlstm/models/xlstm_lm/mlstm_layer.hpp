// The mLSTM layer, the reference's mLSTMLayer:
//
//   x (B, S, E) -> y (B, S, E),  I = inner dimension
//
//   [x_mlstm, z]  = proj_up(x)                    (B, S, 2I) split into two (B, S, I): the first
//                                                 half is the mLSTM branch, the second the gate
//   x_conv        = silu(causal_conv1d(x_mlstm))  depthwise, KS taps, with bias
//   q = q_proj(x_conv), k = k_proj(x_conv)        head-wise (block-diagonal) maps
//   v = v_proj(x_mlstm)                           v from the branch *before* the convolution
//   h             = mlstm_cell(q, k, v)           (B, S, I), normalized per head
//   h_skip        = h + learnable_skip * x_conv   learnable_skip (I), elementwise
//   y             = proj_down(h_skip * silu(z))   (B, S, E)
//
// proj_up, the q/k/v maps and proj_down have biases only when the model's `bias` is set; the
// convolution always has one. The reference's dropout is the identity at inference and is left
// out. The layer's state for step-by-step generation is the cell's (c, n, m) and the
// convolution's last KS inputs.
//
// Training: the forward from the zero state can keep an MLSTMLayerCache (the activations below);
// mlstm_layer_backward, given dy (B, S, E), runs in reverse, with g = silu(z) and
// a = h + learnable_skip * x_conv:
//
//   d h_skip_gated = dy W_down,            dW_down += dy^T (a * g)
//   dh = d(a g) g,  dz = d(a g) a silu'(z),  dskip += sum over rows of d(a g) g x_conv,
//   dx_conv = d(a g) g skip
//   the cell's backward (mlstm_cell.hpp)   -> dq, dk, dv
//   dx_conv += the q and k maps' backward
//   dx_mlstm = the convolution's backward of dx_conv silu'(conv output) + the v map's backward
//   dx = [dx_mlstm, dz] W_up,               dW_up += [dx_mlstm, dz]^T x
//
// and every parameter's gradient is accumulated into an MLSTMLayerGradients.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mlstm/layers/activations.hpp"
#include "mlstm/layers/causal_conv1d.hpp"
#include "mlstm/layers/linear.hpp"
#include "mlstm/layers/linear_headwise.hpp"
#include "mlstm/models/xlstm_lm/mlstm_cell.hpp"
#include "mlstm/models/xlstm_lm/model_state.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

// Views of the layer's parameters (the reference's names under "xlstm."). Optional biases are
// absent when the model has bias = false.
template <typename T>
struct MLSTMLayerWeights {
  ConstTensorMap<T, 2> proj_up_weight;                 // proj_up.weight (2I, E)
  std::optional<ConstTensorMap<T, 1>> proj_up_bias;    // proj_up.bias (2I)
  ConstTensorMap<T, 3> q_proj_weight;                  // q_proj.weight (P, I/P, I/P)
  std::optional<ConstTensorMap<T, 1>> q_proj_bias;     // q_proj.bias (I)
  ConstTensorMap<T, 3> k_proj_weight;                  // k_proj.weight (P, I/P, I/P)
  std::optional<ConstTensorMap<T, 1>> k_proj_bias;     // k_proj.bias (I)
  ConstTensorMap<T, 3> v_proj_weight;                  // v_proj.weight (P, I/P, I/P)
  std::optional<ConstTensorMap<T, 1>> v_proj_bias;     // v_proj.bias (I)
  ConstTensorMap<T, 3> conv_weight;                    // conv1d.conv.weight (I, 1, KS)
  ConstTensorMap<T, 1> conv_bias;                      // conv1d.conv.bias (I)
  MLSTMCellWeights<T> cell;                            // mlstm_cell.*
  ConstTensorMap<T, 1> learnable_skip;                 // learnable_skip (I)
  ConstTensorMap<T, 2> proj_down_weight;               // proj_down.weight (E, I)
  std::optional<ConstTensorMap<T, 1>> proj_down_bias;  // proj_down.bias (E)

  Index embedding_dim() const { return proj_up_weight.dimension(1); }
  Index inner_dim() const { return learnable_skip.dimension(0); }
  Index kernel_size() const { return conv_weight.dimension(2); }

  // ShapeError naming the first parameter whose shape does not fit the others, with `prefix`
  // before the names (e.g. "xlstm_block_stack.blocks.0.xlstm.").
  void validate(const std::string& prefix = "") const {
    const Index E = embedding_dim(), I = inner_dim();
    const auto name = [&](const char* parameter) { return prefix + parameter; };
    if (E < 1 || I < 1) {
      throw ShapeError(name("proj_up.weight"),
                       "expected (2I, E) with E >= 1 and I = learnable_skip's size >= 1, got " +
                           shape_string(proj_up_weight.dimensions()) +
                           " and I = " + std::to_string(I));
    }
    detail::expect_shape<T, 2>(proj_up_weight, {2 * I, E}, name("proj_up.weight").c_str(),
                               "(2I, E)");
    const auto optional_bias = [&](const std::optional<ConstTensorMap<T, 1>>& bias, Index size,
                                   const char* parameter) {
      if (bias) detail::expect_shape<T, 1>(*bias, {size}, name(parameter).c_str(), "of the layer");
    };
    optional_bias(proj_up_bias, 2 * I, "proj_up.bias");
    const ConstTensorMap<T, 3>* projections[] = {&q_proj_weight, &k_proj_weight, &v_proj_weight};
    const char* projection_names[] = {"q_proj.weight", "k_proj.weight", "v_proj.weight"};
    const Index blocks = q_proj_weight.dimension(0);
    for (int p = 0; p < 3; ++p) {
      const auto& w = *projections[p];
      if (blocks < 1 || I % blocks != 0 || w.dimension(0) != blocks ||
          w.dimension(1) != I / blocks || w.dimension(2) != I / blocks) {
        throw ShapeError(name(projection_names[p]),
                         "expected (P, I/P, I/P) with P dividing I = " + std::to_string(I) +
                             " and P as q_proj's, got " + shape_string(w.dimensions()));
      }
    }
    optional_bias(q_proj_bias, I, "q_proj.bias");
    optional_bias(k_proj_bias, I, "k_proj.bias");
    optional_bias(v_proj_bias, I, "v_proj.bias");
    if (conv_weight.dimension(0) != I || conv_weight.dimension(1) != 1 || kernel_size() < 1) {
      throw ShapeError(name("conv1d.conv.weight"),
                       "expected (I, 1, KS) with I = " + std::to_string(I) + " and KS >= 1, got " +
                           shape_string(conv_weight.dimensions()));
    }
    detail::expect_shape<T, 1>(conv_bias, {I}, name("conv1d.conv.bias").c_str(), "(I)");
    detail::expect_shape<T, 1>(cell.outnorm_weight, {I}, name("mlstm_cell.outnorm.weight").c_str(),
                               "(I)");
    cell.validate(prefix + "mlstm_cell.");
    detail::expect_shape<T, 2>(proj_down_weight, {E, I}, name("proj_down.weight").c_str(),
                               "(E, I)");
    optional_bias(proj_down_bias, E, "proj_down.bias");
  }
};

// The layer forward's activations, named in the file comment: what it keeps for its backward
// (Keep::for_backward), or its reused scratch (Keep::none, where conv is unused and gated is h).
template <typename T>
struct MLSTMLayerCache {
  Tensor<T, 3> x_mlstm, z;  // (B, S, I): the two halves of proj_up's output
  Tensor<T, 3> conv;        // (B, S, I): the convolution's output before silu
  Tensor<T, 3> x_conv;      // (B, S, I): silu of it
  Tensor<T, 3> q, k, v;     // (B, S, I)
  Tensor<T, 3> h;           // (B, S, I): the cell's output
  Tensor<T, 3> gated;       // (B, S, I): (h + skip * x_conv) * silu(z), proj_down's input
  MLSTMCellCache<T> cell;
};

// The layer backward's intermediate gradients; like MLSTMCellBackwardBuffers, resized to each
// call's shapes (a no-op when those are unchanged).
template <typename T>
struct MLSTMLayerBackwardBuffers {
  detail::RowMatrix<T> dgated;  // (B * S, I): proj_down's input gradient
  Tensor<T, 3> dh, dx_conv;     // (B, S, I)
  Tensor<T, 3> dup;             // (B, S, 2I): [dx_mlstm, dz], proj_up's output's
  Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> dskip;  // per row block (I)
  Tensor<T, 3> dq, dk, dv;                                                 // (B, S, I)
  MLSTMCellBackwardBuffers<T> cell;
};

// Where the layer's backward accumulates its parameters' gradients; a bias the model does not
// have is null.
template <typename T>
struct MLSTMLayerGradients {
  T* proj_up_weight;
  T* proj_up_bias;
  T* q_proj_weight;
  T* q_proj_bias;
  T* k_proj_weight;
  T* k_proj_bias;
  T* v_proj_weight;
  T* v_proj_bias;
  T* conv_weight;
  T* conv_bias;
  MLSTMCellGradients<T> cell;
  T* learnable_skip;
  T* proj_down_weight;
  T* proj_down_bias;
};

namespace detail {

template <typename T>
const T* data_or_null(const std::optional<ConstTensorMap<T, 1>>& bias) {
  return bias ? bias->data() : nullptr;
}

// gated (rows, I) = (h + skip * x_conv) * silu(z), for h, x_conv, z (rows, I) and skip (I), on up
// to `threads` threads; gated may be h.
template <typename T>
void skip_and_output_gate(const T* x_conv, const T* z, const T* skip, Index rows, Index inner,
                          const T* h, T* gated, int threads) {
  parallel_rows(rows, 16, threads, 40.0 * static_cast<double>(inner), [&](Index begin, Index end) {
    std::vector<T> gate(static_cast<size_t>(inner));
    for (Index r = begin; r < end; ++r) {
      const T* h_row = h + r * inner;
      const T* conv_row = x_conv + r * inner;
      T* out = gated + r * inner;
      silu_values(z + r * inner, inner, gate.data());
      for (Index j = 0; j < inner; ++j) out[j] = (h_row[j] + skip[j] * conv_row[j]) * gate[j];
    }
  });
}

// x (rows = B * S, E) -> y (B, S, E), resized (a no-op when its size is unchanged) and written;
// `state` null: from the zero state (no state kept), else continued from it and advanced past x.
// The activations go to `activations` as in mlstm_cell_forward; with Keep::for_backward (only
// without a state) they are what mlstm_layer_backward needs, else some share a buffer.
template <typename T>
void mlstm_layer_forward(const MLSTMLayerWeights<T>& w, const T* x, Index batch, Index seq_len,
                         const KernelOptions& options, MLSTMLayerState<T>* state,
                         MLSTMLayerCache<T>& activations, Keep keep, Tensor<T, 3>& y) {
  const Index E = w.embedding_dim(), I = w.inner_dim(), rows = batch * seq_len;
  const int threads = resolve_num_threads(options.num_threads, "options.num_threads");
  MLSTMLayerCache<T>& kept = activations;
  const bool for_backward = keep == Keep::for_backward;

  // proj_up's two halves of outputs, each its own product: x_mlstm from weight rows [0, I),
  // z from rows [I, 2I).
  Tensor<T, 3>& x_mlstm = kept.x_mlstm;
  Tensor<T, 3>& z = kept.z;
  x_mlstm.resize(batch, seq_len, I);
  z.resize(batch, seq_len, I);
  const T* up_bias = data_or_null(w.proj_up_bias);
  linear_rows(x, rows, E, w.proj_up_weight.data(), I, up_bias, x_mlstm.data(), threads);
  linear_rows(x, rows, E, w.proj_up_weight.data() + I * E, I,
              up_bias != nullptr ? up_bias + I : nullptr, z.data(), threads);

  // The convolution's output, kept before the silu when training, else silu'd in place.
  Tensor<T, 3>& x_conv = kept.x_conv;
  Tensor<T, 3>& conv = for_backward ? kept.conv : x_conv;
  x_conv.resize(batch, seq_len, I);
  conv.resize(batch, seq_len, I);
  causal_conv1d(x_mlstm.data(), batch, seq_len, I, w.conv_weight.data(), w.kernel_size(),
                w.conv_bias.data(), state != nullptr ? state->conv_state.data() : nullptr,
                conv.data(), threads);
  silu_rows(conv.data(), rows, I, x_conv.data(), threads);

  const Index blocks = w.q_proj_weight.dimension(0), block_dim = I / blocks;
  Tensor<T, 3>&q = kept.q, &k = kept.k, &v = kept.v;
  q.resize(batch, seq_len, I);
  k.resize(batch, seq_len, I);
  v.resize(batch, seq_len, I);
  linear_headwise_rows(x_conv.data(), rows, blocks, block_dim, w.q_proj_weight.data(), block_dim,
                       data_or_null(w.q_proj_bias), q.data(), threads);
  linear_headwise_rows(x_conv.data(), rows, blocks, block_dim, w.k_proj_weight.data(), block_dim,
                       data_or_null(w.k_proj_bias), k.data(), threads);
  linear_headwise_rows(x_mlstm.data(), rows, blocks, block_dim, w.v_proj_weight.data(), block_dim,
                       data_or_null(w.v_proj_bias), v.data(), threads);

  mlstm_cell_forward(w.cell, q.data(), k.data(), v.data(), batch, seq_len, options,
                     state != nullptr ? &state->mlstm_state : nullptr, kept.cell, keep, kept.h);

  // The gate in place on h, except when the backward needs h.
  Tensor<T, 3>& gated = for_backward ? kept.gated : kept.h;
  gated.resize(batch, seq_len, I);
  skip_and_output_gate(x_conv.data(), z.data(), w.learnable_skip.data(), rows, I, kept.h.data(),
                       gated.data(), threads);

  y.resize(batch, seq_len, E);
  linear_rows(gated.data(), rows, I, w.proj_down_weight.data(), E, data_or_null(w.proj_down_bias),
              y.data(), threads);
}

template <typename T>
using RowArray = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Rows [begin, begin + count) of a row-major (rows, width) array at `data`.
template <typename T>
Eigen::Map<RowArray<T>> rows_of(T* data, Index begin, Index count, Index width) {
  return Eigen::Map<RowArray<T>>(data + begin * width, count, width);
}
template <typename T>
Eigen::Map<const RowArray<T>> rows_of(const T* data, Index begin, Index count, Index width) {
  return Eigen::Map<const RowArray<T>>(data + begin * width, count, width);
}

// Rows per block of the backward's elementwise work, and its cost per value in parallel_rows'
// unit (an exponential and a few products).
inline constexpr Index backward_block_rows = 32;
inline constexpr double backward_cost_per_value = 40.0;

// Backward of the layer's training forward on x (B * S, E) with its cache (see the file comment):
// dx (B * S, E) written, the parameters' gradients accumulated into `grads`; `buffers` holds the
// intermediate gradients.
template <typename T>
void mlstm_layer_backward(const MLSTMLayerWeights<T>& w, const MLSTMLayerGradients<T>& grads,
                          const T* x, Index batch, Index seq_len, const KernelOptions& options,
                          const MLSTMLayerCache<T>& cache, const T* dy, T* dx,
                          MLSTMLayerBackwardBuffers<T>& buffers) {
  const Index E = w.embedding_dim(), I = w.inner_dim(), rows = batch * seq_len;
  const int threads = resolve_num_threads(options.num_threads, "options.num_threads");
  RowMatrix<T>& dgated = buffers.dgated;
  dgated.resize(rows, I);
  linear_rows_backward(cache.gated.data(), rows, I, w.proj_down_weight.data(), E, dy, dgated.data(),
                       grads.proj_down_weight, grads.proj_down_bias, threads);

  // Through (h + skip * x_conv) * silu(z), in blocks of rows on the pool; dup holds
  // [dx_mlstm, dz] per row. dskip's sums are kept per block and added in block order, so the
  // result does not depend on the thread count.
  Tensor<T, 3>&dh = buffers.dh, &dx_conv = buffers.dx_conv, &dup = buffers.dup;
  dh.resize(batch, seq_len, I);
  dx_conv.resize(batch, seq_len, I);
  dup.resize(batch, seq_len, 2 * I);
  const Index row_blocks = (rows + backward_block_rows - 1) / backward_block_rows;
  auto& dskip = buffers.dskip;
  dskip.resize(row_blocks, I);
  const auto skip =
      Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(w.learnable_skip.data(), I);
  const double cost_per_row = backward_cost_per_value * static_cast<double>(I);
  parallel_rows(rows, backward_block_rows, threads, cost_per_row, [&](Index begin, Index end) {
    const Index block = begin / backward_block_rows, count = end - begin;
    const auto z = rows_of(cache.z.data(), begin, count, I);
    const auto conv = rows_of(cache.x_conv.data(), begin, count, I);
    const auto h = rows_of(cache.h.data(), begin, count, I);
    const auto d = rows_of(dgated.data(), begin, count, I);
    const RowArray<T> sigmoid = sigmoid_values(z);
    const RowArray<T> dh_block = d * z * sigmoid;
    rows_of(dh.data(), begin, count, I) = dh_block;
    rows_of(dx_conv.data(), begin, count, I) = dh_block.rowwise() * skip;
    dskip.row(block) = (dh_block * conv).colwise().sum();
    Eigen::Map<RowArray<T>, 0, Eigen::OuterStride<>>(dup.data() + begin * 2 * I + I, count, I,
                                                     Eigen::OuterStride<>(2 * I)) =
        d * (h + conv.rowwise() * skip) * sigmoid * (T(1) + z * (T(1) - sigmoid));
  });
  for (Index block = 0; block < row_blocks; ++block)
    Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>(grads.learnable_skip, I) += dskip.row(block);

  Tensor<T, 3>&dq = buffers.dq, &dk = buffers.dk, &dv = buffers.dv;
  dq.resize(batch, seq_len, I);
  dk.resize(batch, seq_len, I);
  dv.resize(batch, seq_len, I);
  mlstm_cell_backward(w.cell, grads.cell, cache.q.data(), cache.k.data(), cache.v.data(), batch,
                      seq_len, options, cache.cell, dh.data(), dq.data(), dk.data(), dv.data(),
                      buffers.cell);

  // The q and k maps' input gradients add to dx_conv where they are computed; the convolution's
  // input gradient is written into dup's first half and the v map's added to it.
  const Index blocks = w.q_proj_weight.dimension(0), block_dim = I / blocks;
  const InputGradient<T> to_dx_conv{dx_conv.data(), I, Accumulate::yes};
  linear_headwise_rows_backward(cache.x_conv.data(), rows, blocks, block_dim,
                                w.q_proj_weight.data(), block_dim, dq.data(), to_dx_conv,
                                grads.q_proj_weight, grads.q_proj_bias, threads);
  linear_headwise_rows_backward(cache.x_conv.data(), rows, blocks, block_dim,
                                w.k_proj_weight.data(), block_dim, dk.data(), to_dx_conv,
                                grads.k_proj_weight, grads.k_proj_bias, threads);
  silu_backward_rows(cache.conv.data(), rows, I, dx_conv.data(), threads);
  causal_conv1d_backward(cache.x_mlstm.data(), batch, seq_len, I, w.conv_weight.data(),
                         w.kernel_size(), dx_conv.data(), dup.data(), 2 * I, grads.conv_weight,
                         grads.conv_bias, threads);
  linear_headwise_rows_backward(cache.x_mlstm.data(), rows, blocks, block_dim,
                                w.v_proj_weight.data(), block_dim, dv.data(),
                                InputGradient<T>{dup.data(), 2 * I, Accumulate::yes},
                                grads.v_proj_weight, grads.v_proj_bias, threads);

  linear_rows_backward(x, rows, E, w.proj_up_weight.data(), 2 * I, dup.data(), dx,
                       grads.proj_up_weight, grads.proj_up_bias, threads);
}

template <typename T, typename X>
ConstTensorMap<T, 3> check_layer_input(const MLSTMLayerWeights<T>& weights, const X& x) {
  static_assert(std::is_same_v<ScalarOf<X>, T>, "x must have the weights' scalar type");
  weights.validate();
  const auto view = const_view<3>(x, "x", "(B, S, E)");
  if (view.dimension(0) < 1 || view.dimension(1) < 1 ||
      view.dimension(2) != weights.embedding_dim()) {
    throw ShapeError("x", "expected (B, S, E) with B, S >= 1 and E = " +
                              std::to_string(weights.embedding_dim()) + ", got " +
                              shape_string(view.dimensions()));
  }
  return view;
}

template <typename T>
void check_layer_state(const MLSTMLayerState<T>& state, const MLSTMLayerWeights<T>& weights,
                       Index batch, const std::string& prefix) {
  check_cell_state(state.mlstm_state, batch, weights.cell.num_heads(), weights.cell.head_dim(),
                   prefix + ".mlstm_state");
  expect_shape<T, 3>(state.conv_state, {batch, weights.kernel_size(), weights.inner_dim()},
                     (prefix + ".conv_state").c_str(), "(B, KS, I)");
}

}  // namespace detail

// x (B, S, E) -> y (B, S, E), from the zero state, with options.forward_kernel.
template <typename T, typename X>
Tensor<T, 3> mlstm_layer_forward(const MLSTMLayerWeights<T>& weights, const X& x,
                                 const KernelOptions& options = {}) {
  const auto in = detail::check_layer_input(weights, x);
  detail::check_kernel_options(options);
  Tensor<T, 3> y;
  MLSTMLayerCache<T> activations;
  detail::mlstm_layer_forward(weights, in.data(), in.dimension(0), in.dimension(1), options,
                              static_cast<MLSTMLayerState<T>*>(nullptr), activations,
                              detail::Keep::none, y);
  return y;
}

// The same continuing from `state`, which is advanced past x: one step (S = 1) with the
// recurrent step, a longer sequence with the chunkwise kernel.
template <typename T, typename X>
Tensor<T, 3> mlstm_layer_forward(const MLSTMLayerWeights<T>& weights, const X& x,
                                 MLSTMLayerState<T>& state, const KernelOptions& options = {}) {
  const auto in = detail::check_layer_input(weights, x);
  detail::check_kernel_options(options);
  detail::check_layer_state(state, weights, in.dimension(0), "state");
  Tensor<T, 3> y;
  MLSTMLayerCache<T> activations;
  detail::mlstm_layer_forward(weights, in.data(), in.dimension(0), in.dimension(1), options, &state,
                              activations, detail::Keep::none, y);
  return y;
}

}  // namespace mlstm
