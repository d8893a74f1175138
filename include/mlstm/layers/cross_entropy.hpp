// Cross-entropy of logits over the vocabulary, torch.nn.functional.cross_entropy with
// reduction "mean" and an ignore index:
//
//   logits (rows, V), targets (rows) in [0, V) or ignore_index -> loss (scalar)
//   loss = (1 / N) sum over rows r not ignored of (logsumexp(logits[r]) - logits[r, targets[r]])
//   N    = the number of targets not ignored (no target left: loss 0, as no gradient flows; torch
//          returns NaN there)
//
// Backward, given dloss: dlogits[r] = dloss / N (softmax(logits[r]) - onehot(targets[r])), zero on
// ignored rows. What the forward keeps for it: nothing beyond logits and targets (the softmax is
// recomputed row by row). Exponentials are taken in T's vector registers, the sums of 64 of them
// in T and the rest in double.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "mlstm/detail/thread_pool.hpp"
#include "mlstm/detail/vector_pieces.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

struct CrossEntropyOptions {
  long long ignore_index = -100;  // torch's default
};

namespace detail {

// A row's largest value and sum_j exp(row[j] - top). The exponentials run in T's vector
// registers (Eigen's exp, within a few units in the last place), 64 at a time; each block is
// summed in T (eight values a lane) and the blocks' sums in double. std::exp in double, value by
// value, had taken a tenth of the 125M model's training step at 512 x 50304 logits, and
// converting every exponential to double for its sum half of the time left (bench/README.md,
// "The training step's loss"). `exponentials`: where to keep exp(row[j] - top), `size` values
// (it may be row itself), or nullptr.
template <typename T>
struct ShiftedExpSum {
  T top;
  double sum;
};

template <typename T>
ShiftedExpSum<T> shifted_exp_sum(const T* row, Index size, T* exponentials = nullptr) {
  using Values = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  constexpr Index block = 64;
  const T top = Values(row, size).maxCoeff();
  // Each block's exponentials and their sum on 64-byte aligned memory in whole vectors
  // (vector_pieces.hpp), so that neither depends on where the row lies: where they go when that
  // is so, else a buffer they are copied from.
  alignas(64) T scratch[block];
  double sum = 0.0;
  for (Index j = 0; j < size; j += block) {
    const Index count = std::min(block, size - j);
    const bool in_place =
        exponentials != nullptr && is_aligned64(exponentials + j) && count % vector_values<T> == 0;
    T* target = in_place ? exponentials + j : scratch;
    evaluate_piece(row + j, count, target,
                   [top](const auto& values) { return (values - top).exp(); });
    sum += static_cast<double>(
        Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>, Eigen::Aligned64>(target, count)
            .sum());
    if (exponentials != nullptr && !in_place) std::copy(scratch, scratch + count, exponentials + j);
  }
  return {top, sum};
}

// Throws ValueError naming `name` for a target outside [0, V) that is not the ignore index.
template <typename Id>
Index count_targets(const Id* targets, Index rows, Index vocab, const CrossEntropyOptions& options,
                    const char* name) {
  Index counted = 0;
  for (Index r = 0; r < rows; ++r) {
    const long long target = static_cast<long long>(targets[r]);
    if (target == options.ignore_index) continue;
    if (target < 0 || target >= static_cast<long long>(vocab)) {
      throw ValueError(name, "target " + std::to_string(target) + " at row " + std::to_string(r) +
                                 " is outside [0, " + std::to_string(vocab) +
                                 ") and is not the ignore index " +
                                 std::to_string(options.ignore_index));
    }
    ++counted;
  }
  return counted;
}

// task(r) for every row, in blocks of rows on up to `threads` threads (a row's work is about
// `vocab` exponentials).
template <typename Task>
void for_each_row(Index rows, Index vocab, int threads, const Task& task) {
  parallel_rows(rows, 16, threads, 40.0 * static_cast<double>(vocab), [&](Index begin, Index end) {
    for (Index r = begin; r < end; ++r) task(r);
  });
}

// The loss of validated targets; `counted` from count_targets. Rows run on up to `threads`
// threads and their terms are added in row order, so the result does not depend on the count.
template <typename T, typename Id>
double cross_entropy_forward(const T* logits, Index rows, Index vocab, const Id* targets,
                             Index counted, const CrossEntropyOptions& options, int threads = 1) {
  std::vector<double> terms(static_cast<std::size_t>(rows), 0.0);  // 0 for an ignored row
  for_each_row(rows, vocab, threads, [&](Index r) {
    const long long target = static_cast<long long>(targets[r]);
    if (target == options.ignore_index) return;
    const T* row = logits + r * vocab;
    const auto [top, sum] = shifted_exp_sum(row, vocab);
    terms[static_cast<std::size_t>(r)] =
        static_cast<double>(top) + std::log(sum) - static_cast<double>(row[target]);
  });
  double total = 0.0;
  for (const double term : terms) total += term;
  return counted > 0 ? total / static_cast<double>(counted) : 0.0;
}

// dlogits (rows, V) written, on up to `threads` threads; dlogits may be logits (each row is read
// before it is written).
template <typename T, typename Id>
void cross_entropy_backward(const T* logits, Index rows, Index vocab, const Id* targets,
                            Index counted, const CrossEntropyOptions& options, double dloss,
                            T* dlogits, int threads = 1) {
  const double scale = counted > 0 ? dloss / static_cast<double>(counted) : 0.0;
  for_each_row(rows, vocab, threads, [&](Index r) {
    const long long target = static_cast<long long>(targets[r]);
    T* out = dlogits + r * vocab;
    if (target == options.ignore_index) {
      std::fill(out, out + vocab, T(0));
      return;
    }
    // Read before the row is overwritten (dlogits may be logits).
    const double target_logit = static_cast<double>(logits[r * vocab + target]);
    const auto [top, sum] = shifted_exp_sum(logits + r * vocab, vocab, out);
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(out, vocab) *= static_cast<T>(scale / sum);
    // The target's probability in double, since 1 is subtracted from it.
    out[target] =
        static_cast<T>(scale * (std::exp(target_logit - static_cast<double>(top)) / sum - 1.0));
  });
}

}  // namespace detail
}  // namespace mlstm
