// Byte pair encoding of one word: starting from one token per byte, repeatedly merge the adjacent
// pair whose merge rule ranks first (lowest rank; leftmost among equals) until no adjacent pair
// has a rule. A heap of candidate pairs makes this O(n log n) in the word's length n, so long
// runs (a long number, a line of CJK) stay cheap.
#pragma once

#include <cstdint>
#include <queue>
#include <unordered_map>
#include <vector>

namespace mlstm::detail::bpe {

using TokenId = std::int32_t;

struct MergeRule {
  std::uint32_t rank;  // position in the file's merge list: lower merges first
  TokenId merged;
};

inline std::uint64_t pair_key(TokenId left, TokenId right) {
  return (std::uint64_t{static_cast<std::uint32_t>(left)} << 32) |
         static_cast<std::uint32_t>(right);
}

using MergeTable = std::unordered_map<std::uint64_t, MergeRule>;

// Merges `tokens` (one word's byte tokens) in place.
inline void merge_word(std::vector<TokenId>& tokens, const MergeTable& merges) {
  const int n = static_cast<int>(tokens.size());
  if (n < 2) return;
  // A doubly linked list over the positions; a merged-away position is dead.
  std::vector<int> previous(static_cast<std::size_t>(n)), next(static_cast<std::size_t>(n));
  std::vector<bool> alive(static_cast<std::size_t>(n), true);
  for (int i = 0; i < n; ++i) {
    previous[static_cast<std::size_t>(i)] = i - 1;
    next[static_cast<std::size_t>(i)] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    std::uint32_t rank;
    int left;  // position of the pair's left token
    TokenId left_token, right_token, merged;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : left > other.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  const auto consider = [&](int left) {
    if (left < 0) return;
    const int right = next[static_cast<std::size_t>(left)];
    if (right < 0) return;
    const TokenId a = tokens[static_cast<std::size_t>(left)];
    const TokenId b = tokens[static_cast<std::size_t>(right)];
    const auto rule = merges.find(pair_key(a, b));
    if (rule != merges.end()) queue.push({rule->second.rank, left, a, b, rule->second.merged});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    const auto left = static_cast<std::size_t>(top.left);
    const int right = next[left];
    // A candidate is stale when a merge has since changed either side of its pair.
    if (!alive[left] || right < 0 || tokens[left] != top.left_token ||
        tokens[static_cast<std::size_t>(right)] != top.right_token) {
      continue;
    }
    tokens[left] = top.merged;
    alive[static_cast<std::size_t>(right)] = false;
    next[left] = next[static_cast<std::size_t>(right)];
    if (next[left] >= 0) previous[static_cast<std::size_t>(next[left])] = top.left;
    consider(previous[left]);
    consider(top.left);
  }
  std::vector<TokenId> merged;
  for (int i = 0; i >= 0; i = next[static_cast<std::size_t>(i)])
    merged.push_back(tokens[static_cast<std::size_t>(i)]);
  tokens.swap(merged);
}

}  // namespace mlstm::detail::bpe
