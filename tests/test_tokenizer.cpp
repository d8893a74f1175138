// The byte-level BPE tokenizer against the `tokenizers` package: encodings of a varied corpus
// (tests/reference/data/tokenizer_golden.json, from make_tokenizer_golden.py), the same with a
// prefix space and with merges written the older way, decodings (whole, cut mid-character,
// without special tokens), NFC on its own, round trips, streaming decode, and each way a file
// can be refused.
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mlstm/io/tokenizer.hpp>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <system_error>
#include <vector>

namespace {

using nlohmann::json;
using Ids = std::vector<std::int64_t>;

std::string read_text(const std::string& file) {
  std::ifstream in(std::string(MLSTM_REFERENCE_DATA_DIR) + "/" + file, std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

const std::string& fixture_text() {
  static const std::string text = read_text("tokenizer.json");
  return text;
}

const json& golden() {
  static const json data = json::parse(read_text("tokenizer_golden.json"));
  return data;
}

const mlstm::Tokenizer& fixture() {
  static const mlstm::Tokenizer tokenizer = mlstm::Tokenizer::from_json(fixture_text());
  return tokenizer;
}

// The fixture's JSON changed by `edit`, as a tokenizer.
template <typename Edit>
mlstm::Tokenizer edited_fixture(Edit edit) {
  json tokenizer = json::parse(fixture_text());
  edit(tokenizer);
  return mlstm::Tokenizer::from_json(tokenizer.dump(), "\"edited.json\"");
}

std::string shown(const std::string& text) { return json(text).dump(); }

std::string shown(const Ids& ids) { return json(ids).dump(); }

// Counts the corpus strings `tokenizer` encodes as golden[field] says; reports each that differs.
std::size_t agreeing_encodings(const mlstm::Tokenizer& tokenizer, const char* field) {
  std::size_t agreeing = 0;
  for (const json& item : golden()["corpus"]) {
    const std::string text = item["text"].get<std::string>();
    const Ids expected = item[field].get<Ids>();
    const Ids actual = tokenizer.encode(text);
    if (actual == expected) {
      ++agreeing;
    } else {
      UNSCOPED_INFO("text " << shown(text) << "\n  expected " << shown(expected) << "\n  actual   "
                            << shown(actual));
    }
  }
  return agreeing;
}

TEST_CASE("encode gives the reference's ids on every corpus string", "[tokenizer]") {
  const std::size_t count = golden()["corpus"].size();
  REQUIRE(count >= 40);
  CHECK(agreeing_encodings(fixture(), "ids") == count);
}

TEST_CASE("encode with add_prefix_space gives the reference's ids", "[tokenizer]") {
  const mlstm::Tokenizer prefixed =
      edited_fixture([](json& t) { t["pre_tokenizer"]["add_prefix_space"] = true; });
  CHECK(agreeing_encodings(prefixed, "ids_prefix_space") == golden()["corpus"].size());
}

TEST_CASE("encode without the pre-tokenizer's split gives the reference's ids", "[tokenizer]") {
  const mlstm::Tokenizer unsplit =
      edited_fixture([](json& t) { t["pre_tokenizer"]["use_regex"] = false; });
  CHECK(agreeing_encodings(unsplit, "ids_no_regex") == golden()["corpus"].size());
}

TEST_CASE("merges written as \"left right\" strings read the same", "[tokenizer]") {
  const mlstm::Tokenizer older = edited_fixture([](json& t) {
    for (json& merge : t["model"]["merges"]) {
      merge = merge[0].get<std::string>() + " " + merge[1].get<std::string>();
    }
  });
  CHECK(agreeing_encodings(older, "ids") == golden()["corpus"].size());
}

TEST_CASE("decode gives the reference's text, also cut mid-character and skipping specials",
          "[tokenizer]") {
  std::size_t agreeing = 0;
  for (const json& item : golden()["decodes"]) {
    const Ids ids = item["ids"].get<Ids>();
    const std::string expected = item["text"].get<std::string>();
    const std::string actual = fixture().decode(ids, item["skip_special_tokens"].get<bool>());
    if (actual == expected) {
      ++agreeing;
    } else {
      UNSCOPED_INFO("ids " << shown(ids) << "\n  expected " << shown(expected) << "\n  actual   "
                           << shown(actual));
    }
  }
  CHECK(agreeing == golden()["decodes"].size());
}

TEST_CASE("NFC agrees with Python's unicodedata", "[tokenizer]") {
  REQUIRE(golden()["unicode_version"] == mlstm::detail::unicode_tables::unicode_version);
  for (const json& item : golden()["nfc"]) {
    const std::string text = item[0].get<std::string>(), expected = item[1].get<std::string>();
    INFO("text " << shown(text));
    CHECK(shown(mlstm::detail::unicode::nfc(text)) == shown(expected));
  }
}

TEST_CASE("decode(encode(x)) gives x back in NFC", "[tokenizer]") {
  for (const json& item : golden()["corpus"]) {
    // Text the reference itself gives back unchanged (no <mask> eating white space, no
    // decomposed characters) comes back unchanged.
    const std::string text = item["text"].get<std::string>();
    if (fixture().decode(item["ids"].get<Ids>()) != text) continue;
    CHECK(shown(fixture().decode(fixture().encode(text))) == shown(text));
  }
  // Random text over pieces that reach every branch of the split (without added tokens' text).
  const std::vector<std::string> pieces = {"a",
                                           "Z",
                                           "é",
                                           "e\u0301",
                                           "\u0308",
                                           "7",
                                           "\u0663",
                                           " ",
                                           "  ",
                                           "\t",
                                           "\n",
                                           "\r\n",
                                           "\u00a0",
                                           "\u3000",
                                           "'s",
                                           "'",
                                           "!",
                                           "?!",
                                           "\u4f60",
                                           "\xf0\x9f\x98\x80",
                                           "\u1100\u1161",
                                           "\x1c",
                                           "_"};
  std::mt19937 engine(7);
  std::uniform_int_distribution<std::size_t> pick(0, pieces.size() - 1), length(0, 24);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    for (std::size_t i = length(engine); i > 0; --i) text += pieces[pick(engine)];
    INFO("text " << shown(text));
    CHECK(shown(fixture().decode(fixture().encode(text))) ==
          shown(mlstm::detail::unicode::nfc(text)));
  }
}

TEST_CASE("streaming decode emits only whole characters and adds up to decode", "[tokenizer]") {
  for (const json& item : golden()["corpus"]) {
    const Ids ids = item["ids"].get<Ids>();
    for (const bool skip : {false, true}) {
      mlstm::StreamDecoder stream(fixture(), skip);
      std::string streamed;
      for (const std::int64_t id : ids) {
        const std::string piece = stream.next(id);
        CHECK(mlstm::detail::utf8::first_invalid(piece) == piece.size());
        streamed += piece;
      }
      streamed += stream.finish();
      CHECK(shown(streamed) == shown(fixture().decode(ids, skip)));
    }
  }
  // A three-byte character over three byte tokens comes out with the third; an unfinished one
  // comes out of finish() as U+FFFD.
  const mlstm::Tokenizer& tokenizer = fixture();
  Ids euro;
  for (const char byte : std::string("\u20ac")) {
    std::string character;  // the character that stands for the byte
    mlstm::detail::utf8::append(
        character, mlstm::detail::byte_level::byte_characters()[static_cast<unsigned char>(byte)]);
    euro.push_back(*tokenizer.token_to_id(character));
  }
  mlstm::StreamDecoder stream(tokenizer);
  CHECK(stream.next(euro[0]).empty());
  CHECK(stream.next(euro[1]).empty());
  CHECK(stream.next(euro[2]) == "\u20ac");
  CHECK(stream.next(euro[0]).empty());
  CHECK(stream.finish() == "\ufffd");
  CHECK(stream.finish().empty());
}

TEST_CASE("token lookups", "[tokenizer]") {
  const mlstm::Tokenizer& tokenizer = fixture();
  CHECK(tokenizer.token_to_id("<|endoftext|>") == 0);
  CHECK(tokenizer.is_special(0));
  CHECK(tokenizer.id_to_token(0) == "<|endoftext|>");
  CHECK(tokenizer.token_to_id("\u0120") == tokenizer.encode(" ").front());
  CHECK_FALSE(tokenizer.token_to_id("no such token").has_value());
  CHECK(tokenizer.id_count() == 1005);
}

TEST_CASE("text and ids that are not valid are ValueErrors", "[tokenizer]") {
  const mlstm::Tokenizer& tokenizer = fixture();
  // A stray continuation byte, a cut sequence, a surrogate, an overlong form, past U+10FFFF.
  const std::vector<std::string> invalid = {"\xff", "ab\xc3", "\xed\xa0\x80", "\xc0\xaf",
                                            "\xf4\x90\x80\x80"};
  for (std::size_t i = 0; i < invalid.size(); ++i) {
    INFO("invalid text " << i);
    CHECK_THROWS_AS(tokenizer.encode(invalid[i]), mlstm::ValueError);
  }
  CHECK_THROWS_WITH(tokenizer.encode("ok\xff"),
                    Catch::Contains("text") && Catch::Contains("byte 2"));
  CHECK_THROWS_AS(tokenizer.decode({5, 1005}), mlstm::ValueError);
  CHECK_THROWS_AS(tokenizer.decode({-1}), mlstm::ValueError);
  CHECK_THROWS_WITH(tokenizer.decode({1 << 30}), Catch::Contains("1073741824"));
}

// The message of the FormatError that reading `text` throws ("" if it throws none).
std::string refusal(const std::string& text) {
  try {
    mlstm::Tokenizer::from_json(text, "\"bad.json\"");
  } catch (const mlstm::FormatError& error) {
    return error.what();
  }
  return "";
}

template <typename Edit>
std::string refusal_of_edit(Edit edit) {
  json tokenizer = json::parse(fixture_text());
  edit(tokenizer);
  return refusal(tokenizer.dump());
}

TEST_CASE("files that are not byte-level BPE, or are broken, are FormatErrors naming the fault",
          "[tokenizer]") {
  // Catch's combined matchers keep references to their parts, so each part is checked alone.
  const auto check_refused = [](const std::string& message, const std::string& what) {
    CHECK_THAT(message, Catch::Contains("tokenizer file \"bad.json\": "));
    CHECK_THAT(message, Catch::Contains(what));
  };
  check_refused(refusal("{\"model\": "), "not valid JSON");
  check_refused(refusal("[1, 2]"), "not a JSON object");
  check_refused(refusal(std::string(100, '[') + std::string(100, ']')), "nests deeper");
  check_refused(refusal_of_edit([](json& t) { t.erase("model"); }), "no \"model\"");
  check_refused(refusal_of_edit([](json& t) { t["model"]["type"] = "WordPiece"; }),
                "\"WordPiece\": not a byte-level BPE");
  check_refused(refusal_of_edit([](json& t) { t["pre_tokenizer"] = nullptr; }),
                "pre_tokenizer is missing");
  check_refused(refusal_of_edit([](json& t) {
                  t["pre_tokenizer"] = {{"type", "Whitespace"}};
                }),
                "pre_tokenizer.type is \"Whitespace\"");
  check_refused(refusal_of_edit([](json& t) { t.erase("decoder"); }), "decoder is missing");
  check_refused(refusal_of_edit([](json& t) {
                  t["normalizer"] = {{"type", "Lowercase"}};
                }),
                "normalizer.type is \"Lowercase\"");
  check_refused(refusal_of_edit([](json& t) {
                  t["normalizer"] = {{"type", "Sequence"},
                                     {"normalizers", {{{"type", "NFC"}}, {{"type", "NFKC"}}}}};
                }),
                "normalizer.normalizers[1].type is \"NFKC\"");
  check_refused(refusal_of_edit([](json& t) { t["model"]["ignore_merges"] = true; }),
                "model.ignore_merges");
  check_refused(refusal_of_edit([](json& t) { t["model"]["dropout"] = 0.1; }), "model.dropout");
  check_refused(refusal_of_edit([](json& t) { t["model"]["continuing_subword_prefix"] = "##"; }),
                "model.continuing_subword_prefix");
  check_refused(refusal_of_edit([](json& t) { t["model"]["vocab"] = json::array(); }),
                "model.vocab must be an object");
  check_refused(refusal_of_edit([](json& t) { t["model"]["vocab"]["!"] = -3; }),
                "model.vocab[\"!\"] must be a token id");
  check_refused(refusal_of_edit([](json& t) { t["model"]["vocab"]["!"] = 4000000; }),
                "the token ids run to 4000000 for only 1005 tokens");
  check_refused(refusal_of_edit([](json& t) { t["model"]["vocab"]["!"] = 1 << 30; }),
                "must be a token id in [0, 4194303]");
  check_refused(
      refusal_of_edit([](json& t) { t["model"]["vocab"]["!"] = t["model"]["vocab"]["\""]; }),
      "has the id");
  check_refused(refusal_of_edit([](json& t) { t["model"]["vocab"].erase("\u0120"); }),
                "no token for the byte 32");
  check_refused(refusal_of_edit([](json& t) { t["model"]["merges"][3] = "one"; }),
                "model.merges[3] must be two tokens");
  check_refused(refusal_of_edit([](json& t) {
                  t["model"]["merges"][3] = {"x", 5};
                }),
                "model.merges[3] must be");
  check_refused(refusal_of_edit([](json& t) {
                  t["model"]["merges"][7] = {"no such", "token"};
                }),
                "model.merges[7] names \"no such\"");
  check_refused(refusal_of_edit([](json& t) { t["added_tokens"][0]["id"] = 5; }),
                "model.vocab gives it 0");
  check_refused(refusal_of_edit([](json& t) { t["added_tokens"][3]["id"] = 1000; }),
                "added_tokens[3].id is 1000");
  check_refused(refusal_of_edit([](json& t) { t["added_tokens"][2]["content"] = ""; }),
                "added_tokens[2].content must be a non-empty string");
  check_refused(refusal_of_edit([](json& t) { t["added_tokens"][2]["single_word"] = true; }),
                "added_tokens[2].single_word");
  check_refused(refusal_of_edit([](json& t) { t["added_tokens"][2]["lstrip"] = "yes"; }),
                "added_tokens[2].lstrip must be true or false");
}

TEST_CASE("from_file reads a file and names it in errors", "[tokenizer]") {
  const std::string path = std::string(MLSTM_REFERENCE_DATA_DIR) + "/tokenizer.json";
  CHECK(mlstm::Tokenizer::from_file(path).encode("Hello world") == fixture().encode("Hello world"));
  CHECK_THROWS_AS(mlstm::Tokenizer::from_file(path + ".missing"), std::system_error);

  const std::filesystem::path wrong =
      std::filesystem::temp_directory_path() / "mlstm_test_wordpiece.json";
  {
    json tokenizer = json::parse(fixture_text());
    tokenizer["model"]["type"] = "WordPiece";
    std::ofstream(wrong) << tokenizer.dump();
  }
  CHECK_THROWS_WITH(mlstm::Tokenizer::from_file(wrong.string()),
                    Catch::Contains(wrong.string() + "\": model.type is \"WordPiece\""));
  std::filesystem::remove(wrong);
}

}  // namespace
