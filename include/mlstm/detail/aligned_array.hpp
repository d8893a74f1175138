// A fixed-size, zero-initialized array on a 64-byte boundary (a cache line, and the widest SIMD
// load), the storage of parameters and their gradients and of a model's matrices.
//
// With `huge_pages`, an array of 2 MiB or more is whole 2 MiB pages on a 2 MiB boundary and, on
// Linux, asks for transparent huge pages (madvise(MADV_HUGEPAGE), before its first touch), which
// the system grants where THP is "always" or "madvise": a stream through a model's weights then
// needs one TLB entry per 2 MiB rather than per 4 KiB (measured with bench_xlstm_large's
// generation step; bench/README.md). The hint changes no value; where it is refused the pages are
// ordinary ones. It is for one large array streamed again and again (a model's matrices): each
// array rounded up to whole huge pages may hold up to 2 MiB more in memory.
#pragma once

#include <algorithm>
#include <cstddef>
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

  explicit AlignedArray(Index size, bool huge_pages = false) : size_(size) {
    if (size_ > 0) {
      const std::size_t bytes = static_cast<std::size_t>(size_) * sizeof(T);
      const bool huge = huge_pages && bytes >= huge_page;
      // Whole huge pages, so that the last one is not shared with another allocation.
      const std::size_t allocated = huge ? (bytes + huge_page - 1) / huge_page * huge_page : bytes;
      Release release{huge ? huge_page : alignment};
      void* memory = ::operator new (allocated, std::align_val_t{release.alignment});
#if defined(__linux__) && defined(MADV_HUGEPAGE)
      if (huge) ::madvise(memory, allocated, MADV_HUGEPAGE);
#endif
      data_ = std::unique_ptr<T, Release>(static_cast<T*>(memory), release);
      std::fill(data_.get(), data_.get() + size_, T(0));
    }
  }

  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  Index size() const { return size_; }

 private:
  struct Release {
    std::size_t alignment;
    void operator()(T* memory) const { ::operator delete (memory, std::align_val_t{alignment}); }
  };

  std::unique_ptr<T, Release> data_{nullptr, Release{alignment}};
  Index size_ = 0;
};

}  // namespace mlstm::detail
