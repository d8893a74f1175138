// A fixed-size, zero-initialized array on a 64-byte boundary (a cache line, and the widest SIMD
// load), the storage of parameters, their gradients and optimizer state, and of a model's
// matrices: arrays streamed through again and again.
//
// On Linux the whole 2 MiB pages inside an array ask for transparent huge pages
// (madvise(MADV_HUGEPAGE), before the first touch), which the system grants where THP is
// "always" or "madvise": a stream through a model's weights then needs one TLB entry per 2 MiB
// rather than per 4 KiB (measured with the generation steps of bench_model and
// bench_xlstm_large; bench/README.md). The hint changes no value and costs no memory: the array
// is allocated as any other, and the pieces before its first and after its last 2 MiB boundary
// keep ordinary pages (an array of a few MiB gains less); where it is refused all pages are
// ordinary ones.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "mlstm/tensor.hpp"

namespace mlstm::detail {

template <typename T>
class AlignedArray {
  static_assert(std::is_trivially_copyable_v<T>, "AlignedArray holds plain numbers");

 public:
  static constexpr std::size_t alignment = 64;
  static constexpr std::size_t huge_page = std::size_t(2) << 20;

  explicit AlignedArray(Index size) : size_(size) {
    if (size_ > 0) {
      const std::size_t bytes = static_cast<std::size_t>(size_) * sizeof(T);
      void* memory = ::operator new (bytes, std::align_val_t{alignment});
      advise_huge_pages(memory, bytes);
      data_ = std::unique_ptr<T, Release>(static_cast<T*>(memory));
      std::fill(data_.get(), data_.get() + size_, T(0));
    }
  }

  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  Index size() const { return size_; }

 private:
  // Asks for transparent huge pages for the whole 2 MiB pages in [memory, memory + bytes).
  static void advise_huge_pages(void* memory, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const auto address = reinterpret_cast<std::uintptr_t>(memory);
    const std::uintptr_t first = (address + huge_page - 1) / huge_page * huge_page;
    const std::uintptr_t last = (address + bytes) / huge_page * huge_page;
    if (first < last) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
    static_cast<void>(memory);
    static_cast<void>(bytes);
#endif
  }

  struct Release {
    void operator()(T* memory) const { ::operator delete (memory, std::align_val_t{alignment}); }
  };

  std::unique_ptr<T, Release> data_;
  Index size_ = 0;
};

}  // namespace mlstm::detail
