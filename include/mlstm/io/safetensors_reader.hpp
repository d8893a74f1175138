// Reading safetensors files: File maps a file (or holds its bytes), validates its header, and
// reads tensors by name, decoding them to the element type asked for; a TensorView shows a
// tensor's bytes where they lie, for loaders that decode into their own memory or use the data in
// place.
//
//   auto file = mlstm::safetensors::File::load("model.safetensors");
//   auto w = file.read<float, 2>("w");           // F64, F32, F16 or BF16 data, as float
//   file.read_into("b", mlstm::TensorMap<float, 1>(bias, n));
//   mlstm::safetensors::TensorView raw = file.view("w");
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mlstm/errors.hpp"
#include "mlstm/io/detail/file_bytes.hpp"
#include "mlstm/io/detail/json_text.hpp"
#include "mlstm/io/safetensors_dtype.hpp"
#include "mlstm/io/safetensors_header.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::safetensors {

// A tensor's data as stored in its File: `byte_size` bytes at `data`, little-endian elements of
// `dtype` in row-major order. Valid while the File, or a copy of it, lives. A loader can decode it
// (File::decode_into) or, on a little-endian machine and when aligned_to(dtype_size(dtype)), use
// the elements in place.
struct TensorView {
  const std::uint8_t* data = nullptr;
  std::size_t byte_size = 0;
  DType dtype = DType::F32;
  std::vector<Index> shape;

  // Number of elements: the product of the shape (1 for a scalar).
  Index numel() const {
    Index count = 1;
    for (Index dim : shape) count *= dim;
    return count;
  }

  // Whether `data` is a multiple of `alignment` bytes.
  bool aligned_to(std::size_t alignment) const {
    return reinterpret_cast<std::uintptr_t>(data) % alignment == 0;
  }
};

// A safetensors file, its header validated; the data stays in the file's mapping (or, where the
// system cannot map it, in memory) and is decoded when a tensor is read. Copies share the data.
class File {
 public:
  // Opens the file at `path`: maps it read-only (reads it whole if mapping fails) and validates
  // its header. Memory used is the header's, the data being paged in as tensors are read. Throws
  // IoError if it cannot be opened or read, FormatError if it is not a valid
  // safetensors file.
  static File load(const std::string& path);

  // The file whose bytes are `bytes`; `source_name` stands for it in messages.
  static File parse(std::vector<std::uint8_t> bytes, std::string source_name);

  // Whether the data is mapped from the file rather than held in memory.
  bool mapped() const noexcept { return bytes_->mapped(); }

  const std::string& source_name() const noexcept { return source_name_; }

  // Tensor names in the order of their data in the file.
  const std::vector<std::string>& names() const noexcept { return header_.names; }

  bool contains(const std::string& name) const { return header_.tensors.count(name) != 0; }

  // Throws ValueError("name") if there is no such tensor.
  const TensorInfo& info(const std::string& name) const;

  const std::map<std::string, std::string>& metadata() const noexcept { return header_.metadata; }

  // The "__metadata__" value of `key`; throws ValueError("key") if there is none.
  const std::string& metadata(const std::string& key) const;

  // Tensor `name` as a rank-`Rank` tensor of T. float and double read F64, F32, F16 and BF16
  // (F64 into float rounds to nearest); bool reads BOOL; an integer type reads the integer dtypes
  // all of whose values it holds. Throws ValueError("name") for an unknown name,
  // ShapeError(name) for another rank, ValueError(name) for a dtype T does not read, and
  // FormatError for BOOL bytes other than 0 and 1.
  template <typename T, int Rank>
  Tensor<T, Rank> read(const std::string& name) const;

  // Reads tensor `name` into `out` (a writable Tensor or TensorMap), which must have its shape
  // (else ShapeError("out")). Throws as read() does; `out` is written only when all checks pass.
  template <typename Out>
  void read_into(const std::string& name, Out&& out) const;

  // Decodes tensor `name`, of any shape, into the `count` elements at `target` in row-major order;
  // `count` must be its element count (else ShapeError("count")). Throws as read() does, except
  // that the rank is not checked; `target` is written only when all checks pass.
  template <typename T>
  void decode_into(const std::string& name, T* target, std::size_t count) const;

  // Tensor `name`'s data where it lies, undecoded. Throws ValueError("name") if there is none.
  TensorView view(const std::string& name) const;

 private:
  File() = default;

  static File parse_bytes(std::shared_ptr<const detail::FileBytes> bytes, std::string source_name);

  // info(name), having checked that it reads as a tensor of T.
  template <typename T>
  const TensorInfo& readable_info(const std::string& name) const;

  // info(name), having checked that it reads as a rank-`Rank` tensor of T.
  template <typename T, int Rank>
  const TensorInfo& readable_info(const std::string& name) const;

  const std::uint8_t* data_of(const TensorInfo& info) const {
    return bytes_->data() + header_.buffer_start + info.begin;
  }

  std::string described(const std::string& name) const {
    return "tensor " + detail::quoted(name) + " in " + detail::path_text(source_name_);
  }

  std::shared_ptr<const detail::FileBytes> bytes_;
  detail::Header header_;
  std::string source_name_;
};

}  // namespace mlstm::safetensors

// ---------------------------------------------------------------------------------------------
// Implementation.

namespace mlstm::safetensors {

inline File File::load(const std::string& path) {
  return parse_bytes(detail::FileBytes::open(path), path);
}

inline File File::parse(std::vector<std::uint8_t> bytes, std::string source_name) {
  return parse_bytes(detail::FileBytes::hold(std::move(bytes)), std::move(source_name));
}

inline File File::parse_bytes(std::shared_ptr<const detail::FileBytes> bytes,
                              std::string source_name) {
  File file;
  file.header_ = detail::parse_header(bytes->data(), bytes->size(), source_name);
  file.bytes_ = std::move(bytes);
  file.source_name_ = std::move(source_name);
  return file;
}

inline const TensorInfo& File::info(const std::string& name) const {
  const auto found = header_.tensors.find(name);
  if (found == header_.tensors.end()) {
    throw ValueError("name", "no tensor " + detail::quoted(name) + " in " +
                                 detail::path_text(source_name_) + "; it has " +
                                 std::to_string(header_.names.size()) +
                                 " tensors: " + detail::quoted_list(header_.names));
  }
  return found->second;
}

inline const std::string& File::metadata(const std::string& key) const {
  const auto found = header_.metadata.find(key);
  if (found == header_.metadata.end()) {
    std::vector<std::string> keys;
    for (const auto& entry : header_.metadata) keys.push_back(entry.first);
    throw ValueError("key", "no metadata " + detail::quoted(key) + " in " +
                                detail::path_text(source_name_) +
                                "; its metadata keys: " + detail::quoted_list(keys));
  }
  return found->second;
}

inline TensorView File::view(const std::string& name) const {
  const TensorInfo& found = info(name);
  return TensorView{data_of(found), static_cast<std::size_t>(found.end - found.begin), found.dtype,
                    found.shape};
}

template <typename T, int Rank>
const TensorInfo& File::readable_info(const std::string& name) const {
  const TensorInfo& found = info(name);
  if (found.shape.size() != static_cast<std::size_t>(Rank)) {
    throw ShapeError(name, described(name) + " has rank " + std::to_string(found.shape.size()) +
                               " with shape " + shape_string(found.shape) + "; expected rank " +
                               std::to_string(Rank));
  }
  return readable_info<T>(name);
}

template <typename T>
const TensorInfo& File::readable_info(const std::string& name) const {
  detail::require_element_type<T>();
  const TensorInfo& found = info(name);
  if (!detail::reads_as<T>(found.dtype)) {
    std::vector<std::string> readable;
    for (const detail::DTypeDescription& d : detail::dtype_table) {
      if (detail::reads_as<T>(d.dtype)) readable.push_back(d.name);
    }
    throw ValueError(name, described(name) + " has dtype " + dtype_name(found.dtype) +
                               ", which does not convert to " + detail::element_type_name<T>() +
                               " (that reads " + mlstm::detail::list_string(readable) + ")");
  }
  if (found.dtype == DType::BOOL) {
    const detail::HeaderFault fail(source_name_);
    const std::uint8_t* data = data_of(found);
    const std::size_t count = static_cast<std::size_t>(found.numel());
    for (std::size_t i = 0; i < count; ++i) {
      if (data[i] > 1) {
        fail("tensor " + detail::quoted(name) + ": BOOL element " + std::to_string(i) +
             " is the byte " + std::to_string(data[i]) + ", not 0 or 1");
      }
    }
  }
  return found;
}

template <typename T, int Rank>
Tensor<T, Rank> File::read(const std::string& name) const {
  const TensorInfo& found = readable_info<T, Rank>(name);
  std::array<Index, Rank> dims{};
  for (int axis = 0; axis < Rank; ++axis) dims[axis] = found.shape[axis];
  Tensor<T, Rank> result(dims);
  detail::decode_elements(found.dtype, data_of(found), static_cast<std::size_t>(found.numel()),
                          result.data());
  return result;
}

template <typename Out>
void File::read_into(const std::string& name, Out&& out) const {
  using X = std::remove_reference_t<Out>;
  mlstm::detail::require_argument_type<X>();
  static_assert(!std::is_const_v<std::remove_pointer_t<decltype(out.data())>>,
                "read_into writes into `out`: pass a Tensor or a TensorMap of non-const data");
  using T = mlstm::ScalarOf<X>;
  constexpr int Rank = mlstm::rank_of<X>;
  const TensorInfo& found = readable_info<T, Rank>(name);
  bool same_shape = true;
  for (int axis = 0; axis < Rank; ++axis)
    same_shape = same_shape && out.dimension(axis) == found.shape[axis];
  if (!same_shape) {
    throw ShapeError("out", described(name) + " has shape " + shape_string(found.shape) +
                                ", but `out` has shape " + mlstm::shape_string(out.dimensions()));
  }
  detail::decode_elements(found.dtype, data_of(found), static_cast<std::size_t>(found.numel()),
                          out.data());
}

template <typename T>
void File::decode_into(const std::string& name, T* target, std::size_t count) const {
  const TensorInfo& found = readable_info<T>(name);
  const auto numel = static_cast<std::size_t>(found.numel());
  if (count != numel) {
    throw ShapeError("count", described(name) + " has shape " + shape_string(found.shape) + " (" +
                                  std::to_string(numel) + " elements), but `count` is " +
                                  std::to_string(count));
  }
  detail::decode_elements(found.dtype, data_of(found), numel, target);
}

}  // namespace mlstm::safetensors
