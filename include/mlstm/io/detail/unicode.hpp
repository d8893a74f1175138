// The Unicode properties the tokenizer needs (letter, number, white space) and normalization form
// C, over the generated tables in unicode_tables.hpp.
//
// NFC (Unicode Standard Annex #15): decompose every character canonically, put each run of
// combining marks in canonical order (a stable sort by combining class), then compose each starter
// with every later character that is not blocked from it and forms a primary composite with it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <string>

#include "mlstm/io/detail/unicode_tables.hpp"
#include "mlstm/io/detail/utf8.hpp"

namespace mlstm::detail::unicode {

template <std::size_t N>
bool in_ranges(const unicode_tables::CodeRange (&ranges)[N], char32_t code_point) {
  const auto c = static_cast<std::uint32_t>(code_point);
  const auto* after =
      std::upper_bound(std::begin(ranges), std::end(ranges), c,
                       [](std::uint32_t value, const unicode_tables::CodeRange& range) {
                         return value < range.first;
                       });
  return after != std::begin(ranges) && c <= std::prev(after)->last;
}

// General category L.
inline bool is_letter(char32_t c) {
  if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
  return in_ranges(unicode_tables::letters, c);
}

// General category N.
inline bool is_number(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return in_ranges(unicode_tables::numbers, c);
}

// The White_Space property (what the regular expression \s matches on Unicode text).
inline bool is_white_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= '\t' && c <= '\r');
  return in_ranges(unicode_tables::white_space, c);
}

inline int combining_class(char32_t code_point) {
  const auto c = static_cast<std::uint32_t>(code_point);
  if (c < 0x300) return 0;
  const auto& table = unicode_tables::combining_classes;
  const auto* after =
      std::upper_bound(std::begin(table), std::end(table), c,
                       [](std::uint32_t value, const unicode_tables::CombiningClassRange& range) {
                         return value < range.first;
                       });
  if (after == std::begin(table) || c > std::prev(after)->last) return 0;
  return std::prev(after)->combining_class;
}

// Hangul syllables: S = SBase + (L - LBase) * NCount + (V - VBase) * TCount + (T - TBase).
namespace hangul {
inline constexpr char32_t s_base = 0xAC00, l_base = 0x1100, v_base = 0x1161, t_base = 0x11A7;
inline constexpr char32_t l_count = 19, v_count = 21, t_count = 28;
inline constexpr char32_t n_count = v_count * t_count, s_count = l_count * n_count;
}  // namespace hangul

inline void append_decomposition(std::u32string& out, char32_t c) {
  using namespace hangul;
  if (c >= s_base && c < s_base + s_count) {
    const char32_t index = c - s_base;
    out += l_base + index / n_count;
    out += v_base + (index % n_count) / t_count;
    if (index % t_count != 0) out += t_base + index % t_count;
    return;
  }
  const auto& table = unicode_tables::decompositions;
  const auto* found =
      std::lower_bound(std::begin(table), std::end(table), static_cast<std::uint32_t>(c),
                       [](const unicode_tables::Decomposition& entry, std::uint32_t value) {
                         return entry.code_point < value;
                       });
  if (found == std::end(table) || found->code_point != c) {
    out += c;
    return;
  }
  for (int i = 0; i < found->length; ++i)
    out += static_cast<char32_t>(unicode_tables::decomposition_parts[found->offset + i]);
}

// The primary composite of (first, second), or 0 when there is none.
inline char32_t compose_pair(char32_t first, char32_t second) {
  using namespace hangul;
  if (first >= l_base && first < l_base + l_count && second >= v_base && second < v_base + v_count)
    return s_base + ((first - l_base) * v_count + (second - v_base)) * t_count;
  if (first >= s_base && first < s_base + s_count && (first - s_base) % t_count == 0 &&
      second > t_base && second < t_base + t_count)
    return first + (second - t_base);
  const auto& table = unicode_tables::compositions;
  const auto key = [](std::uint32_t a, std::uint32_t b) { return (std::uint64_t{a} << 32) | b; };
  const std::uint64_t wanted = key(first, second);
  const auto* found =
      std::lower_bound(std::begin(table), std::end(table), wanted,
                       [&](const unicode_tables::Composition& entry, std::uint64_t value) {
                         return key(entry.first, entry.second) < value;
                       });
  if (found == std::end(table) || key(found->first, found->second) != wanted) return 0;
  return found->composite;
}

// `text` (valid UTF-8) in normalization form C.
inline std::string nfc(const std::string& text) {
  if (std::all_of(text.begin(), text.end(), [](char byte) { return (byte & 0x80) == 0; }))
    return text;  // ASCII is its own normal form

  std::u32string decomposed;
  for (std::size_t position = 0; position < text.size();) {
    const utf8::Sequence sequence = utf8::sequence_at(text, position);
    append_decomposition(decomposed, sequence.code_point);
    position += sequence.length;
  }

  // Canonical order: each run of non-starters sorted by combining class, stably.
  for (std::size_t begin = 0; begin < decomposed.size();) {
    if (combining_class(decomposed[begin]) == 0) {
      ++begin;
      continue;
    }
    std::size_t end = begin;
    while (end < decomposed.size() && combining_class(decomposed[end]) != 0) ++end;
    std::stable_sort(
        decomposed.begin() + static_cast<std::ptrdiff_t>(begin),
        decomposed.begin() + static_cast<std::ptrdiff_t>(end),
        [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    begin = end;
  }

  // Composition: `starter` is the last starter kept; a character is blocked from it when a kept
  // character between them has a combining class of 0 or not below its own.
  std::u32string composed;
  std::size_t starter = std::u32string::npos;
  int last_class = -1;  // class of the last character kept after the starter; -1: none yet
  for (const char32_t next : decomposed) {
    const int next_class = combining_class(next);
    if (starter != std::u32string::npos &&
        (last_class == -1 || (last_class != 0 && last_class < next_class))) {
      if (const char32_t both = compose_pair(composed[starter], next)) {
        composed[starter] = both;
        continue;
      }
    }
    if (next_class == 0) {
      starter = composed.size();
      last_class = -1;
    } else {
      last_class = next_class;
    }
    composed += next;
  }
  std::string out;
  out.reserve(text.size());
  for (const char32_t code_point : composed) utf8::append(out, code_point);
  return out;
}

}  // namespace mlstm::detail::unicode
