// Writing safetensors files: Writer collects named tensors (encoding each to its dtype when
// added) and metadata, then writes one file atomically.
//
//   mlstm::safetensors::Writer out;
//   out.add("w", w).add_converted("w_bf16", w, mlstm::safetensors::DType::BF16);
//   out.set_metadata("format", "pt");
//   out.save("copy.safetensors");                // a temporary file, renamed when complete
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlstm/errors.hpp"
#include "mlstm/io/detail/atomic_write.hpp"
#include "mlstm/io/detail/json_text.hpp"
#include "mlstm/io/safetensors_dtype.hpp"
#include "mlstm/io/safetensors_header.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::detail {

// Throws ValueError(argument) unless `text` is valid UTF-8 (JSON strings must be).
inline void require_utf8(const std::string& text, const char* argument) {
  try {
    (void)nlohmann::json(text).dump();
  } catch (const nlohmann::json::type_error&) {
    throw ValueError(argument, quoted(text) + " is not valid UTF-8");
  }
}

}  // namespace mlstm::detail

namespace mlstm::safetensors {

// Collects named tensors and metadata, then writes them as one safetensors file: tensors in the
// order added, without gaps, after a JSON header padded with spaces to a multiple of 8 bytes.
// Tensors are copied (encoded) when added.
class Writer {
 public:
  // Adds `tensor` (a Tensor or TensorMap of any rank) under `name`, stored as its own type: F64
  // for double, F32 for float, BOOL for bool, I8..I64 and U8..U64 for integers. Throws
  // ValueError("name") for a name already added, "__metadata__", invalid UTF-8, or a tensor past
  // max_tensor_count.
  template <typename X>
  Writer& add(const std::string& name, const X& tensor) {
    using T = mlstm::ScalarOf<X>;
    return add_as(name, tensor, mlstm::detail::natural_dtype<T>());
  }

  // Adds a float or double `tensor` stored as `dtype` (F64, F32, F16 or BF16), rounding to
  // nearest with ties to even; magnitudes beyond the dtype's range become infinities. Throws
  // ValueError("dtype") for another dtype, and as add() does.
  template <typename X>
  Writer& add_converted(const std::string& name, const X& tensor, DType dtype) {
    using T = mlstm::ScalarOf<X>;
    static_assert(std::is_floating_point_v<T>, "add_converted converts float or double tensors");
    if (detail::describe(dtype).kind != detail::DTypeKind::floating) {
      throw ValueError("dtype",
                       std::string("expected F64, F32, F16 or BF16, got ") + dtype_name(dtype));
    }
    return add_as(name, tensor, dtype);
  }

  // Sets "__metadata__"[key] = value. Throws ValueError("key"/"value") for invalid UTF-8.
  Writer& set_metadata(const std::string& key, const std::string& value);

  // The whole file.
  std::vector<std::uint8_t> serialize() const;

  // Writes the file to `path` through a temporary file beside it, renamed over `path` only when
  // complete, so that a failure leaves any previous file as it was. Throws IoError.
  void save(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<Index> shape;
    std::vector<std::uint8_t> data;
  };

  template <typename X>
  Writer& add_as(const std::string& name, const X& tensor, DType dtype);

  // The length field and the padded header.
  std::vector<std::uint8_t> header_bytes() const;

  std::vector<Entry> entries_;
  std::set<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace mlstm::safetensors

// ---------------------------------------------------------------------------------------------
// Implementation.

namespace mlstm::safetensors {

template <typename X>
Writer& Writer::add_as(const std::string& name, const X& tensor, DType dtype) {
  mlstm::detail::require_argument_type<X>();
  if (name == "__metadata__") throw ValueError("name", "\"__metadata__\" is reserved for metadata");
  if (names_.count(name) != 0) {
    throw ValueError("name", "a tensor named " + detail::quoted(name) + " was already added");
  }
  detail::require_utf8(name, "name");
  if (entries_.size() == max_tensor_count) {
    throw ValueError("name", "cannot add " + detail::quoted(name) + ": a file holds at most " +
                                 std::to_string(max_tensor_count) + " tensors");
  }
  constexpr int rank = mlstm::rank_of<X>;
  Entry entry{name, dtype, std::vector<Index>(rank), {}};
  for (int axis = 0; axis < rank; ++axis) entry.shape[axis] = tensor.dimension(axis);
  const auto count = static_cast<std::size_t>(tensor.size());
  entry.data.resize(count * dtype_size(dtype));
  detail::encode_elements(tensor.data(), count, dtype, entry.data.data());
  entries_.push_back(std::move(entry));
  names_.insert(name);
  return *this;
}

inline Writer& Writer::set_metadata(const std::string& key, const std::string& value) {
  detail::require_utf8(key, "key");
  detail::require_utf8(value, "value");
  metadata_[key] = value;
  return *this;
}

inline std::vector<std::uint8_t> Writer::header_bytes() const {
  // Written entry by entry: an ordered JSON object finds keys by linear search.
  std::string text = "{";
  if (!metadata_.empty()) text += "\"__metadata__\":" + nlohmann::json(metadata_).dump();
  std::uint64_t offset = 0;
  for (const Entry& entry : entries_) {
    nlohmann::ordered_json description;
    description["dtype"] = dtype_name(entry.dtype);
    description["shape"] = entry.shape;
    description["data_offsets"] = {offset, offset + entry.data.size()};
    text +=
        (text.size() > 1 ? "," : "") + nlohmann::json(entry.name).dump() + ":" + description.dump();
    offset += entry.data.size();
  }
  text += "}";
  text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<std::uint8_t> bytes(8 + text.size());
  detail::store_little_endian(static_cast<std::uint64_t>(text.size()), bytes.data());
  std::copy(text.begin(), text.end(), bytes.begin() + 8);
  return bytes;
}

inline std::vector<std::uint8_t> Writer::serialize() const {
  std::vector<std::uint8_t> bytes = header_bytes();
  for (const Entry& entry : entries_)
    bytes.insert(bytes.end(), entry.data.begin(), entry.data.end());
  return bytes;
}

inline void Writer::save(const std::string& path) const {
  const std::vector<std::uint8_t> header = header_bytes();
  std::vector<std::pair<const std::uint8_t*, std::size_t>> pieces{{header.data(), header.size()}};
  for (const Entry& entry : entries_) pieces.emplace_back(entry.data.data(), entry.data.size());
  detail::write_file_atomically(path, pieces);
}

}  // namespace mlstm::safetensors
