#pragma once
// Errors as values. std::expected is C++23; this is the small part of it we need.
// An Error carries a message written for a person: what was wrong and what to do.

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace shoal {

struct Error {
  std::string message;
  int code = 0;  // errno, MDB_* or a protocol ErrorCode, when there is one; 0 otherwise
};

template <class T>
class Result;

template <class T>
inline constexpr bool kIsResult = false;
template <class T>
inline constexpr bool kIsResult<Result<T>> = true;

template <class T>
class [[nodiscard]] Result {
 public:
  // Explicit when T is itself a Result (Result<Status>: an I/O error, or a verdict that may
  // be a refusal): an implicit conversion would turn a failed Status into a successful outer
  // Result, and a caller passing the verdict where the outer one is expected would read a
  // refusal as success.
  explicit(kIsResult<T>) Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { assert(!ok()); return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success or an Error.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { assert(!ok_); return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace shoal
