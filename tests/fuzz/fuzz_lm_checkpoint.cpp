// Fuzz target: load_language_model on an untrusted file. Loading either fails with a typed error
// or gives a model; it must never allocate what the file only claims (libFuzzer's
// -malloc_limit_mb turns such an allocation into a finding).
#include <cstddef>
#include <cstdint>
#include <string>

#include <mlstm/model.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = mlstm::fuzz::write_scratch_file("model.safetensors", data, size);
  mlstm::fuzz::expect_only_mlstm_errors(
      [&] { (void)mlstm::load_language_model<float>(path, {}, 16); });
  return 0;
}
