// train_lm: trains a byte-level mLSTM language model (vocabulary 256: the bytes of the text) on a
// text corpus, with AdamW over the reference's weight-decay groups, clipping by the global
// gradient norm and a linear warm-up then cosine learning rate.
//
//   train_lm                                   # the licenses of /usr/share/common-licenses
//   train_lm --data=book.txt --steps=2000 --embedding-dim=128 --blocks=4 --save=run
//   train_lm --resume=run --steps=3000         # continues bit for bit where run stopped
//   train_lm --init=model.safetensors --warmup=0 --min-lr=1e-3 --lr=1e-3   # constant lr
//
// Prints `step N loss X` for every step (with the learning rate, the gradient norm and the
// tokens per second), `step N val_loss X` every --eval-every steps on held-out text (the last
// tenth of the corpus), and a sample of generated text at the end. Batches are a function of
// (--seed, step) alone and the library's results do not depend on the thread count, so a run
// is reproducible, and a resumed run continues exactly as the uninterrupted one.
//
// Built with the CMake option MLSTM_MPI, it trains data parallel: `mpirun -np R train_lm ...`
// gives each rank its own --batch sequences of every step (R * --batch in all, the batch one
// process with --batch=R*B would draw), averages the gradients over the ranks, and lets rank 0
// alone print, evaluate, sample and save.
//
// The corpus: --data is a file (raw bytes) or a directory, whose regular files are concatenated
// in name order. The default, /usr/share/common-licenses, comes with Debian's base-files
// package, so it is on every Debian system.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <mlstm/mlstm.hpp>
#ifdef MLSTM_WITH_MPI
#include <mlstm/distributed/mpi.hpp>
#endif

#include "example_model.hpp"

namespace {

// This process's place among the data-parallel ranks (one rank without MPI).
struct Ranks {
  int rank = 0, count = 1;
};

const char* const usage =
    "usage: train_lm [--flag=value ...]\n"
    "  --data=PATH           a text file, or a directory of them (default "
    "/usr/share/common-licenses)\n"
    "  --init=PATH           start from this safetensors state dict (else: --seed's init)\n"
    "  --embedding-dim=N --blocks=N --heads=N   the model (default 64, 2, 4)\n"
    "  --batch=N --seq-len=N sequences per step and their length (default 8, 64)\n"
    "  --steps=N             last step (default 200)\n"
    "  --lr=X --min-lr=X     peak and final learning rate (default 3e-3, lr / 10)\n"
    "  --warmup=N            steps of linear warm-up (default 20), then cosine to --steps\n"
    "  --weight-decay=X --beta1=X --beta2=X --eps=X   AdamW (default 0.1, 0.9, 0.95, 1e-8)\n"
    "  --clip=X              clip the global gradient norm at X; 0: no clipping (default 1)\n"
    "  --seed=N              initialization and batches (default 0)\n"
    "  --eval-every=N        validation loss every N steps (default 50)\n"
    "  --eval-batches=N      batches of the validation loss (default 4)\n"
    "  --sample-length=N     bytes generated at the end (default 200)\n"
    "  --save=DIR            write a training checkpoint there at the end\n"
    "  --resume=DIR          continue from a training checkpoint\n"
    "  --threads=N           threads (default: MLSTM_NUM_THREADS or all cores)\n";

struct Options {
  std::string data = "/usr/share/common-licenses", init, save, resume;
  mlstm::LMModelConfig config;
  long long batch = 8, seq_len = 64, steps = 200, warmup = 20, eval_every = 50, eval_batches = 4,
            sample_length = 200;
  double lr = 3e-3, min_lr = -1, clip = 1.0;
  mlstm::AdamWOptions adamw;
  std::uint64_t seed = 0;

  Options() {
    config.vocab_size = 256;
    config.embedding_dim = 64;
    config.num_heads = 4;
    config.num_blocks = 2;
    adamw.weight_decay = 0.1;
    adamw.beta2 = 0.95;
  }
};

Options parse(int argc, char** argv) {
  Options o;
  const std::map<std::string, long long*> integers{{"--batch", &o.batch},
                                                   {"--seq-len", &o.seq_len},
                                                   {"--steps", &o.steps},
                                                   {"--warmup", &o.warmup},
                                                   {"--eval-every", &o.eval_every},
                                                   {"--eval-batches", &o.eval_batches},
                                                   {"--sample-length", &o.sample_length}};
  const std::map<std::string, mlstm::Index*> sizes{{"--embedding-dim", &o.config.embedding_dim},
                                                   {"--blocks", &o.config.num_blocks},
                                                   {"--heads", &o.config.num_heads}};
  const std::map<std::string, double*> reals{{"--lr", &o.lr},
                                             {"--min-lr", &o.min_lr},
                                             {"--clip", &o.clip},
                                             {"--beta1", &o.adamw.beta1},
                                             {"--beta2", &o.adamw.beta2},
                                             {"--eps", &o.adamw.eps},
                                             {"--weight-decay", &o.adamw.weight_decay}};
  const std::map<std::string, std::string*> paths{
      {"--data", &o.data}, {"--init", &o.init}, {"--save", &o.save}, {"--resume", &o.resume}};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << usage;
      std::exit(0);
    }
    const auto equals = arg.find('=');
    if (equals == std::string::npos)
      throw std::invalid_argument("expected --flag=value, got " + arg);
    const std::string flag = arg.substr(0, equals), value = arg.substr(equals + 1);
    if (integers.count(flag) != 0) {
      *integers.at(flag) = example::parse_integer(flag, value);
    } else if (sizes.count(flag) != 0) {
      *sizes.at(flag) = static_cast<mlstm::Index>(example::parse_integer(flag, value));
    } else if (reals.count(flag) != 0) {
      *reals.at(flag) = example::parse_real(flag, value);
    } else if (paths.count(flag) != 0) {
      *paths.at(flag) = value;
    } else if (flag == "--seed") {
      o.seed = static_cast<std::uint64_t>(example::parse_integer(flag, value));
    } else if (flag == "--threads") {
      mlstm::set_num_threads(static_cast<int>(example::parse_integer(flag, value)));
    } else {
      throw std::invalid_argument("unknown flag " + flag + " (see --help)");
    }
  }
  if (o.min_lr < 0) o.min_lr = o.lr / 10;
  if (o.batch < 1 || o.seq_len < 1 || o.steps < 0 || o.eval_every < 1 || o.eval_batches < 1 ||
      o.sample_length < 0 || o.clip < 0)
    throw std::invalid_argument(
        "--batch, --seq-len, --eval-every, --eval-batches must be >= 1; "
        "--steps, --sample-length, --clip >= 0");
  o.config.context_length = o.seq_len;
  o.adamw.lr = o.lr;
  return o;
}

std::vector<std::uint8_t> read_corpus(const std::string& path) {
  std::vector<std::filesystem::path> files;
  if (std::filesystem::is_directory(path)) {
    for (const auto& entry : std::filesystem::directory_iterator(path))
      if (entry.is_regular_file()) files.push_back(entry.path());
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  std::vector<std::uint8_t> bytes;
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + file.string());
    bytes.insert(bytes.end(), std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return bytes;
}

// Inputs and next-byte targets (B, S) from the sequences starting at `offsets` of `text`.
struct Batch {
  mlstm::Tensor<std::int64_t, 2> tokens, targets;
};

Batch batch_at(const std::uint8_t* text, const std::vector<std::size_t>& offsets, long long S) {
  const auto B = static_cast<mlstm::Index>(offsets.size());
  Batch batch{mlstm::Tensor<std::int64_t, 2>(B, S), mlstm::Tensor<std::int64_t, 2>(B, S)};
  for (mlstm::Index b = 0; b < B; ++b)
    for (long long t = 0; t < S; ++t) {
      batch.tokens(b, t) = text[offsets[static_cast<std::size_t>(b)] + t];
      batch.targets(b, t) = text[offsets[static_cast<std::size_t>(b)] + t + 1];
    }
  return batch;
}

// This rank's part of the training batch of `step`: ranks * B offsets drawn from a generator
// seeded by (seed, step) alone, of which rank r takes the r-th B.
Batch training_batch(const std::vector<std::uint8_t>& text, std::size_t train_size,
                     const Options& o, long long step, const Ranks& ranks) {
  std::mt19937_64 engine(o.seed * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(step));
  const std::size_t starts = train_size - static_cast<std::size_t>(o.seq_len);
  std::vector<std::size_t> offsets(static_cast<std::size_t>(o.batch * ranks.count));
  for (auto& offset : offsets) offset = static_cast<std::size_t>(engine() % starts);
  const auto first = offsets.begin() + ranks.rank * o.batch;
  return batch_at(text.data(), std::vector<std::size_t>(first, first + o.batch), o.seq_len);
}

// The mean loss over --eval-batches batches of `rows` sequences at evenly spaced offsets of the
// held-out text.
double validation_loss(const mlstm::LanguageModel<float>& model,
                       const std::vector<std::uint8_t>& text, std::size_t train_size,
                       const Options& o, long long rows) {
  const std::size_t starts = text.size() - train_size - static_cast<std::size_t>(o.seq_len);
  const std::size_t count = static_cast<std::size_t>(rows * o.eval_batches);
  std::vector<std::size_t> offsets(count);
  for (std::size_t i = 0; i < count; ++i) offsets[i] = train_size + i * starts / count;
  double total = 0;
  for (long long e = 0; e < o.eval_batches; ++e) {
    const std::vector<std::size_t> part(offsets.begin() + e * rows,
                                        offsets.begin() + (e + 1) * rows);
    const Batch batch = batch_at(text.data(), part, o.seq_len);
    total += model.loss(batch.tokens, batch.targets);
  }
  return total / static_cast<double>(o.eval_batches);
}

// Generates bytes after `prompt`, sampling from softmax(logits / 0.8) with a seeded generator.
std::string sample_text(const mlstm::LanguageModel<float>& model, const std::string& prompt,
                        long long length, std::uint64_t seed) {
  mlstm::Tensor<std::int64_t, 2> ids(1, static_cast<mlstm::Index>(prompt.size()));
  for (std::size_t i = 0; i < prompt.size(); ++i)
    ids(0, static_cast<mlstm::Index>(i)) = static_cast<unsigned char>(prompt[i]);
  auto state = model.initial_state(1);
  mlstm::Tensor<float, 3> logits = model.prefill(ids, state, mlstm::Logits::last);
  std::mt19937_64 engine(seed);
  std::string text = prompt;
  const double temperature = 0.8;
  for (long long i = 0; i < length; ++i) {
    std::vector<double> weights(256);
    const float top = *std::max_element(logits.data(), logits.data() + 256);
    for (int v = 0; v < 256; ++v)
      weights[static_cast<std::size_t>(v)] = std::exp((logits.data()[v] - top) / temperature);
    std::discrete_distribution<int> pick(weights.begin(), weights.end());
    const int next = pick(engine);
    text.push_back(static_cast<char>(next));
    mlstm::Tensor<std::int64_t, 1> token(1);
    token(0) = next;
    mlstm::Tensor<float, 2> step = model.step(token, state);
    std::copy(step.data(), step.data() + 256, logits.data());
  }
  return text;
}

// Printable ASCII and newlines as they are, other bytes as \xHH.
std::string printable(const std::string& text) {
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte == '\n' || (byte >= 32 && byte < 127)) {
      out.push_back(c);
    } else {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    }
  }
  return out;
}

int run(const Options& o, const Ranks& ranks) {
  const std::vector<std::uint8_t> text = read_corpus(o.data);
  const std::size_t train_size = text.size() * 9 / 10;
  if (train_size <= static_cast<std::size_t>(o.seq_len) + 1 ||
      text.size() - train_size <= static_cast<std::size_t>(o.seq_len) + 1)
    throw std::invalid_argument("--data: " + std::to_string(text.size()) +
                                " bytes are too few for --seq-len " + std::to_string(o.seq_len));

  mlstm::LanguageModel<float> model(o.config);
  if (!o.init.empty()) {
    mlstm::load_checkpoint(model.registry(), o.init);
  } else {
    mlstm::Generator generator(o.seed);
    model.reset_parameters(generator);
  }
  mlstm::AdamW<float> optimizer(
      mlstm::get_weight_decay_optim_groups(model.registry(),
                                           mlstm::lm_weight_decay_options(model.config())),
      o.adamw);
  long long first_step = 0;
  if (!o.resume.empty()) {
    const auto metadata = mlstm::load_training_checkpoint(o.resume, model.registry(), optimizer);
    first_step = example::parse_integer("checkpoint step", metadata.at("train_lm.step"));
  }
  mlstm::WarmupCosineSchedule schedule;
  schedule.max_lr = o.lr;
  schedule.min_lr = o.min_lr;
  schedule.warmup = o.warmup;
  schedule.decay_steps = o.steps;
  schedule.validate();

  const bool main_rank = ranks.rank == 0;
  if (main_rank) {
    std::printf(
        "data: %s, %zu bytes (%zu training, %zu validation)\n"
        "model: embedding %lld, %lld blocks, %lld heads, %lld parameters; %d threads\n"
        "training: steps %lld..%lld, batch %lld x %lld on %d rank(s), lr %g -> %g, warm-up %lld, "
        "clip %g\n",
        o.data.c_str(), text.size(), train_size, text.size() - train_size,
        static_cast<long long>(o.config.embedding_dim), static_cast<long long>(o.config.num_blocks),
        static_cast<long long>(o.config.num_heads),
        static_cast<long long>(model.registry().parameter_count()), mlstm::get_num_threads(),
        first_step, o.steps, o.batch, o.seq_len, ranks.count, o.lr, o.min_lr, o.warmup, o.clip);
  }

  double busy = 0;
  for (long long step = first_step; step < o.steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    const Batch batch = training_batch(text, train_size, o, step, ranks);
    const double lr = schedule.lr(step);
    optimizer.set_lr(lr);
    optimizer.zero_grad();
    double loss = model.forward_backward(batch.tokens, batch.targets);
#ifdef MLSTM_WITH_MPI
    mlstm::all_reduce_gradients(model.registry(), MPI_COMM_WORLD);
    loss = mlstm::all_reduce_mean(loss, MPI_COMM_WORLD);
#endif
    // Clipping within the update (clip_coefficient): no pass that rescales the gradients.
    const double norm = mlstm::global_grad_norm(model.registry());
    optimizer.step(o.clip > 0 ? mlstm::clip_coefficient(norm, o.clip) : 1.0);
    const double seconds = example::seconds_since(start);
    busy += seconds;
    if (!main_rank) continue;
    std::printf("step %lld loss %.6f lr %.3g norm %.3f tokens/s %.0f\n", step + 1, loss, lr, norm,
                static_cast<double>(o.batch * ranks.count * o.seq_len) / seconds);
    if ((step + 1) % o.eval_every == 0 || step + 1 == o.steps)
      std::printf("step %lld val_loss %.6f\n", step + 1,
                  validation_loss(model, text, train_size, o, o.batch * ranks.count));
    std::fflush(stdout);
  }
  if (!main_rank) return 0;
  if (o.steps > first_step) {
    std::printf(
        "trained %lld steps at %.0f tokens/s\n", o.steps - first_step,
        static_cast<double>((o.steps - first_step) * o.batch * ranks.count * o.seq_len) / busy);
  }
  if (!o.save.empty()) {
    mlstm::save_training_checkpoint(
        o.save, model.registry(), optimizer,
        {{"train_lm.step", std::to_string(std::max(first_step, o.steps))}});
    std::printf("saved %s\n", o.save.c_str());
  }
  if (o.sample_length > 0) {
    const std::string prompt(text.begin() + static_cast<std::ptrdiff_t>(train_size),
                             text.begin() + static_cast<std::ptrdiff_t>(train_size) + 16);
    std::printf("sample:\n%s\n",
                printable(sample_text(model, prompt, o.sample_length, o.seed)).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Ranks ranks;
#ifdef MLSTM_WITH_MPI
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &ranks.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks.count);
#endif
  int status = 0;
  try {
    status = run(parse(argc, argv), ranks);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "train_lm: %s\n", error.what());
    status = 1;
  }
#ifdef MLSTM_WITH_MPI
  if (status != 0) MPI_Abort(MPI_COMM_WORLD, status);
  MPI_Finalize();
#endif
  return status;
}
