// Reading and writing safetensors files, the format PyTorch state dicts are shared in.
//
// A file is an 8-byte little-endian length N, N bytes of UTF-8 JSON, then a data buffer:
//
//   {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...,
//    "__metadata__": {"format": "pt"}}
//
// Offsets are relative to the start of the buffer; data is little-endian and row-major; the
// tensors cover the buffer without gaps or overlaps. Loading checks the whole header against the
// buffer before anything can be read, so an untrusted or corrupt file yields a FormatError that
// names the file and the fault, never a read out of bounds.
//
//   auto file = mlstm::safetensors::File::load("model.safetensors");
//   auto w = file.read<float, 2>("w");           // F64, F32, F16 or BF16 data, as float
//   file.read_into("b", mlstm::TensorMap<float, 1>(bias, n));
//
//   mlstm::safetensors::Writer out;
//   out.add("w", w).add_converted("w_bf16", w, mlstm::safetensors::DType::BF16);
//   out.set_metadata("format", "pt");
//   out.save("copy.safetensors");                // a temporary file, renamed when complete
#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlstm/detail/assert.hpp"
#include "mlstm/detail/float16.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/io/file_bytes.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::safetensors {

// The element types mlstm reads and writes (the format also knows 8-bit floats, which a file
// may not use here).
enum class DType { F64, F32, F16, BF16, BOOL, U8, I8, I16, I32, I64, U16, U32, U64 };

// Headers larger than this are rejected as corrupt (the limit of the format's reference reader).
inline constexpr std::uint64_t max_header_bytes = 100'000'000;

}  // namespace mlstm::safetensors

namespace mlstm::detail {

enum class DTypeKind { floating, boolean, signed_integer, unsigned_integer };

struct DTypeDescription {
  safetensors::DType dtype;
  const char* name;
  std::size_t size;
  DTypeKind kind;
};

inline constexpr DTypeDescription dtype_table[] = {
    {safetensors::DType::F64, "F64", 8, DTypeKind::floating},
    {safetensors::DType::F32, "F32", 4, DTypeKind::floating},
    {safetensors::DType::F16, "F16", 2, DTypeKind::floating},
    {safetensors::DType::BF16, "BF16", 2, DTypeKind::floating},
    {safetensors::DType::BOOL, "BOOL", 1, DTypeKind::boolean},
    {safetensors::DType::U8, "U8", 1, DTypeKind::unsigned_integer},
    {safetensors::DType::I8, "I8", 1, DTypeKind::signed_integer},
    {safetensors::DType::I16, "I16", 2, DTypeKind::signed_integer},
    {safetensors::DType::I32, "I32", 4, DTypeKind::signed_integer},
    {safetensors::DType::I64, "I64", 8, DTypeKind::signed_integer},
    {safetensors::DType::U16, "U16", 2, DTypeKind::unsigned_integer},
    {safetensors::DType::U32, "U32", 4, DTypeKind::unsigned_integer},
    {safetensors::DType::U64, "U64", 8, DTypeKind::unsigned_integer},
};

constexpr bool dtype_table_in_enum_order() {
  for (std::size_t i = 0; i < std::size(dtype_table); ++i) {
    if (static_cast<std::size_t>(dtype_table[i].dtype) != i) return false;
  }
  return true;
}
static_assert(dtype_table_in_enum_order(), "dtype_table must list DType in declaration order");

inline const DTypeDescription& describe(safetensors::DType dtype) {
  return dtype_table[static_cast<std::size_t>(dtype)];
}

// The C++ element types the reader and writer accept.
template <typename T>
constexpr void require_element_type() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> ||
                    (std::is_integral_v<T> && sizeof(T) <= 8),
                "mlstm::safetensors: elements are float, double, bool or integers of 8 to 64 bits");
}

// The dtype Writer::add stores elements of type T as.
template <typename T>
constexpr safetensors::DType natural_dtype() {
  require_element_type<T>();
  using safetensors::DType;
  if constexpr (std::is_same_v<T, double>) return DType::F64;
  else if constexpr (std::is_same_v<T, float>) return DType::F32;
  else if constexpr (std::is_same_v<T, bool>) return DType::BOOL;
  else if constexpr (std::is_signed_v<T>) {
    constexpr DType by_size[] = {DType::I8, DType::I16, DType::I32, DType::I64};
    return by_size[sizeof(T) == 1 ? 0 : sizeof(T) == 2 ? 1 : sizeof(T) == 4 ? 2 : 3];
  } else {
    constexpr DType by_size[] = {DType::U8, DType::U16, DType::U32, DType::U64};
    return by_size[sizeof(T) == 1 ? 0 : sizeof(T) == 2 ? 1 : sizeof(T) == 4 ? 2 : 3];
  }
}

// Whether File::read<T> accepts data of `dtype`: any float dtype for float and double (rounding
// to float if needed), BOOL for bool, and for an integer T the integer dtypes all of whose values
// T holds.
template <typename T>
bool reads_as(safetensors::DType dtype) {
  require_element_type<T>();
  const DTypeDescription& d = describe(dtype);
  if constexpr (std::is_floating_point_v<T>) {
    return d.kind == DTypeKind::floating;
  } else if constexpr (std::is_same_v<T, bool>) {
    return d.kind == DTypeKind::boolean;
  } else if constexpr (std::is_signed_v<T>) {
    return (d.kind == DTypeKind::signed_integer && sizeof(T) >= d.size) ||
           (d.kind == DTypeKind::unsigned_integer && sizeof(T) > d.size);
  } else {
    return d.kind == DTypeKind::unsigned_integer && sizeof(T) >= d.size;
  }
}

template <typename T>
std::string element_type_name() {
  if constexpr (std::is_same_v<T, float>) return "float";
  else if constexpr (std::is_same_v<T, double>) return "double";
  else if constexpr (std::is_same_v<T, bool>) return "bool";
  else return std::string(std::is_signed_v<T> ? "int" : "uint") + std::to_string(8 * sizeof(T)) + "_t";
}

template <typename Unsigned>
Unsigned load_little_endian(const std::uint8_t* bytes) {
  Unsigned value = 0;
  for (std::size_t i = 0; i < sizeof(Unsigned); ++i) {
    value = static_cast<Unsigned>(value | (static_cast<Unsigned>(bytes[i]) << (8 * i)));
  }
  return value;
}

template <typename Unsigned>
void store_little_endian(Unsigned value, std::uint8_t* bytes) {
  for (std::size_t i = 0; i < sizeof(Unsigned); ++i) {
    bytes[i] = static_cast<std::uint8_t>(value >> (8 * i));
  }
}

// Converts `count` elements of `dtype` at `source` to T. The caller has checked reads_as<T>.
template <typename T>
void decode_elements(safetensors::DType dtype, const std::uint8_t* source, std::size_t count,
                     T* target) {
  using safetensors::DType;
  const auto each = [&](std::size_t width, auto decode_one) {
    for (std::size_t i = 0; i < count; ++i) target[i] = static_cast<T>(decode_one(source + i * width));
  };
  if constexpr (std::is_floating_point_v<T>) {
    switch (dtype) {
      case DType::F64:
        return each(8, [](const std::uint8_t* p) {
          return Eigen::numext::bit_cast<double>(load_little_endian<std::uint64_t>(p));
        });
      case DType::F32:
        return each(4, [](const std::uint8_t* p) {
          return Eigen::numext::bit_cast<float>(load_little_endian<std::uint32_t>(p));
        });
      case DType::F16:
        return each(2, [](const std::uint8_t* p) {
          return small_float_to_float<HalfLayout>(load_little_endian<std::uint16_t>(p));
        });
      case DType::BF16:
        return each(2, [](const std::uint8_t* p) {
          return small_float_to_float<BFloat16Layout>(load_little_endian<std::uint16_t>(p));
        });
      default:
        break;
    }
  } else if constexpr (std::is_same_v<T, bool>) {
    if (dtype == DType::BOOL) return each(1, [](const std::uint8_t* p) { return *p != 0; });
  } else {
    switch (dtype) {
      case DType::U8: return each(1, [](const std::uint8_t* p) { return *p; });
      case DType::U16: return each(2, load_little_endian<std::uint16_t>);
      case DType::U32: return each(4, load_little_endian<std::uint32_t>);
      case DType::U64: return each(8, load_little_endian<std::uint64_t>);
      case DType::I8:
        return each(1, [](const std::uint8_t* p) { return Eigen::numext::bit_cast<std::int8_t>(*p); });
      case DType::I16:
        return each(2, [](const std::uint8_t* p) {
          return Eigen::numext::bit_cast<std::int16_t>(load_little_endian<std::uint16_t>(p));
        });
      case DType::I32:
        return each(4, [](const std::uint8_t* p) {
          return Eigen::numext::bit_cast<std::int32_t>(load_little_endian<std::uint32_t>(p));
        });
      case DType::I64:
        return each(8, [](const std::uint8_t* p) {
          return Eigen::numext::bit_cast<std::int64_t>(load_little_endian<std::uint64_t>(p));
        });
      default:
        break;
    }
  }
  MLSTM_ASSERT(false, "decode_elements: dtype does not convert to the element type");
}

// Converts `count` elements of T at `source` to `dtype` at `target`: float and double to any
// float dtype (rounding to nearest, ties to even), other types to their natural_dtype.
template <typename T>
void encode_elements(const T* source, std::size_t count, safetensors::DType dtype,
                     std::uint8_t* target) {
  using safetensors::DType;
  const std::size_t width = describe(dtype).size;
  const auto each = [&](auto encode_one) {
    for (std::size_t i = 0; i < count; ++i) encode_one(source[i], target + i * width);
  };
  if constexpr (std::is_floating_point_v<T>) {
    switch (dtype) {
      case DType::F64:
        return each([](T x, std::uint8_t* p) {
          store_little_endian(Eigen::numext::bit_cast<std::uint64_t>(static_cast<double>(x)), p);
        });
      case DType::F32:
        return each([](T x, std::uint8_t* p) {
          store_little_endian(Eigen::numext::bit_cast<std::uint32_t>(static_cast<float>(x)), p);
        });
      case DType::F16:
        return each([](T x, std::uint8_t* p) {
          store_little_endian(small_float_from_double<HalfLayout>(x), p);
        });
      case DType::BF16:
        return each([](T x, std::uint8_t* p) {
          store_little_endian(small_float_from_double<BFloat16Layout>(x), p);
        });
      default:
        break;
    }
  } else if constexpr (std::is_same_v<T, bool>) {
    if (dtype == DType::BOOL) return each([](bool x, std::uint8_t* p) { *p = x ? 1 : 0; });
  } else {
    if (dtype == natural_dtype<T>()) {
      return each([](T x, std::uint8_t* p) {
        store_little_endian(static_cast<std::make_unsigned_t<T>>(x), p);
      });
    }
  }
  MLSTM_ASSERT(false, "encode_elements: the element type does not convert to dtype");
}

// A JSON value as text for messages: ASCII (other characters escaped), cut to a readable length.
inline std::string json_text(const nlohmann::json& value) {
  constexpr std::size_t max_shown = 80;
  const std::string text = value.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  return text.size() > max_shown ? text.substr(0, max_shown) + "..." : text;
}

// `text` as a JSON string literal, for messages.
inline std::string quoted(const std::string& text) { return json_text(nlohmann::json(text)); }

// Up to `limit` quoted names, then how many more.
inline std::string quoted_list(const std::vector<std::string>& names, std::size_t limit = 5) {
  if (names.empty()) return "none";
  std::string text;
  for (std::size_t i = 0; i < names.size() && i < limit; ++i) text += (i > 0 ? ", " : "") + quoted(names[i]);
  if (names.size() > limit) text += " and " + std::to_string(names.size() - limit) + " more";
  return text;
}

inline std::string shape_text(const std::vector<Index>& shape) {
  return shape_string(shape, static_cast<int>(shape.size()));
}

// A JSON value for messages: objects by kind, anything else as written.
inline std::string describe_json(const nlohmann::json& value) {
  return value.is_object() ? "an object" : json_text(value);
}

// Throws FormatError naming the file; every header fault goes through here.
class HeaderFault {
 public:
  explicit HeaderFault(const std::string& source) : source_(source) {}
  [[noreturn]] void operator()(const std::string& what) const {
    throw FormatError("safetensors file " + path_text(source_) + ": " + what);
  }

 private:
  const std::string& source_;
};

// A safetensors header nests three deep: {name: {"shape": [dims]}}.
inline constexpr int max_header_depth = 2;

// The header's JSON, refusing duplicate keys (which a JSON parser would silently resolve) and
// nesting deeper than a header's.
inline nlohmann::json parse_header_json(const char* text, std::size_t length,
                                        const HeaderFault& fail) {
  using Event = nlohmann::json::parse_event_t;
  std::vector<std::set<std::string>> keys_of_open_objects;
  const auto guard = [&](int depth, Event event, nlohmann::json& parsed) {
    if ((event == Event::object_start || event == Event::array_start) && depth > max_header_depth) {
      fail("the header nests deeper than a safetensors header does");
    }
    if (event == Event::object_start) {
      keys_of_open_objects.emplace_back();
    } else if (event == Event::object_end) {
      keys_of_open_objects.pop_back();
    } else if (event == Event::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!keys_of_open_objects.back().insert(key).second) {
        fail("the header has the key " + quoted(key) + " twice" +
             (depth == 1 ? " (two tensors of one name)" : ""));
      }
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text, text + length, guard);
  } catch (const nlohmann::json::exception& error) {
    std::string reason = error.what();
    if (reason.size() > 200) reason = reason.substr(0, 200) + "...";
    fail("the header is not valid JSON: " + reason);
  }
}

inline std::map<std::string, std::string> parse_metadata(const nlohmann::json& value,
                                                         const HeaderFault& fail) {
  if (!value.is_object()) {
    fail("\"__metadata__\" must be an object of strings, got " + describe_json(value));
  }
  std::map<std::string, std::string> metadata;
  for (const auto& item : value.items()) {
    if (!item.value().is_string()) {
      fail("\"__metadata__\" value of " + quoted(item.key()) + " must be a string, got " +
           describe_json(item.value()));
    }
    metadata.emplace(item.key(), item.value().get<std::string>());
  }
  return metadata;
}

}  // namespace mlstm::detail

namespace mlstm::safetensors {

inline const char* dtype_name(DType dtype) { return detail::describe(dtype).name; }

// Bytes per element.
inline std::size_t dtype_size(DType dtype) { return detail::describe(dtype).size; }

// The DType spelled `name` in a header ("F32", ...), if mlstm knows it.
inline std::optional<DType> dtype_from_name(const std::string& name) {
  for (const detail::DTypeDescription& d : detail::dtype_table) {
    if (name == d.name) return d.dtype;
  }
  return std::nullopt;
}

// One tensor of a file: its dtype, shape, and byte range [begin, end) in the data buffer.
struct TensorInfo {
  DType dtype = DType::F32;
  std::vector<Index> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;

  // Number of elements: the product of the shape (1 for a scalar). A File's tensors have shapes
  // whose every partial product fits in Index (checked when the header is parsed).
  Index numel() const {
    Index count = 1;
    for (Index dim : shape) count *= dim;
    return count;
  }
};

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
  // std::system_error if it cannot be opened or read, FormatError if it is not a valid
  // safetensors file.
  static File load(const std::string& path);

  // The file whose bytes are `bytes`; `source_name` stands for it in messages.
  static File parse(std::vector<std::uint8_t> bytes, std::string source_name);

  // Whether the data is mapped from the file rather than held in memory.
  bool mapped() const noexcept { return bytes_->mapped(); }

  const std::string& source_name() const noexcept { return source_name_; }

  // Tensor names in the order of their data in the file.
  const std::vector<std::string>& names() const noexcept { return names_; }

  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }

  // Throws ValueError("name") if there is no such tensor.
  const TensorInfo& info(const std::string& name) const;

  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

  // The "__metadata__" value of `key`; throws ValueError("key") if there is none.
  const std::string& metadata(const std::string& key) const;

  // Tensor `name` as a rank-`Rank` tensor of T. float and double read F64, F32, F16 and BF16
  // (F64 into float rounds to nearest); bool reads BOOL; an integer type reads the integer dtypes
  // all of whose values it holds. Throws ValueError("name") for an unknown name,
  // ShapeError("Rank") for another rank, ValueError("T") for a dtype T does not read, and
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
    return bytes_->data() + buffer_start_ + info.begin;
  }

  std::string described(const std::string& name) const {
    return "tensor " + detail::quoted(name) + " in " + detail::path_text(source_name_);
  }

  std::shared_ptr<const detail::FileBytes> bytes_;
  std::size_t buffer_start_ = 0;
  std::string source_name_;
  std::map<std::string, TensorInfo> tensors_;
  std::vector<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

// Collects named tensors and metadata, then writes them as one safetensors file: tensors in the
// order added, without gaps, after a JSON header padded with spaces to a multiple of 8 bytes.
// Tensors are copied (encoded) when added.
class Writer {
 public:
  // Adds `tensor` (a Tensor or TensorMap of any rank) under `name`, stored as its own type: F64
  // for double, F32 for float, BOOL for bool, I8..I64 and U8..U64 for integers. Throws
  // ValueError("name") for a name already added, "__metadata__", or invalid UTF-8.
  template <typename X>
  Writer& add(const std::string& name, const X& tensor) {
    using T = mlstm::detail::scalar_of<X>;
    return add_as(name, tensor, mlstm::detail::natural_dtype<T>());
  }

  // Adds a float or double `tensor` stored as `dtype` (F64, F32, F16 or BF16), rounding to
  // nearest with ties to even; magnitudes beyond the dtype's range become infinities. Throws
  // ValueError("dtype") for another dtype, and as add() does.
  template <typename X>
  Writer& add_converted(const std::string& name, const X& tensor, DType dtype) {
    using T = mlstm::detail::scalar_of<X>;
    static_assert(std::is_floating_point_v<T>, "add_converted converts float or double tensors");
    if (detail::describe(dtype).kind != detail::DTypeKind::floating) {
      throw ValueError("dtype", std::string("expected F64, F32, F16 or BF16, got ") +
                                    dtype_name(dtype));
    }
    return add_as(name, tensor, dtype);
  }

  // Sets "__metadata__"[key] = value. Throws ValueError("key"/"value") for invalid UTF-8.
  Writer& set_metadata(const std::string& key, const std::string& value);

  // The whole file.
  std::vector<std::uint8_t> serialize() const;

  // Writes the file to `path` through a temporary file beside it, renamed over `path` only when
  // complete, so that a failure leaves any previous file as it was. Throws std::system_error.
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

namespace mlstm::detail {

// One header entry, checked on its own and against the size of the data buffer.
inline safetensors::TensorInfo parse_tensor_entry(const std::string& name,
                                                  const nlohmann::json& entry,
                                                  std::uint64_t buffer_size,
                                                  const HeaderFault& header_fault) {
  const std::string tensor = "tensor " + quoted(name) + ": ";
  const auto fail = [&](const std::string& what) { header_fault(tensor + what); };
  if (!entry.is_object()) fail("entry must be an object, got " + describe_json(entry));
  const auto field = [&](const char* key) -> const nlohmann::json& {
    const auto found = entry.find(key);
    if (found == entry.end()) fail(std::string("missing field \"") + key + "\"");
    return *found;
  };

  safetensors::TensorInfo info;
  const nlohmann::json& dtype = field("dtype");
  if (!dtype.is_string()) fail("field \"dtype\" must be a string, got " + describe_json(dtype));
  const std::optional<safetensors::DType> known = safetensors::dtype_from_name(dtype.get<std::string>());
  if (!known) fail("unsupported dtype " + describe_json(dtype));
  info.dtype = *known;

  const nlohmann::json& shape = field("shape");
  if (!shape.is_array()) fail("field \"shape\" must be an array, got " + describe_json(shape));
  for (const nlohmann::json& dim : shape) {
    if (dim.is_number_integer() && !dim.is_number_unsigned()) {
      fail("shape has the negative dimension " + dim.dump());
    }
    if (!dim.is_number_unsigned()) fail("shape entries must be integers, got " + describe_json(dim));
    if (dim.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<Index>::max())) {
      fail("shape has the dimension " + dim.dump() + ", beyond 2^63 - 1");
    }
    info.shape.push_back(static_cast<Index>(dim.get<std::uint64_t>()));
  }
  // The byte size of the nonzero dimensions must fit in Index, even when a zero dimension makes
  // the tensor empty: then every partial product of the shape (an element count, a stride) fits.
  const std::uint64_t limit = static_cast<std::uint64_t>(std::numeric_limits<Index>::max());
  const bool empty = std::find(info.shape.begin(), info.shape.end(), Index(0)) != info.shape.end();
  std::uint64_t nonzero_byte_size = describe(info.dtype).size;
  for (Index dim : info.shape) {
    const auto d = static_cast<std::uint64_t>(dim);
    if (d == 0) continue;
    if (nonzero_byte_size > limit / d) {
      fail("shape " + shape_text(info.shape) + " of " + describe(info.dtype).name + " overflows: " +
           (empty ? "the byte size of its nonzero dimensions" : "its byte size") +
           " is beyond 2^63 - 1");
    }
    nonzero_byte_size *= d;
  }
  const std::uint64_t byte_size = empty ? 0 : nonzero_byte_size;

  const nlohmann::json& offsets = field("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    fail("field \"data_offsets\" must be [begin, end] with non-negative integers, got " +
         describe_json(offsets));
  }
  info.begin = offsets[0].get<std::uint64_t>();
  info.end = offsets[1].get<std::uint64_t>();
  const std::string range = "data_offsets [" + std::to_string(info.begin) + ", " +
                            std::to_string(info.end) + "]";
  if (info.begin > info.end) fail(range + " begin after they end");
  if (info.end - info.begin != byte_size) {
    fail(range + " span " + std::to_string(info.end - info.begin) + " bytes, but " +
         describe(info.dtype).name + " of shape " + shape_text(info.shape) + " needs " +
         std::to_string(byte_size));
  }
  if (info.end > buffer_size) {
    fail(range + " reach past the end of the " + std::to_string(buffer_size) +
         "-byte data buffer");
  }
  return info;
}

// The tensors must tile the data buffer: sorted by offset, each begins where the previous ends,
// the first at 0 and the last ending at the buffer's end.
inline void check_tensors_tile_buffer(const std::map<std::string, safetensors::TensorInfo>& tensors,
                                      std::uint64_t buffer_size, const HeaderFault& fail,
                                      std::vector<std::string>& names_in_order) {
  using Item = std::pair<const std::string, safetensors::TensorInfo>;
  std::vector<const Item*> order;
  for (const Item& item : tensors) order.push_back(&item);
  std::sort(order.begin(), order.end(), [](const Item* a, const Item* b) {
    return std::tie(a->second.begin, a->second.end, a->first) <
           std::tie(b->second.begin, b->second.end, b->first);
  });
  const auto bytes = [](std::uint64_t begin, std::uint64_t end) {
    return "bytes [" + std::to_string(begin) + ", " + std::to_string(end) + ")";
  };
  constexpr const char* rule = "; tensors must cover the data buffer contiguously";
  std::uint64_t covered = 0;
  const std::string* previous = nullptr;
  for (const Item* item : order) {
    const safetensors::TensorInfo& info = item->second;
    if (info.begin < covered) {
      fail("tensor " + quoted(item->first) + " (" + bytes(info.begin, info.end) +
           ") overlaps tensor " + quoted(*previous) + ", which ends at byte " +
           std::to_string(covered));
    }
    if (info.begin > covered) {
      fail(bytes(covered, info.begin) + " of the data buffer, before tensor " +
           quoted(item->first) + ", belong to no tensor" + rule);
    }
    covered = info.end;
    previous = &item->first;
    names_in_order.push_back(item->first);
  }
  if (covered != buffer_size) {
    fail(bytes(covered, buffer_size) + " at the end of the data buffer belong to no tensor" + rule);
  }
}

// Writes the concatenated `pieces` to `path`: first to a new temporary file beside it, then
// renamed over it. On any failure the temporary file is removed and `path` is untouched.
inline void write_file_atomically(
    const std::string& path,
    const std::vector<std::pair<const std::uint8_t*, std::size_t>>& pieces) {
  std::random_device entropy;
  std::string temporary;
  FileHandle file;
  for (int attempt = 0; attempt < 100 && !file; ++attempt) {
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, ".tmp-%08x", static_cast<unsigned>(entropy()));
    temporary = path + suffix;
    file.reset(std::fopen(temporary.c_str(), "wbx"));  // "x": fail if it exists
    if (!file && errno != EEXIST) throw_io_error(errno, "cannot create " + path_text(temporary));
  }
  if (!file) throw_io_error(EEXIST, "cannot create a temporary file beside " + path_text(path));

  const auto give_up = [&](int error, const std::string& what) {
    file.reset();
    std::remove(temporary.c_str());
    throw_io_error(error, what);
  };
  for (const auto& [data, size] : pieces) {
    if (size > 0 && std::fwrite(data, 1, size, file.get()) != size) {
      give_up(errno, "cannot write " + path_text(temporary));
    }
  }
  if (std::fclose(file.release()) != 0) give_up(errno, "cannot write " + path_text(temporary));
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) give_up(error.value(), "cannot rename " + path_text(temporary) + " to " + path_text(path));
}

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

inline File File::load(const std::string& path) {
  return parse_bytes(detail::FileBytes::open(path), path);
}

inline File File::parse(std::vector<std::uint8_t> bytes, std::string source_name) {
  return parse_bytes(detail::FileBytes::hold(std::move(bytes)), std::move(source_name));
}

inline File File::parse_bytes(std::shared_ptr<const detail::FileBytes> bytes,
                              std::string source_name) {
  File file;
  file.source_name_ = std::move(source_name);
  file.bytes_ = std::move(bytes);
  const detail::HeaderFault fail(file.source_name_);
  const std::size_t size = file.bytes_->size();
  if (size < 8) {
    fail("the file is " + std::to_string(size) +
         " bytes long, shorter than the 8-byte header length");
  }
  const auto header_length = detail::load_little_endian<std::uint64_t>(file.bytes_->data());
  const std::string header_length_text = "header length " + std::to_string(header_length);
  if (header_length > max_header_bytes) {
    fail(header_length_text + " is absurd (the limit is " + std::to_string(max_header_bytes) +
         " bytes): not a safetensors file, or a corrupt one");
  }
  if (header_length > size - 8) {
    fail(header_length_text + " exceeds the " + std::to_string(size - 8) +
         " bytes after the length field");
  }
  file.buffer_start_ = static_cast<std::size_t>(8 + header_length);
  const std::uint64_t buffer_size = size - file.buffer_start_;

  const nlohmann::json header = detail::parse_header_json(
      reinterpret_cast<const char*>(file.bytes_->data() + 8), static_cast<std::size_t>(header_length),
      fail);
  if (!header.is_object()) fail("the header must be a JSON object, got " + detail::describe_json(header));
  for (const auto& item : header.items()) {
    if (item.key() == "__metadata__") {
      file.metadata_ = detail::parse_metadata(item.value(), fail);
    } else {
      file.tensors_.emplace(item.key(),
                            detail::parse_tensor_entry(item.key(), item.value(), buffer_size, fail));
    }
  }
  detail::check_tensors_tile_buffer(file.tensors_, buffer_size, fail, file.names_);
  return file;
}

inline const TensorInfo& File::info(const std::string& name) const {
  const auto found = tensors_.find(name);
  if (found == tensors_.end()) {
    throw ValueError("name", "no tensor " + detail::quoted(name) + " in " +
                                 detail::path_text(source_name_) + "; it has " +
                                 std::to_string(names_.size()) +
                                 " tensors: " + detail::quoted_list(names_));
  }
  return found->second;
}

inline const std::string& File::metadata(const std::string& key) const {
  const auto found = metadata_.find(key);
  if (found == metadata_.end()) {
    std::vector<std::string> keys;
    for (const auto& entry : metadata_) keys.push_back(entry.first);
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
    throw ShapeError("Rank", described(name) + " has rank " + std::to_string(found.shape.size()) +
                                 " with shape " + detail::shape_text(found.shape) +
                                 "; expected rank " + std::to_string(Rank));
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
    std::string list;
    for (std::size_t i = 0; i < readable.size(); ++i) list += (i > 0 ? ", " : "") + readable[i];
    throw ValueError("T", described(name) + " has dtype " + dtype_name(found.dtype) +
                              ", which does not convert to " + detail::element_type_name<T>() +
                              " (that reads " + list + ")");
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
  using T = mlstm::detail::scalar_of<X>;
  constexpr int Rank = mlstm::detail::traits_of<X>::rank;
  const TensorInfo& found = readable_info<T, Rank>(name);
  bool same_shape = true;
  for (int axis = 0; axis < Rank; ++axis) same_shape = same_shape && out.dimension(axis) == found.shape[axis];
  if (!same_shape) {
    throw ShapeError("out", described(name) + " has shape " + detail::shape_text(found.shape) +
                                ", but `out` has shape " +
                                mlstm::detail::shape_string(out.dimensions(), Rank));
  }
  detail::decode_elements(found.dtype, data_of(found), static_cast<std::size_t>(found.numel()),
                          out.data());
}

template <typename T>
void File::decode_into(const std::string& name, T* target, std::size_t count) const {
  const TensorInfo& found = readable_info<T>(name);
  const auto numel = static_cast<std::size_t>(found.numel());
  if (count != numel) {
    throw ShapeError("count", described(name) + " has shape " + detail::shape_text(found.shape) +
                                  " (" + std::to_string(numel) + " elements), but `count` is " +
                                  std::to_string(count));
  }
  detail::decode_elements(found.dtype, data_of(found), numel, target);
}

template <typename X>
Writer& Writer::add_as(const std::string& name, const X& tensor, DType dtype) {
  mlstm::detail::require_argument_type<X>();
  if (name == "__metadata__") throw ValueError("name", "\"__metadata__\" is reserved for metadata");
  if (names_.count(name) != 0) {
    throw ValueError("name", "a tensor named " + detail::quoted(name) + " was already added");
  }
  detail::require_utf8(name, "name");
  constexpr int rank = mlstm::detail::traits_of<X>::rank;
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
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  std::uint64_t offset = 0;
  for (const Entry& entry : entries_) {
    nlohmann::ordered_json description;
    description["dtype"] = dtype_name(entry.dtype);
    description["shape"] = entry.shape;
    description["data_offsets"] = {offset, offset + entry.data.size()};
    header[entry.name] = std::move(description);
    offset += entry.data.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<std::uint8_t> bytes(8 + text.size());
  detail::store_little_endian(static_cast<std::uint64_t>(text.size()), bytes.data());
  std::copy(text.begin(), text.end(), bytes.begin() + 8);
  return bytes;
}

inline std::vector<std::uint8_t> Writer::serialize() const {
  std::vector<std::uint8_t> bytes = header_bytes();
  for (const Entry& entry : entries_) bytes.insert(bytes.end(), entry.data.begin(), entry.data.end());
  return bytes;
}

inline void Writer::save(const std::string& path) const {
  const std::vector<std::uint8_t> header = header_bytes();
  std::vector<std::pair<const std::uint8_t*, std::size_t>> pieces{{header.data(), header.size()}};
  for (const Entry& entry : entries_) pieces.emplace_back(entry.data.data(), entry.data.size());
  detail::write_file_atomically(path, pieces);
}

}  // namespace mlstm::safetensors
