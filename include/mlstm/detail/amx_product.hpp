// y (rows, out) = bf16(x) (rows, in) W^T (+ bias) for float x and bfloat16 weights W (out, in),
// on the processor's tile matrix unit (AMX-BF16): x rounded to bfloat16 (to nearest even), every
// product exact and summed in float. The weights are loaded as tiles from where they lie (a
// memory-mapped checkpoint, say); only x is packed, once per tile of rows.
//
// The unit multiplies a (16, 32) tile of bfloat16 by a (16, 16) tile of bfloat16 pairs into a
// (16, 16) float tile. Here the weights are the first operand (16 outputs, 32 inputs: rows of W
// as they lie) and x the second, packed so that word [p][j] holds row j's inputs 2p and 2p + 1,
// so a float tile holds y^T for 16 outputs and 16 rows:
//
//   per tile of up to 128 rows of x:
//     x rounded and packed: block (m, kb) of 16 rows and 32 inputs, 16 x 16 words, zeros past
//     the last row and input;
//     per task of 32 outputs (in parallel): per pair of row blocks, per block of 32 inputs:
//       2 weight tiles x 2 x tiles -> 4 float tiles; then the float tiles, transposed, plus the
//       bias, are y's values.
//
// The last, partial block of inputs and the last, partial block of 16 outputs are loaded from
// zero-padded copies, made per call (64 bytes per output, and 16 rows of inputs). The rounding
// instruction (VCVTNE2PS2BF16) and the tile unit treat subnormal inputs as zero, and the unit
// flushes subnormal results (their documented behaviour), where the rounded copy of x that
// linear_product takes elsewhere keeps them: the two differ only for values below 2^-126.
//
// Each output is summed by one thread in a fixed order, so the result does not depend on the
// thread count. linear_product.hpp chooses this kernel for bfloat16 weights when the caller asks
// for bfloat16 inputs and the processor has the unit; tests/test_linear.cpp checks it against a
// plain loop on rounded inputs.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "mlstm/detail/aligned_array.hpp"
#include "mlstm/detail/thread_pool.hpp"
#include "mlstm/detail/x86_kernels.hpp"
#include "mlstm/tensor.hpp"

// GCC 11 and Clang 12 have the AMX intrinsics, for x86-64 only; Linux grants the tiles on request.
// MLSTM_NO_AMX leaves the kernel out.
#if MLSTM_DETAIL_X86_KERNELS && defined(__x86_64__) && defined(__linux__) && \
    !defined(MLSTM_NO_AMX) &&                                                \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define MLSTM_DETAIL_AMX_KERNELS 1
#else
#define MLSTM_DETAIL_AMX_KERNELS 0
#endif

namespace mlstm::detail {

#if MLSTM_DETAIL_AMX_KERNELS

// Whether the processor has AMX-BF16 (and AVX512-BF16, which rounds x) and Linux lets this
// process use the tile registers (it asks once: arch_prctl ARCH_REQ_XCOMP_PERM for
// XFEATURE_XTILEDATA, refused on kernels before 5.16).
inline bool processor_has_amx_bf16() {
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
    const bool amx_bf16 = (edx >> 22) & 1u, amx_tile = (edx >> 24) & 1u;
    if (!amx_bf16 || !amx_tile || !processor_has_avx512()) return false;
    if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) == 0 || ((eax >> 5) & 1u) == 0)
      return false;  // AVX512-BF16
    constexpr long request_permission = 0x1023, tile_data = 18;
    return syscall(SYS_arch_prctl, request_permission, tile_data) == 0;
  }();
  return has;
}

inline constexpr Index amx_tile_rows = 16;     // rows of every tile; outputs or rows of x
inline constexpr Index amx_tile_depth = 32;    // bfloat16 inputs in a row of a weight tile
inline constexpr Index amx_row_tile = 128;     // rows of x packed at once (1 MB at 4096 inputs)
inline constexpr Index amx_task_outputs = 32;  // two weight tiles
// How many blocks of inputs ahead the first pass over a task's weights asks for them.
inline constexpr Index amx_prefetch_blocks = 8;

// The tile configuration (palette 1): tiles 0-3 the float sums, 4-5 weights, 6-7 x; each 16
// rows of 64 bytes.
struct alignas(64) AmxTileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t bytes_per_row[16] = {};
  std::uint8_t rows[16] = {};
  AmxTileConfig() {
    for (int tile = 0; tile < 8; ++tile) {
      bytes_per_row[tile] = 64;
      rows[tile] = 16;
    }
  }
};

// Rounds rows [0, rows) and inputs [0, in) of x to bfloat16 and packs them as the header lays
// them out: block (m, kb) at (m * depth_blocks + kb) * 256 words.
__attribute__((target("avx512f,avx512bf16"))) inline void pack_amx_rows(const float* x,
                                                                        Index x_stride, Index rows,
                                                                        Index in,
                                                                        std::uint32_t* packed) {
  const Index depth_blocks = (in + amx_tile_depth - 1) / amx_tile_depth;
  const Index row_blocks = (rows + amx_tile_rows - 1) / amx_tile_rows;
  alignas(64) std::uint32_t words[16][16];
  for (Index m = 0; m < row_blocks; ++m)
    for (Index kb = 0; kb < depth_blocks; ++kb) {
      const Index k = kb * amx_tile_depth, width = std::min(amx_tile_depth, in - k);
      const __mmask16 low = static_cast<__mmask16>(width >= 16 ? 0xFFFF : (1u << width) - 1u);
      const __mmask16 high = static_cast<__mmask16>(width >= 32   ? 0xFFFF
                                                    : width <= 16 ? 0
                                                                  : (1u << (width - 16)) - 1u);
      for (Index j = 0; j < amx_tile_rows; ++j) {
        const Index row = m * amx_tile_rows + j;
        __m512i pairs = _mm512_setzero_si512();
        if (row < rows) {
          const float* at = x + row * x_stride + k;
          const __m512 first = _mm512_maskz_loadu_ps(low, at);
          const __m512 second = _mm512_maskz_loadu_ps(high, at + 16);
          pairs = (__m512i)_mm512_cvtne2ps_pbh(second, first);
        }
        _mm512_store_si512(words[j], pairs);
      }
      std::uint32_t* block = packed + (m * depth_blocks + kb) * 256;
      for (Index p = 0; p < 16; ++p)
        for (Index j = 0; j < 16; ++j) block[p * 16 + j] = words[j][p];
    }
}

// Where the weight tile of outputs [n, n + 16) and inputs block kb lies, and its row stride in
// bytes: in W, or in the zero-padded copies of the last partial block of inputs (`depth_tail`,
// (outputs, 32)) or of outputs (`output_tail`, (16, depth_blocks * 32)).
struct AmxWeightTiles {
  const Eigen::bfloat16* w;
  Index in, full_outputs, full_depth_blocks, depth_blocks;
  const Eigen::bfloat16* depth_tail;
  const Eigen::bfloat16* output_tail;

  const Eigen::bfloat16* tile(Index n, Index kb, Index& stride_bytes) const {
    if (n >= full_outputs) {
      stride_bytes = depth_blocks * amx_tile_depth * 2;
      return output_tail + kb * amx_tile_depth;
    }
    if (kb >= full_depth_blocks) {
      stride_bytes = amx_tile_depth * 2;
      return depth_tail + n * amx_tile_depth;
    }
    stride_bytes = in * 2;
    return w + n * in + kb * amx_tile_depth;
  }
};

// Adds the products over every block of inputs of WeightTiles (1 or 2) weight tiles from output n
// and XTiles (1 or 2) row blocks from m into float tiles, then writes them, transposed and plus
// the bias, into y. The tile configuration is loaded.
template <int WeightTiles, int XTiles>
__attribute__((target("amx-tile,amx-bf16"))) void amx_output_block(
    const AmxWeightTiles& weights, const std::uint32_t* packed, Index n, Index m, Index out,
    Index rows, const float* bias, float* y, Index y_stride, bool prefetch) {
  // GCC's tile loads are asm without a memory operand: the packed x and the padded copies must be
  // in memory before them.
  asm volatile("" ::: "memory");
  _tile_zero(0);
  if constexpr (XTiles > 1) _tile_zero(1);
  if constexpr (WeightTiles > 1) _tile_zero(2);
  if constexpr (WeightTiles > 1 && XTiles > 1) _tile_zero(3);
  const Index depth_blocks = weights.depth_blocks;
  const std::uint32_t* x0 = packed + m * depth_blocks * 256;
  const std::uint32_t* x1 = x0 + depth_blocks * 256;
  for (Index kb = 0; kb < depth_blocks; ++kb) {
    Index stride0 = 0, stride1 = 0;
    const Eigen::bfloat16* weights0 = weights.tile(n, kb, stride0);  // sets the stride first
    if (prefetch && kb + amx_prefetch_blocks < depth_blocks) {
      Index ahead_stride = 0;
      for (int wt = 0; wt < WeightTiles; ++wt) {
        const char* ahead = reinterpret_cast<const char*>(
            weights.tile(n + wt * amx_tile_rows, kb + amx_prefetch_blocks, ahead_stride));
        for (Index r = 0; r < amx_tile_rows; ++r)
          _mm_prefetch(ahead + r * ahead_stride, _MM_HINT_T0);
      }
    }
    _tile_loadd(4, weights0, stride0);
    _tile_loadd(6, x0 + kb * 256, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (XTiles > 1) {
      _tile_loadd(7, x1 + kb * 256, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if constexpr (WeightTiles > 1) {
      const Eigen::bfloat16* weights1 = weights.tile(n + amx_tile_rows, kb, stride1);
      _tile_loadd(5, weights1, stride1);
      _tile_dpbf16ps(2, 5, 6);
      if constexpr (XTiles > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  alignas(64) float sums[4][16][16];
  _tile_stored(0, sums[0], 64);
  if constexpr (XTiles > 1) _tile_stored(1, sums[1], 64);
  if constexpr (WeightTiles > 1) _tile_stored(2, sums[2], 64);
  if constexpr (WeightTiles > 1 && XTiles > 1) _tile_stored(3, sums[3], 64);
  for (int wt = 0; wt < WeightTiles; ++wt)
    for (int xt = 0; xt < XTiles; ++xt) {
      const float(&tile)[16][16] = sums[wt * 2 + xt];
      const Index n0 = n + wt * amx_tile_rows, m0 = (m + xt) * amx_tile_rows;
      const Index outputs = std::min(amx_tile_rows, out - n0);
      const Index row_count = std::min(amx_tile_rows, rows - m0);
      for (Index j = 0; j < row_count; ++j) {
        float* y_row = y + (m0 + j) * y_stride + n0;
        for (Index i = 0; i < outputs; ++i)
          y_row[i] = tile[i][j] + (bias != nullptr ? bias[n0 + i] : 0.0f);
      }
    }
}

template <int WeightTiles>
void amx_output_task(const AmxWeightTiles& weights, const std::uint32_t* packed, Index n, Index out,
                     Index rows, const float* bias, float* y, Index y_stride) {
  const Index row_blocks = (rows + amx_tile_rows - 1) / amx_tile_rows;
  Index m = 0;
  for (; m + 1 < row_blocks; m += 2)
    amx_output_block<WeightTiles, 2>(weights, packed, n, m, out, rows, bias, y, y_stride, m == 0);
  if (m < row_blocks)
    amx_output_block<WeightTiles, 1>(weights, packed, n, m, out, rows, bias, y, y_stride, m == 0);
}

__attribute__((target("amx-tile"))) inline void load_amx_config() {
  static const AmxTileConfig config;
  _tile_loadconfig(&config);
}

__attribute__((target("amx-tile"))) inline void release_amx_tiles() { _tile_release(); }

// The product the header describes, on up to `threads` threads. Call it only where
// processor_has_amx_bf16().
inline void amx_product(const float* x, Index x_stride, Index rows, const Eigen::bfloat16* w,
                        Index in, Index out, const float* bias, float* y, Index y_stride,
                        int threads) {
  if (rows < 1 || out < 1) return;
  const Index depth_blocks = (in + amx_tile_depth - 1) / amx_tile_depth;
  const Index full_depth_blocks = in / amx_tile_depth;
  const Index full_outputs = out / amx_tile_rows * amx_tile_rows;
  const Index padded_in = depth_blocks * amx_tile_depth;
  // The zero-padded copies of the partial blocks; inputs past `in` multiply packed zeros.
  std::vector<Eigen::bfloat16> depth_tail(
      full_depth_blocks < depth_blocks ? full_outputs * amx_tile_depth : 0, Eigen::bfloat16(0.0f));
  for (Index n = 0; n < full_outputs && !depth_tail.empty(); ++n)
    std::copy(w + n * in + full_depth_blocks * amx_tile_depth, w + (n + 1) * in,
              depth_tail.begin() + n * amx_tile_depth);
  std::vector<Eigen::bfloat16> output_tail(full_outputs < out ? amx_tile_rows * padded_in : 0,
                                           Eigen::bfloat16(0.0f));
  for (Index n = full_outputs; n < out; ++n)
    std::copy(w + n * in, w + (n + 1) * in, output_tail.begin() + (n - full_outputs) * padded_in);
  const AmxWeightTiles weights{
      w, in, full_outputs, full_depth_blocks, depth_blocks, depth_tail.data(), output_tail.data()};

  const Index row_tile = balanced_tile(rows, amx_row_tile, amx_tile_rows);
  const Index max_blocks = (row_tile + amx_tile_rows - 1) / amx_tile_rows;
  AlignedArray<std::uint32_t> packed(max_blocks * depth_blocks * 256);
  const Index tasks = (out + amx_task_outputs - 1) / amx_task_outputs;
  for (Index row_begin = 0; row_begin < rows; row_begin += row_tile) {
    const Index row_count = std::min(row_tile, rows - row_begin);
    pack_amx_rows(x + row_begin * x_stride, x_stride, row_count, in, packed.data());
    const double flops =
        2.0 * static_cast<double>(row_count) * static_cast<double>(in) * static_cast<double>(out);
    float* y_rows = y + row_begin * y_stride;
    // The unit does a product's work about 8 times as fast as the float kernels that
    // threads_for_work's threshold was set for (1025 against 133 GFLOP/s at 128 x 4096 x 4096,
    // bench_linear), so a thread is worth waking for 8 times the work.
    parallel_for(tasks, threads_for_work(threads, tasks, flops / 8.0), [&](Index task) {
      load_amx_config();
      const Index n = task * amx_task_outputs;
      if (out - n > amx_tile_rows) {
        amx_output_task<2>(weights, packed.data(), n, out, row_count, bias, y_rows, y_stride);
      } else {
        amx_output_task<1>(weights, packed.data(), n, out, row_count, bias, y_rows, y_stride);
      }
      release_amx_tiles();
    });
  }
}

#endif

}  // namespace mlstm::detail
