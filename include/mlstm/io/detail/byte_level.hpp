// The byte level of a byte-level BPE tokenizer (GPT-2's scheme, which GPT-NeoX keeps):
//
// - Each byte is written as one printable character, so that a vocabulary of strings can hold
//   any byte sequence: the bytes '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand for
//   themselves, the other 68 bytes (controls, space, ...) for U+0100, U+0101, ... in byte order
//   (so the space is U+0120 'Ġ').
// - Before BPE, text is split into words by GPT-2's pattern
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   matched leftmost-first at each position; \s is White_Space. This is that pattern written
//   out by hand (no regular expression engine).
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "mlstm/io/detail/unicode.hpp"
#include "mlstm/io/detail/utf8.hpp"

namespace mlstm::detail::byte_level {

// The character that stands for each byte.
inline const std::array<char32_t, 256>& byte_characters() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> characters{};
    char32_t next_unprintable = 0x100;
    for (int byte = 0; byte < 256; ++byte) {
      const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) ||
                             (byte >= 0xAE && byte <= 0xFF);
      characters[static_cast<std::size_t>(byte)] =
          printable ? static_cast<char32_t>(byte) : next_unprintable++;
    }
    return characters;
  }();
  return table;
}

// The bytes that the characters of `token` (valid UTF-8) stand for; false if one of its
// characters stands for no byte.
inline bool decode_characters(const std::string& token, std::string& bytes) {
  // Every byte's character is below U+0144; -1 marks the characters that stand for none.
  static const std::array<int, 0x144> byte_of = [] {
    std::array<int, 0x144> bytes_of_characters{};
    bytes_of_characters.fill(-1);
    for (int byte = 0; byte < 256; ++byte)
      bytes_of_characters[byte_characters()[static_cast<std::size_t>(byte)]] = byte;
    return bytes_of_characters;
  }();
  bytes.clear();
  for (std::size_t position = 0; position < token.size();) {
    const utf8::Sequence sequence = utf8::sequence_at(token, position);
    position += sequence.length;
    if (sequence.code_point >= byte_of.size() || byte_of[sequence.code_point] < 0) return false;
    bytes += static_cast<char>(byte_of[sequence.code_point]);
  }
  return true;
}

// The words of `text` (valid UTF-8) under GPT-2's pattern, as byte ranges [begin, end) that
// cover it in order.
inline std::vector<std::pair<std::size_t, std::size_t>> split_words(const std::string& text) {
  // Code points with their byte offsets; offsets[n] == text.size().
  std::u32string points;
  std::vector<std::size_t> offsets;
  for (std::size_t position = 0; position < text.size();) {
    const utf8::Sequence sequence = utf8::sequence_at(text, position);
    points += sequence.code_point;
    offsets.push_back(position);
    position += sequence.length;
  }
  offsets.push_back(text.size());

  const std::size_t n = points.size();
  using unicode::is_letter, unicode::is_number, unicode::is_white_space;
  const auto is_other = [](char32_t c) {
    return !is_white_space(c) && !is_letter(c) && !is_number(c);
  };
  // The end of the run of characters satisfying `in_run` from `from`.
  const auto run_end = [&](std::size_t from, auto in_run) {
    while (from < n && in_run(points[from])) ++from;
    return from;
  };
  // The length of the contraction ('s 't 're 've 'm 'll 'd) at i, or 0.
  const auto contraction = [&](std::size_t i) -> std::size_t {
    if (points[i] != U'\'' || i + 1 >= n) return 0;
    const char32_t a = points[i + 1], b = i + 2 < n ? points[i + 2] : 0;
    if (a == U's' || a == U't' || a == U'm' || a == U'd') return 2;
    if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) return 3;
    return 0;
  };

  std::vector<std::pair<std::size_t, std::size_t>> words;
  for (std::size_t i = 0; i < n;) {
    std::size_t end = i + contraction(i);
    if (end == i) {
      const std::size_t after_space = points[i] == U' ' ? i + 1 : i;  // the optional ' '
      if (after_space < n && is_letter(points[after_space])) {
        end = run_end(after_space, is_letter);
      } else if (after_space < n && is_number(points[after_space])) {
        end = run_end(after_space, is_number);
      } else if (after_space < n && is_other(points[after_space])) {
        end = run_end(after_space, is_other);
      } else {
        // White space: all of the run if nothing follows it, else all but its last character
        // (which may open the next word), but at least one character.
        end = run_end(i, is_white_space);
        if (end < n && end - i >= 2) --end;
      }
    }
    words.emplace_back(offsets[i], offsets[end]);
    i = end;
  }
  return words;
}

}  // namespace mlstm::detail::byte_level
