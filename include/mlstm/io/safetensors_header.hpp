// The header of a safetensors file: an 8-byte little-endian length N, then N bytes of JSON
//
//   {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...,
//    "__metadata__": {"format": "pt"}}
//
// whose offsets are relative to the data buffer after it, and whose tensors must cover that
// buffer without gaps or overlaps. Parsing validates all of it against the buffer's size and the
// limits below, in time and memory proportional to the header: each entry is checked, and its
// JSON freed, as soon as it has been read.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlstm/errors.hpp"
#include "mlstm/io/detail/file_bytes.hpp"
#include "mlstm/io/detail/json_text.hpp"
#include "mlstm/io/safetensors_dtype.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm::safetensors {

// Limits on a header. A file past any of them is rejected as corrupt (FormatError) while its
// header is read, before anything it declares is allocated.
//
// Header length: the limit of the format's reference reader.
inline constexpr std::uint64_t max_header_bytes = 100'000'000;
// Tensors in one file.
inline constexpr std::size_t max_tensor_count = 100'000;
// Dimensions of one tensor (the length of any array in a header).
inline constexpr std::size_t max_tensor_rank = 64;
// Entries of "__metadata__" (and fields of any one tensor entry).
inline constexpr std::size_t max_metadata_entries = 100'000;

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

}  // namespace mlstm::safetensors

namespace mlstm::detail {

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
  const std::optional<safetensors::DType> known =
      safetensors::dtype_from_name(dtype.get<std::string>());
  if (!known) fail("unsupported dtype " + describe_json(dtype));
  info.dtype = *known;

  const nlohmann::json& shape = field("shape");
  if (!shape.is_array()) fail("field \"shape\" must be an array, got " + describe_json(shape));
  for (const nlohmann::json& dim : shape) {
    if (dim.is_number_integer() && !dim.is_number_unsigned()) {
      fail("shape has the negative dimension " + dim.dump());
    }
    if (!dim.is_number_unsigned())
      fail("shape entries must be integers, got " + describe_json(dim));
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
      fail("shape " + shape_string(info.shape) + " of " + describe(info.dtype).name +
           " overflows: " + (empty ? "the byte size of its nonzero dimensions" : "its byte size") +
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
  const std::string range =
      "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) + "]";
  if (info.begin > info.end) fail(range + " begin after they end");
  if (info.end - info.begin != byte_size) {
    fail(range + " span " + std::to_string(info.end - info.begin) + " bytes, but " +
         describe(info.dtype).name + " of shape " + shape_string(info.shape) + " needs " +
         std::to_string(byte_size));
  }
  if (info.end > buffer_size) {
    fail(range + " reach past the end of the " + std::to_string(buffer_size) + "-byte data buffer");
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

// A header's contents, validated.
struct Header {
  std::map<std::string, safetensors::TensorInfo> tensors;
  std::vector<std::string> names;  // in the order of their data
  std::map<std::string, std::string> metadata;
  std::size_t buffer_start = 0;  // offset of the data buffer in the file
};

// Reads a header's JSON as the parser goes: each top-level entry is checked and its JSON freed
// once complete, so that memory holds the tensor table and one entry, never the whole document.
// Refuses duplicate keys (which a JSON parser would silently resolve), nesting deeper than a
// header's, and anything past the limits.
class HeaderReader final : public nlohmann::json::json_sax_t {
 public:
  HeaderReader(std::uint64_t buffer_size, const HeaderFault& fail, Header& header)
      : buffer_size_(buffer_size), fail_(fail), header_(header) {}

  bool null() override { return add(nullptr); }
  bool boolean(bool value) override { return add(value); }
  bool number_integer(number_integer_t value) override { return add(value); }
  bool number_unsigned(number_unsigned_t value) override { return add(value); }
  bool number_float(number_float_t value, const string_t&) override { return add(value); }
  bool string(string_t& value) override { return add(std::move(value)); }
  bool binary(binary_t& value) override { return add(std::move(value)); }
  bool start_object(std::size_t) override { return open(nlohmann::json::object()); }
  bool start_array(std::size_t) override { return open(nlohmann::json::array()); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }

  bool key(string_t& key) override {
    if (depth_ == 1) {
      const bool is_metadata = key == "__metadata__";
      if (is_metadata ? seen_metadata_ : header_.tensors.count(key) != 0) {
        fail_("the header has the key " + detail::quoted(key) + " twice" +
              (is_metadata ? "" : " (two tensors of one name)"));
      }
      if (!is_metadata && header_.tensors.size() == safetensors::max_tensor_count) {
        fail_("the header has more than " + std::to_string(safetensors::max_tensor_count) +
              " tensors, the limit");
      }
      seen_metadata_ = seen_metadata_ || is_metadata;
      entry_name_ = std::move(key);
      return true;
    }
    nlohmann::json& object = *open_.back();
    if (object.contains(key)) fail_("the header has the key " + detail::quoted(key) + " twice");
    if (object.size() == safetensors::max_metadata_entries) {
      fail_("an object in the header has more than " +
            std::to_string(safetensors::max_metadata_entries) + " keys, the limit");
    }
    slot_ = &object[std::move(key)];
    return true;
  }

  [[noreturn]] bool parse_error(std::size_t, const std::string&,
                                const nlohmann::json::exception& error) override {
    std::string reason = error.what();
    if (reason.size() > 200) reason = reason.substr(0, 200) + "...";
    fail_("the header is not valid JSON: " + reason);
  }

 private:
  // Puts `value` where the parser is: the entry itself at depth 1, else into the open container.
  nlohmann::json* place(nlohmann::json value) {
    if (depth_ == 1) {
      entry_ = std::move(value);
      return &entry_;
    }
    nlohmann::json& parent = *open_.back();
    if (parent.is_object()) {
      *slot_ = std::move(value);
      return slot_;
    }
    if (parent.size() == safetensors::max_tensor_rank) {
      fail_("an array in the header has more than " + std::to_string(safetensors::max_tensor_rank) +
            " entries (shapes have at most " + std::to_string(safetensors::max_tensor_rank) +
            " dimensions)");
    }
    parent.push_back(std::move(value));
    return &parent.back();
  }

  bool add(nlohmann::json value) {
    if (depth_ == 0) fail_("the header must be a JSON object, got " + describe_json(value));
    place(std::move(value));
    if (depth_ == 1) finish_entry();
    return true;
  }

  bool open(nlohmann::json container) {
    if (depth_ == 0) {
      if (!container.is_object()) fail_("the header must be a JSON object, got an array");
    } else if (depth_ > max_header_depth) {
      fail_("the header nests deeper than a safetensors header does");
    } else {
      open_.push_back(place(std::move(container)));
    }
    ++depth_;
    return true;
  }

  bool close() {
    --depth_;
    if (depth_ == 0) return true;
    open_.pop_back();
    if (depth_ == 1) finish_entry();
    return true;
  }

  void finish_entry() {
    if (entry_name_ == "__metadata__") {
      header_.metadata = parse_metadata(entry_, fail_);
    } else {
      header_.tensors.emplace(entry_name_,
                              parse_tensor_entry(entry_name_, entry_, buffer_size_, fail_));
    }
    entry_ = nullptr;
  }

  std::uint64_t buffer_size_;
  const HeaderFault& fail_;
  Header& header_;
  int depth_ = 0;                      // containers open, the header's object included
  std::string entry_name_;             // the top-level key being read
  nlohmann::json entry_;               // its value
  std::vector<nlohmann::json*> open_;  // the containers open within it, outermost first
  nlohmann::json* slot_ = nullptr;     // where an open object's next value goes
  bool seen_metadata_ = false;
};

// The header of the file `bytes[0, size)`, validated; `source` names the file in messages.
inline Header parse_header(const std::uint8_t* bytes, std::size_t size, const std::string& source) {
  const HeaderFault fail(source);
  if (size < 8) {
    fail("the file is " + std::to_string(size) +
         " bytes long, shorter than the 8-byte header length");
  }
  const auto header_length = load_little_endian<std::uint64_t>(bytes);
  const std::string header_length_text = "header length " + std::to_string(header_length);
  if (header_length > safetensors::max_header_bytes) {
    fail(header_length_text + " is absurd (the limit is " +
         std::to_string(safetensors::max_header_bytes) +
         " bytes): not a safetensors file, or a corrupt one");
  }
  if (header_length > size - 8) {
    fail(header_length_text + " exceeds the " + std::to_string(size - 8) +
         " bytes after the length field");
  }
  Header header;
  header.buffer_start = static_cast<std::size_t>(8 + header_length);
  const std::uint64_t buffer_size = size - header.buffer_start;
  HeaderReader reader(buffer_size, fail, header);
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  nlohmann::json::sax_parse(text, text + header_length, &reader);
  check_tensors_tile_buffer(header.tensors, buffer_size, fail, header.names);
  return header;
}

}  // namespace mlstm::detail
