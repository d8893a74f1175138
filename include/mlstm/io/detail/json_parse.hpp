// Parsing untrusted JSON text (a config, an index, a tokenizer file) into one typed error.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace mlstm::detail {

// Deeper nesting than any file we read has; the bound keeps hostile text from growing the
// parser's stack of open containers without limit.
inline constexpr int max_json_depth = 16;

// `text` parsed as JSON. On malformed text (including a number beyond double's range, which
// nlohmann reports as out_of_range rather than parse_error) or nesting deeper than
// max_json_depth, throws `error_for(reason)`, the caller's typed error; `reason` reads
// "is not valid JSON: ..." (cut to a readable length) or "nests deeper than 16 levels".
template <typename ErrorFor>
nlohmann::json parse_json(std::string_view text, const ErrorFor& error_for) {
  using json = nlohmann::json;
  const auto depth_guard = [&](int depth, json::parse_event_t event, json&) {
    const bool opens =
        event == json::parse_event_t::object_start || event == json::parse_event_t::array_start;
    if (opens && depth >= max_json_depth) {  // depth counts from 0
      throw error_for("nests deeper than " + std::to_string(max_json_depth) + " levels");
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), depth_guard);
  } catch (const json::exception& error) {
    constexpr std::size_t max_shown = 200;
    std::string reason = error.what();
    if (reason.size() > max_shown) reason = reason.substr(0, max_shown) + "...";
    throw error_for("is not valid JSON: " + reason);
  }
}

}  // namespace mlstm::detail
