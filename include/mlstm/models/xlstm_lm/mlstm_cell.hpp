// The mLSTM cell of the layer, the reference's mLSTMCell: gates from q, k and v, the kernel over
// heads, and the multi-head norm.
//
//   q, k, v (B, S, I) -> h (B, S, I),  I = NH * DH
//
//   i = [q, k, v] W_i^T + b_i,  f = [q, k, v] W_f^T + b_f      (B, S, NH); [q, k, v] (B, S, 3I)
//   q, k, v, i, f split into heads: (B, NH, S, DH), gates (B, NH, S, 1)
//   h_heads = kernel(q, k, v, i, f)                           (B, NH, S, DH)
//   h = multi-head layer norm of h_heads (weight offset from one, eps 1e-5, no bias), heads
//       concatenated back to (B, S, I)
//
// Whole sequences without a state run the model's forward kernel (the reference: the parallel
// form). With a state, a single step runs the recurrent step in place on it and a longer
// sequence runs the chunkwise kernel from it (kernel_forward, kernels/backend.hpp), replacing it
// by the state after the sequence.
//
// Training (mlstm_cell_backward): the forward from the zero state can keep an MLSTMCellCache (the
// gate pre-activations split into heads, the kernel's output before the norm, with the parallel
// kernel's row sums; with the chunkwise kernel the inputs split into heads too, while the
// parallel kernel reads q, k and v where they lie, head by head, forward and backward). Given
// dh (B, S, I), the backward runs, in reverse:
//
//   the multi-head norm's backward (layer_norm.hpp)            -> d h_heads, d outnorm.weight
//   the kernel's backward: the parallel form's for the parallel forward kernel (dq, dk, dv
//   written into rows), else chunkwise_stabilized_backward (the recurrent kernel computes the
//   chunkwise form's function)                                 -> dq, dk, dv (in rows or per
//                                                              head), di, df per head
//   the gates' backward: d[q, k, v] += di W_i + df W_f,  dW_i += di^T [q, k, v],  db_i += sum di
//                                                              (likewise for f; both in one
//                                                              product, gates_backward)
#pragma once

#include <algorithm>
#include <array>
#include <string>
#include <type_traits>
#include <utility>

#include <Eigen/Core>

#include "mlstm/detail/assert.hpp"
#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/matrix_product.hpp"
#include "mlstm/kernels/backend.hpp"
#include "mlstm/kernels/chunkwise_backward.hpp"
#include "mlstm/kernels/parallel_backward.hpp"
#include "mlstm/kernels/recurrent.hpp"
#include "mlstm/kernels/state.hpp"
#include "mlstm/layers/layer_norm.hpp"
#include "mlstm/layers/linear.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

// Views of the cell's parameters (the reference's names under "mlstm_cell.").
template <typename T>
struct MLSTMCellWeights {
  ConstTensorMap<T, 2> igate_weight;    // igate.weight (NH, 3I)
  ConstTensorMap<T, 1> igate_bias;      // igate.bias (NH)
  ConstTensorMap<T, 2> fgate_weight;    // fgate.weight (NH, 3I)
  ConstTensorMap<T, 1> fgate_bias;      // fgate.bias (NH)
  ConstTensorMap<T, 1> outnorm_weight;  // outnorm.weight (I), offset from one

  Index num_heads() const { return igate_weight.dimension(0); }
  Index inner_dim() const { return outnorm_weight.dimension(0); }
  Index head_dim() const { return inner_dim() / num_heads(); }

  // ShapeError naming the first parameter whose shape does not fit the others; `prefix` is
  // put before the names in the message (e.g. "blocks.0.xlstm.mlstm_cell.").
  void validate(const std::string& prefix = "") const {
    const Index inner = inner_dim(), heads = igate_weight.dimension(0);
    if (inner < 1 || heads < 1 || inner % heads != 0) {
      throw ShapeError(prefix + "igate.weight",
                       "expected (NH, 3I) with NH >= 1 dividing I = " + std::to_string(inner) +
                           " (outnorm.weight's size), got " +
                           shape_string(igate_weight.dimensions()));
    }
    const auto name = [&](const char* parameter) { return prefix + parameter; };
    detail::expect_shape<T, 2>(igate_weight, {heads, 3 * inner}, name("igate.weight").c_str(),
                               "(NH, 3I)");
    detail::expect_shape<T, 1>(igate_bias, {heads}, name("igate.bias").c_str(), "(NH)");
    detail::expect_shape<T, 2>(fgate_weight, {heads, 3 * inner}, name("fgate.weight").c_str(),
                               "(NH, 3I)");
    detail::expect_shape<T, 1>(fgate_bias, {heads}, name("fgate.bias").c_str(), "(NH)");
  }
};

// What the cell's forward keeps for its backward (Keep::for_backward), or its reused scratch.
template <typename T>
struct MLSTMCellCache {
  Tensor<T, 4> q_heads, k_heads, v_heads;  // (B, NH, S, DH); not with the parallel kernel
  Tensor<T, 4> igate_heads, fgate_heads;   // (B, NH, S, 1)
  ParallelForward<T> kernel;               // h before the norm (B, NH, S, DH); its row sums
                                           // with the parallel kernel only
};

// The cell backward's intermediate gradients. A training loop passes the same buffers to every
// backward: they are resized to the call's shapes, a no-op when those are unchanged.
template <typename T>
struct MLSTMCellBackwardBuffers {
  Tensor<T, 4> dh_heads;               // (B, NH, S, DH): the norm's input gradient
  ParallelGradients<T> kernel;         // the kernel's gradients per head (di, df alone with the
                                       // parallel kernel, which writes dq, dk, dv in rows)
  detail::RowMatrix<T> dgate, dgates;  // (rows, NH) and (rows, 2 NH): [d igate, d fgate]
};

// Where the cell's backward accumulates its parameters' gradients (shapes of MLSTMCellWeights).
template <typename T>
struct MLSTMCellGradients {
  T* igate_weight;
  T* igate_bias;
  T* fgate_weight;
  T* fgate_bias;
  T* outnorm_weight;
};

namespace detail {

// igate, fgate (rows, NH) = [q, k, v] W^T + b with the input and the forget gate's W and b, for
// q, k, v (rows, I): the gates of the concatenation [q, k, v] without building it. With NH
// outputs a matrix product would spend its time packing q, k and v; each gate is three dot
// products of length I instead (q W[:, 0:I]^T + k W[:, I:2I]^T + v W[:, 2I:3I]^T + b, in that
// order), both gates in one pass over q, k and v. Runs on up to `threads` threads over blocks of
// rows (the result does not depend on the count).
template <typename T>
void gate_preactivations(const T* q, const T* k, const T* v, Index rows, Index inner,
                         const MLSTMCellWeights<T>& w, RowMatrix<T>& igate, RowMatrix<T>& fgate,
                         int threads = 1) {
  using Vector = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;
  const Index heads = w.num_heads();
  igate.resize(rows, heads);
  fgate.resize(rows, heads);
  const T* inputs[] = {q, k, v};
  const std::pair<const T*, const T*> weights[] = {{w.igate_weight.data(), w.igate_bias.data()},
                                                   {w.fgate_weight.data(), w.fgate_bias.data()}};
  RowMatrix<T>* gates[] = {&igate, &fgate};
  const auto block = [&](Index begin, Index end) {
    for (Index row = begin; row < end; ++row)
      for (int gate = 0; gate < 2; ++gate)
        for (Index head = 0; head < heads; ++head) {
          const auto& [weight, bias] = weights[gate];
          T sum = bias[head];
          for (int part = 0; part < 3; ++part)
            sum += Vector(inputs[part] + row * inner, inner)
                       .dot(Vector(weight + (head * 3 + part) * inner, inner));
          (*gates[gate])(row, head) = sum;
        }
  };
  parallel_rows(rows, 32, threads, 12.0 * static_cast<double>(inner * heads), block);
}

// Rows [begin, end) of merge_heads' y (B * S, NH * D): row b * S + t from row t of each of x's
// heads (B, NH, S, D).
template <typename T>
void merge_head_rows(const T* x, Index seq_len, Index heads, Index head_dim, T* y, Index begin,
                     Index end) {
  for (Index row = begin; row < end; ++row) {
    const Index b = row / seq_len, t = row % seq_len;
    for (Index h = 0; h < heads; ++h) {
      const T* source = x + ((b * heads + h) * seq_len + t) * head_dim;
      std::copy(source, source + head_dim, y + (row * heads + h) * head_dim);
    }
  }
}

// Backward of both gates' gate_preactivations for dgates (rows = B * S, 2 NH) = [d igate,
// d fgate], where q, k and v also have the kernel's gradients: dq, dk, dv (rows, I) get dgates
// [W_i; W_f]'s thirds added to those, which are either already there (`per_head` null: the
// parallel kernel writes them in rows) or in `per_head` (B, NH, S, DH), merged back into rows
// (merge_heads) block of rows by block (the merged block is still in cache when the gates' term
// is added: merged whole first, the three took a second pass through memory); dW_i and dW_f
// (NH, 3I) accumulated with their halves of dgates^T [q, k, v], the biases with the sums of
// dgates' columns. Both gates in one product of depth 2 NH. On up to `threads` threads over
// blocks of rows (dq, dk, dv) and of columns (the weights), each sum in one thread, so the result
// does not depend on the count.
template <typename T>
void gates_backward(const T* q, const T* k, const T* v, Index seq_len, Index rows, Index inner,
                    const MLSTMCellWeights<T>& w, const RowMatrix<T>& dgates,
                    const ParallelGradients<T>* per_head, T* dq, T* dk, T* dv,
                    const MLSTMCellGradients<T>& grads, int threads) {
  const Index heads = w.num_heads(), head_dim = inner / heads;
  // [W_i; W_f]'s thirds (for q, k and v), each (2 NH, I) and contiguous: where I is a multiple
  // of 32 below 1024 (the small model's 512) the packed product reads them where they lie; with
  // rows 3I apart (1536 floats there) it packed them again for every block of rows.
  RowMatrix<T> weights(3 * 2 * heads, inner);
  const Eigen::Map<const RowMatrix<T>> igate(w.igate_weight.data(), heads, 3 * inner),
      fgate(w.fgate_weight.data(), heads, 3 * inner);
  for (Index part = 0; part < 3; ++part) {
    weights.middleRows(part * 2 * heads, heads) = igate.middleCols(part * inner, inner);
    weights.middleRows(part * 2 * heads + heads, heads) = fgate.middleCols(part * inner, inner);
  }
  const T* inputs[] = {q, k, v};
  const T* merged[] = {nullptr, nullptr, nullptr};
  if (per_head != nullptr) {
    merged[0] = per_head->dq.data();
    merged[1] = per_head->dk.data();
    merged[2] = per_head->dv.data();
  }
  T* gradients[] = {dq, dk, dv};
  constexpr Index row_block = 64, column_block = 128;
  const Index row_items = (rows + row_block - 1) / row_block;
  const Index column_items_per_part = (inner + column_block - 1) / column_block;
  const Index items = row_items + 3 * column_items_per_part;
  const double flops = 2.0 * 2.0 * static_cast<double>(rows * 3 * inner * 2 * heads);
  parallel_for(items, threads_for_work(threads, items, flops), [&](Index item) {
    if (item < row_items) {
      const Index begin = item * row_block, count = std::min(row_block, rows - begin);
      for (int part = 0; part < 3; ++part) {
        if (per_head != nullptr)
          merge_head_rows(merged[part], seq_len, heads, head_dim, gradients[part], begin,
                          begin + count);
        matrix_product<T>(count, inner, 2 * heads, {dgates.data() + begin * 2 * heads, 2 * heads},
                          {weights.data() + part * 2 * heads * inner, inner},
                          gradients[part] + begin * inner, inner, Accumulate::yes);
      }
      return;
    }
    const Index part = (item - row_items) / column_items_per_part;
    const Index begin = ((item - row_items) % column_items_per_part) * column_block;
    const Index count = std::min(column_block, inner - begin), column = part * inner + begin;
    RowMatrix<T> dweights(2 * heads, count);
    matrix_product<T>(2 * heads, count, rows, {dgates.data(), 2 * heads, true},
                      {inputs[part] + begin, inner}, dweights.data(), count);
    Eigen::Map<RowMatrix<T>>(grads.igate_weight, heads, 3 * inner).middleCols(column, count) +=
        dweights.topRows(heads);
    Eigen::Map<RowMatrix<T>>(grads.fgate_weight, heads, 3 * inner).middleCols(column, count) +=
        dweights.bottomRows(heads);
  });
  Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(grads.igate_bias, heads) +=
      dgates.leftCols(heads).colwise().sum();
  Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(grads.fgate_bias, heads) +=
      dgates.rightCols(heads).colwise().sum();
}

// The copies of split_heads: task(b, t) for every position, in blocks of positions
// on up to `threads` threads.
template <typename Task>
void for_each_position(Index batch, Index seq_len, Index width, int threads, const Task& task) {
  parallel_rows(batch * seq_len, 32, threads,
                memory_pass_cost_per_value * static_cast<double>(width),
                [&](Index begin, Index end) {
                  for (Index row = begin; row < end; ++row) task(row / seq_len, row % seq_len);
                });
}

// (B, S, NH * D) -> (B, NH, S, D): the reference's view(B, S, NH, D).transpose(1, 2), into y
// (resized: a no-op when its size is unchanged), on up to `threads` threads.
template <typename T>
void split_heads(const T* x, Index batch, Index seq_len, Index heads, Index head_dim,
                 Tensor<T, 4>& y, int threads = 1) {
  y.resize(batch, heads, seq_len, head_dim);
  for_each_position(batch, seq_len, heads * head_dim, threads, [&](Index b, Index t) {
    for (Index h = 0; h < heads; ++h) {
      const T* source = x + ((b * seq_len + t) * heads + h) * head_dim;
      std::copy(source, source + head_dim, y.data() + ((b * heads + h) * seq_len + t) * head_dim);
    }
  });
}

template <typename T>
Tensor<T, 4> split_heads(const T* x, Index batch, Index seq_len, Index heads, Index head_dim) {
  Tensor<T, 4> y;
  split_heads(x, batch, seq_len, heads, head_dim, y);
  return y;
}

// (B, NH, S, D) -> (B, S, NH * D), the inverse of split_heads, written to y (the gates' merges;
// q, k and v's are gates_backward's, block by block).
template <typename T>
void merge_heads(const T* x, Index batch, Index seq_len, Index heads, Index head_dim, T* y) {
  merge_head_rows(x, seq_len, heads, head_dim, y, Index{0}, batch * seq_len);
}

// The kernel over heads: q, k (B, NH, S, DQK), v (B, NH, S, DV), gates (B, NH, S, 1) -> h
// (B, NH, S, DV). `state` null: options.forward_kernel from the zero state; else one recurrent
// step in place (S = 1) or the chunkwise kernel from *state, which is replaced by the state
// after the sequence (kernel_forward, kernels/backend.hpp).
template <typename T>
Tensor<T, 4> mlstm_kernel_forward(const Tensor<T, 4>& q, const Tensor<T, 4>& k,
                                  const Tensor<T, 4>& v, const Tensor<T, 4>& igate,
                                  const Tensor<T, 4>& fgate, const KernelOptions& options,
                                  RecurrentState<T>* state) {
  return state == nullptr ? kernel_forward(q, k, v, igate, fgate, options)
                          : kernel_forward(q, k, v, igate, fgate, *state, options);
}

// What a forward's activations are for: this call only (the buffers are scratch, reused by the
// next call), or the backward that follows (the training forward, from the zero state).
enum class Keep { none, for_backward };

// The parallel kernel's operands in training: q, k, v (B, S, I) read where they lie, the gates'
// pre-activations split into heads in the cache.
template <typename T>
ParallelOperands<T> parallel_operands_in_rows(const SequenceShape& shape, const T* q, const T* k,
                                              const T* v, const MLSTMCellCache<T>& cache) {
  return {shape,
          rows_by_position(q, shape, shape.qk_dim),
          rows_by_position(k, shape, shape.qk_dim),
          rows_by_position(v, shape, shape.v_dim),
          cache.igate_heads.data(),
          cache.fgate_heads.data()};
}

// q, k, v (B, S, I) -> h (B, S, I), resized (a no-op when its size is unchanged) and written;
// `state` null: the forward kernel from the zero state, else continued from *state, which is
// replaced by the state after the sequence. The activations go to `activations`' tensors, resized
// to the call's shapes (a no-op when unchanged: a loop of calls at one shape then allocates no
// activation); with Keep::for_backward (only without a state) they are what mlstm_cell_backward
// needs.
template <typename T>
void mlstm_cell_forward(const MLSTMCellWeights<T>& w, const T* q, const T* k, const T* v,
                        Index batch, Index seq_len, const KernelOptions& options,
                        RecurrentState<T>* state, MLSTMCellCache<T>& activations, Keep keep,
                        Tensor<T, 3>& h) {
  MLSTM_ASSERT(keep == Keep::none || state == nullptr, "the cell's training forward has no state");
  const Index inner = w.inner_dim(), heads = w.num_heads(), head_dim = inner / heads;
  const Index rows = batch * seq_len;
  RowMatrix<T> igate, fgate;  // (rows, NH)
  const int threads = resolve_num_threads(options.num_threads, "options.num_threads");
  gate_preactivations(q, k, v, rows, inner, w, igate, fgate, threads);
  MLSTMCellCache<T>& kept = activations;
  split_heads(igate.data(), batch, seq_len, heads, Index{1}, kept.igate_heads);
  split_heads(fgate.data(), batch, seq_len, heads, Index{1}, kept.fgate_heads);
  const auto split_inputs = [&] {
    split_heads(q, batch, seq_len, heads, head_dim, kept.q_heads, threads);
    split_heads(k, batch, seq_len, heads, head_dim, kept.k_heads, threads);
    split_heads(v, batch, seq_len, heads, head_dim, kept.v_heads, threads);
  };

  if (keep == Keep::for_backward && options.forward_kernel == SequenceKernel::parallel) {
    // The parallel kernel reads q, k and v where they lie, and its backward reads them there
    // again: they are not copied into heads. A non-finite value of q, k or v makes both gates of
    // its row non-finite (NaN and infinities survive a dot product: inf * 0 is NaN), so a scan of
    // the gates finds it too; a non-finite input is then named, after a split, as the kernels
    // name their inputs.
    if (!(all_finite(igate.data(), igate.size()) && all_finite(fgate.data(), fgate.size()))) {
      split_inputs();
      expect_sequence_inputs_finite(check_sequence_shapes(kept.q_heads, kept.k_heads, kept.v_heads,
                                                          kept.igate_heads, kept.fgate_heads),
                                    threads);
    }
    ParallelOptions parallel;
    parallel.eps = options.eps;
    parallel_forward_with_cache(
        parallel_operands_in_rows(SequenceShape{batch, heads, seq_len, head_dim, head_dim}, q, k, v,
                                  kept),
        resolve_mask(parallel.mask, seq_len), threads, parallel, kept.kernel);
  } else {
    split_inputs();
    if (keep == Keep::none) {
      kept.kernel.h = mlstm_kernel_forward(kept.q_heads, kept.k_heads, kept.v_heads,
                                           kept.igate_heads, kept.fgate_heads, options, state);
    } else {
      KernelOptions chunkwise = options;
      chunkwise.forward_kernel = SequenceKernel::chunkwise;
      kept.kernel.h = kernel_forward(kept.q_heads, kept.k_heads, kept.v_heads, kept.igate_heads,
                                     kept.fgate_heads, chunkwise);
    }
  }

  h.resize(batch, seq_len, inner);
  multi_head_layer_norm(kept.kernel.h.data(), batch, heads, seq_len, head_dim,
                        w.outnorm_weight.data(), static_cast<const T*>(nullptr), LayerNormOptions{},
                        true, h.data(), threads);
}

// Backward of the cell's training forward (see the file comment): given q, k, v (B, S, I), the
// forward's cache and dh (B, S, I), writes dq, dk, dv (B, S, I) and accumulates the parameters'
// gradients into `grads`; `buffers` holds the intermediate gradients.
template <typename T>
void mlstm_cell_backward(const MLSTMCellWeights<T>& w, const MLSTMCellGradients<T>& grads,
                         const T* q, const T* k, const T* v, Index batch, Index seq_len,
                         const KernelOptions& options, const MLSTMCellCache<T>& cache, const T* dh,
                         T* dq, T* dk, T* dv, MLSTMCellBackwardBuffers<T>& buffers) {
  const Index inner = w.inner_dim(), heads = w.num_heads(), head_dim = inner / heads;
  const Index rows = batch * seq_len;
  const int threads = resolve_num_threads(options.num_threads, "options.num_threads");
  Tensor<T, 4>& dh_heads = buffers.dh_heads;
  dh_heads.resize(batch, heads, seq_len, head_dim);
  multi_head_layer_norm_backward(cache.kernel.h.data(), batch, heads, seq_len, head_dim,
                                 w.outnorm_weight.data(), LayerNormOptions{}, true, dh,
                                 dh_heads.data(), grads.outnorm_weight, static_cast<T*>(nullptr),
                                 threads);
  ParallelGradients<T>& g = buffers.kernel;
  const bool parallel_kernel = options.forward_kernel == SequenceKernel::parallel;
  if (parallel_kernel) {
    // dq, dk and dv straight into rows, where the forward read q, k and v; di and df per head.
    const SequenceShape shape{batch, heads, seq_len, head_dim, head_dim};
    g.di.resize(batch, heads, seq_len, 1);
    g.df.resize(batch, heads, seq_len, 1);
    const ParallelGradientRows<T> out{
        rows_by_position(dq, shape, head_dim), rows_by_position(dk, shape, head_dim),
        rows_by_position(dv, shape, head_dim), g.di.data(), g.df.data()};
    expect_finite<T, 4>(dh_heads, "dh", threads);  // as the kernels' own backwards do
    ParallelOptions parallel;
    parallel.eps = options.eps;
    parallel_backward(parallel_operands_in_rows(shape, q, k, v, cache),
                      resolve_mask(parallel.mask, seq_len), threads, dh_heads.data(), cache.kernel,
                      parallel, out);
  } else {
    ChunkwiseOptions chunkwise;
    chunkwise.chunk_size = options.chunk_size;
    chunkwise.eps = options.eps;
    chunkwise.num_threads = options.num_threads;
    auto chunkwise_grads =
        chunkwise_stabilized_backward(cache.q_heads, cache.k_heads, cache.v_heads,
                                      cache.igate_heads, cache.fgate_heads, dh_heads, chunkwise);
    g = ParallelGradients<T>{std::move(chunkwise_grads.dq), std::move(chunkwise_grads.dk),
                             std::move(chunkwise_grads.dv), std::move(chunkwise_grads.di),
                             std::move(chunkwise_grads.df)};
  }
  RowMatrix<T>& dgate = buffers.dgate;
  RowMatrix<T>& dgates = buffers.dgates;  // [d igate, d fgate]
  dgate.resize(rows, heads);
  dgates.resize(rows, 2 * heads);
  merge_heads(g.di.data(), batch, seq_len, heads, Index{1}, dgate.data());
  dgates.leftCols(heads) = dgate;
  merge_heads(g.df.data(), batch, seq_len, heads, Index{1}, dgate.data());
  dgates.rightCols(heads) = dgate;
  gates_backward(q, k, v, seq_len, rows, inner, w, dgates, parallel_kernel ? nullptr : &g, dq, dk,
                 dv, grads, threads);
}

// c (B, NH, DH, DH), n (B, NH, DH, 1), m (B, NH, 1, 1); `prefix` names the state in messages.
template <typename T>
void check_cell_state(const RecurrentState<T>& state, Index batch, Index heads, Index head_dim,
                      const std::string& prefix) {
  expect_shape<T, 4>(state.c, {batch, heads, head_dim, head_dim}, (prefix + ".c").c_str(),
                     "(B, NH, DH, DH)");
  expect_shape<T, 4>(state.n, {batch, heads, head_dim, 1}, (prefix + ".n").c_str(),
                     "(B, NH, DH, 1)");
  expect_shape<T, 4>(state.m, {batch, heads, 1, 1}, (prefix + ".m").c_str(), "(B, NH, 1, 1)");
}

// q, k, v (B, S, I) with B, S >= 1 and I the cell's inner dimension.
template <typename T, typename Q, typename K, typename V>
std::array<ConstTensorMap<T, 3>, 3> check_cell_inputs(const MLSTMCellWeights<T>& weights,
                                                      const Q& q, const K& k, const V& v) {
  require_same_scalar<Q, K, V>();
  static_assert(std::is_same_v<ScalarOf<Q>, T>, "q, k, v must have the weights' scalar type");
  weights.validate();
  std::array<ConstTensorMap<T, 3>, 3> views{const_view<3>(q, "q", "(B, S, I)"),
                                            const_view<3>(k, "k", "(B, S, I)"),
                                            const_view<3>(v, "v", "(B, S, I)")};
  const Index batch = views[0].dimension(0), seq_len = views[0].dimension(1);
  if (batch < 1 || seq_len < 1) {
    throw ShapeError(
        "q", "expected (B, S, I) with B, S >= 1, got " + shape_string(views[0].dimensions()));
  }
  const char* names[] = {"q", "k", "v"};
  for (int i = 0; i < 3; ++i)
    expect_shape<T, 3>(views[i], {batch, seq_len, weights.inner_dim()}, names[i],
                       "(B, S, I) with I of the cell's weights");
  return views;
}

}  // namespace detail

// q, k, v (B, S, I) -> h (B, S, I), from the zero state, with options.forward_kernel.
template <typename T, typename Q, typename K, typename V>
Tensor<T, 3> mlstm_cell_forward(const MLSTMCellWeights<T>& weights, const Q& q, const K& k,
                                const V& v, const KernelOptions& options = {}) {
  const auto in = detail::check_cell_inputs(weights, q, k, v);
  detail::check_kernel_options(options);
  Tensor<T, 3> h;
  MLSTMCellCache<T> activations;
  detail::mlstm_cell_forward(weights, in[0].data(), in[1].data(), in[2].data(), in[0].dimension(0),
                             in[0].dimension(1), options, static_cast<RecurrentState<T>*>(nullptr),
                             activations, detail::Keep::none, h);
  return h;
}

// The same continuing from `state` (c (B, NH, DH, DH), n (B, NH, DH, 1), m (B, NH, 1, 1)), which
// is replaced by the state after the sequence: one step (S = 1) in place with the recurrent
// step, a longer sequence with the chunkwise kernel (options.chunk_size).
template <typename T, typename Q, typename K, typename V>
Tensor<T, 3> mlstm_cell_forward(const MLSTMCellWeights<T>& weights, const Q& q, const K& k,
                                const V& v, RecurrentState<T>& state,
                                const KernelOptions& options = {}) {
  const auto in = detail::check_cell_inputs(weights, q, k, v);
  detail::check_kernel_options(options);
  detail::check_cell_state(state, in[0].dimension(0), weights.num_heads(), weights.head_dim(),
                           "state");
  Tensor<T, 3> h;
  MLSTMCellCache<T> activations;
  detail::mlstm_cell_forward(weights, in[0].data(), in[1].data(), in[2].data(), in[0].dimension(0),
                             in[0].dimension(1), options, &state, activations, detail::Keep::none,
                             h);
  return h;
}

}  // namespace mlstm
