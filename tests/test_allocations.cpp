// What the kernels allocate: the in-place recurrent step nothing at all, the parallel form no
// (S, S) matrix, the chunkwise form a workspace that does not grow with S; and what a model
// holds: its weights once, also when loaded from a file.
//
// The allocations are counted by support/heap_counter.hpp, which replaces the C allocation
// functions; this program is therefore not built with the sanitizers.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <string>

#include <mlstm/mlstm.hpp>

#include "support/heap_counter.hpp"
#include "support/random_inputs.hpp"
#include "support/seeded_model.hpp"

using mlstm::Index;
using mlstm::test::SequenceCase;

namespace {

TEST_CASE("the counting allocator sees operator new and Eigen's allocations", "[allocations]") {
  mlstm::test::HeapWatch watch;
  {
    auto* block = new char[1 << 20];
    Eigen::MatrixXf matrix(512, 512);
    matrix.setZero();
    block[0] = 1;
    delete[] block;
  }
  CHECK(watch.allocations_made() == 2);
  CHECK(watch.peak_above_start() >= (1 << 20) + 512 * 512 * 4);
}

TEST_CASE("the in-place recurrent step allocates nothing", "[allocations][recurrent]") {
  SequenceCase<float> c(2, 4, 1, 64, 48, 3);
  auto state = mlstm::RecurrentState<float>::zeros(2, 4, 64, 48);
  mlstm::Tensor<float, 4> h(2, 4, 1, 48);
  for (const int threads : {0, 1}) {
    CAPTURE(threads);
    mlstm::recurrent_step_stabilized_inplace(state, c.q, c.k, c.v, c.igate, c.fgate, h,
                                             {1e-6, threads});
    mlstm::test::HeapWatch watch;
    for (int step = 0; step < 50; ++step) {
      mlstm::recurrent_step_stabilized_inplace(state, c.q, c.k, c.v, c.igate, c.fgate, h,
                                               {1e-6, threads});
    }
    CHECK(watch.allocations_made() == 0);
  }
}

// The worker pool's own allocations, made once, are not the kernels'.
void start_worker_pool() {
  mlstm::detail::parallel_for(2, 2, [](Index) {});
}

}  // namespace

TEST_CASE("the parallel form never holds an (S, S) matrix", "[allocations][parallel]") {
  start_worker_pool();
  const Index S = 4096, D = 16;
  SequenceCase<float> c(1, 1, S, D, D, 4);
  for (const bool rowwise : {true, false}) {
    CAPTURE(rowwise);
    mlstm::ParallelOptions options;
    options.stabilize_rowwise = rowwise;
    options.num_threads = 2;
    mlstm::test::HeapWatch watch;
    const auto h = mlstm::parallel_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
    const long long output = S * D * 4;
    const long long square = S * S * 4;  // 64 MiB
    INFO("peak above start " << watch.peak_above_start() << " bytes; output " << output);
    CHECK(watch.peak_above_start() - output < square / 32);
  }
}

TEST_CASE("the chunkwise workspace does not grow with S", "[allocations][chunkwise]") {
  start_worker_pool();
  const Index D = 32;
  long long workspace[2] = {0, 0};
  const Index lengths[2] = {2048, 16384};
  for (int which = 0; which < 2; ++which) {
    const Index S = lengths[which];
    SequenceCase<float> c(1, 2, S, D, D, 5);
    // One thread: with two, the peak depends on whether the pool's worker takes the second
    // head while the first is still running (scheduling, not S).
    mlstm::ChunkwiseOptions options;
    options.num_threads = 1;
    mlstm::test::HeapWatch watch;
    const auto out = mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
    workspace[which] = watch.peak_above_start() - static_cast<long long>(out.h.size()) * 4;
  }
  INFO("workspace at S = 2048: " << workspace[0] << " bytes; at S = 16384: " << workspace[1]);
  CHECK(workspace[1] < workspace[0] + (64 << 10));
}

TEST_CASE("the segmented chunkwise workspace is the segment's, whatever S",
          "[allocations][chunkwise]") {
  // Three heads on two threads do not share out evenly, so chunkwise_stabilized processes them
  // in segments of chunks (chunkwise_forward). The segment length is the one chosen for two
  // threads; the walk is measured on one thread, where the peak does not depend on scheduling.
  const int threads = 2;
  REQUIRE_FALSE(mlstm::detail::chunkwise_by_head(3, threads));
  const Index chunk_size = 64;
  // {D, S}: D = 32 (segments of a few chunks, as many as the threads want) at two lengths, and
  // D = 256, where the 4 MiB budget limits the segment.
  const Index cases[3][2] = {{32, 2048}, {32, 16384}, {256, 1024}};
  long long workspace[3] = {0, 0, 0};
  long long budget[3] = {0, 0, 0};
  for (int which = 0; which < 3; ++which) {
    const Index D = cases[which][0], S = cases[which][1];
    SequenceCase<float> c(1, 3, S, D, D, 6);
    const auto in = mlstm::detail::check_sequence_inputs(c.q, c.k, c.v, c.igate, c.fgate);
    const Index segment =
        mlstm::detail::chunkwise_segment_chunks<float>(in.shape, chunk_size, threads);
    CAPTURE(D, S, segment);
    REQUIRE(segment < S / chunk_size);  // more than one segment
    mlstm::Tensor<float, 4> h(1, 3, S, D);
    auto state = mlstm::RecurrentState<float>::zeros(1, 3, D, D);
    mlstm::test::HeapWatch watch;
    const bool finite = mlstm::detail::chunkwise_forward<float>(
        in, chunk_size, segment, 1e-6f, 1, nullptr, nullptr, nullptr, h.data(), state.c.data(),
        state.n.data(), state.m.data());
    workspace[which] = watch.peak_above_start();
    REQUIRE(finite);
    // The segment's buffers per head: segment + 1 state slots and segment contributions (C and
    // n each) and the segment's chunk gates (four doubles a step), plus one chunk's work in
    // chunk_outputs (L x L and L x D matrices, a few of each).
    const long long slots = 3 * (2 * segment + 1) * (D * D + D) * 4;
    const long long gates = 3 * segment * chunk_size * 4 * 8;
    const long long chunk_work = 8 * (chunk_size * chunk_size + chunk_size * D) * 4;
    budget[which] = slots + gates + chunk_work + (16 << 10);
    INFO("workspace " << workspace[which] << " bytes; segment buffers and one chunk's work "
                      << budget[which]);
    CHECK(workspace[which] <= budget[which]);
  }
  // The same segment length at both S, so the same workspace.
  INFO("workspace at S = 2048: " << workspace[0] << " bytes; at S = 16384: " << workspace[1]);
  CHECK(workspace[1] < workspace[0] + (64 << 10));
  // Where the budget binds, the segment buffers stay about 4 MiB (one extra state slot per head).
  CHECK(workspace[2] < (5 << 20));
}

namespace {

// A model of 3.4M parameters: 13 MB of float weights, far above the allocator's noise.
mlstm::LMModelConfig model_config() {
  mlstm::LMModelConfig config;
  config.vocab_size = 4096;
  config.embedding_dim = 256;
  config.num_blocks = 2;
  config.context_length = 64;
  return config;
}

}  // namespace

TEST_CASE("a model for inference holds its weights once", "[allocations][model]") {
  mlstm::test::HeapWatch watch;
  const mlstm::LanguageModel<float> model(model_config());
  const long long weights = model.registry().parameter_count() * 4;
  INFO("peak above start " << watch.peak_above_start() << " bytes; weights " << weights);
  CHECK(watch.peak_above_start() >= weights);
  CHECK(watch.peak_above_start() < weights + weights / 20);  // no gradient buffers
}

TEST_CASE("loading a model holds its weights and little more", "[allocations][model]") {
  const std::string path =
      (std::filesystem::temp_directory_path() / "mlstm_test_allocations_load.safetensors").string();
  {
    mlstm::LanguageModel<float> model(model_config());
    mlstm::Generator generator(0);
    model.reset_parameters(generator);
    mlstm::save_language_model(model, path);
  }
  mlstm::test::HeapWatch watch;
  const auto loaded = mlstm::load_language_model<float>(path);
  const long long weights = loaded.registry().parameter_count() * 4;
  std::filesystem::remove(path);
  INFO("peak above start " << watch.peak_above_start() << " bytes; weights " << weights);
  CHECK(watch.peak_above_start() < weights + weights / 20);  // no copy of the file's data
}

// After the first prefill at a shape, the model keeps the activations in its inference buffers:
// the next prefill at that shape, even after generation steps, allocates a small part of what
// the first did (its per-block temporaries, the kernel's output, Eigen's packing buffers), and
// a state set to zero in place allocates nothing.
TEST_CASE("a prefill at an unchanged shape reuses the inference buffers", "[allocations][model]") {
  mlstm::KernelOptions options;
  options.num_threads = 1;
  const auto model = mlstm::test::seeded_model({4096, 256, 2, 64}, options, 0);
  const Index prompt_length = 192;
  mlstm::Tensor<int, 2> prompt(1, prompt_length);
  for (Index i = 0; i < prompt.size(); ++i) prompt.data()[i] = static_cast<int>((i * 37) % 256);
  mlstm::Tensor<int, 1> next(1);
  next.setConstant(3);
  auto state = model.initial_state(1);
  long long sizing_peak = 0, prefill_peak = 0, reset_peak = 0;
  {
    mlstm::test::HeapWatch watch;
    model.prefill(prompt, state, mlstm::Logits::last);
    sizing_peak = watch.peak_above_start();
  }
  for (int prompt_number = 0; prompt_number < 2; ++prompt_number) {
    model.step(next, state);
    {
      mlstm::test::HeapWatch watch;
      state.set_zero();
      reset_peak = std::max(reset_peak, static_cast<long long>(watch.peak_above_start()));
    }
    mlstm::test::HeapWatch watch;
    model.prefill(prompt, state, mlstm::Logits::last);
    prefill_peak = std::max(prefill_peak, static_cast<long long>(watch.peak_above_start()));
  }
  INFO("peak above start: first prefill " << sizing_peak << " bytes, later prefills "
                                          << prefill_peak << ", set_zero " << reset_peak);
  CHECK(reset_peak == 0);
  CHECK(prefill_peak < sizing_peak / 4);
}

// After the first step at a shape, a step keeps its activations and working buffers in the
// model's workspace. What it still allocates is far below the workspace: small per-block
// temporaries, the packing buffers of Eigen's matrix products (bounded by the caches; the packed
// product's are kept by each thread), and the parallel kernel's gate arrays, a few values per
// time step of each (batch, head). Only those grow with the batch: measured 60 KB from batch 4 to
// 8 (110704 to 171120 bytes on a processor with AVX2), where the workspace grows by 10 MB. One
// thread: on more, each product running at once holds its own packing buffers, and the peak
// depends on how they overlap in time.
TEST_CASE("a training step at an unchanged shape reuses its workspace", "[allocations][training]") {
  mlstm::KernelOptions options;
  options.num_threads = 1;
  auto model = mlstm::test::seeded_model({256, 128, 2, 64}, options, 0);
  const mlstm::LMModelConfig& config = model.config();
  const Index seq_len = 64;
  long long sizing_peak[2] = {0, 0}, step_peak[2] = {0, 0};
  for (const Index batch : {4, 8}) {
    CAPTURE(batch);
    mlstm::Tensor<int, 2> tokens(batch, seq_len), targets(batch, seq_len);
    for (Index i = 0; i < tokens.size(); ++i) {
      tokens.data()[i] = static_cast<int>((i * 37) % config.vocab_size);
      targets.data()[i] = static_cast<int>((i * 37 + 11) % config.vocab_size);
    }
    const int run = batch == 4 ? 0 : 1;
    model.release_training_workspace();
    {
      mlstm::test::HeapWatch watch;  // the first step at the shape sizes the workspace
      model.forward_backward(tokens, targets);
      sizing_peak[run] = watch.peak_above_start();
    }
    for (int step = 0; step < 2; ++step) {
      mlstm::test::HeapWatch watch;
      model.forward_backward(tokens, targets);
      step_peak[run] = std::max(step_peak[run], static_cast<long long>(watch.peak_above_start()));
    }
    INFO("peak above start: " << step_peak[run]
                              << " bytes; sizing the workspace: " << sizing_peak[run]);
    CHECK(step_peak[run] < sizing_peak[run] / 8);
  }
  INFO("a step's peak at batch 4 and 8: " << step_peak[0] << ", " << step_peak[1]
                                          << " bytes; sizing: " << sizing_peak[0] << ", "
                                          << sizing_peak[1]);
  CHECK(sizing_peak[1] > sizing_peak[0] * 3 / 2);
  CHECK(step_peak[1] - step_peak[0] < (sizing_peak[1] - sizing_peak[0]) / 32);
}
