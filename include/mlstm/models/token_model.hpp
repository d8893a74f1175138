// What every language model of the library offers over token ids, written once:
//
//   forward(tokens (B, S))                 -> logits (B, S, V), from the zero state
//   prefill(tokens (B, S), state, which)   -> logits (B, S, V), or (B, 1, V) with Logits::last;
//                                             state advanced past the tokens
//   step(tokens (B), state)                -> logits (B, V); state advanced by one token
//
// An architecture derives from TokenModel<Derived, T, State> and provides, as members the base
// may call (declare it a friend):
//   const Config& config() const                with a vocab_size
//   void check_state(const State&, Index batch) const
//   Tensor<T, 3> run(const Id* ids, Index batch, Index seq_len, State* state, Logits) const
// where run takes validated ids and, with state null, starts from the zero state and keeps none.
#pragma once

#include <string>
#include <type_traits>

#include "mlstm/detail/checks.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

// Which positions prefill computes logits for: every one, or the last only (what generation
// needs; the head is the largest matrix of a small model).
enum class Logits { all, last };

namespace detail {

// Token ids (an integer tensor of rank `Rank`, every size >= 1, each id in [0, vocab_size)) as
// a view; ShapeError / ValueError("tokens") naming the first one that is not.
template <int Rank, typename Tokens>
auto check_token_ids(const Tokens& tokens, const char* layout, Index vocab_size) {
  require_argument_type<Tokens>();
  using Id = ScalarOf<Tokens>;
  static_assert(std::is_integral_v<Id> && !std::is_same_v<Id, bool>,
                "mlstm: token ids are integers");
  const auto ids = const_view<Rank>(tokens, "tokens", layout);
  for (int axis = 0; axis < Rank; ++axis) {
    if (ids.dimension(axis) < 1) {
      throw ShapeError("tokens", std::string("expected ") + layout + " with every size >= 1, got " +
                                     shape_string(ids.dimensions()));
    }
  }
  for (Index i = 0; i < ids.size(); ++i) {
    const Id id = ids.data()[i];
    bool negative = false;
    if constexpr (std::is_signed_v<Id>) negative = id < 0;
    if (negative ||
        static_cast<unsigned long long>(id) >= static_cast<unsigned long long>(vocab_size)) {
      throw ValueError("tokens", "token id " + std::to_string(id) + " at " +
                                     shape_string(multi_index<Rank>(ids, i)) + " is outside [0, " +
                                     std::to_string(vocab_size) + ")");
    }
  }
  return ids;
}

}  // namespace detail

template <typename Derived, typename T, typename State>
class TokenModel {
 public:
  // tokens (B, S) -> logits (B, S, V) over the whole sequence from the zero state.
  template <typename Tokens>
  Tensor<T, 3> forward(const Tokens& tokens) const {
    const auto ids = check_tokens<2>(tokens, "(B, S)");
    return self().run(ids.data(), ids.dimension(0), ids.dimension(1), nullptr, Logits::all);
  }

  // tokens (B, S) continuing from `state` (advanced past them) -> logits (B, S, V), or
  // (B, 1, V) for the last position with Logits::last.
  template <typename Tokens>
  Tensor<T, 3> prefill(const Tokens& tokens, State& state, Logits logits = Logits::all) const {
    const auto ids = check_tokens<2>(tokens, "(B, S)");
    self().check_state(state, ids.dimension(0));
    return self().run(ids.data(), ids.dimension(0), ids.dimension(1), &state, logits);
  }

  // One token per sequence, tokens (B), continuing from `state` (advanced) -> logits (B, V).
  template <typename Tokens>
  Tensor<T, 2> step(const Tokens& tokens, State& state) const {
    const auto ids = check_tokens<1>(tokens, "(B)");
    self().check_state(state, ids.dimension(0));
    Tensor<T, 3> logits = self().run(ids.data(), ids.dimension(0), 1, &state, Logits::all);
    return Tensor<T, 2>(
        TensorMap<T, 2>(logits.data(), ids.dimension(0), self().config().vocab_size));
  }

 protected:
  template <int Rank, typename Tokens>
  auto check_tokens(const Tokens& tokens, const char* layout) const {
    return detail::check_token_ids<Rank>(tokens, layout, self().config().vocab_size);
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

}  // namespace mlstm
