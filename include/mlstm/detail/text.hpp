// Lists in messages.
#pragma once

#include <cstddef>
#include <limits>
#include <string>
#include <vector>

namespace mlstm::detail {

// "a, b, c": the first `limit` items joined by ", ", then ", ... (N in all)" when there are more.
inline std::string list_string(const std::vector<std::string>& items,
                               std::size_t limit = std::numeric_limits<std::size_t>::max()) {
  std::string text;
  for (std::size_t i = 0; i < items.size() && i < limit; ++i) {
    if (i > 0) text += ", ";
    text += items[i];
  }
  if (items.size() > limit) text += ", ... (" + std::to_string(items.size()) + " in all)";
  return text;
}

}  // namespace mlstm::detail
