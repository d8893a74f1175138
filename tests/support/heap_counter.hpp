// Counts the heap use of a program (glibc only): the allocation tests and the benchmarks'
// memory figures.
//
//   mlstm::test::HeapWatch watch;          // counts from here
//   run();
//   watch.allocations_made();              // allocations since the watch began
//   watch.peak_above_start();              // the peak of live bytes above those at the start
//   watch.largest_allocation();            // the largest single allocation since the watch began
//
// Replaces the C allocation functions (which operator new, Eigen's aligned allocator and the
// thread pool all end in) by counting wrappers around glibc's own. Include it in exactly one
// translation unit of a program, and not in a program built with the sanitizers, which bring
// their own allocator.
#pragma once

#include <malloc.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t count, std::size_t size);
void* __libc_realloc(void* pointer, std::size_t size);
void* __libc_memalign(std::size_t alignment, std::size_t size);
void __libc_free(void* pointer);
}

namespace mlstm::test {

// The process-wide counts behind the allocation functions below.
class HeapCounter {
 public:
  static std::int64_t allocations() { return allocations_.load(); }
  static std::int64_t live_bytes() { return live_.load(); }
  static std::int64_t peak_bytes() { return peak_.load(); }
  static std::int64_t largest_bytes() { return largest_.load(); }
  static void restart_peak() {
    peak_.store(live_.load());
    largest_.store(0);
  }

  static void allocated(void* pointer) {
    if (pointer == nullptr) return;
    allocations_.fetch_add(1, std::memory_order_relaxed);
    const std::int64_t bytes = size_of(pointer);
    const std::int64_t now = live_.fetch_add(bytes) + bytes;
    raise_to(peak_, now);
    raise_to(largest_, bytes);
  }
  static void raise_to(std::atomic<std::int64_t>& maximum, std::int64_t value) {
    std::int64_t current = maximum.load();
    while (value > current && !maximum.compare_exchange_weak(current, value)) {
    }
  }
  static void released(std::int64_t bytes) { live_.fetch_sub(bytes); }
  static std::int64_t size_of(void* pointer) {
    return pointer != nullptr ? static_cast<std::int64_t>(malloc_usable_size(pointer)) : 0;
  }

 private:
  static inline std::atomic<std::int64_t> allocations_{0};
  static inline std::atomic<std::int64_t> live_{0};
  static inline std::atomic<std::int64_t> peak_{0};
  static inline std::atomic<std::int64_t> largest_{0};
};

// Counts from construction: allocations made, the peak of bytes live above the start and the
// largest allocation.
// One watch at a time.
class HeapWatch {
 public:
  HeapWatch()
      : start_allocations_(HeapCounter::allocations()), start_live_(HeapCounter::live_bytes()) {
    HeapCounter::restart_peak();
  }
  std::int64_t allocations_made() const { return HeapCounter::allocations() - start_allocations_; }
  std::int64_t peak_above_start() const { return HeapCounter::peak_bytes() - start_live_; }
  std::int64_t largest_allocation() const { return HeapCounter::largest_bytes(); }

 private:
  std::int64_t start_allocations_, start_live_;
};

}  // namespace mlstm::test

extern "C" {
void* malloc(std::size_t size) {
  void* pointer = __libc_malloc(size);
  mlstm::test::HeapCounter::allocated(pointer);
  return pointer;
}
void* calloc(std::size_t count, std::size_t size) {
  void* pointer = __libc_calloc(count, size);
  mlstm::test::HeapCounter::allocated(pointer);
  return pointer;
}
void* realloc(void* old, std::size_t size) {
  const std::int64_t old_bytes = mlstm::test::HeapCounter::size_of(old);
  void* pointer = __libc_realloc(old, size);
  if (pointer != nullptr || size == 0) mlstm::test::HeapCounter::released(old_bytes);
  mlstm::test::HeapCounter::allocated(pointer);
  return pointer;
}
void* memalign(std::size_t alignment, std::size_t size) {
  void* pointer = __libc_memalign(alignment, size);
  mlstm::test::HeapCounter::allocated(pointer);
  return pointer;
}
void* aligned_alloc(std::size_t alignment, std::size_t size) { return memalign(alignment, size); }
int posix_memalign(void** out, std::size_t alignment, std::size_t size) {
  *out = memalign(alignment, size);
  return *out != nullptr ? 0 : 12;  // ENOMEM
}
void free(void* pointer) {
  mlstm::test::HeapCounter::released(mlstm::test::HeapCounter::size_of(pointer));
  __libc_free(pointer);
}
}
