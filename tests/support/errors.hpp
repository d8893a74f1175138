// Checking the exceptions a call throws.
//
//   CHECK_THAT(message_of<mlstm::ShapeError>([&] { kernel(...); }), Contains("k:"));
//   expect_error<mlstm::ValueError>([&] { kernel(...); }, "options.eps");
#pragma once

#include <string>
#include <type_traits>

#include <catch2/catch.hpp>

#include <mlstm/errors.hpp>

namespace mlstm::test {

// Runs `call`, requires an exception of type E, and returns its message; stores its
// argument() in *argument when E names one and argument is not null.
template <typename E, typename Call>
std::string message_of(const Call& call, std::string* argument = nullptr) {
  try {
    call();
  } catch (const E& error) {
    if constexpr (std::is_base_of_v<InvalidArgument, E>) {
      if (argument != nullptr) *argument = error.argument();
    }
    return error.what();
  }
  FAIL("no exception of the expected type was thrown");
  return {};
}

// Runs `call`, requiring an exception of type E whose argument() is `argument`.
template <typename E, typename Call>
void expect_error(const Call& call, const std::string& argument) {
  std::string actual;
  const std::string message = message_of<E>(call, &actual);
  INFO(message);
  CHECK(actual == argument);
}

}  // namespace mlstm::test
