// Data parallel training against one process: run under `mpirun -np 2`. Every rank trains the
// same model on its shard of each batch (B sequences), with the gradients averaged over ranks
// (mlstm/distributed/mpi.hpp); rank 0 also trains a second copy alone on the whole batch
// (ranks * B sequences). Each step's loss and the final parameters must agree to rounding.
// Exits with 1 and prints the largest differences otherwise.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>

#include <mlstm/distributed/mpi.hpp>
#include <mlstm/mlstm.hpp>

namespace {

using mlstm::Index;
using Ids = mlstm::Tensor<std::int64_t, 2>;

constexpr Index per_rank_batch = 2, seq_len = 8, steps = 5;
constexpr double clip = 0.5;
// Relative budget: the distributed sums are grouped per shard, then across ranks; the updates of
// five AdamW steps carry that rounding (about 1e-16) through m / sqrt(v).
constexpr double relative_budget = 1e-10;

mlstm::LMModelConfig config() {
  mlstm::LMModelConfig c;
  c.vocab_size = 16;
  c.embedding_dim = 8;
  c.num_heads = 2;
  c.num_blocks = 2;
  c.context_length = seq_len;
  c.round_proj_up_to_multiple_of = 8;
  return c;
}

// Rows [first, first + count) of the step's batch of `rows` sequences (and the next tokens).
void batch(Index step, Index rows, Index first, Index count, Ids& tokens, Ids& targets) {
  std::mt19937_64 engine(1000 + static_cast<std::uint64_t>(step));
  Ids all(rows, seq_len + 1);
  for (Index i = 0; i < all.size(); ++i) all.data()[i] = static_cast<std::int64_t>(engine() % 16);
  tokens = Ids(count, seq_len);
  targets = Ids(count, seq_len);
  for (Index b = 0; b < count; ++b)
    for (Index t = 0; t < seq_len; ++t) {
      tokens(b, t) = all(first + b, t);
      targets(b, t) = all(first + b, t + 1);
    }
}

struct Trainer {
  mlstm::LanguageModel<double> model{config()};
  mlstm::AdamW<double> optimizer;

  Trainer()
      : optimizer(mlstm::get_weight_decay_optim_groups(model.registry(),
                                                       mlstm::lm_weight_decay_options(config())),
                  options()) {
    mlstm::Generator generator(7);
    model.reset_parameters(generator);
  }
  static mlstm::AdamWOptions options() {
    mlstm::AdamWOptions o;
    o.lr = 1e-2;
    o.weight_decay = 0.1;
    return o;
  }
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  int failed = 0;
  try {
    Trainer shard;
    Trainer whole;  // used on rank 0 only
    double worst_loss = 0, worst_param = 0;
    for (Index step = 0; step < steps; ++step) {
      Ids tokens, targets;
      batch(step, per_rank_batch * ranks, per_rank_batch * rank, per_rank_batch, tokens, targets);
      shard.optimizer.zero_grad();
      double loss = shard.model.forward_backward(tokens, targets);
      mlstm::all_reduce_gradients(shard.model.registry(), MPI_COMM_WORLD);
      loss = mlstm::all_reduce_mean(loss, MPI_COMM_WORLD);
      mlstm::clip_grad_norm(shard.model.registry(), clip);
      shard.optimizer.step();
      if (rank == 0) {
        batch(step, per_rank_batch * ranks, 0, per_rank_batch * ranks, tokens, targets);
        whole.optimizer.zero_grad();
        const double expected = whole.model.forward_backward(tokens, targets);
        mlstm::clip_grad_norm(whole.model.registry(), clip);
        whole.optimizer.step();
        const double difference = std::abs(loss - expected) / std::abs(expected);
        worst_loss = std::max(worst_loss, difference);
        std::printf("step %ld loss %.15f (one process: %.15f, relative difference %.3g)\n",
                    static_cast<long>(step), loss, expected, difference);
      }
    }
    if (rank == 0) {
      for (const auto& param : whole.model.registry()) {
        const auto& other = shard.model.registry().get(param.name());
        double scale = 0, difference = 0;
        for (Index i = 0; i < param.size(); ++i) {
          scale = std::max(scale, std::abs(param.data()[i]));
          difference = std::max(difference, std::abs(param.data()[i] - other.data()[i]));
        }
        worst_param = std::max(worst_param, scale > 0 ? difference / scale : difference);
      }
      std::printf(
          "%d ranks x batch %ld vs one process x batch %ld: losses within %.3g, "
          "parameters within %.3g relative (budget %.3g)\n",
          ranks, static_cast<long>(per_rank_batch), static_cast<long>(per_rank_batch * ranks),
          worst_loss, worst_param, relative_budget);
      failed = ranks < 2 || !(worst_loss <= relative_budget && worst_param <= relative_budget);
      if (ranks < 2) std::printf("run with mpirun -np 2 (or more)\n");
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "rank %d: %s\n", rank, error.what());
    failed = 1;
  }
  MPI_Bcast(&failed, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Finalize();
  return failed;
}
