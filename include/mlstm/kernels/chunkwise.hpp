// The mLSTM cell in chunkwise form (the reference's chunkwise_simple, and the chunkwise kernels
// of mlstm_kernels): the sequence is cut into chunks of L steps; within a chunk the outputs are
// computed in parallel form, between chunks the recurrent state (C, n, m) is carried.
//
//   auto out = mlstm::chunkwise_stabilized(q, k, v, igate_preact, fgate_preact, options);
//   out.h;       // (B, NH, S, DV)
//   out.state;   // final c (B, NH, DQK, DV), n (B, NH, DQK, 1), m (B, NH, 1, 1)
//   // continue generation from out.state with recurrent_step_stabilized(_inplace)
//
// Shapes as parallel_stabilized; any S (the last chunk may be shorter than L); an optional
// initial state in the recurrent step's shapes (omitted: the zero state c = 0, n = 0, m = 0).
// Scalars: float, double, or Eigen::bfloat16 (computed in float; the state is then float).
//
// Per chunk, with cum[t] = sum of logsigmoid(f) from the chunk's first step to t inclusive,
// total = cum[last], and the state (C, n, m) at the chunk's start (C and n scaled by exp(-m),
// built from k / sqrt(DQK) as in the recurrent form):
//
//   m_t  = max(cum[t] + m, max_{s<=t} (cum[t] - cum[s] + i_s))          the recurrent form's m_t
//   h_t  = [ sum_{s<=t} (q_t.k_s / sqrt(DQK)) exp(cum[t] - cum[s] + i_s - m_t) v_s
//            + exp(cum[t] + m - m_t) q_t^T C ] / (max(|den_t|, exp(-m_t)) + eps)
//   den_t =  sum_{s<=t} (q_t.k_s / sqrt(DQK)) exp(cum[t] - cum[s] + i_s - m_t)
//            + exp(cum[t] + m - m_t) q_t . n
//   state at the chunk's end:
//   a_s  = total - cum[s] + i_s,   m' = max(total + m, max_s a_s)
//   C'   = exp(total + m - m') C + sum_s exp(a_s - m') (k_s / sqrt(DQK)) v_s^T,   n' likewise
//
// Stabilizers: every h_t uses the recurrent form's m_t (the reference's chunkwise_simple uses
// the same), so h equals recurrent_sequence from the same initial state to rounding, lower bound
// exp(-m_t) included. Against parallel_stabilized (zero initial state) h agrees to rounding
// where the two forms' m_t are equal, which i_0 >= 0 guarantees; elsewhere the parallel m_t lacks
// the zero state's term (sum of logsigmoid(f) up to t), and since h = N_t / (max(|D_t|, 1) +
// eps exp(m_t)) with N_t, D_t the unstabilized numerator and denominator, the forms then differ
// by the eps term only. The final state's m is the recurrent form's m after the last step; c and
// n agree with the recurrent form's to rounding (compare c * exp(m), n * exp(m) across forms).
//
// Threads: when the batch-heads share out evenly over the threads, each thread walks whole
// batch-heads chunk by chunk. Otherwise the sequence is processed in segments of chunks: for
// each segment, the chunks' contributions (the sums over s above) are computed in parallel over
// (batch-head, chunk), the states at the chunk starts follow by a short scan per batch-head, and
// the outputs are again computed in parallel over (batch-head, chunk). Every quantity is computed
// by one thread in the same order either way, so results do not depend on the thread count (nor
// on the segment length).
// Memory beyond inputs and outputs: the segment's states and contributions (about 4 MiB at
// most, whatever S is).
//
// One chunk's building blocks, which the backward pass shares (it recomputes the chunk states),
// are in detail/chunk_steps.hpp; here are the walks over a sequence (detail::chunkwise_forward,
// chunkwise_forward_by_head) and the public calls.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <optional>
#include <vector>

#include "mlstm/detail/bfloat16.hpp"
#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/chunk_steps.hpp"
#include "mlstm/kernels/recurrent.hpp"
#include "mlstm/kernels/state.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

struct ChunkwiseOptions {
  Index chunk_size = 64;  // L >= 1; the last chunk holds the remaining S mod L steps
  double eps = 1e-6;      // added to the normalizer; finite and > 0
  int num_threads = 0;    // 0: the library default (mlstm::set_num_threads)
};

// What chunkwise_stabilized returns for inputs of scalar T: h in T, the state in float for
// bfloat16 inputs and in T otherwise.
template <typename T>
using ChunkwiseResult = HiddenAndState<T, ComputeScalar<T>>;

namespace detail {

// Writes the initial state of batch-head `head` to c (DQK, DV) and n (DQK) and returns its m:
// from initial_c/n/m (B, NH, ...) as given, or the zero state when they are nullptr.
template <typename T>
double load_initial_state(const T* initial_c, const T* initial_n, const T* initial_m, Index head,
                          Index qk_dim, Index v_dim, T* c, T* n) {
  const Index c_size = qk_dim * v_dim;
  if (initial_c == nullptr) {
    std::fill_n(c, c_size, T(0));
    std::fill_n(n, qk_dim, T(0));
    return 0.0;
  }
  std::copy_n(initial_c + head * c_size, c_size, c);
  std::copy_n(initial_n + head * qk_dim, qk_dim, n);
  return static_cast<double>(initial_m[head]);
}

// Writes a head's state (c, n, m) to final_c/n/m (B, NH, ...) at batch-head `head`.
template <typename T>
void store_final_state(const T* c, const T* n, double m, Index head, Index qk_dim, Index v_dim,
                       T* final_c, T* final_n, T* final_m) {
  const Index c_size = qk_dim * v_dim;
  std::copy_n(c, c_size, final_c + head * c_size);
  std::copy_n(n, qk_dim, final_n + head * qk_dim);
  final_m[head] = static_cast<T>(m);
}

// Elements of one state slot, rounded up to 64 bytes so that every slot starts equally aligned
// (Eigen's vectorized sums peel by alignment; equal alignment keeps results independent of the
// slot a chunk lands in).
template <typename T>
Index padded_size(Index elements) {
  constexpr Index per_line = 64 / static_cast<Index>(sizeof(T));
  return (elements + per_line - 1) / per_line * per_line;
}

// The sizes of a chunkwise problem's state buffers: a state slot holds C (c_size elements, at a
// stride of c_stride) and n (at a stride of n_stride).
template <typename T>
struct ChunkLayout {
  Index heads, chunks, c_size, c_stride, n_stride;

  ChunkLayout(const SequenceShape& s, Index chunk_size)
      : heads(s.batch * s.heads),
        chunks((s.seq_len + chunk_size - 1) / chunk_size),
        c_size(s.qk_dim * s.v_dim),
        c_stride(padded_size<T>(c_size)),
        n_stride(padded_size<T>(s.qk_dim)) {}
};

// How many chunks a segment holds: enough to give each of `threads` threads a few items per
// phase, within about 4 MiB of segment buffers (small enough that a chunk's keys and values are
// still in cache when its outputs are computed). The results do not depend on it.
template <typename T>
Index chunkwise_segment_chunks(const SequenceShape& s, Index chunk_size, int threads) {
  constexpr Index budget_bytes = Index(4) << 20;
  const ChunkLayout<T> z(s, chunk_size);
  const Index bytes_per_chunk =
      z.heads * 2 * (z.c_stride + z.n_stride) * static_cast<Index>(sizeof(T));
  const Index wanted = (4 * static_cast<Index>(threads) + z.heads - 1) / z.heads;
  return std::clamp<Index>(std::min(wanted, budget_bytes / bytes_per_chunk), 1, z.chunks);
}

// Whether the inputs of the chunk of `length` steps from flat row `row` (q, k, v and both gates)
// are all finite. The chunkwise form scans each chunk as it starts on it, so that the scan reads
// from cache what the chunk's products read next: a scan of the whole inputs before had read them
// from memory once more (5 to 6% of the form's time at S = 2048 and 8192, D = 128).
template <typename T>
bool chunk_inputs_finite(const SequenceInputs<T>& in, Index row, Index length) {
  const SequenceShape& s = in.shape;
  return all_finite(in.q.data() + row * s.qk_dim, length * s.qk_dim) &&
         all_finite(in.k.data() + row * s.qk_dim, length * s.qk_dim) &&
         all_finite(in.v.data() + row * s.v_dim, length * s.v_dim) &&
         all_finite(in.igate_preact.data() + row, length) &&
         all_finite(in.fgate_preact.data() + row, length);
}

// The chunkwise form on inputs of checked shapes, `segment` chunks at a time (any segment >= 1
// gives the same bits). initial_c/n/m: the initial state, or all nullptr for the zero state.
// Writes h (B, NH, S, DV) and the final state (c, n, m) and returns true; returns false, with h
// and the state unspecified, where a chunk's inputs were not all finite (chunk_inputs_finite).
//
// Per segment of chunks: (1) gates and contribution of every (batch-head, chunk), in parallel;
// (2) per batch-head, the states at the chunk starts by advance_chunk_state, in order;
// (3) the outputs of every (batch-head, chunk), in parallel. The state at the start of chunk j
// lives in slot j mod (segment + 1) of its batch-head, so a segment's last state is the next
// segment's first without a copy.
template <typename T>
[[nodiscard]] bool chunkwise_forward(const SequenceInputs<T>& in, Index chunk_size, Index segment,
                                     T eps, int num_threads, const T* initial_c, const T* initial_n,
                                     const T* initial_m, T* h, T* final_c, T* final_n, T* final_m) {
  using Storage = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  const SequenceShape& s = in.shape;
  const ChunkLayout<T> z(s, chunk_size);
  const Index heads = z.heads, chunks = z.chunks, c_size = z.c_size;
  const Index c_stride = z.c_stride, n_stride = z.n_stride;
  const Index slots = segment + 1;

  Storage state_c(heads * slots * c_stride), state_n(heads * slots * n_stride);
  std::vector<double> state_m(static_cast<size_t>(heads * slots));
  Storage kv(heads * segment * c_stride), ksum(heads * segment * n_stride);
  std::vector<ChunkGates> gates(static_cast<size_t>(heads * segment));
  auto slot = [&](Index head, Index j) { return head * slots + j % slots; };
  auto state_c_at = [&](Index head, Index j) { return state_c.data() + slot(head, j) * c_stride; };
  auto state_n_at = [&](Index head, Index j) { return state_n.data() + slot(head, j) * n_stride; };
  auto state_m_at = [&](Index head, Index j) -> double& {
    return state_m[static_cast<size_t>(slot(head, j))];
  };
  auto in_segment = [&](Index head, Index j) { return head * segment + j % segment; };

  for (Index head = 0; head < heads; ++head) {
    state_m_at(head, 0) = load_initial_state(initial_c, initial_n, initial_m, head, s.qk_dim,
                                             s.v_dim, state_c_at(head, 0), state_n_at(head, 0));
  }

  const double chunk_flops =
      2.0 * static_cast<double>(chunk_size) *
      (static_cast<double>(chunk_size) * static_cast<double>(s.qk_dim + s.v_dim) +
       2.0 * static_cast<double>(c_size));
  for (Index first = 0; first < chunks; first += segment) {
    const Index count = std::min(segment, chunks - first);
    const Index items = heads * count;
    const int threads =
        threads_for_work(num_threads, items, chunk_flops * static_cast<double>(items));
    // Item -> (batch-head, chunk), chunks of one batch-head spread over the item range.
    auto head_of = [&](Index item) { return item % heads; };
    auto chunk_of = [&](Index item) { return first + item / heads; };
    auto first_row = [&](Index item) {
      return head_of(item) * s.seq_len + chunk_of(item) * chunk_size;
    };

    std::atomic<bool> finite{true};
    parallel_for(items, threads, [&](Index item) {
      const Index head = head_of(item), j = chunk_of(item), row = first_row(item);
      const Index length = std::min(chunk_size, s.seq_len - j * chunk_size);
      if (!chunk_inputs_finite(in, row, length)) {
        finite = false;
        return;
      }
      ChunkGates& g = gates[static_cast<size_t>(in_segment(head, j))];
      g.compute(in.igate_preact.data() + row, in.fgate_preact.data() + row, length);
      RowMatrix<T> weighted_keys;
      chunk_state_contribution(in.k.data() + row * s.qk_dim, in.v.data() + row * s.v_dim, g,
                               s.qk_dim, s.v_dim, kv.data() + in_segment(head, j) * c_stride,
                               ksum.data() + in_segment(head, j) * n_stride, weighted_keys);
    });
    if (!finite) return false;

    const double scan_flops = 3.0 * static_cast<double>(items * c_size);
    parallel_for(heads, threads_for_work(num_threads, heads, scan_flops), [&](Index head) {
      for (Index j = first; j < first + count; ++j) {
        advance_chunk_state(state_c_at(head, j), state_n_at(head, j), state_m_at(head, j),
                            kv.data() + in_segment(head, j) * c_stride,
                            ksum.data() + in_segment(head, j) * n_stride,
                            gates[static_cast<size_t>(in_segment(head, j))], s.qk_dim, s.v_dim,
                            state_c_at(head, j + 1), state_n_at(head, j + 1),
                            state_m_at(head, j + 1));
      }
    });

    parallel_for(items, threads, [&](Index item) {
      const Index head = head_of(item), j = chunk_of(item), row = first_row(item);
      ChunkForward<T> work;
      chunk_outputs(in.q.data() + row * s.qk_dim, in.k.data() + row * s.qk_dim,
                    in.v.data() + row * s.v_dim, gates[static_cast<size_t>(in_segment(head, j))],
                    state_c_at(head, j), state_n_at(head, j), state_m_at(head, j), s.qk_dim,
                    s.v_dim, eps, h + row * s.v_dim, work);
    });
  }

  for (Index head = 0; head < heads; ++head) {
    store_final_state(state_c_at(head, chunks), state_n_at(head, chunks), state_m_at(head, chunks),
                      head, s.qk_dim, s.v_dim, final_c, final_n, final_m);
  }
  return true;
}

// The chunkwise form on validated inputs, one batch-head per item: each item walks its chunks in
// order (outputs from the state at the chunk's start, then the chunk's contribution and the state
// across it), with no waiting between threads and the chunk's keys and values still in cache.
// Gives the same bits as chunkwise_forward: the same functions on equally aligned buffers, in
// the same order per batch-head. Arguments and result as chunkwise_forward.
template <typename T>
[[nodiscard]] bool chunkwise_forward_by_head(const SequenceInputs<T>& in, Index chunk_size, T eps,
                                             int num_threads, const T* initial_c,
                                             const T* initial_n, const T* initial_m, T* h,
                                             T* final_c, T* final_n, T* final_m) {
  using Storage = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  const SequenceShape& s = in.shape;
  const ChunkLayout<T> z(s, chunk_size);
  const Index heads = z.heads, chunks = z.chunks, c_size = z.c_size;
  const Index c_stride = z.c_stride, n_stride = z.n_stride;
  const double flops =
      2.0 * static_cast<double>(heads * s.seq_len) *
      (static_cast<double>(chunk_size * (s.qk_dim + s.v_dim)) + 2.0 * static_cast<double>(c_size));
  std::atomic<bool> finite{true};
  parallel_for(heads, threads_for_work(num_threads, heads, flops), [&](Index head) {
    // Two state slots (the chunk's start and end, swapping roles) and the contribution.
    Storage c(2 * c_stride), n(2 * n_stride), kv(c_stride), ksum(n_stride);
    double m[2];
    m[0] = load_initial_state(initial_c, initial_n, initial_m, head, s.qk_dim, s.v_dim, c.data(),
                              n.data());
    ChunkGates gates;
    ChunkForward<T> work;
    for (Index j = 0; j < chunks; ++j) {
      const Index now = j % 2, next = 1 - now;
      const Index row = head * s.seq_len + j * chunk_size;
      const Index length = std::min(chunk_size, s.seq_len - j * chunk_size);
      if (!finite.load(std::memory_order_relaxed) || !chunk_inputs_finite(in, row, length)) {
        finite = false;
        return;
      }
      // The next chunk's rows follow this one's.
      const Index next_row = row + length;
      work.ahead = {in.q.data() + next_row * s.qk_dim, in.k.data() + next_row * s.qk_dim,
                    in.v.data() + next_row * s.v_dim,
                    j + 1 < chunks ? std::min(chunk_size, s.seq_len - (j + 1) * chunk_size) : 0};
      gates.compute(in.igate_preact.data() + row, in.fgate_preact.data() + row, length);
      chunk_outputs(in.q.data() + row * s.qk_dim, in.k.data() + row * s.qk_dim,
                    in.v.data() + row * s.v_dim, gates, c.data() + now * c_stride,
                    n.data() + now * n_stride, m[now], s.qk_dim, s.v_dim, eps, h + row * s.v_dim,
                    work);
      chunk_state_contribution(in.k.data() + row * s.qk_dim, in.v.data() + row * s.v_dim, gates,
                               s.qk_dim, s.v_dim, kv.data(), ksum.data(), work.weighted_keys);
      advance_chunk_state(c.data() + now * c_stride, n.data() + now * n_stride, m[now], kv.data(),
                          ksum.data(), gates, s.qk_dim, s.v_dim, c.data() + next * c_stride,
                          n.data() + next * n_stride, m[next]);
    }
    const Index last = chunks % 2;
    store_final_state(c.data() + last * c_stride, n.data() + last * n_stride, m[last], head,
                      s.qk_dim, s.v_dim, final_c, final_n, final_m);
  });
  return finite;
}

// Whether to give each thread whole batch-heads (chunkwise_forward_by_head) rather than chunks
// of segments (chunkwise_forward): when the batch-heads share out evenly enough.
inline bool chunkwise_by_head(Index heads, int threads) {
  return threads == 1 || heads % threads == 0 || heads >= 4 * static_cast<Index>(threads);
}

// The chunk size a call works with: options.chunk_size (>= 1, else ValueError), and no more
// than S, since a longer chunk is the same computation (this also keeps the chunk count's
// rounding-up division from overflowing for huge sizes).
inline Index effective_chunk_size(Index chunk_size, Index seq_len) {
  expect_valid_chunk_size(chunk_size, "options.chunk_size");
  return std::min(chunk_size, seq_len);
}

// chunkwise_stabilized from `initial_state`, or from the zero state when it is nullptr.
template <typename Q, typename K, typename V, typename I, typename F>
ChunkwiseResult<ScalarOf<Q>> chunkwise_call(
    const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact,
    const ChunkwiseOptions& options,
    const RecurrentState<ComputeScalar<ScalarOf<Q>>>* initial_state) {
  using T = ScalarOf<Q>;
  if constexpr (is_bfloat16<T>) {
    require_same_scalar<Q, K, V, I, F>();
    auto out = chunkwise_call(
        to_float<4>(q, "q", "(B, NH, S, DQK)"), to_float<4>(k, "k", "(B, NH, S, DQK)"),
        to_float<4>(v, "v", "(B, NH, S, DV)"),
        to_float<4>(igate_preact, "igate_preact", "(B, NH, S, 1)"),
        to_float<4>(fgate_preact, "fgate_preact", "(B, NH, S, 1)"), options, initial_state);
    return {to_bfloat16<4>(out.h), std::move(out.state)};
  } else {
    const int threads = resolve_num_threads(options.num_threads, "options.num_threads");
    const auto in = check_sequence_shapes(q, k, v, igate_preact, fgate_preact);
    const SequenceShape& s = in.shape;
    const T* initial[3] = {nullptr, nullptr, nullptr};
    if (initial_state != nullptr) {
      check_state_argument(*initial_state, s, initial_state_names);
      initial[0] = initial_state->c.data();
      initial[1] = initial_state->n.data();
      initial[2] = initial_state->m.data();
    }
    const Index chunk_size = effective_chunk_size(options.chunk_size, s.seq_len);
    expect_valid_eps(static_cast<T>(options.eps), "options.eps");
    HiddenAndState<T> out{Tensor<T, 4>(s.batch, s.heads, s.seq_len, s.v_dim),
                          RecurrentState<T>::zeros(s.batch, s.heads, s.qk_dim, s.v_dim)};
    const T eps = static_cast<T>(options.eps);
    const bool finite =
        chunkwise_by_head(s.batch * s.heads, threads)
            ? chunkwise_forward_by_head<T>(in, chunk_size, eps, threads, initial[0], initial[1],
                                           initial[2], out.h.data(), out.state.c.data(),
                                           out.state.n.data(), out.state.m.data())
            : chunkwise_forward<T>(in, chunk_size,
                                   chunkwise_segment_chunks<T>(s, chunk_size, threads), eps,
                                   threads, initial[0], initial[1], initial[2], out.h.data(),
                                   out.state.c.data(), out.state.n.data(), out.state.m.data());
    if (!finite) {
      // Names the first non-finite value, as the other kernels' check before they start does.
      expect_sequence_inputs_finite(in, threads);
      throw InternalError(
          "chunkwise_stabilized: a chunk's inputs were not all finite, but the "
          "scan of the whole inputs found every value finite");
    }
    return out;
  }
}

}  // namespace detail

// The chunkwise form from the zero state: h (B, NH, S, DV) and the state after the last step.
template <typename Q, typename K, typename V, typename I, typename F>
ChunkwiseResult<ScalarOf<Q>> chunkwise_stabilized(const Q& q, const K& k, const V& v,
                                                  const I& igate_preact, const F& fgate_preact,
                                                  const ChunkwiseOptions& options = {}) {
  return detail::chunkwise_call(q, k, v, igate_preact, fgate_preact, options, nullptr);
}

// The chunkwise form from `initial_state` (c (B, NH, DQK, DV), n (B, NH, DQK, 1),
// m (B, NH, 1, 1); float for bfloat16 inputs).
template <typename Q, typename K, typename V, typename I, typename F>
ChunkwiseResult<ScalarOf<Q>> chunkwise_stabilized(
    const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact,
    const ChunkwiseOptions& options,
    const RecurrentState<ComputeScalar<ScalarOf<Q>>>& initial_state) {
  return detail::chunkwise_call(q, k, v, igate_preact, fgate_preact, options, &initial_state);
}

// With an optional initial state: nullopt means the zero state.
template <typename Q, typename K, typename V, typename I, typename F>
ChunkwiseResult<ScalarOf<Q>> chunkwise_stabilized(
    const Q& q, const K& k, const V& v, const I& igate_preact, const F& fgate_preact,
    const ChunkwiseOptions& options,
    const std::optional<RecurrentState<ComputeScalar<ScalarOf<Q>>>>& initial_state) {
  return detail::chunkwise_call(q, k, v, igate_preact, fgate_preact, options,
                                initial_state ? &*initial_state : nullptr);
}

}  // namespace mlstm
