// Exception types thrown by mlstm.
//
// Every check at the library boundary throws one of these before anything is written, with a
// message that names the argument and shows what was expected and what was given.
#pragma once

#include <stdexcept>
#include <string>

namespace mlstm {

// Base of all argument errors. `argument()` is the name of the offending argument as it appears
// in the function's signature (for example "igate_preact" or "options.eps").
class InvalidArgument : public std::invalid_argument {
 public:
  InvalidArgument(std::string argument, const std::string& message)
      : std::invalid_argument(argument + ": " + message), argument_(std::move(argument)) {}
  const std::string& argument() const noexcept { return argument_; }

 private:
  std::string argument_;
};

// An argument has the wrong rank or shape, or its shape does not agree with another argument's.
class ShapeError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

// An argument has the right shape but an invalid value (a non-positive eps, a non-finite gate,
// an unknown parameter name, ...).
class ValueError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

// A file or buffer that does not hold what its format promises (truncated, corrupt, lying header).
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A broken internal invariant: a bug in mlstm, never the caller's fault. Thrown by MLSTM_ASSERT
// when MLSTM_ASSERT_THROWS is defined (the tests do); otherwise a failed assertion aborts.
class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

}  // namespace mlstm
