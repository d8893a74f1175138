// Exception types thrown by mlstm.
//
// Every check at the library boundary throws one of these before anything is written, with a
// message that names the argument and shows what was expected and what was given.
//
// All of them derive from mlstm::Error, so one clause catches everything the library throws:
//
//   try { ... } catch (const mlstm::Error& error) { std::cerr << error.what(); }
//
// Each also derives from the standard exception it is a kind of (InvalidArgument from
// std::invalid_argument, FormatError from std::runtime_error, IoError from std::system_error,
// InternalError from std::logic_error), so code that catches those keeps working. mlstm::Error
// itself is not a std::exception: a class deriving from two std::exception bases could not be
// caught as one.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace mlstm {

// The root of every exception mlstm throws.
class Error {
 public:
  virtual ~Error() = default;
  virtual const char* what() const noexcept = 0;

 protected:
  Error() = default;
  Error(const Error&) = default;
  Error& operator=(const Error&) = default;
};

// Base of all argument errors. `argument()` is the name of the offending argument or tensor as
// the caller knows it: a parameter of the function's signature ("igate_preact"), an option
// ("options.eps"), or a named tensor (a checkpoint entry, a registered parameter).
class InvalidArgument : public std::invalid_argument, public Error {
 public:
  InvalidArgument(std::string argument, const std::string& message)
      : std::invalid_argument(argument + ": " + message), argument_(std::move(argument)) {}
  const char* what() const noexcept override { return std::invalid_argument::what(); }
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
class FormatError : public std::runtime_error, public Error {
 public:
  using std::runtime_error::runtime_error;
  const char* what() const noexcept override { return std::runtime_error::what(); }
};

// A file that cannot be opened, read or written; code() is the operating system's error.
class IoError : public std::system_error, public Error {
 public:
  using std::system_error::system_error;
  const char* what() const noexcept override { return std::system_error::what(); }
};

// A broken internal invariant: a bug in mlstm, never the caller's fault. Thrown by MLSTM_ASSERT
// when MLSTM_ASSERT_THROWS is defined (the tests do); otherwise a failed assertion aborts.
class InternalError : public std::logic_error, public Error {
 public:
  using std::logic_error::logic_error;
  const char* what() const noexcept override { return std::logic_error::what(); }
};

}  // namespace mlstm
