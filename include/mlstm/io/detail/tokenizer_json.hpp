// Reading and validating a Hugging Face `tokenizer.json` of a byte-level BPE tokenizer into the
// tables the tokenizer runs on. Every fault is a FormatError naming the file and the field, found
// before any table sized by the file is built.
//
// What is accepted (GPT-2, GPT-NeoX and the models that reuse their tokenizer, xLSTM 7B among
// them): model BPE without dropout, subword prefix or suffix, byte fallback or ignore_merges;
// pre-tokenizer ByteLevel (add_prefix_space, use_regex); decoder ByteLevel; normalizer none or NFC
// (alone or in a Sequence); added tokens with lstrip, rstrip and normalized (not single_word). The
// post-processor is not applied: encode() gives what the reference's encode gives with
// add_special_tokens=False.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlstm/errors.hpp"
#include "mlstm/io/detail/bpe.hpp"
#include "mlstm/io/detail/byte_level.hpp"
#include "mlstm/io/detail/json_parse.hpp"
#include "mlstm/io/detail/unicode.hpp"
#include "mlstm/io/detail/utf8.hpp"

namespace mlstm::detail {

// Token ids and counts beyond these are refused (the largest released vocabularies have a few
// hundred thousand tokens).
inline constexpr std::int64_t max_tokenizer_token_id = (std::int64_t{1} << 22) - 1;
inline constexpr std::size_t max_tokenizer_merges = std::size_t{1} << 22;

struct AddedToken {
  // As matched in text, decoded and looked up: the file's content, normalized when `normalized`
  // is set (as the reference does).
  std::string text;
  bpe::TokenId id;
  bool special, normalized, lstrip, rstrip;
};

enum class TokenKind : std::uint8_t { none, model, added, special };

struct TokenizerTables {
  bool nfc = false;               // normalize text to NFC before BPE
  bool add_prefix_space = false;  // give each piece of text a leading space if it has none
  bool use_regex = true;          // split pieces into words by GPT-2's pattern
  std::unordered_map<std::string, bpe::TokenId> vocab;  // the model's tokens (byte characters)
  bpe::MergeTable merges;
  std::array<bpe::TokenId, 256> byte_tokens{};  // the token of each single byte
  std::vector<AddedToken> added_tokens;         // longest first, then in file order
  std::vector<std::string> token_strings;       // by id: as written in the file
  std::vector<std::string> token_bytes;         // by id: the bytes decoding gives
  std::vector<TokenKind> token_kinds;           // by id
};

class TokenizerJsonReader {
 public:
  explicit TokenizerJsonReader(std::string source) : source_(std::move(source)) {}

  TokenizerTables read(std::string_view text) const {
    const nlohmann::json root = parse(text);
    if (!root.is_object()) fail("the top level", "is not a JSON object");
    TokenizerTables tables;
    read_model_kind(root);
    read_pre_tokenizer(root, tables);
    read_decoder(root);
    read_normalizer(root, tables);
    const nlohmann::json& model = root["model"];
    read_vocab(model, tables);
    read_added_tokens(root, tables);
    read_merges(model, tables);
    fill_tokens_by_id(tables);
    return tables;
  }

 private:
  using json = nlohmann::json;

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw FormatError("tokenizer file " + source_ + ": " + where + " " + what);
  }

  static std::string shown(const json& value) {
    std::string text = value.dump(-1, ' ', true, json::error_handler_t::replace);
    if (text.size() > 80) text = text.substr(0, 77) + "...";
    return text;
  }

  // tokenizer.json nests at most five deep (a post-processor's special tokens).
  json parse(std::string_view text) const {
    return parse_json(text, [&](const std::string& reason) {
      return FormatError("tokenizer file " + source_ + ": the file " + reason);
    });
  }

  const json& object(const json& parent, const char* key, const std::string& where) const {
    if (!parent.contains(key)) fail(where, std::string("has no \"") + key + "\"");
    const json& value = parent[key];
    if (!value.is_object()) fail(where + "." + key, "must be an object, got " + shown(value));
    return value;
  }

  std::string type_of(const json& component, const std::string& where) const {
    const auto found = component.find("type");
    if (found == component.end() || !found->is_string())
      fail(where, "has no string \"type\": " + shown(component));
    return found->get<std::string>();
  }

  bool boolean(const json& parent, const char* key, bool absent, const std::string& where) const {
    const auto found = parent.find(key);
    if (found == parent.end() || found->is_null()) return absent;
    if (!found->is_boolean())
      fail(where + "." + key, "must be true or false, got " + shown(*found));
    return found->get<bool>();
  }

  void read_model_kind(const json& root) const {
    const json& model = object(root, "model", "the top level");
    const std::string type = type_of(model, "model");
    if (type != "BPE") fail("model.type", "is \"" + type + "\": not a byte-level BPE tokenizer");
    const auto absent_or = [&](const char* key, const json& allowed) {
      const auto found = model.find(key);
      if (found != model.end() && !found->is_null() && *found != allowed)
        fail(std::string("model.") + key,
             "is " + shown(*found) + ", which byte-level BPE does not use");
    };
    absent_or("dropout", json(nullptr));
    absent_or("continuing_subword_prefix", json(""));
    absent_or("end_of_word_suffix", json(""));
    absent_or("byte_fallback", json(false));
    absent_or("ignore_merges", json(false));
  }

  void read_pre_tokenizer(const json& root, TokenizerTables& tables) const {
    if (!root.contains("pre_tokenizer") || root["pre_tokenizer"].is_null())
      fail("pre_tokenizer", "is missing: a byte-level BPE tokenizer needs the ByteLevel one");
    const json& pre_tokenizer = object(root, "pre_tokenizer", "the top level");
    const std::string type = type_of(pre_tokenizer, "pre_tokenizer");
    if (type != "ByteLevel")
      fail("pre_tokenizer.type",
           "is \"" + type + "\": only the ByteLevel pre-tokenizer is supported");
    tables.add_prefix_space = boolean(pre_tokenizer, "add_prefix_space", true, "pre_tokenizer");
    tables.use_regex = boolean(pre_tokenizer, "use_regex", true, "pre_tokenizer");
  }

  void read_decoder(const json& root) const {
    if (!root.contains("decoder") || root["decoder"].is_null())
      fail("decoder", "is missing: a byte-level BPE tokenizer needs the ByteLevel one");
    const json& decoder = object(root, "decoder", "the top level");
    const std::string type = type_of(decoder, "decoder");
    if (type != "ByteLevel")
      fail("decoder.type", "is \"" + type + "\": only the ByteLevel decoder is supported");
  }

  void read_normalizer(const json& root, TokenizerTables& tables) const {
    if (!root.contains("normalizer") || root["normalizer"].is_null()) return;
    const json& normalizer = object(root, "normalizer", "the top level");
    const auto read_one = [&](const json& one, const std::string& where) {
      if (!one.is_object()) fail(where, "must be an object, got " + shown(one));
      const std::string type = type_of(one, where);
      if (type != "NFC") fail(where + ".type", "is \"" + type + "\": only NFC is supported");
      tables.nfc = true;
    };
    if (type_of(normalizer, "normalizer") != "Sequence") return read_one(normalizer, "normalizer");
    const auto list = normalizer.find("normalizers");
    if (list == normalizer.end() || !list->is_array())
      fail("normalizer.normalizers", "must be an array");
    for (std::size_t i = 0; i < list->size(); ++i)
      read_one((*list)[i], "normalizer.normalizers[" + std::to_string(i) + "]");
  }

  bpe::TokenId token_id(const json& value, const std::string& where) const {
    if (!value.is_number_integer() || value.get<std::int64_t>() < 0 ||
        value.get<std::int64_t>() > max_tokenizer_token_id) {
      fail(where, "must be a token id in [0, " + std::to_string(max_tokenizer_token_id) +
                      "], got " + shown(value));
    }
    return static_cast<bpe::TokenId>(value.get<std::int64_t>());
  }

  void read_vocab(const json& model, TokenizerTables& tables) const {
    const json& vocab = object(model, "vocab", "model");
    if (vocab.size() > static_cast<std::size_t>(max_tokenizer_token_id) + 1)
      fail("model.vocab", "has " + std::to_string(vocab.size()) + " tokens, more than supported");
    tables.vocab.reserve(vocab.size());
    std::unordered_map<bpe::TokenId, const std::string*> token_of_id;
    for (const auto& [token, id_value] : vocab.items()) {
      const std::string where = "model.vocab[" + shown(json(token)) + "]";
      if (token.empty()) fail("model.vocab", "has an empty token");
      const bpe::TokenId id = token_id(id_value, where);
      const auto [other, fresh] = token_of_id.emplace(id, &token);
      if (!fresh)
        fail(where,
             "has the id " + std::to_string(id) + " of " + shown(json(*other->second)) + " too");
      tables.vocab.emplace(token, id);
    }
    for (int byte = 0; byte < 256; ++byte) {
      std::string character;
      utf8::append(character, byte_level::byte_characters()[static_cast<std::size_t>(byte)]);
      const auto found = tables.vocab.find(character);
      if (found == tables.vocab.end())
        fail("model.vocab", "has no token for the byte " + std::to_string(byte) + " (" +
                                shown(json(character)) + ")");
      tables.byte_tokens[static_cast<std::size_t>(byte)] = found->second;
    }
  }

  void read_added_tokens(const json& root, TokenizerTables& tables) const {
    if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return;
    const json& list = root["added_tokens"];
    if (!list.is_array()) fail("added_tokens", "must be an array, got " + shown(list));
    if (list.size() > static_cast<std::size_t>(max_tokenizer_token_id) + 1)
      fail("added_tokens", "has more tokens than supported");
    std::unordered_map<bpe::TokenId, std::string> content_of_id;
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string where = "added_tokens[" + std::to_string(i) + "]";
      const json& entry = list[i];
      if (!entry.is_object()) fail(where, "must be an object, got " + shown(entry));
      if (!entry.contains("id")) fail(where, "has no \"id\"");
      if (!entry.contains("content") || !entry["content"].is_string() ||
          entry["content"].get_ref<const std::string&>().empty())
        fail(where + ".content", "must be a non-empty string");
      const std::string content = entry["content"].get<std::string>();
      AddedToken token{content,
                       token_id(entry["id"], where + ".id"),
                       boolean(entry, "special", false, where),
                       boolean(entry, "normalized", true, where),
                       boolean(entry, "lstrip", false, where),
                       boolean(entry, "rstrip", false, where)};
      if (boolean(entry, "single_word", false, where))
        fail(where + ".single_word", "is true, which is not supported");
      const auto [other, fresh] = content_of_id.emplace(token.id, content);
      if (!fresh)
        fail(where + ".id", "is " + std::to_string(token.id) + ", the id of " +
                                shown(json(other->second)) + " too");
      const auto in_vocab = tables.vocab.find(content);
      if (in_vocab != tables.vocab.end() && in_vocab->second != token.id) {
        fail(where, shown(json(content)) + " has the id " + std::to_string(token.id) +
                        " but model.vocab gives it " + std::to_string(in_vocab->second));
      }
      if (token.normalized && tables.nfc) token.text = unicode::nfc(content);
      tables.added_tokens.push_back(std::move(token));
    }
    // Matching takes the longest token at the leftmost position; trying longer ones first
    // makes the first match found the longest.
    std::stable_sort(
        tables.added_tokens.begin(), tables.added_tokens.end(),
        [](const AddedToken& a, const AddedToken& b) { return a.text.size() > b.text.size(); });
  }

  void read_merges(const json& model, TokenizerTables& tables) const {
    if (!model.contains("merges")) fail("model", "has no \"merges\"");
    const json& merges = model["merges"];
    if (!merges.is_array()) fail("model.merges", "must be an array, got " + shown(merges));
    if (merges.size() > max_tokenizer_merges)
      fail("model.merges", "has " + std::to_string(merges.size()) + " merges, more than supported");
    tables.merges.reserve(merges.size());
    const auto token = [&](const std::string& text, const std::string& where) {
      const auto found = tables.vocab.find(text);
      if (found == tables.vocab.end())
        fail(where, "names " + shown(json(text)) + ", which is not in model.vocab");
      return found->second;
    };
    for (std::size_t rank = 0; rank < merges.size(); ++rank) {
      const std::string where = "model.merges[" + std::to_string(rank) + "]";
      const json& merge = merges[rank];
      std::string left, right;
      if (merge.is_string()) {  // "left right", as older files write it
        const std::string& text = merge.get_ref<const std::string&>();
        const auto space = text.find(' ');
        if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
          fail(where, "must be two tokens separated by one space, got " + shown(merge));
        left = text.substr(0, space);
        right = text.substr(space + 1);
      } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
                 merge[1].is_string()) {
        left = merge[0].get<std::string>();
        right = merge[1].get<std::string>();
      } else {
        fail(where, "must be \"left right\" or [\"left\", \"right\"], got " + shown(merge));
      }
      const bpe::TokenId a = token(left, where), b = token(right, where);
      const bpe::TokenId merged = token(left + right, where + " merged");
      // A repeated pair keeps its first (best) rank.
      tables.merges.emplace(bpe::pair_key(a, b),
                            bpe::MergeRule{static_cast<std::uint32_t>(rank), merged});
    }
  }

  void fill_tokens_by_id(TokenizerTables& tables) const {
    bpe::TokenId largest = 0;
    std::size_t tokens = tables.vocab.size();
    for (const auto& entry : tables.vocab) largest = std::max(largest, entry.second);
    for (const AddedToken& token : tables.added_tokens) {
      largest = std::max(largest, token.id);
      tokens += tables.vocab.count(token.text) == 0 ? 1 : 0;
    }
    // The tables below are indexed by id: a few tokens with huge ids must not make them huge.
    const auto count = static_cast<std::size_t>(largest) + 1;
    if (count > 2 * tokens + 1024) {
      fail("the token ids", "run to " + std::to_string(largest) + " for only " +
                                std::to_string(tokens) + " tokens: more than half would be unused");
    }
    tables.token_strings.assign(count, std::string());
    tables.token_bytes.assign(count, std::string());
    tables.token_kinds.assign(count, TokenKind::none);
    // Decoding turns a token's characters back into bytes, or keeps its text as it is when a
    // character stands for no byte (an added token such as a run of spaces).
    const auto set = [&](bpe::TokenId id, const std::string& text, TokenKind kind) {
      const auto i = static_cast<std::size_t>(id);
      tables.token_strings[i] = text;
      if (!byte_level::decode_characters(text, tables.token_bytes[i])) tables.token_bytes[i] = text;
      tables.token_kinds[i] = kind;
    };
    for (const auto& [text, id] : tables.vocab) set(id, text, TokenKind::model);
    for (const AddedToken& token : tables.added_tokens)
      set(token.id, token.text, token.special ? TokenKind::special : TokenKind::added);
  }

  std::string source_;
};

}  // namespace mlstm::detail
