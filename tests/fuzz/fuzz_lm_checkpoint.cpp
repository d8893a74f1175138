// Fuzz target: load_language_model on an untrusted file. Loading either fails with a typed error
// or gives a model; it must never allocate what the file only claims (libFuzzer's
// -malloc_limit_mb turns such an allocation into a finding).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <mlstm/model.hpp>

#include "fuzz_support.hpp"

namespace {

// A file of this process's own, rewritten for each input (the loader reads paths), removed at exit.
const std::string& scratch_path() {
  static const std::string* const path = [] {
    const char* directory = std::getenv("TMPDIR");
    const auto* name =
        new std::string(std::string(directory ? directory : "/tmp") + "/mlstm-fuzz-lm-" +
                        std::to_string(::getpid()) + ".safetensors");
    std::atexit([] { std::remove(scratch_path().c_str()); });
    return name;
  }();
  return *path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::FILE* file = std::fopen(scratch_path().c_str(), "wb");
  if (file == nullptr) __builtin_trap();
  if (size > 0 && std::fwrite(data, 1, size, file) != size) __builtin_trap();
  std::fclose(file);
  mlstm::fuzz::expect_only_mlstm_errors(
      [] { (void)mlstm::load_language_model<float>(scratch_path(), {}, 16); });
  return 0;
}
