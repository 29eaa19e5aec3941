// Errors as values: an Error carries an API code, the errno it came from (0 if none) and a
// message with the step that failed; Result<T> is a T or an Error.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace swissbox {

// The API error codes of DESIGN.md; each maps to one HTTP status.
enum class Code {
  kInvalidArgument,
  kUnauthenticated,
  kPermissionDenied,
  kNotFound,
  kConflict,
  kTooLarge,
  kResourceExhausted,
  kUnavailable,
  kDeadlineExceeded,
  kInternal,
};

std::string_view code_name(Code code);
int http_status(Code code);
// The code an answer's status stands for (the table above, read backwards): "" below 400,
// "internal" for another 5xx, "other" for another 4xx.
std::string_view code_name_of_status(unsigned status);

struct Error {
  Code code = Code::kInternal;
  int sys_errno = 0;
  std::string message;

  // "message: strerror(errno)" when errno is set.
  std::string to_string() const;
};

inline Error make_error(Code code, std::string message) {
  return Error{code, 0, std::move(message)};
}
// Captures the current errno; call right after the failing syscall.
Error sys_error(std::string context, int err = errno);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};
using Status = Result<Ok>;
inline Status ok_status() { return Ok{}; }

}  // namespace swissbox
