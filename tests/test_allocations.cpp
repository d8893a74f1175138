// What the kernels allocate: the in-place recurrent step nothing at all, the parallel form no
// (S, S) matrix, the chunkwise form a workspace that does not grow with S; and what a model
// holds: its weights once, also when loaded from a file.
//
// This program replaces the C allocation functions (which operator new and Eigen's aligned
// allocator both end in) by counting wrappers around glibc's own. It is not built with the
// sanitizers, which bring their own allocator.
#include <malloc.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstddef>
#include <filesystem>
#include <mlstm/mlstm.hpp>
#include <string>

#include "support/random_inputs.hpp"

extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* pointer, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
void __libc_free(void* pointer);
}

namespace {

std::atomic<long long> allocations{0};
std::atomic<long long> live_bytes{0};
std::atomic<long long> peak_bytes{0};

void* counted(void* pointer) {
  if (pointer != nullptr) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    const long long now =
        live_bytes.fetch_add(static_cast<long long>(malloc_usable_size(pointer))) +
        static_cast<long long>(malloc_usable_size(pointer));
    long long peak = peak_bytes.load();
    while (now > peak && !peak_bytes.compare_exchange_weak(peak, now)) {
    }
  }
  return pointer;
}

void uncounted(void* pointer) {
  if (pointer != nullptr) live_bytes.fetch_sub(static_cast<long long>(malloc_usable_size(pointer)));
}

// Counts from construction: allocations made, and the peak of bytes live above the start.
class AllocationWatch {
 public:
  AllocationWatch() : start_allocations_(allocations.load()), start_live_(live_bytes.load()) {
    peak_bytes.store(start_live_);
  }
  long long allocations_made() const { return allocations.load() - start_allocations_; }
  long long peak_above_start() const { return peak_bytes.load() - start_live_; }

 private:
  long long start_allocations_, start_live_;
};

}  // namespace

extern "C" {
void* malloc(size_t size) { return counted(__libc_malloc(size)); }
void* calloc(size_t count, size_t size) { return counted(__libc_calloc(count, size)); }
void* realloc(void* pointer, size_t size) {
  uncounted(pointer);
  return counted(__libc_realloc(pointer, size));
}
void* memalign(size_t alignment, size_t size) { return counted(__libc_memalign(alignment, size)); }
void* aligned_alloc(size_t alignment, size_t size) { return memalign(alignment, size); }
int posix_memalign(void** out, size_t alignment, size_t size) {
  *out = memalign(alignment, size);
  return *out != nullptr ? 0 : 12;  // ENOMEM
}
void free(void* pointer) {
  uncounted(pointer);
  __libc_free(pointer);
}
}

using mlstm::Index;
using mlstm::test::SequenceCase;

namespace {

TEST_CASE("the counting allocator sees operator new and Eigen's allocations", "[allocations]") {
  AllocationWatch watch;
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
    mlstm::recurrent_step_stabilized_inplace(state, c.q, c.k, c.v, c.igate, c.fgate, h, 1e-6,
                                             threads);
    AllocationWatch watch;
    for (int step = 0; step < 50; ++step) {
      mlstm::recurrent_step_stabilized_inplace(state, c.q, c.k, c.v, c.igate, c.fgate, h, 1e-6,
                                               threads);
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
    AllocationWatch watch;
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
    AllocationWatch watch;
    const auto out = mlstm::chunkwise_stabilized(c.q, c.k, c.v, c.igate, c.fgate, options);
    workspace[which] = watch.peak_above_start() - static_cast<long long>(out.h.size()) * 4;
  }
  INFO("workspace at S = 2048: " << workspace[0] << " bytes; at S = 16384: " << workspace[1]);
  CHECK(workspace[1] < workspace[0] + (64 << 10));
}

TEST_CASE("a model for inference holds its weights once", "[allocations][model]") {
  mlstm::LMModelConfig config;
  config.vocab_size = 4096;
  config.embedding_dim = 256;
  config.num_blocks = 2;
  config.context_length = 64;
  AllocationWatch watch;
  const mlstm::LanguageModel<float> model(config);
  const long long weights = model.registry().parameter_count() * 4;
  INFO("peak above start " << watch.peak_above_start() << " bytes; weights " << weights);
  CHECK(watch.peak_above_start() >= weights);
  CHECK(watch.peak_above_start() < weights + weights / 20);  // no gradient buffers
}

TEST_CASE("loading a model holds its weights and little more", "[allocations][model]") {
  mlstm::LMModelConfig config;
  config.vocab_size = 4096;
  config.embedding_dim = 256;
  config.num_blocks = 2;
  config.context_length = 64;
  const std::string path =
      (std::filesystem::temp_directory_path() / "mlstm_test_allocations_load.safetensors").string();
  {
    mlstm::LanguageModel<float> model(config);
    mlstm::Generator generator(0);
    model.reset_parameters(generator);
    mlstm::save_language_model(model, path);
  }
  AllocationWatch watch;
  const auto loaded = mlstm::load_language_model<float>(path);
  const long long weights = loaded.registry().parameter_count() * 4;
  std::filesystem::remove(path);
  INFO("peak above start " << watch.peak_above_start() << " bytes; weights " << weights);
  CHECK(watch.peak_above_start() < weights + weights / 20);  // no copy of the file's data
}
