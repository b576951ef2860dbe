// The checked size arithmetic (checked_size.h): exact results where they fit, overflow detected at
// the int64 boundary (never wrapped, never undefined behaviour: the test also runs under
// -fsanitize=address,undefined, CMake option RNNPOOL_SANITIZE), overflow sticky through later
// operations, and the reaching taps of a dilated kernel.
#include <cstdint>
#include <cstdio>
#include <limits>

#include "../checked_size.h"

using namespace rnnpool;

namespace {

int failures = 0;

void expect(bool condition, const char* what, int line) {
  if (!condition) {
    std::printf("FAIL line %d: %s\n", line, what);
    ++failures;
  }
}
#define EXPECT(condition) expect((condition), #condition, __LINE__)

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

void test_add_and_mul() {
  int64_t r = -1;
  EXPECT(checked_add(2, 3, &r) && r == 5);
  EXPECT(checked_add(kMax - 1, 1, &r) && r == kMax);
  r = 7;
  EXPECT(!checked_add(kMax, 1, &r) && r == 7);  // untouched on overflow
  EXPECT(!checked_add(kMax / 2 + 1, kMax / 2 + 1, &r));
  EXPECT(!checked_add(-1, 1, &r));
  EXPECT(checked_mul(0, kMax, &r) && r == 0);
  EXPECT(checked_mul(kMax, 0, &r) && r == 0);
  EXPECT(checked_mul(kMax, 1, &r) && r == kMax);
  EXPECT(checked_mul(int64_t{1} << 31, int64_t{1} << 31, &r) && r == int64_t{1} << 62);
  EXPECT(!checked_mul(int64_t{1} << 32, int64_t{1} << 31, &r));
  EXPECT(checked_mul(3037000499, 3037000499, &r) && r == 3037000499LL * 3037000499LL);  // floor(sqrt(max))
  EXPECT(!checked_mul(3037000500, 3037000500, &r));
  EXPECT(!checked_mul(-2, 3, &r));
  EXPECT(!checked_mul(kMax, 2, &r));
}

void test_size() {
  const Size a = Size(6) + Size(2) * Size(int64_t{1} << 61);
  EXPECT(a.ok() && a.value() == 6 + (int64_t{1} << 62));
  const Size b = Size(6) + Size(2) * Size(int64_t{1} << 62);  // 2^63 + 6: the padding=[2**62, 0]
  EXPECT(!b.ok());
  EXPECT(!(b * Size(0)).ok());  // overflow is sticky, even through a multiply by zero
  EXPECT(!(b - Size(1)).ok() && !(b / Size(2)).ok() && !max(b, Size(1)).ok());
  EXPECT(!Size(-1).ok());
  EXPECT(!(Size(3) - Size(4)).ok());
  EXPECT((Size(10) - Size(4)).value() == 6 && (Size(10) / Size(4)).value() == 2);
  EXPECT(!(Size(10) / Size(0)).ok());
  EXPECT(max(Size(3), Size(9)).value() == 9);
  Size c = Size(int64_t{1} << 40);
  c *= Size(int64_t{1} << 40);  // kernel_size=[2**40, 2**40]
  EXPECT(!c.ok());
  EXPECT(Size(kMaxAllocationBytes).within(kMaxAllocationBytes));
  EXPECT(!Size(kMaxAllocationBytes + 1).within(kMaxAllocationBytes));
  EXPECT(!Size::overflowed().within(kMax));
  Size d = Size(kMax);
  d += Size(0);
  EXPECT(d.ok() && d.value() == kMax);
  d += Size(1);
  EXPECT(!d.ok());
}

void test_reaching_half_kernel() {
  EXPECT(reaching_half_kernel(3, 1, 6) == 1);
  EXPECT(reaching_half_kernel(3, 5, 6) == 1);   // offset 5 reaches pixel 5 from pixel 0
  EXPECT(reaching_half_kernel(3, 6, 6) == 0);   // offset 6 reads only padding
  EXPECT(reaching_half_kernel(3, 3000, 6) == 0);
  EXPECT(reaching_half_kernel(3, int64_t{1} << 62, 6) == 0);
  EXPECT(reaching_half_kernel(7, 2, 6) == 2);   // offsets 0, 2, 4 of 0..6
  EXPECT(reaching_half_kernel(1, 1, 1) == 0);
  EXPECT(reaching_half_kernel(5, 1, 1) == 0);   // a single pixel: only the centre tap
  EXPECT(reaching_half_kernel(kMax, 1, 10) == 9);
  // Brute force: the largest |t| <= (k - 1) / 2 with some output pixel i reading i + t * d inside.
  for (int64_t k = 1; k <= 9; k += 2)
    for (int64_t d = 1; d <= 8; ++d)
      for (int64_t e = 1; e <= 12; ++e) {
        int64_t want = 0;
        for (int64_t t = 1; t <= (k - 1) / 2; ++t)
          for (int64_t i = 0; i < e; ++i)
            if (i + t * d < e) want = t;
        if (reaching_half_kernel(k, d, e) != want) {
          std::printf("FAIL reaching_half_kernel(%lld, %lld, %lld)\n", (long long)k, (long long)d, (long long)e);
          ++failures;
        }
      }
}

}  // namespace

int main() {
  test_add_and_mul();
  test_size();
  test_reaching_half_kernel();
  if (failures) return 1;
  std::printf("checked_size: all passed\n");
  return 0;
}
