// The matrix product at the library's shapes, by each candidate implementation: this file is
// built several times (bench/CMakeLists.txt), once per backend,
//
//   bench_gemm           Eigen's own product
//   bench_gemm_openblas  Eigen routed to OpenBLAS (EIGEN_USE_BLAS, Debian libopenblas-dev)
//   bench_gemm_blis      Eigen routed to BLIS (EIGEN_USE_BLAS, Debian libblis-dev)
//   bench_gemm_dnnl      oneDNN's dnnl_sgemm (Debian libdnnl-dev)
//
// and bench/README.md records a run of each:
//
//   OPENBLAS_NUM_THREADS=1 BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1 ./bench_gemm_openblas
//
// BM_gemm/M/K/N: C (M, N) = A (M, K) B^T with B (N, K), all row-major float32, as the linear
// layers multiply activations by weights; on one thread, as the library calls its products
// inside its own worker threads. Shapes: the tiles of linear_product (256 rows by 512 outputs,
// K = 768 and 1536 as in the 120M model, 4096 as in the 7B model), whole projections of a
// 128-token prompt, and the chunkwise kernel's in-chunk products (chunk 64, head dims 384,
// 128).
#include <benchmark/benchmark.h>

#include <Eigen/Core>

#ifdef MLSTM_BENCH_DNNL
#include <dnnl.h>
#endif

namespace {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

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
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * static_cast<double>(M * K * N) * static_cast<double>(state.iterations()) * 1e-9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_gemm)
    ->ArgNames({"M", "K", "N"})
    ->Args({256, 768, 512})
    ->Args({256, 1536, 512})
    ->Args({256, 4096, 512})
    ->Args({128, 768, 3072})
    ->Args({128, 1536, 768})
    ->Args({64, 384, 64})
    ->Args({64, 64, 384})
    ->Args({384, 64, 384})
    ->Args({64, 128, 128})
    ->Args({128, 64, 128})
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
