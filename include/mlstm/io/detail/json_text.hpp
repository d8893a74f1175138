// JSON values and names as text for error messages: ASCII, quoted, cut to a readable length.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlstm/detail/text.hpp"

namespace mlstm::detail {

// A JSON value as text for messages: ASCII (other characters escaped), cut to a readable length.
inline std::string json_text(const nlohmann::json& value) {
  constexpr std::size_t max_shown = 80;
  const std::string text = value.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  return text.size() > max_shown ? text.substr(0, max_shown) + "..." : text;
}

// `text` as a JSON string literal, for messages.
inline std::string quoted(const std::string& text) { return json_text(nlohmann::json(text)); }

// Up to `limit` quoted names, then how many more.
inline std::string quoted_list(const std::vector<std::string>& names, std::size_t limit = 5) {
  if (names.empty()) return "none";
  std::vector<std::string> quoted_names;
  for (const std::string& name : names) quoted_names.push_back(quoted(name));
  return list_string(quoted_names, limit);
}

// A JSON value for messages: objects by kind, anything else as written.
inline std::string describe_json(const nlohmann::json& value) {
  return value.is_object() ? "an object" : json_text(value);
}

}  // namespace mlstm::detail
