// What every fuzz target shares: the rule that mlstm may reject an input only with its own
// exceptions, a reader that turns the fuzzer's bytes into choices, and a scratch folder for the
// loaders that read paths.
//
// Anything else escaping a target (another exception, a crash, a sanitizer report, an allocation
// past libFuzzer's -malloc_limit_mb) is a finding.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <type_traits>

#include <mlstm/errors.hpp>

namespace mlstm::fuzz {

// Runs `action`, accepting the typed errors mlstm reports bad input with.
template <typename Action>
void expect_only_mlstm_errors(Action&& action) {
  try {
    action();
  } catch (const InvalidArgument&) {
  } catch (const FormatError&) {
  }
}

// Consumes the fuzzer's bytes front to back; past the end every value reads as zero.
class ByteReader {
 public:
  ByteReader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  template <typename T>
  T take() {
    static_assert(std::is_trivially_copyable_v<T>);
    unsigned char bytes[sizeof(T)] = {};
    const std::size_t count = remaining() < sizeof(T) ? remaining() : sizeof(T);
    std::memcpy(bytes, data_ + position_, count);
    position_ += count;
    T value;
    std::memcpy(&value, bytes, sizeof(T));
    return value;
  }

  // An integer in [low, high].
  int in_range(int low, int high) {
    return low + static_cast<int>(take<std::uint8_t>() % static_cast<unsigned>(high - low + 1));
  }

  bool flag() { return (take<std::uint8_t>() & 1) != 0; }

  std::size_t remaining() const { return size_ - position_; }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t position_ = 0;
};

// A folder of this process's own under $TMPDIR, removed at exit.
inline const std::string& scratch_folder() {
  static const std::string* const path = [] {
    const char* directory = std::getenv("TMPDIR");
    const auto* name = new std::string(std::string(directory ? directory : "/tmp") +
                                       "/mlstm-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(*name);
    std::atexit([] { std::filesystem::remove_all(scratch_folder()); });
    return name;
  }();
  return *path;
}

// Writes `size` bytes to scratch_folder()/name (replacing it) and returns the file's path.
inline std::string write_scratch_file(const std::string& name, const std::uint8_t* data,
                                      std::size_t size) {
  const std::string path = scratch_folder() + "/" + name;
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) __builtin_trap();
  if (size > 0 && std::fwrite(data, 1, size, file) != size) __builtin_trap();
  std::fclose(file);
  return path;
}

}  // namespace mlstm::fuzz
