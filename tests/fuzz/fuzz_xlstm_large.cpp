// Fuzz target: load_xlstm_large on an untrusted Hugging Face folder. The input is one byte whose
// low bit asks for bfloat16 weights (else float), a 16-bit little-endian length n, n bytes of
// config.json, then model.safetensors. Loading either fails with a typed error or gives a model
// that runs a forward over two tokens; it must never allocate what the files only claim
// (libFuzzer's -malloc_limit_mb turns such an allocation into a finding).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include <mlstm/models/xlstm_large/checkpoint.hpp>

#include "fuzz_support.hpp"

namespace {

template <typename W>
void load_and_run(const std::string& folder) {
  const auto model = mlstm::load_xlstm_large<float, W>(folder, 1);
  mlstm::Tensor<std::int64_t, 2> tokens(1, 2);
  tokens(0, 0) = 0;
  tokens(0, 1) = model.config().vocab_size - 1;
  (void)model.forward(tokens);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  mlstm::fuzz::ByteReader reader(data, size);
  const bool bfloat16_weights = reader.flag();
  const std::size_t config_size =
      std::min<std::size_t>(reader.take<std::uint16_t>(), reader.remaining());
  const std::size_t config_begin = size - reader.remaining();
  mlstm::fuzz::write_scratch_file("config.json", data + config_begin, config_size);
  mlstm::fuzz::write_scratch_file("model.safetensors", data + config_begin + config_size,
                                  size - config_begin - config_size);
  mlstm::fuzz::expect_only_mlstm_errors([&] {
    const std::string& folder = mlstm::fuzz::scratch_folder();
    bfloat16_weights ? load_and_run<Eigen::bfloat16>(folder) : load_and_run<float>(folder);
  });
  return 0;
}
