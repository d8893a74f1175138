// Google Benchmark program for training the mLSTM language model: one full training step as
// examples/train_lm takes it, and where that step's time goes, layer by layer.
//
//   MLSTM_NUM_THREADS=2 ./bench_train --benchmark_filter=BM_TrainStep/small
//   MLSTM_NUM_THREADS=2 ./bench_train --benchmark_filter=BM_TrainLayer/small
//   MLSTM_NUM_THREADS=2 ./bench_train --benchmark_filter=BM_TrainStep/125M --benchmark_format=json
//
// Two models, float32, initialized as the reference initializes them (seed 0):
//   small   vocab 256, embedding 256, 4 blocks of 4 heads (inner dimension 512), conv kernel 4,
//           q/k/v block size 4, untied head: 1.79M parameters (the reference xLSTMLMModel with
//           these sizes and its defaults); batch 8 x 256.
//   125M    bench_model's model (vocab 50304, embedding 768, 12 blocks): 120.6M parameters;
//           batch 1 x 512. Its step holds 1.9 GB of weights, gradients and AdamW moments and
//           about 1.4 MB of activations per token (0.7 GB at 512 tokens), and PyTorch's step,
//           run beside it by compare_train_pytorch.py, holds more: 512 tokens keep both well
//           inside a machine of 8 GB shared with other work, at the prompt length where
//           bench_model's prefill is measured.
//
//   BM_TrainStep/<model>   zero_grad, forward_backward over the batch (mean cross-entropy of the
//                          next tokens), clipping by the global norm (max norm 1, within
//                          AdamW's update: clip_coefficient), AdamW (lr 1e-3, betas 0.9,
//                          0.95, weight decay 0.1 on the reference's decay group); items = tokens.
//   BM_TrainLayer/<model>/<layer>_<pass>   one layer's forward or backward alone, at the step's
//                          shapes, with the model's weights and a cache from its first block
//                          (the other blocks have the same shapes): the functions the step calls.
//
// Layers: embedding, norm (a block's pre-norm), proj_up, conv (causal conv and SiLU), qkv (the
// three head-wise maps), cell (gates, kernel, multi-head norm), kernel (the parallel kernel
// alone, part of cell), proj_down, layer (the whole mLSTM layer: the parts above plus the
// output gate and the copies between them), head (the final norm and lm_head), cross_entropy,
// and optimizer (clipping and AdamW, no backward). A step is about embedding + blocks * (norm +
// layer) + head + cross_entropy + optimizer, each forward and backward.
//
// Counters of BM_TrainStep, in bytes: weight_bytes, gradient_bytes, adamw_state_bytes (the two
// moments), activation_bytes (what forward_backward holds at once: every block's input and
// cache, measured as the heap a block's training forward keeps, plus the final norm's output and
// the logits, which their gradient overwrites), step_heap_bytes (the largest heap growth during
// one step after the first, counted allocation by allocation: what a step allocates beyond the
// model's training workspace),
// held_bytes (weights + gradients + moments + activations) and peak_rss_bytes (the process's
// peak resident set, peak_rss.hpp). Run one model per process (--benchmark_filter) for a
// peak RSS of that model alone. bench/compare_train_pytorch.py runs this beside PyTorch.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <mlstm/kernels/parallel_backward.hpp>
#include <mlstm/mlstm.hpp>

#include "bench_main.hpp"
#include "peak_rss.hpp"
#include "support/heap_counter.hpp"
#include "token_model_loops.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;

struct TrainConfig {
  mlstm::LMModelConfig model;
  Index batch, seq_len;
};

TrainConfig train_config(const std::string& name) {
  TrainConfig config{mlstm::LMModelConfig{}, 8, 256};
  config.model.num_heads = 4;
  if (name == "small") {
    config.model.vocab_size = 256;
    config.model.embedding_dim = 256;
    config.model.num_blocks = 4;
  } else {
    config.model.vocab_size = 50304;
    config.model.embedding_dim = 768;
    config.model.num_blocks = 12;
    config.batch = 1;
    config.seq_len = 512;
  }
  config.model.context_length = config.seq_len;
  return config;
}

// The model, its optimizer and a batch of next-token pairs.
struct Trainer {
  TrainConfig config;
  mlstm::LanguageModel<float> model;
  mlstm::AdamW<float> optimizer;
  Tensor<std::int64_t, 2> tokens, targets;

  explicit Trainer(const TrainConfig& c)
      : config(c),
        model(initialized(c.model)),
        optimizer(mlstm::get_weight_decay_optim_groups(
                      model.registry(), mlstm::lm_weight_decay_options(model.config())),
                  adamw_options()),
        tokens(c.batch, c.seq_len),
        targets(c.batch, c.seq_len) {
    const Tensor<std::int64_t, 2> text =
        mlstm_bench::prompt_tokens(c.batch * c.seq_len + 1, c.model.vocab_size);
    for (Index b = 0; b < c.batch; ++b)
      for (Index t = 0; t < c.seq_len; ++t) {
        tokens(b, t) = text(0, b * c.seq_len + t);
        targets(b, t) = text(0, b * c.seq_len + t + 1);
      }
  }

  // One training step, as examples/train_lm takes it; returns the loss.
  double step() {
    optimizer.zero_grad();
    const double loss = model.forward_backward(tokens, targets);
    optimizer.step(mlstm::clip_coefficient(mlstm::global_grad_norm(model.registry()), 1.0));
    return loss;
  }

  static mlstm::LanguageModel<float> initialized(const mlstm::LMModelConfig& config) {
    mlstm::LanguageModel<float> model(config);
    mlstm::Generator generator(0);
    model.reset_parameters(generator);
    return model;
  }
  static mlstm::AdamWOptions adamw_options() {
    mlstm::AdamWOptions options;
    options.lr = 1e-3;
    options.beta2 = 0.95;
    options.weight_decay = 0.1;
    return options;
  }
};

// One trainer per model for the whole run (building and initializing the 125M model takes
// seconds).
Trainer& trainer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Trainer>> trainers;
  auto& slot = trainers[name];
  if (!slot) slot = std::make_unique<Trainer>(train_config(name));
  return *slot;
}

double float_bytes(Index count) { return static_cast<double>(count) * sizeof(float); }

// The heap one block's training forward keeps in its cache, measured by counting allocations.
double block_cache_bytes(const Trainer& t) {
  const Index E = t.config.model.embedding_dim, rows = t.config.batch * t.config.seq_len;
  Tensor<float, 3> x(t.config.batch, t.config.seq_len, E);
  x.setZero();  // any finite input: the kernels reject non-finite values
  mlstm::MLSTMBlockCache<float> cache;
  const auto live_before = mlstm::test::HeapCounter::live_bytes();
  Tensor<float, 3> y;
  mlstm::detail::mlstm_block_forward(t.model.weights().blocks[0], x.data(), t.config.batch,
                                     t.config.seq_len, t.model.options(),
                                     static_cast<mlstm::MLSTMLayerState<float>*>(nullptr), cache,
                                     mlstm::detail::Keep::for_backward, y);
  return static_cast<double>(mlstm::test::HeapCounter::live_bytes() - live_before) -
         float_bytes(rows * E);
}

void BM_TrainStep(benchmark::State& state, const std::string& name) {
  Trainer& t = trainer(name);
  // Measured once, before the first step: later, its block cache would add to the step's
  // workspace in the peak RSS.
  static std::map<std::string, double> cache_bytes;
  if (cache_bytes.count(name) == 0) cache_bytes[name] = block_cache_bytes(t);
  t.step();  // warm-up: the gradients' buffers are allocated on first use
  double step_heap = 0;
  {
    const mlstm::test::HeapWatch watch;
    t.step();
    step_heap = static_cast<double>(watch.peak_above_start());
  }
  for (auto _ : state) benchmark::DoNotOptimize(t.step());

  const mlstm::LMModelConfig& m = t.config.model;
  const Index tokens = t.config.batch * t.config.seq_len;
  const Index parameters = t.model.registry().parameter_count();
  const double activations = static_cast<double>(m.num_blocks) * cache_bytes[name] +
                             float_bytes((m.num_blocks + 2) * tokens * m.embedding_dim) +
                             float_bytes(tokens * m.vocab_size);
  state.SetItemsProcessed(state.iterations() * tokens);
  state.counters["parameters"] = static_cast<double>(parameters);
  state.counters["weight_bytes"] = float_bytes(parameters);
  state.counters["gradient_bytes"] = float_bytes(parameters);
  state.counters["adamw_state_bytes"] = 2 * float_bytes(parameters);
  state.counters["activation_bytes"] = activations;
  state.counters["held_bytes"] = 4 * float_bytes(parameters) + activations;
  state.counters["step_heap_bytes"] = step_heap;
  state.counters["peak_rss_bytes"] = mlstm_bench::peak_rss_bytes();
}

// The first block's input and training cache, a gradient of the shapes each layer's backward
// takes, and output buffers: what the layers' benchmarks run on. Like a training step, the
// forwards write into caches and the backwards into buffers kept from one iteration to the next.
struct LayerBench {
  Trainer& t;
  const mlstm::MLSTMBlockWeights<float>& block;
  mlstm::LMModelGradients<float> grads;
  Index batch, seq_len, rows, E, I, V;
  Tensor<float, 3> x, y, dy, dx, dinner, normed, logits, dlogits, out;
  mlstm::MLSTMBlockCache<float> cache, reused_cache;
  mlstm::MLSTMBlockBackwardBuffers<float> buffers;
  mlstm::ParallelForward<float> kernel_out;  // the cell's kernel alone, forward
  Tensor<float, 4> kernel_di, kernel_df;     // and backward: its gate gradients per head

  explicit LayerBench(Trainer& trainer)
      : t(trainer),
        block(t.model.weights().blocks[0]),
        grads(mlstm::bind_lm_model_gradients(t.model.registry(), t.model.config())),
        batch(t.config.batch),
        seq_len(t.config.seq_len),
        rows(batch * seq_len),
        E(t.config.model.embedding_dim),
        I(block.xlstm.inner_dim()),
        V(t.config.model.vocab_size),
        x(batch, seq_len, E),
        y(batch, seq_len, 2 * I),
        dy(batch, seq_len, 2 * I),
        dx(batch, seq_len, 2 * I),
        dinner(batch, seq_len, I),
        normed(batch, seq_len, E),
        logits(batch, seq_len, V),
        dlogits(batch, seq_len, V) {
    mlstm::detail::embedding_forward(t.tokens.data(), rows,
                                     t.model.weights().token_embedding.data(), E, x.data());
    for (Index i = 0; i < dy.size(); ++i) dy.data()[i] = 1e-3f * static_cast<float>(i % 17 - 8);
    for (Index i = 0; i < dinner.size(); ++i) dinner.data()[i] = dy.data()[i];
    mlstm::detail::mlstm_block_forward(block, x.data(), batch, seq_len, t.model.options(),
                                       static_cast<mlstm::MLSTMLayerState<float>*>(nullptr), cache,
                                       mlstm::detail::Keep::for_backward, out);
    for (Index i = 0; i < logits.size(); ++i) logits.data()[i] = 1e-2f * static_cast<float>(i % 13);
  }
  int threads() const { return mlstm::get_num_threads(); }
  const mlstm::MLSTMLayerCache<float>& layer() const { return cache.xlstm; }
  // The cell's kernel as a step runs it: the parallel form on q, k, v where they lie.
  mlstm::detail::ParallelOperands<float> kernel_operands() const {
    const Index heads = block.xlstm.cell.num_heads(), head_dim = I / heads;
    return mlstm::detail::parallel_operands_in_rows(
        mlstm::detail::SequenceShape{batch, heads, seq_len, head_dim, head_dim}, layer().q.data(),
        layer().k.data(), layer().v.data(), layer().cell);
  }
  const mlstm::MLSTMLayerGradients<float>& layer_grads() const { return grads.blocks[0].xlstm; }
};

using Pass = std::function<void(LayerBench&)>;

// Each layer's forward and backward, as the step calls them (the backward on the forward's
// cache; gradients accumulate into the model's buffers, as in a step).
const std::vector<std::pair<std::string, Pass>>& layer_passes() {
  namespace d = mlstm::detail;
  using LB = LayerBench;
  const mlstm::LayerNormOptions norm;
  static const std::vector<std::pair<std::string, Pass>> all = {
      {"embedding_forward",
       [](LB& b) {
         d::embedding_forward(b.t.tokens.data(), b.rows, b.t.model.weights().token_embedding.data(),
                              b.E, b.y.data());
       }},
      {"embedding_backward",
       [](LB& b) {
         d::embedding_backward(b.t.tokens.data(), b.rows, b.E, b.dy.data(),
                               b.grads.token_embedding);
       }},
      {"norm_forward",
       [norm](LB& b) {
         d::layer_norm_rows(b.x.data(), b.rows, b.E, b.block.xlstm_norm_weight.data(),
                            static_cast<const float*>(nullptr), true, norm.eps, b.y.data(),
                            b.threads());
       }},
      {"norm_backward",
       [norm](LB& b) {
         d::layer_norm_rows_backward(b.x.data(), b.rows, b.E, b.block.xlstm_norm_weight.data(),
                                     true, norm.eps, b.dy.data(), b.dx.data(),
                                     b.grads.blocks[0].xlstm_norm_weight,
                                     static_cast<float*>(nullptr), b.threads());
       }},
      {"proj_up_forward",
       [](LB& b) {
         d::linear_rows(b.cache.normed.data(), b.rows, b.E, b.block.xlstm.proj_up_weight.data(),
                        2 * b.I, static_cast<const float*>(nullptr), b.y.data(), b.threads());
       }},
      {"proj_up_backward",
       [](LB& b) {
         d::linear_rows_backward(b.cache.normed.data(), b.rows, b.E,
                                 b.block.xlstm.proj_up_weight.data(), 2 * b.I, b.dy.data(),
                                 b.dx.data(), b.layer_grads().proj_up_weight,
                                 static_cast<float*>(nullptr), b.threads());
       }},
      {"conv_forward",
       [](LB& b) {
         d::causal_conv1d(b.layer().x_mlstm.data(), b.batch, b.seq_len, b.I,
                          b.block.xlstm.conv_weight.data(), b.block.xlstm.kernel_size(),
                          b.block.xlstm.conv_bias.data(), static_cast<float*>(nullptr), b.y.data(),
                          b.threads());
         d::silu_rows(b.y.data(), b.rows, b.I, b.y.data(), b.threads());
       }},
      {"conv_backward",
       [](LB& b) {
         std::copy_n(b.dinner.data(), b.rows * b.I, b.y.data());
         d::silu_backward_rows(b.layer().conv.data(), b.rows, b.I, b.y.data(), b.threads());
         d::causal_conv1d_backward(b.layer().x_mlstm.data(), b.batch, b.seq_len, b.I,
                                   b.block.xlstm.conv_weight.data(), b.block.xlstm.kernel_size(),
                                   b.y.data(), b.dx.data(), b.I, b.layer_grads().conv_weight,
                                   b.layer_grads().conv_bias, b.threads());
       }},
      {"qkv_forward",
       [](LB& b) {
         const auto& w = b.block.xlstm;
         const Index blocks = w.q_proj_weight.dimension(0), size = b.I / blocks;
         for (const float* weight :
              {w.q_proj_weight.data(), w.k_proj_weight.data(), w.v_proj_weight.data()})
           d::linear_headwise_rows(b.layer().x_conv.data(), b.rows, blocks, size, weight, size,
                                   static_cast<const float*>(nullptr), b.y.data(), b.threads());
       }},
      {"qkv_backward",
       [](LB& b) {
         const auto& w = b.block.xlstm;
         const auto& g = b.layer_grads();
         const Index blocks = w.q_proj_weight.dimension(0), size = b.I / blocks;
         const std::pair<const float*, float*> maps[] = {{w.q_proj_weight.data(), g.q_proj_weight},
                                                         {w.k_proj_weight.data(), g.k_proj_weight},
                                                         {w.v_proj_weight.data(), g.v_proj_weight}};
         for (const auto& [weight, dweight] : maps)
           d::linear_headwise_rows_backward(b.layer().x_conv.data(), b.rows, blocks, size, weight,
                                            size, b.dinner.data(), b.dx.data(), dweight,
                                            static_cast<float*>(nullptr), b.threads());
       }},
      {"cell_forward",
       [](LB& b) {
         const auto& l = b.layer();
         d::mlstm_cell_forward(b.block.xlstm.cell, l.q.data(), l.k.data(), l.v.data(), b.batch,
                               b.seq_len, b.t.model.options(),
                               static_cast<mlstm::RecurrentState<float>*>(nullptr),
                               b.reused_cache.xlstm.cell, d::Keep::for_backward, b.out);
         benchmark::DoNotOptimize(b.out.data());
       }},
      {"cell_backward",
       [](LB& b) {
         const auto& l = b.layer();
         float* dq = b.dx.data();
         d::mlstm_cell_backward(b.block.xlstm.cell, b.layer_grads().cell, l.q.data(), l.k.data(),
                                l.v.data(), b.batch, b.seq_len, b.t.model.options(), l.cell,
                                b.dinner.data(), dq, dq + b.rows * b.I, b.y.data(),
                                b.buffers.xlstm.cell);
       }},
      {"kernel_forward",
       [](LB& b) {
         const mlstm::ParallelOptions parallel;
         d::parallel_forward_with_cache(b.kernel_operands(),
                                        d::resolve_mask(parallel.mask, b.seq_len), b.threads(),
                                        parallel, b.kernel_out);
         benchmark::DoNotOptimize(b.kernel_out.h.data());
       }},
      {"kernel_backward",
       [](LB& b) {
         const auto in = b.kernel_operands();
         const d::SequenceShape& s = in.shape;
         b.kernel_di.resize(s.batch, s.heads, s.seq_len, 1);
         b.kernel_df.resize(s.batch, s.heads, s.seq_len, 1);
         float* dq = b.dx.data();
         const d::ParallelGradientRows<float> out{
             d::rows_by_position(dq, s, s.qk_dim),
             d::rows_by_position(dq + b.rows * b.I, s, s.qk_dim),
             d::rows_by_position(b.y.data(), s, s.v_dim), b.kernel_di.data(), b.kernel_df.data()};
         const mlstm::ParallelOptions parallel;
         d::parallel_backward(in, d::resolve_mask(parallel.mask, b.seq_len), b.threads(),
                              b.dinner.data(), b.layer().cell.kernel, parallel, out);
       }},
      {"proj_down_forward",
       [](LB& b) {
         d::linear_rows(b.layer().gated.data(), b.rows, b.I, b.block.xlstm.proj_down_weight.data(),
                        b.E, static_cast<const float*>(nullptr), b.y.data(), b.threads());
       }},
      {"proj_down_backward",
       [](LB& b) {
         d::linear_rows_backward(b.layer().gated.data(), b.rows, b.I,
                                 b.block.xlstm.proj_down_weight.data(), b.E, b.dy.data(),
                                 b.dx.data(), b.layer_grads().proj_down_weight,
                                 static_cast<float*>(nullptr), b.threads());
       }},
      {"layer_forward",
       [](LB& b) {
         d::mlstm_layer_forward(b.block.xlstm, b.cache.normed.data(), b.batch, b.seq_len,
                                b.t.model.options(),
                                static_cast<mlstm::MLSTMLayerState<float>*>(nullptr),
                                b.reused_cache.xlstm, d::Keep::for_backward, b.out);
         benchmark::DoNotOptimize(b.out.data());
       }},
      {"layer_backward",
       [](LB& b) {
         d::mlstm_layer_backward(b.block.xlstm, b.layer_grads(), b.cache.normed.data(), b.batch,
                                 b.seq_len, b.t.model.options(), b.layer(), b.dy.data(),
                                 b.dx.data(), b.buffers.xlstm);
       }},
      {"head_forward",
       [norm](LB& b) {
         const auto& w = b.t.model.weights();
         d::layer_norm_rows(b.x.data(), b.rows, b.E, w.post_blocks_norm->data(),
                            static_cast<const float*>(nullptr), true, norm.eps, b.normed.data(),
                            b.threads());
         d::linear_rows(b.normed.data(), b.rows, b.E, w.lm_head.data(), b.V,
                        static_cast<const float*>(nullptr), b.logits.data(), b.threads());
       }},
      {"head_backward",
       [norm](LB& b) {
         const auto& w = b.t.model.weights();
         d::linear_rows_backward(b.normed.data(), b.rows, b.E, w.lm_head.data(), b.V,
                                 b.logits.data(), b.dy.data(), b.grads.lm_head,
                                 static_cast<float*>(nullptr), b.threads());
         d::layer_norm_rows_backward(b.x.data(), b.rows, b.E, w.post_blocks_norm->data(), true,
                                     norm.eps, b.dy.data(), b.dx.data(), b.grads.post_blocks_norm,
                                     static_cast<float*>(nullptr), b.threads());
       }},
      {"cross_entropy_forward",
       [](LB& b) {
         benchmark::DoNotOptimize(
             d::cross_entropy_forward(b.logits.data(), b.rows, b.V, b.t.targets.data(), b.rows,
                                      mlstm::CrossEntropyOptions{}, b.threads()));
       }},
      {"cross_entropy_backward",
       [](LB& b) {
         d::cross_entropy_backward(b.logits.data(), b.rows, b.V, b.t.targets.data(), b.rows,
                                   mlstm::CrossEntropyOptions{}, 1.0, b.dlogits.data(),
                                   b.threads());
         benchmark::DoNotOptimize(b.dlogits.data());
       }},
      {"optimizer",
       [](LB& b) {
         b.t.optimizer.step(
             mlstm::clip_coefficient(mlstm::global_grad_norm(b.t.model.registry()), 1.0));
       }},
  };
  return all;
}

void BM_TrainLayer(benchmark::State& state, const std::string& name, const Pass& pass) {
  LayerBench bench(trainer(name));
  for (auto _ : state) pass(bench);
  state.SetItemsProcessed(state.iterations() * bench.rows);
}

const bool registered = [] {
  for (const std::string name : {"small", "125M"}) {
    benchmark::RegisterBenchmark(("BM_TrainStep/" + name).c_str(), BM_TrainStep, name)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MeasureProcessCPUTime();
    for (const auto& [pass_name, pass] : layer_passes()) {
      benchmark::RegisterBenchmark(("BM_TrainLayer/" + name + "/" + pass_name).c_str(),
                                   BM_TrainLayer, name, pass)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->MeasureProcessCPUTime();
    }
  }
  return true;
}();

}  // namespace

int main(int argc, char** argv) { return mlstm_bench::run_benchmarks(argc, argv); }
