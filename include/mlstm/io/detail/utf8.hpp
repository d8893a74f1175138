// UTF-8 to code points and back, for the tokenizer: strict decoding (text handed to the
// tokenizer must be valid UTF-8, as a JSON string or a Python str is) and lossy decoding of the
// bytes that tokens stand for, which replaces each maximal invalid subpart of a sequence by
// U+FFFD (the Unicode Standard's recommended practice, chapter 3.9, also Rust's and Python's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mlstm::detail::utf8 {

enum class Status { complete, incomplete, invalid };

struct Sequence {
  Status status;
  std::size_t length;  // complete: its bytes; otherwise: the maximal valid prefix (at least 1)
  char32_t code_point;
};

// The UTF-8 sequence at text[position] (position < text.size()). A sequence cut short by the end
// of text is `incomplete`; one that cannot continue as it does is `invalid`.
inline Sequence sequence_at(const std::string& text, std::size_t position) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[position + i]); };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return {Status::complete, 1, lead};
  std::size_t length = 0;
  unsigned char second_low = 0x80, second_high = 0xBF;  // the lead restricts the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) second_low = 0xA0;   // no overlong forms
    if (lead == 0xED) second_high = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) second_low = 0x90;   // no overlong forms
    if (lead == 0xF4) second_high = 0x8F;  // nothing past U+10FFFF
  } else {
    return {Status::invalid, 1, 0};
  }
  std::uint32_t value = lead & (0x7Fu >> length);
  for (std::size_t i = 1; i < length; ++i) {
    if (position + i >= text.size()) return {Status::incomplete, i, 0};
    const unsigned char next = byte(i);
    const unsigned char low = i == 1 ? second_low : 0x80, high = i == 1 ? second_high : 0xBF;
    if (next < low || next > high) return {Status::invalid, i, 0};
    value = (value << 6) | (next & 0x3Fu);
  }
  return {Status::complete, length, static_cast<char32_t>(value)};
}

// Appends the UTF-8 form of a valid code point.
inline void append(std::string& out, char32_t code_point) {
  const auto c = static_cast<std::uint32_t>(code_point);
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// The offset of the first byte that does not begin a complete, valid sequence, or text.size().
inline std::size_t first_invalid(const std::string& text) {
  std::size_t position = 0;
  while (position < text.size()) {
    const Sequence sequence = sequence_at(text, position);
    if (sequence.status != Status::complete) break;
    position += sequence.length;
  }
  return position;
}

// Appends `bytes` to out with each invalid subpart replaced by U+FFFD. Stops at an
// incomplete sequence at the end when keep_incomplete_tail is true (more bytes may complete it)
// and returns where it stopped; otherwise that tail is replaced too.
inline std::size_t append_lossy(std::string& out, const std::string& bytes,
                                bool keep_incomplete_tail) {
  std::size_t position = 0;
  while (position < bytes.size()) {
    const Sequence sequence = sequence_at(bytes, position);
    if (sequence.status == Status::complete) {
      out.append(bytes, position, sequence.length);
    } else if (sequence.status == Status::incomplete && keep_incomplete_tail) {
      return position;
    } else {
      utf8::append(out, U'\uFFFD');
    }
    position += sequence.length;
  }
  return position;
}

}  // namespace mlstm::detail::utf8
