// Sizes computed from user integers (padded extents, output sizes, workspace bytes) with every
// add and multiply checked. A Size is a non-negative int64 or "overflowed"; an overflowed operand
// makes every later result overflowed too, so a caller computes the whole formula and checks once,
// naming the argument at fault, before anything is allocated. Torch-free, so that its tests run
// under the sanitizers (CMake option RNNPOOL_SANITIZE).
//
// The Python checks apply the same rules with the same limit (rnnpool_ops/_checks.py:
// MAX_ALLOCATION_BYTES); python_tests/test_size_limits.py checks that both sides agree.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

namespace rnnpool {

// No op asks for more than this in one workspace or output: beyond it an allocation could never
// succeed, so the arguments are refused up front instead of allocating until memory runs out.
constexpr int64_t kMaxAllocationBytes = int64_t{1} << 40;

// a + b and a * b of non-negative values: false (and *out untouched) when the result overflows
// int64 or an operand is negative.
inline bool checked_add(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0 || a > std::numeric_limits<int64_t>::max() - b) return false;
  *out = a + b;
  return true;
}

inline bool checked_mul(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0 || (a != 0 && b > std::numeric_limits<int64_t>::max() / a)) return false;
  *out = a * b;
  return true;
}

class Size {
 public:
  // Negative values (never a size) count as overflowed.
  constexpr Size(int64_t value) : value_(value < 0 ? 0 : value), ok_(value >= 0) {}  // NOLINT: implicit
  static constexpr Size overflowed() { return Size(); }

  constexpr bool ok() const { return ok_; }
  // Whether the size fits and is at most `limit`.
  constexpr bool within(int64_t limit) const { return ok_ && value_ <= limit; }
  // The value; only meaningful when ok().
  constexpr int64_t value() const { return value_; }

  friend Size operator+(Size a, Size b) {
    int64_t r = 0;
    return a.ok_ && b.ok_ && checked_add(a.value_, b.value_, &r) ? Size(r) : overflowed();
  }
  friend Size operator*(Size a, Size b) {
    int64_t r = 0;
    return a.ok_ && b.ok_ && checked_mul(a.value_, b.value_, &r) ? Size(r) : overflowed();
  }
  // a - b where b <= a; anything else is a caller's error, reported as overflowed.
  friend Size operator-(Size a, Size b) {
    return a.ok_ && b.ok_ && b.value_ <= a.value_ ? Size(a.value_ - b.value_) : overflowed();
  }
  // a / b rounded down, b >= 1.
  friend Size operator/(Size a, Size b) {
    return a.ok_ && b.ok_ && b.value_ >= 1 ? Size(a.value_ / b.value_) : overflowed();
  }
  Size& operator+=(Size b) { return *this = *this + b; }
  Size& operator*=(Size b) { return *this = *this * b; }

 private:
  constexpr Size() : value_(0), ok_(false) {}
  int64_t value_;
  bool ok_;
};

inline Size max(Size a, Size b) {
  if (!a.ok() || !b.ok()) return Size::overflowed();
  return a.value() >= b.value() ? a : b;
}

// "N bytes" for an error message.
inline std::string describe_bytes(Size bytes) {
  return bytes.ok() ? std::to_string(bytes.value()) + " bytes" : std::string("more than 2^63 bytes");
}

// Half the taps of a shape-keeping dilated convolution (odd `kernel`, padding dilation *
// (kernel - 1) / 2) that can read a pixel of an image `extent` (>= 1) long: a tap at offset t *
// dilation from the centre reads a pixel for some output pixel only when |t| * dilation <= extent - 1.
// The taps further out read the zero padding for every output pixel and contribute nothing, so the
// kernels skip them and keep half * dilation <= extent - 1 of padding per side, not
// dilation * (kernel - 1) / 2 (which grows without bound with the dilation).
inline int64_t reaching_half_kernel(int64_t kernel, int64_t dilation, int64_t extent) {
  const int64_t half = (kernel - 1) / 2, reach = (extent - 1) / dilation;
  return half < reach ? half : reach;
}

}  // namespace rnnpool
