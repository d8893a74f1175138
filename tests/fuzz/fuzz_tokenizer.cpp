// Fuzz target: a tokenizer.json from untrusted bytes, and text to encode with it. The input is
// the file, a zero byte, then the text. Reading either fails with a typed error or gives a
// tokenizer whose ids for the text are its tokens, whose decoding of them does not fail, and whose
// streamed decoding is the same text as decode().
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <mlstm/io/tokenizer.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto* bytes = reinterpret_cast<const char*>(data);
  const auto* separator = static_cast<const char*>(std::memchr(bytes, 0, size));
  const std::size_t file_size = separator != nullptr ? separator - bytes : size;
  const std::string_view file(bytes, file_size);
  const std::string text =
      file_size < size ? std::string(bytes + file_size + 1, size - file_size - 1) : std::string();
  mlstm::fuzz::expect_only_mlstm_errors([&] {
    const mlstm::Tokenizer tokenizer = mlstm::Tokenizer::from_json(file, "fuzz input");
    std::vector<std::int64_t> ids;
    try {
      ids = tokenizer.encode(text);
    } catch (const mlstm::ValueError&) {
      return;  // text that is not UTF-8
    }
    for (const std::int64_t id : ids)
      if (!tokenizer.is_token(id)) __builtin_trap();  // an id the tokenizer does not know
    for (const bool skip : {false, true}) {
      mlstm::StreamDecoder stream(tokenizer, skip);
      std::string streamed;
      for (const std::int64_t id : ids) streamed += stream.next(id);
      streamed += stream.finish();
      if (streamed != tokenizer.decode(ids, skip)) __builtin_trap();
    }
  });
  return 0;
}
