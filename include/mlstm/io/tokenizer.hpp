// A byte-level BPE tokenizer read from a Hugging Face `tokenizer.json` (the format GPT-2,
// GPT-NeoX and xLSTM 7B ship), giving the ids the `tokenizers` package gives.
//
//   const mlstm::Tokenizer tokenizer = mlstm::Tokenizer::from_file("xLSTM-7b/tokenizer.json");
//   std::vector<std::int64_t> ids = tokenizer.encode("Hello world<|endoftext|>");
//   std::string text = tokenizer.decode(ids);                  // == the input
//
//   mlstm::StreamDecoder stream(tokenizer);                     // text as tokens come
//   for (auto id : generated) std::cout << stream.next(id);    // complete UTF-8 only
//   std::cout << stream.finish();
//
// Encoding, in the reference's order:
//   1. added tokens whose "normalized" is false are cut out of the text (leftmost, longest first;
//      "lstrip"/"rstrip" take the white space beside them along);
//   2. each remaining piece is normalized (NFC, when the file asks for it), and added tokens whose
//      "normalized" is true are cut out of it the same way;
//   3. each remaining piece is split into words by GPT-2's pattern (detail/byte_level.hpp), each
//      word's bytes become byte tokens, and BPE merges them (detail/bpe.hpp).
// Decoding concatenates the bytes each token stands for and reads them as UTF-8, each invalid
// part becoming U+FFFD.
//
// What files are accepted, and every error: detail/tokenizer_json.hpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mlstm/errors.hpp"
#include "mlstm/io/detail/bpe.hpp"
#include "mlstm/io/detail/byte_level.hpp"
#include "mlstm/io/detail/file_bytes.hpp"
#include "mlstm/io/detail/tokenizer_json.hpp"
#include "mlstm/io/detail/unicode.hpp"
#include "mlstm/io/detail/utf8.hpp"

namespace mlstm {

class Tokenizer {
 public:
  // Larger files are refused before they are read (real ones are a few MB).
  static constexpr std::size_t max_file_bytes = std::size_t{1} << 30;

  // Reads `path`. Throws IoError if it cannot be read, FormatError if it is not a
  // byte-level BPE tokenizer this class runs (the message names the file and what is wrong).
  static Tokenizer from_file(const std::string& path) {
    const auto bytes = detail::FileBytes::open(path);  // mapped where possible: not read yet
    const std::string source = detail::path_text(path);
    if (bytes->size() > max_file_bytes) {
      throw FormatError("tokenizer file " + source + ": is " + std::to_string(bytes->size()) +
                        " bytes, more than the " + std::to_string(max_file_bytes) + " supported");
    }
    return from_json(std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()),
                     source);
  }

  // Reads the contents of a tokenizer.json; `source` names it in error messages.
  static Tokenizer from_json(std::string_view text, const std::string& source = "(text)") {
    return Tokenizer(detail::TokenizerJsonReader(source).read(text));
  }

  // The ids of `text`, which must be valid UTF-8 (else ValueError naming "text").
  std::vector<std::int64_t> encode(const std::string& text) const {
    const std::size_t invalid = detail::utf8::first_invalid(text);
    if (invalid != text.size())
      throw ValueError("text", "is not valid UTF-8 at byte " + std::to_string(invalid));
    std::vector<std::int64_t> ids;
    cut_added_tokens(text, /*normalized=*/false, ids, [&](const std::string& piece) {
      const std::string normalized = tables_.nfc ? detail::unicode::nfc(piece) : piece;
      cut_added_tokens(normalized, /*normalized=*/true, ids,
                       [&](const std::string& rest) { encode_words(rest, ids); });
    });
    return ids;
  }

  // The text of `ids`, leaving out special tokens when asked. An id that is no token is a
  // ValueError naming "ids".
  std::string decode(const std::vector<std::int64_t>& ids, bool skip_special_tokens = false) const {
    std::string bytes;
    for (const std::int64_t id : ids) bytes += token_bytes(id, skip_special_tokens);
    std::string text;
    detail::utf8::append_lossy(text, bytes, /*keep_incomplete_tail=*/false);
    return text;
  }

  // The bytes `id` stands for (empty for a special token when skipping them); ValueError naming
  // "id" if it is no token.
  const std::string& token_bytes(std::int64_t id, bool skip_special_tokens = false) const {
    static const std::string nothing;
    const detail::TokenKind kind = kind_of(id);
    return skip_special_tokens && kind == detail::TokenKind::special
               ? nothing
               : tables_.token_bytes[static_cast<std::size_t>(id)];
  }

  // One more than the largest id (ids in between may be unused).
  std::int64_t id_count() const { return static_cast<std::int64_t>(tables_.token_kinds.size()); }

  // The id of a token as the file writes it (byte characters for the model's tokens), if any.
  std::optional<std::int64_t> token_to_id(const std::string& token) const {
    for (const detail::AddedToken& added : tables_.added_tokens)
      if (added.text == token) return added.id;
    const auto found = tables_.vocab.find(token);
    if (found == tables_.vocab.end()) return std::nullopt;
    return found->second;
  }

  // The token of `id` as the file writes it.
  const std::string& id_to_token(std::int64_t id) const {
    kind_of(id);
    return tables_.token_strings[static_cast<std::size_t>(id)];
  }

  bool is_special(std::int64_t id) const { return kind_of(id) == detail::TokenKind::special; }

  // Whether `id` is a token (a model may have more ids than its tokenizer, as padding).
  bool is_token(std::int64_t id) const {
    return id >= 0 && id < id_count() &&
           tables_.token_kinds[static_cast<std::size_t>(id)] != detail::TokenKind::none;
  }

 private:
  explicit Tokenizer(detail::TokenizerTables tables) : tables_(std::move(tables)) {}

  detail::TokenKind kind_of(std::int64_t id) const {
    if (!is_token(id))
      throw ValueError("id", std::to_string(id) + " is not a token id of this tokenizer");
    return tables_.token_kinds[static_cast<std::size_t>(id)];
  }

  // Cuts the added tokens whose "normalized" flag is `normalized` out of text: appends their ids
  // to `ids` and hands the text between them, in order, to on_text.
  template <typename OnText>
  void cut_added_tokens(const std::string& text, bool normalized, std::vector<std::int64_t>& ids,
                        OnText on_text) const {
    std::size_t done = 0;  // text[0, done) is handed on
    for (std::size_t position = 0; position < text.size();) {
      const detail::AddedToken* match = nullptr;
      for (const detail::AddedToken& token : tables_.added_tokens) {
        if (token.normalized == normalized &&
            text.compare(position, token.text.size(), token.text) == 0) {
          match = &token;  // the longest, as they are sorted longest first
          break;
        }
      }
      if (match == nullptr) {
        ++position;
        continue;
      }
      std::size_t begin = position, end = position + match->text.size();
      if (match->lstrip) begin = std::max(done, white_space_start_before(text, begin));
      if (match->rstrip) end = white_space_end_after(text, end);
      if (begin > done) on_text(text.substr(done, begin - done));
      ids.push_back(match->id);
      done = position = end;
    }
    if (done < text.size()) on_text(text.substr(done));
  }

  static std::size_t white_space_start_before(const std::string& text, std::size_t end) {
    std::size_t start = end;
    while (start > 0) {
      std::size_t lead = start - 1;
      while (lead > 0 && (static_cast<unsigned char>(text[lead]) & 0xC0) == 0x80) --lead;
      if (!detail::unicode::is_white_space(detail::utf8::sequence_at(text, lead).code_point)) break;
      start = lead;
    }
    return start;
  }

  static std::size_t white_space_end_after(const std::string& text, std::size_t begin) {
    while (begin < text.size()) {
      const detail::utf8::Sequence sequence = detail::utf8::sequence_at(text, begin);
      if (!detail::unicode::is_white_space(sequence.code_point)) break;
      begin += sequence.length;
    }
    return begin;
  }

  // Pre-tokenizes and merges a piece of text without added tokens.
  void encode_words(const std::string& piece, std::vector<std::int64_t>& ids) const {
    if (piece.empty()) return;
    const std::string text = tables_.add_prefix_space && piece[0] != ' ' ? " " + piece : piece;
    const auto words = tables_.use_regex
                           ? detail::byte_level::split_words(text)
                           : std::vector<std::pair<std::size_t, std::size_t>>{{0, text.size()}};
    std::vector<detail::bpe::TokenId> tokens;
    for (const auto& [begin, end] : words) {
      const std::string word = text.substr(begin, end - begin);
      tokens.clear();
      for (const char byte : word)
        tokens.push_back(tables_.byte_tokens[static_cast<unsigned char>(byte)]);
      detail::bpe::merge_word(tokens, tables_.merges);
      ids.insert(ids.end(), tokens.begin(), tokens.end());
    }
  }

  detail::TokenizerTables tables_;
};

// Decodes ids one at a time, as a model generates them, returning only complete UTF-8: a
// character whose bytes are split over several tokens comes out with the token that completes it.
// The concatenated outputs of next() and finish() equal tokenizer.decode(all ids).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false)
      : tokenizer_(&tokenizer), skip_special_tokens_(skip_special_tokens) {}

  // The text that `id` completes (possibly empty).
  std::string next(std::int64_t id) {
    pending_ += tokenizer_->token_bytes(id, skip_special_tokens_);
    std::string text;
    pending_.erase(0, detail::utf8::append_lossy(text, pending_, /*keep_incomplete_tail=*/true));
    return text;
  }

  // What is left: an unfinished character becomes U+FFFD.
  std::string finish() {
    std::string text;
    detail::utf8::append_lossy(text, pending_, /*keep_incomplete_tail=*/false);
    pending_.clear();
    return text;
  }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;  // bytes of an unfinished character
};

}  // namespace mlstm
