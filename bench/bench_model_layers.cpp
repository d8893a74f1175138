// Where the 120M model's prefill spends its time: each stage of one mLSTM block, and the head,
// timed alone at the shapes bench_model's BM_Prefill runs (batch 1, embedding 768, 4 heads,
// inner dimension 1536, head dimension 384, q/k/v block size 4, conv kernel 4, vocab 50304,
// chunk 64), calling the same functions the model calls on the library's threads:
//
//   MLSTM_NUM_THREADS=2 ./bench_model_layers --benchmark_counters_tabular=true
//   MLSTM_BENCH_PARALLEL_PREFILL_MAX=0 ./bench_model_layers --benchmark_filter=kernel
//       # the kernel stage with KernelOptions::parallel_prefill_max = 0 (always chunkwise)
//
//   BM_stage/<stage>/S   one block's stage on a prompt of S tokens; the model runs 12 blocks,
//                        so 12 times the sum over stages, plus the head, is the prefill.
//
// Stages, in the block's order: norm (pre-norm), proj_up (768 -> 2 * 1536, as two products),
// conv (causal conv and SiLU), qkv (three head-wise projections), gates (input and forget gate
// pre-activations), split (q, k, v, gates into heads), kernel (kernel_forward from a zero state:
// the parallel form and one chunk's state up to parallel_prefill_max steps, else the chunkwise
// form), outnorm (multi-head norm), output (skip and SiLU(z) gating), proj_down (1536 -> 768);
// head: the final norm and lm_head at the last position. Times are wall-clock; the CPU time
// reported is that of all the process's threads, which on a shared machine still tells how much
// work a stage took. bench/README.md records a run.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <functional>
#include <mlstm/mlstm.hpp>
#include <string>
#include <vector>

#include "bench_main.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;

constexpr Index E = 768, I = 2 * E, NH = 4, DH = I / NH, block = 4, kernel_size = 4, vocab = 50304,
                chunk = 64;

template <typename T, int Rank, typename... Dims>
Tensor<T, Rank> filled(Dims... dims) {
  Tensor<T, Rank> x(dims...);
  for (Index i = 0; i < x.size(); ++i)
    x.data()[i] = static_cast<float>((i * 7919) % 211) / 2110.0f - 0.05f;
  return x;
}

// Inputs and weights of every stage for a prompt of S tokens (outputs preallocated, so that a
// stage's time is its work).
struct Block {
  Index S;
  Tensor<float, 2> x, normed, x_mlstm, z, conv, q, k, v, h, out, weight_norm, proj_up, proj_down,
      head;
  Tensor<float, 3> qkv_weight, conv_weight;
  Tensor<float, 1> bias_conv, gate_bias, outnorm, skip;
  Tensor<float, 2> gate_weight;
  Tensor<float, 4> q_heads, k_heads, v_heads, i_heads, f_heads, h_heads;
  mlstm::detail::RowMatrix<float> igate, fgate;

  explicit Block(Index S_)
      : S(S_),
        x(filled<float, 2>(S, E)),
        normed(S, E),
        x_mlstm(S, I),
        z(filled<float, 2>(S, I)),
        conv(S, I),
        q(filled<float, 2>(S, I)),
        k(filled<float, 2>(S, I)),
        v(filled<float, 2>(S, I)),
        h(S, I),
        out(S, E),
        weight_norm(filled<float, 2>(1, E)),
        proj_up(filled<float, 2>(2 * I, E)),
        proj_down(filled<float, 2>(E, I)),
        head(filled<float, 2>(vocab, E)),
        qkv_weight(filled<float, 3>(I / block, block, block)),
        conv_weight(filled<float, 3>(1, I, kernel_size)),
        bias_conv(filled<float, 1>(I)),
        gate_bias(filled<float, 1>(NH)),
        outnorm(filled<float, 1>(I)),
        skip(filled<float, 1>(I)),
        gate_weight(filled<float, 2>(NH, 3 * I)),
        q_heads(filled<float, 4>(1, NH, S, DH)),
        k_heads(filled<float, 4>(1, NH, S, DH)),
        v_heads(filled<float, 4>(1, NH, S, DH)),
        i_heads(filled<float, 4>(1, NH, S, 1)),
        f_heads(filled<float, 4>(1, NH, S, 1)),
        h_heads(filled<float, 4>(1, NH, S, DH)) {
    f_heads = f_heads * 10.0f + 3.0f;
    igate.setZero(S, NH);
    fgate.setZero(S, NH);
  }
};

using Stage = std::function<void(Block&, int threads)>;

const std::vector<std::pair<std::string, Stage>>& stages() {
  namespace d = mlstm::detail;
  static const std::vector<std::pair<std::string, Stage>> all = {
      {"norm",
       [](Block& b, int threads) {
         d::layer_norm_rows(b.x.data(), b.S, E, b.weight_norm.data(),
                            static_cast<const float*>(nullptr), true, 1e-5, b.normed.data(),
                            threads);
       }},
      {"proj_up",
       [](Block& b, int threads) {
         d::linear_rows(b.x.data(), b.S, E, b.proj_up.data(), I, static_cast<const float*>(nullptr),
                        b.x_mlstm.data(), threads);
         d::linear_rows(b.x.data(), b.S, E, b.proj_up.data() + I * E, I,
                        static_cast<const float*>(nullptr), b.z.data(), threads);
       }},
      {"conv",
       [](Block& b, int threads) {
         d::causal_conv1d(b.q.data(), 1, b.S, I, b.conv_weight.data(), kernel_size,
                          b.bias_conv.data(), static_cast<float*>(nullptr), b.conv.data(), threads);
         d::silu_rows(b.conv.data(), b.S, I, b.conv.data(), threads);
       }},
      {"qkv",
       [](Block& b, int threads) {
         for (float* y : {b.q.data(), b.k.data(), b.v.data()})
           d::linear_headwise_rows(b.conv.data(), b.S, I / block, block, b.qkv_weight.data(), block,
                                   static_cast<const float*>(nullptr), y, threads);
       }},
      {"gates",
       [](Block& b, int threads) {
         const mlstm::ConstTensorMap<float, 2> w(b.gate_weight.data(), NH, 3 * I);
         const mlstm::ConstTensorMap<float, 1> bias(b.gate_bias.data(), NH);
         const mlstm::MLSTMCellWeights<float> cell{
             w, bias, w, bias, mlstm::ConstTensorMap<float, 1>(b.outnorm.data(), I)};
         d::gate_preactivations(b.q.data(), b.k.data(), b.v.data(), b.S, I, cell, b.igate, b.fgate,
                                threads);
       }},
      {"split",
       [](Block& b, int threads) {  // as the model's cell: into kept tensors, q, k, v threaded
         d::split_heads(b.igate.data(), 1, b.S, NH, 1, b.i_heads);
         d::split_heads(b.fgate.data(), 1, b.S, NH, 1, b.f_heads);
         d::split_heads(b.q.data(), 1, b.S, NH, DH, b.q_heads, threads);
         d::split_heads(b.k.data(), 1, b.S, NH, DH, b.k_heads, threads);
         d::split_heads(b.v.data(), 1, b.S, NH, DH, b.v_heads, threads);
         benchmark::ClobberMemory();
       }},
      {"kernel",
       [](Block& b, int threads) {
         mlstm::KernelOptions options;
         options.chunk_size = chunk;
         options.num_threads = threads;
         if (const char* limit = std::getenv("MLSTM_BENCH_PARALLEL_PREFILL_MAX"))
           options.parallel_prefill_max = std::atoi(limit);
         auto state = mlstm::RecurrentState<float>::zeros(1, NH, DH, DH);
         auto h = mlstm::kernel_forward(b.q_heads, b.k_heads, b.v_heads, b.i_heads, b.f_heads,
                                        state, options);
         benchmark::DoNotOptimize(h.data());
       }},
      {"outnorm",
       [](Block& b, int threads) {
         d::multi_head_layer_norm(b.h_heads.data(), 1, NH, b.S, DH, b.outnorm.data(),
                                  static_cast<const float*>(nullptr), mlstm::LayerNormOptions{},
                                  true, b.h.data(), threads);
       }},
      {"output",
       [](Block& b, int threads) {
         d::skip_and_output_gate(b.conv.data(), b.z.data(), b.skip.data(), b.S, I, b.h.data(),
                                 b.h.data(), threads);
       }},
      {"proj_down",
       [](Block& b, int threads) {
         d::linear_rows(b.h.data(), b.S, I, b.proj_down.data(), E,
                        static_cast<const float*>(nullptr), b.out.data(), threads);
       }},
      {"head",
       [](Block& b, int threads) {
         d::layer_norm_row(b.x.data(), E, b.weight_norm.data(), static_cast<const float*>(nullptr),
                           true, 1e-5, b.normed.data());
         Tensor<float, 1> logits(vocab);
         d::linear_rows(b.normed.data(), 1, E, b.head.data(), vocab,
                        static_cast<const float*>(nullptr), logits.data(), threads);
         benchmark::DoNotOptimize(logits.data());
       }},
  };
  return all;
}

void BM_stage(benchmark::State& state, const Stage& stage) {
  Block block(state.range(0));
  const int threads = mlstm::get_num_threads();
  for (auto _ : state) stage(block, threads);
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

const bool registered = [] {
  for (const auto& [name, stage] : stages()) {
    benchmark::RegisterBenchmark(("BM_stage/" + name).c_str(), BM_stage, stage)
        ->ArgName("S")
        ->Arg(128)
        ->Arg(256)
        ->Arg(512)
        ->Arg(2048)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MeasureProcessCPUTime();
  }
  return true;
}();

}  // namespace

int main(int argc, char** argv) { return mlstm_bench::run_benchmarks(argc, argv); }
