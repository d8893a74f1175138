// What every fuzz target shares: the rule that mlstm may reject an input only with its own
// exceptions, and a reader that turns the fuzzer's bytes into choices.
//
// Anything else escaping a target (another exception, a crash, a sanitizer report, an allocation
// past libFuzzer's -malloc_limit_mb) is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
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

}  // namespace mlstm::fuzz
