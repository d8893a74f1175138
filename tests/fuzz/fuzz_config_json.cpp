// Fuzz target: the language model's configuration JSON, as a checkpoint's metadata holds it.
// Text either fails with a typed error or gives a configuration that writes back to JSON and
// reads again as the same configuration.
#include <cstddef>
#include <cstdint>
#include <string>

#include <mlstm/models/xlstm_lm/config_json.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  mlstm::fuzz::expect_only_mlstm_errors([&] {
    const mlstm::LMModelConfig config = mlstm::lm_model_config_from_json(text);
    const std::string written = mlstm::lm_model_config_to_json(config);
    if (mlstm::lm_model_config_to_json(mlstm::lm_model_config_from_json(written)) != written) {
      __builtin_trap();  // a configuration that does not survive its own JSON
    }
  });
  return 0;
}
