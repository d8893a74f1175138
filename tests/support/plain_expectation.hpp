// What a kernel's result is checked against: the plain loops' answer in the kernel's dtype, and
// the budget of tolerance.hpp's plain_budget, for which the plain loops also run in long double.
//
//   const auto plain = mlstm::test::plain_expectation<T>([&](auto dtype) {
//     using U = typename decltype(dtype)::type;
//     const auto cu = c.template cast<U>();
//     return mlstm::test::naive::parallel<U>(cu.q, cu.k, cu.v, cu.igate, cu.fgate, ...);
//   });
//   MLSTM_CHECK_CLOSE(h, plain.expected, plain.budget);
#pragma once

#include <mlstm/tensor.hpp>
#include <type_traits>

#include "support/tolerance.hpp"

namespace mlstm::test {

template <typename T>
struct PlainExpectation {
  Tensor<T, 4> expected;  // the plain loops in T
  double budget;          // plain_budget<T> of the plain loops' loss in T
};

template <typename T, typename Plain>
PlainExpectation<T> plain_expectation(const Plain& plain) {
  Tensor<T, 4> expected = plain(std::common_type<T>{});
  const Tensor<long double, 4> truth = plain(std::common_type<long double>{});
  const double budget =
      plain_budget<T>(max_difference(expected, truth).max_abs, magnitude(expected));
  return {std::move(expected), budget};
}

}  // namespace mlstm::test
