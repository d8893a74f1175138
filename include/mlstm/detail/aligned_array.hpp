// A fixed-size, zero-initialized array on a 64-byte boundary (a cache line, and the widest SIMD
// load), the storage of parameters and their gradients.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>

#include "mlstm/tensor.hpp"

namespace mlstm::detail {

template <typename T>
class AlignedArray {
  static_assert(std::is_trivially_copyable_v<T>, "AlignedArray holds plain numbers");

 public:
  static constexpr std::size_t alignment = 64;

  explicit AlignedArray(Index size) : size_(size) {
    if (size_ > 0) {
      void* memory =
          ::operator new (static_cast<std::size_t>(size_) * sizeof(T), std::align_val_t{alignment});
      data_.reset(static_cast<T*>(memory));
      std::fill(data_.get(), data_.get() + size_, T(0));
    }
  }

  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  Index size() const { return size_; }

 private:
  struct Release {
    void operator()(T* memory) const { ::operator delete (memory, std::align_val_t{alignment}); }
  };

  std::unique_ptr<T, Release> data_;
  Index size_ = 0;
};

}  // namespace mlstm::detail
