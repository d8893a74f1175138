// The matrix product at the library's shapes, by each candidate implementation: this file is
// built several times (bench/CMakeLists.txt), once per backend,
//
//   bench_gemm           Eigen's own product
//   bench_gemm_openblas  Eigen routed to OpenBLAS (EIGEN_USE_BLAS, Debian libopenblas-dev)
//   bench_gemm_blis      Eigen routed to BLIS (EIGEN_USE_BLAS, Debian libblis-dev)
//   bench_gemm_dnnl      oneDNN's dnnl_sgemm (Debian libdnnl-dev)
//
// and bench/README.md records a run of each. The plain build also times the library's own
// kernels at the same shapes: BM_broadcast_gemm (detail/broadcast_product.hpp) where the
// processor has AVX-512, and BM_packed_gemm (detail/packed_product.hpp, what matrix_product runs
// on a processor with AVX2 and FMA, on its 8 x 32 tile where the processor has AVX-512).
//
//   OPENBLAS_NUM_THREADS=1 BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1 ./bench_gemm_openblas
//
// BM_gemm/M/K/N: C (M, N) = A (M, K) B^T with B (N, K), all row-major float32, as the linear
// layers multiply activations by weights; on one thread, as the library calls its products
// inside its own worker threads. Shapes: the tiles of linear_product (256 rows by 512 outputs,
// K = 768 and 1536 as in the 120M model, 4096 as in the 7B model), whole projections of a
// 128-token prompt (the last one xLSTM-Large's q), the chunkwise kernel's in-chunk products
// (chunk 64, head dims 384, 128), and the small training model's proj_up over a batch of
// 8 x 256 tokens.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <array>

#ifdef MLSTM_BENCH_DNNL
#include <dnnl.h>
#endif
#if !defined(MLSTM_BENCH_DNNL) && !defined(EIGEN_USE_BLAS)
#include <mlstm/detail/broadcast_product.hpp>
#include <mlstm/detail/packed_product.hpp>
#define MLSTM_BENCH_OWN_KERNELS MLSTM_DETAIL_X86_KERNELS
#else
#define MLSTM_BENCH_OWN_KERNELS 0
#endif

namespace {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void add_rate(benchmark::State& state, Eigen::Index M, Eigen::Index K, Eigen::Index N) {
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * static_cast<double>(M * K * N) * static_cast<double>(state.iterations()) * 1e-9,
      benchmark::Counter::kIsRate);
}

void BM_gemm(benchmark::State& state) {
  const Eigen::Index M = state.range(0), K = state.range(1), N = state.range(2);
  const Matrix a = Matrix::Random(M, K), b = Matrix::Random(N, K);
  Matrix c(M, N);
  for (auto _ : state) {
#ifdef MLSTM_BENCH_DNNL
    dnnl_sgemm('N', 'T', M, N, K, 1.0f, a.data(), K, b.data(), K, 0.0f, c.data(), N);
#else
    c.noalias() = a * b.transpose();
#endif
    benchmark::DoNotOptimize(c.data());
  }
  add_rate(state, M, K, N);
}

// The shapes of BM_gemm's header.
void gemm_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "K", "N"});
  for (const auto& [m, k, n] : {std::array<long, 3>{256, 768, 512},
                                {256, 1536, 512},
                                {256, 4096, 512},
                                {128, 768, 3072},
                                {128, 1536, 768},
                                {64, 384, 64},
                                {64, 64, 384},
                                {384, 64, 384},
                                {64, 128, 128},
                                {128, 64, 128},
                                {128, 4096, 4096},
                                {2048, 256, 1024}})
    b->Args({m, k, n});
  b->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_gemm)->Apply(gemm_shapes);

#if MLSTM_BENCH_OWN_KERNELS
// The same product by broadcast_product on the calling thread (threads = 1).
void BM_broadcast_gemm(benchmark::State& state) {
  if (!mlstm::detail::processor_has_avx512()) {
    state.SkipWithError("the processor has no AVX-512");
    return;
  }
  const Eigen::Index M = state.range(0), K = state.range(1), N = state.range(2);
  const Matrix a = Matrix::Random(M, K), b = Matrix::Random(N, K);
  Matrix c(M, N);
  for (auto _ : state) {
    mlstm::detail::broadcast_product<float>(a.data(), K, M, b.data(), K, N, nullptr, c.data(), N,
                                            1);
    benchmark::DoNotOptimize(c.data());
  }
  add_rate(state, M, K, N);
}
BENCHMARK(BM_broadcast_gemm)->Apply(gemm_shapes);

// The same product by packed_product.
void BM_packed_gemm(benchmark::State& state) {
  if (!mlstm::detail::uses_packed_product()) {
    state.SkipWithError("not used here: no AVX2 and FMA");
    return;
  }
  const Eigen::Index M = state.range(0), K = state.range(1), N = state.range(2);
  const Matrix a = Matrix::Random(M, K), b = Matrix::Random(N, K);
  Matrix c(M, N);
  for (auto _ : state) {
    mlstm::detail::packed_product(M, N, K, {a.data(), K}, {b.data(), K, true}, c.data(), N,
                                  mlstm::detail::Accumulate::no);
    benchmark::DoNotOptimize(c.data());
  }
  add_rate(state, M, K, N);
}
BENCHMARK(BM_packed_gemm)->Apply(gemm_shapes);
#endif

}  // namespace

BENCHMARK_MAIN();
