// The element types of safetensors files (the dtype table) and their codecs: little-endian bytes
// of a dtype to and from C++ element types, F16 and BF16 rounding to nearest, ties to even.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <type_traits>

#include "mlstm/detail/assert.hpp"
#include "mlstm/detail/float16.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::safetensors {

// The element types mlstm reads and writes (the format also knows 8-bit floats, which a file
// may not use here).
enum class DType { F64, F32, F16, BF16, BOOL, U8, I8, I16, I32, I64, U16, U32, U64 };

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
  else
    return std::string(std::is_signed_v<T> ? "int" : "uint") + std::to_string(8 * sizeof(T)) + "_t";
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
    for (std::size_t i = 0; i < count; ++i)
      target[i] = static_cast<T>(decode_one(source + i * width));
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
      default: break;
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
        return each(1,
                    [](const std::uint8_t* p) { return Eigen::numext::bit_cast<std::int8_t>(*p); });
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
      default: break;
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
      default: break;
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

}  // namespace mlstm::safetensors
