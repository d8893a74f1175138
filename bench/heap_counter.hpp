// Peak heap use of a piece of code, for the benchmarks' memory figures (glibc only).
//
//   mlstm::bench::HeapCounter::reset_peak();
//   run();
//   std::int64_t peak = mlstm::bench::HeapCounter::peak_since_reset();   // bytes above the start
//
// Counts every malloc/calloc/realloc/free of the process (operator new, Eigen's allocations and
// the thread pool's all end there) by interposing them over glibc's implementations. Include it
// in exactly one translation unit of a benchmark program.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <malloc.h>

extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t count, std::size_t size);
void* __libc_realloc(void* pointer, std::size_t size);
void* __libc_memalign(std::size_t alignment, std::size_t size);
void __libc_free(void* pointer);
}

namespace mlstm::bench {

class HeapCounter {
 public:
  static void reset_peak() {
    base_ = current_.load();
    peak_ = base_;
  }
  static std::int64_t peak_since_reset() { return peak_.load() - base_; }

  static std::int64_t size_of(void* pointer) {
    return pointer ? static_cast<std::int64_t>(malloc_usable_size(pointer)) : 0;
  }
  static void allocated(void* pointer) { add(size_of(pointer)); }
  static void freed(void* pointer) { add(-size_of(pointer)); }
  static void add(std::int64_t bytes) {
    const std::int64_t now = current_.fetch_add(bytes) + bytes;
    std::int64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
  }

 private:
  static inline std::atomic<std::int64_t> current_{0};
  static inline std::atomic<std::int64_t> peak_{0};
  static inline std::int64_t base_ = 0;
};

}  // namespace mlstm::bench

extern "C" {
void* malloc(std::size_t size) {
  void* pointer = __libc_malloc(size);
  mlstm::bench::HeapCounter::allocated(pointer);
  return pointer;
}
void* calloc(std::size_t count, std::size_t size) {
  void* pointer = __libc_calloc(count, size);
  mlstm::bench::HeapCounter::allocated(pointer);
  return pointer;
}
void* realloc(void* old, std::size_t size) {
  const std::int64_t old_size = mlstm::bench::HeapCounter::size_of(old);
  void* pointer = __libc_realloc(old, size);
  if (pointer || size == 0) mlstm::bench::HeapCounter::add(-old_size);
  mlstm::bench::HeapCounter::allocated(pointer);
  return pointer;
}
void* memalign(std::size_t alignment, std::size_t size) {
  void* pointer = __libc_memalign(alignment, size);
  mlstm::bench::HeapCounter::allocated(pointer);
  return pointer;
}
void* aligned_alloc(std::size_t alignment, std::size_t size) { return memalign(alignment, size); }
int posix_memalign(void** out, std::size_t alignment, std::size_t size) {
  *out = memalign(alignment, size);
  return *out ? 0 : 12;  // ENOMEM
}
void free(void* pointer) {
  mlstm::bench::HeapCounter::freed(pointer);
  __libc_free(pointer);
}
}
