// Fuzz target: the kernels' argument checking. The bytes choose a form, shapes (now and then
// mismatched), options (valid or not), a mask and values (NaN and infinities included); a call
// either fails with a typed mlstm error or returns.
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>

#include <mlstm/mlstm.hpp>

#include "fuzz_support.hpp"

namespace {

using mlstm::Index;
using mlstm::fuzz::ByteReader;

template <typename T>
T value_from(ByteReader& in) {
  const auto byte = in.take<std::uint8_t>();
  constexpr T specials[] = {
      std::numeric_limits<T>::quiet_NaN(),  std::numeric_limits<T>::infinity(),
      -std::numeric_limits<T>::infinity(),  std::numeric_limits<T>::max(),
      std::numeric_limits<T>::denorm_min(), T(-80)};
  if (byte >= 250) return specials[byte - 250];
  return (T(byte) - T(125)) / T(16);
}

// A tensor of `dims`, one of them changed when the bytes say so.
template <typename T>
mlstm::Tensor<T, 4> tensor(ByteReader& in, std::array<Index, 4> dims) {
  if (in.take<std::uint8_t>() < 16) {
    const int axis = in.in_range(0, 3);
    dims[axis] = dims[axis] == 0 ? 1 : dims[axis] + (in.flag() ? 1 : -1);
  }
  mlstm::Tensor<T, 4> result(dims);
  for (Index i = 0; i < result.size(); ++i) result.data()[i] = value_from<T>(in);
  return result;
}

double eps_from(ByteReader& in) {
  constexpr double choices[] = {1e-6,
                                1e-6,
                                1e-6,
                                0.0,
                                -1.0,
                                std::numeric_limits<double>::quiet_NaN(),
                                std::numeric_limits<double>::infinity(),
                                1e-300,
                                2.0};
  return choices[in.in_range(0, 8)];
}

int threads_from(ByteReader& in) { return in.in_range(-1, 3); }

template <typename T>
void call_kernel(ByteReader& in) {
  const Index batch = in.in_range(0, 2), heads = in.in_range(0, 3), steps = in.in_range(0, 9);
  const Index qk = in.in_range(0, 4), v_dim = in.in_range(0, 4);
  const int form = in.in_range(0, 3);
  const Index s = form == 3 ? 1 : steps;
  const auto q = tensor<T>(in, {batch, heads, s, qk});
  const auto k = tensor<T>(in, {batch, heads, s, qk});
  const auto v = tensor<T>(in, {batch, heads, s, v_dim});
  const auto igate = tensor<T>(in, {batch, heads, s, 1});
  const auto fgate = tensor<T>(in, {batch, heads, s, 1});
  switch (form) {
    case 0: {
      mlstm::ParallelOptions options;
      options.stabilize_rowwise = in.flag();
      options.eps = eps_from(in);
      options.num_threads = threads_from(in);
      if (in.flag()) {
        const Index rows = in.in_range(0, 10), columns = in.flag() ? rows : in.in_range(0, 10);
        mlstm::Mask mask(rows, columns);
        for (Index i = 0; i < mask.size(); ++i) mask.data()[i] = in.flag();
        options.mask = mask;
      }
      (void)mlstm::parallel_stabilized(q, k, v, igate, fgate, options);
      break;
    }
    case 1: {
      mlstm::ChunkwiseOptions options;
      constexpr Index chunk_sizes[] = {-1, 0, 1, 2, 3, 4, 64};
      options.chunk_size = chunk_sizes[in.in_range(0, 6)];
      options.eps = eps_from(in);
      options.num_threads = threads_from(in);
      (void)mlstm::chunkwise_stabilized(q, k, v, igate, fgate, options);
      break;
    }
    case 2:
      (void)mlstm::recurrent_sequence(q, k, v, igate, fgate, {eps_from(in), threads_from(in)});
      break;
    default: {
      const auto c = tensor<T>(in, {batch, heads, qk, v_dim});
      const auto n = tensor<T>(in, {batch, heads, qk, 1});
      const auto m = tensor<T>(in, {batch, heads, 1, 1});
      (void)mlstm::recurrent_step_stabilized(c, n, m, q, k, v, igate, fgate,
                                             {eps_from(in), threads_from(in)});
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ByteReader in(data, size);
  mlstm::fuzz::expect_only_mlstm_errors([&] {
    if (in.flag()) {
      call_kernel<double>(in);
    } else {
      call_kernel<float>(in);
    }
  });
  return 0;
}
