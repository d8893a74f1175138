// Fuzz target: a safetensors file from untrusted bytes. Parsing either fails with FormatError or
// gives a file whose every tensor can be viewed and decoded within the file's bytes.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <mlstm/io/safetensors.hpp>

#include "fuzz_support.hpp"

namespace st = mlstm::safetensors;

namespace {

// Decodes tensor `name` as an element type that reads its dtype.
void decode(const st::File& file, const std::string& name) {
  const st::TensorView view = file.view(name);
  if (view.byte_size != static_cast<std::size_t>(view.numel()) * st::dtype_size(view.dtype)) {
    __builtin_trap();  // a view larger or smaller than its shape: the header check failed
  }
  const auto count = static_cast<std::size_t>(view.numel());
  switch (mlstm::detail::describe(view.dtype).kind) {
    case mlstm::detail::DTypeKind::floating: {
      std::vector<double> values(count);
      file.decode_into(name, values.data(), count);
      break;
    }
    case mlstm::detail::DTypeKind::boolean: {
      const std::unique_ptr<bool[]> values(new bool[count]);
      file.decode_into(name, values.get(), count);
      break;
    }
    case mlstm::detail::DTypeKind::signed_integer: {
      std::vector<std::int64_t> values(count);
      file.decode_into(name, values.data(), count);
      break;
    }
    case mlstm::detail::DTypeKind::unsigned_integer: {
      std::vector<std::uint64_t> values(count);
      file.decode_into(name, values.data(), count);
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  mlstm::fuzz::expect_only_mlstm_errors([&] {
    const st::File file = st::File::parse(std::vector<std::uint8_t>(data, data + size), "fuzz");
    for (const std::string& name : file.names()) {
      mlstm::fuzz::expect_only_mlstm_errors([&] { decode(file, name); });
    }
    for (const auto& entry : file.metadata()) (void)file.metadata(entry.first);
  });
  return 0;
}
