// Test buffers that end at an inaccessible page (Guarded), for the core's C++ tests.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

namespace rnnpool_test {

// An array whose last element sits right before an inaccessible page, so a read or write past its
// end crashes the test (the kernels must never touch memory outside the buffers they are given).
template <class T>
class Guarded {
 public:
  Guarded(size_t n, T value = T(0)) : n_(n) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE)), data = (n * sizeof(T) + page - 1) / page * page;
    bytes_ = data + page;
    base_ = static_cast<char*>(mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (base_ == MAP_FAILED || mprotect(base_ + data, page, PROT_NONE) != 0) std::abort();
    p_ = reinterpret_cast<T*>(base_ + data) - n;
    std::fill(p_, p_ + n, value);
  }
  Guarded(const std::vector<double>& v) : Guarded(v.size()) { std::copy(v.begin(), v.end(), p_); }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;
  ~Guarded() { munmap(base_, bytes_); }
  T* data() const { return p_; }
  size_t size() const { return n_; }
  T operator[](size_t i) const { return p_[i]; }

 private:
  size_t n_, bytes_;
  char* base_;
  T* p_;
};

}  // namespace rnnpool_test
