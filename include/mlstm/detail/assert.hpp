// MLSTM_ASSERT(condition, message): checks an internal invariant.
//
// - MLSTM_ASSERT_THROWS defined: a failure throws mlstm::InternalError (tests turn it on so that
//   a broken invariant fails the test that hit it instead of killing the run).
// - otherwise, in builds without NDEBUG or with MLSTM_ENABLE_ASSERTS: prints and aborts.
// - otherwise: compiled out.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "mlstm/errors.hpp"

namespace mlstm::detail {

[[noreturn]] inline void assertion_failed(const char* condition, const std::string& message,
                                          const char* file, int line) {
  const std::string text = std::string(file) + ":" + std::to_string(line) +
                           ": mlstm internal assertion failed: " + condition + " (" + message + ")";
#if defined(MLSTM_ASSERT_THROWS)
  throw InternalError(text);
#else
  std::fprintf(stderr, "%s\n", text.c_str());
  std::abort();
#endif
}

}  // namespace mlstm::detail

#if defined(MLSTM_ASSERT_THROWS) || defined(MLSTM_ENABLE_ASSERTS) || !defined(NDEBUG)
#define MLSTM_ASSERT(condition, message) \
  ((condition) ? static_cast<void>(0)    \
               : ::mlstm::detail::assertion_failed(#condition, (message), __FILE__, __LINE__))
#else
#define MLSTM_ASSERT(condition, message) static_cast<void>(0)
#endif
