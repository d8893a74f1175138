// Tests of mlstm/io/safetensors.hpp: round trips of every dtype and rank, the F16/BF16 conversions
// (hand-checked patterns, exhaustive sweeps, Eigen's conversions as a second opinion), a file
// written by an independent Python writer from torch values, and FormatError for corrupt files.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <mlstm/io/safetensors.hpp>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#endif

namespace st = mlstm::safetensors;
using mlstm::Index;
using mlstm::detail::BFloat16Layout;
using mlstm::detail::HalfLayout;
using mlstm::detail::small_float_from_double;
using mlstm::detail::small_float_to_float;

namespace {

std::uint32_t float_bits(float x) { return Eigen::numext::bit_cast<std::uint32_t>(x); }

// Equal as stored: same bits, or both NaN.
template <typename T>
bool same_value(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::signbit(a) == std::signbit(b) && a == b;
  } else {
    return a == b;
  }
}

// Index of the first element where `a` and `b` differ (-1 if none, -2 if the sizes differ).
template <typename A, typename B>
Index first_difference(const A& a, const B& b) {
  if (a.size() != b.size()) return -2;
  for (Index i = 0; i < a.size(); ++i) {
    if (!same_value(a.data()[i], b.data()[i])) return i;
  }
  return -1;
}

// A value of every kind T has, cycling with i.
template <typename T>
T sample_value(Index i) {
  if constexpr (std::is_floating_point_v<T>) {
    using limits = std::numeric_limits<T>;
    const T specials[] = {T(0),
                          -T(0),
                          T(1),
                          T(-2.5),
                          limits::infinity(),
                          -limits::infinity(),
                          limits::quiet_NaN(),
                          limits::denorm_min(),
                          limits::max(),
                          limits::lowest(),
                          limits::min()};
    constexpr Index count = sizeof(specials) / sizeof(specials[0]);
    if (i < count) return specials[i];
    return static_cast<T>((static_cast<double>(i) * 0.37 - 3.0) *
                          std::pow(10.0, double(i % 7) - 3.0));
  } else if constexpr (std::is_same_v<T, bool>) {
    return i % 3 == 0;
  } else {
    using limits = std::numeric_limits<T>;
    const T specials[] = {limits::min(), limits::max(), T(0), static_cast<T>(-1)};
    if (i < 4) return specials[i];
    return static_cast<T>(i * 37 - 100);
  }
}

template <typename T, int Rank>
mlstm::Tensor<T, Rank> sample_tensor(const std::array<Index, Rank>& dims, Index seed) {
  mlstm::Tensor<T, Rank> tensor(dims);
  for (Index i = 0; i < tensor.size(); ++i) tensor.data()[i] = sample_value<T>(i + seed);
  return tensor;
}

template <typename Tensor>
std::vector<Index> shape_of(const Tensor& tensor) {
  std::vector<Index> shape;
  for (int axis = 0; axis < Tensor::NumDimensions; ++axis) shape.push_back(tensor.dimension(axis));
  return shape;
}

// A directory of its own under the system's temporary directory, removed at the end.
struct ScratchDirectory {
  std::filesystem::path path;
  ScratchDirectory() {
    std::random_device entropy;
    path = std::filesystem::temp_directory_path() /
           ("mlstm_test_safetensors_" + std::to_string(entropy()));
    std::filesystem::create_directories(path);
  }
  ~ScratchDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(path)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
};

std::vector<std::uint8_t> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

// --- Round trips ----------------------------------------------------------------------------

namespace {

template <typename T>
void check_round_trip_of_every_rank() {
  const auto r0 = sample_tensor<T, 0>({}, 3);
  const auto r1 = sample_tensor<T, 1>({5}, 0);
  const auto r2 = sample_tensor<T, 2>({2, 3}, 1);
  const auto r3 = sample_tensor<T, 3>({2, 1, 7}, 2);
  const auto r4 = sample_tensor<T, 4>({1, 2, 3, 2}, 4);
  const auto empty = sample_tensor<T, 3>({2, 0, 3}, 0);
  st::Writer writer;
  writer.add("r4", r4).add("r0", r0).add("r1", r1).add("empty", empty);
  writer.add("r2", mlstm::ConstTensorMap<T, 2>(r2.data(), 2, 3));
  writer.add("r3", r3);
  const st::File file = st::File::parse(writer.serialize(), "round_trip");

  CHECK(file.names() == std::vector<std::string>{"r4", "r0", "r1", "empty", "r2", "r3"});
  const st::DType dtype = mlstm::detail::natural_dtype<T>();
  for (const std::string& name : file.names()) {
    CHECK(file.info(name).dtype == dtype);
  }
  CHECK(file.info("r0").shape.empty());
  CHECK(file.info("r3").shape == shape_of(r3));
  CHECK(file.info("empty").shape == shape_of(empty));
  CHECK(first_difference(file.read<T, 0>("r0"), r0) == -1);
  CHECK(first_difference(file.read<T, 1>("r1"), r1) == -1);
  CHECK(first_difference(file.read<T, 2>("r2"), r2) == -1);
  CHECK(first_difference(file.read<T, 3>("r3"), r3) == -1);
  CHECK(first_difference(file.read<T, 4>("r4"), r4) == -1);
  CHECK(first_difference(file.read<T, 3>("empty"), empty) == -1);

  mlstm::Tensor<T, 4> into(1, 2, 3, 2);
  file.read_into("r4", into);
  CHECK(first_difference(into, r4) == -1);
}

}  // namespace

TEST_CASE("safetensors: every dtype round-trips at ranks 0 to 4 and with zero-size tensors") {
  SECTION("F64") { check_round_trip_of_every_rank<double>(); }
  SECTION("F32") { check_round_trip_of_every_rank<float>(); }
  SECTION("BOOL") { check_round_trip_of_every_rank<bool>(); }
  SECTION("U8") { check_round_trip_of_every_rank<std::uint8_t>(); }
  SECTION("I8") { check_round_trip_of_every_rank<std::int8_t>(); }
  SECTION("I16") { check_round_trip_of_every_rank<std::int16_t>(); }
  SECTION("I32") { check_round_trip_of_every_rank<std::int32_t>(); }
  SECTION("I64") { check_round_trip_of_every_rank<std::int64_t>(); }
  SECTION("U16") { check_round_trip_of_every_rank<std::uint16_t>(); }
  SECTION("U32") { check_round_trip_of_every_rank<std::uint32_t>(); }
  SECTION("U64") { check_round_trip_of_every_rank<std::uint64_t>(); }
}

TEST_CASE("safetensors: F16 and BF16 round-trip values they hold exactly, from float and double") {
  // Values with at most 8 significant bits, inside both ranges, plus zeros, infinities and NaN.
  mlstm::Tensor<double, 2> exact(2, 6);
  const double values[] = {0.0,
                           -0.0,
                           1.5,
                           -0.09375,
                           1024.0,
                           3.0517578125e-05,
                           std::ldexp(255.0, -20),
                           65280.0,
                           -7.0,
                           std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity(),
                           std::numeric_limits<double>::quiet_NaN()};
  std::copy(std::begin(values), std::end(values), exact.data());
  const mlstm::Tensor<float, 2> exact_float = exact.cast<float>();
  for (st::DType dtype : {st::DType::F16, st::DType::BF16, st::DType::F32, st::DType::F64}) {
    INFO(st::dtype_name(dtype));
    st::Writer writer;
    writer.add_converted("from_double", exact, dtype)
        .add_converted("from_float", exact_float, dtype);
    const st::File file = st::File::parse(writer.serialize(), "converted");
    CHECK(file.info("from_double").dtype == dtype);
    CHECK(file.info("from_double").end - file.info("from_double").begin ==
          12 * st::dtype_size(dtype));
    CHECK(first_difference(file.read<double, 2>("from_double"), exact) == -1);
    CHECK(first_difference(file.read<double, 2>("from_float"), exact) == -1);
    CHECK(first_difference(file.read<float, 2>("from_float"), exact_float) == -1);
  }
}

TEST_CASE("safetensors: the written layout is the format's") {
  st::Writer writer;
  writer.add("b", sample_tensor<float, 1>({3}, 0));
  writer.add("a", sample_tensor<double, 2>({2, 2}, 0));
  writer.set_metadata("format", "pt").set_metadata("note", "caf\xc3\xa9");
  const std::vector<std::uint8_t> bytes = writer.serialize();

  const auto header_length = mlstm::detail::load_little_endian<std::uint64_t>(bytes.data());
  CHECK(header_length % 8 == 0);
  CHECK(bytes.size() == 8 + header_length + 3 * 4 + 4 * 8);  // no gaps, no trailing bytes
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(header_length));
  const std::size_t json_end = header.find_last_of('}') + 1;
  CHECK(header.find_first_not_of(' ', json_end) == std::string::npos);  // padded with spaces
  const auto json = nlohmann::json::parse(header);
  CHECK(json["b"]["dtype"] == "F32");
  CHECK(json["b"]["data_offsets"] == nlohmann::json::array({0, 12}));
  CHECK(json["a"]["shape"] == nlohmann::json::array({2, 2}));
  CHECK(json["a"]["data_offsets"] == nlohmann::json::array({12, 44}));
  CHECK(json["__metadata__"]["note"] == "caf\xc3\xa9");
  // Little-endian data: b[0] = sample_value<float>(0) = 0.0f, b[2] = 1.0f = 0x3f800000.
  const std::size_t b_start = 8 + header_length;
  CHECK(std::vector<std::uint8_t>(bytes.begin() + b_start + 8, bytes.begin() + b_start + 12) ==
        std::vector<std::uint8_t>{0x00, 0x00, 0x80, 0x3f});

  const st::File file = st::File::parse(bytes, "layout");
  CHECK(file.metadata() ==
        std::map<std::string, std::string>{{"format", "pt"}, {"note", "caf\xc3\xa9"}});
  CHECK(file.metadata("format") == "pt");

  SECTION("an empty writer writes an empty, valid file") {
    const st::File none = st::File::parse(st::Writer().serialize(), "empty");
    CHECK(none.names().empty());
    CHECK(none.metadata().empty());
  }
}

TEST_CASE("safetensors: save writes through a temporary file and load reads it back") {
  const ScratchDirectory scratch;
  const std::string path = (scratch.path / "model.safetensors").string();
  const auto weights = sample_tensor<float, 2>({3, 4}, 5);
  st::Writer writer;
  writer.add("w", weights).set_metadata("step", "10");
  writer.save(path);
  CHECK(scratch.entries() == std::vector<std::string>{"model.safetensors"});
  CHECK(read_bytes(path) == writer.serialize());
  const st::File file = st::File::load(path);
  CHECK(file.source_name() == path);
  CHECK(first_difference(file.read<float, 2>("w"), weights) == -1);
  CHECK(file.metadata("step") == "10");

  SECTION("saving again replaces the file") {
    st::Writer other;
    other.add("v", sample_tensor<double, 1>({2}, 0));
    other.save(path);
    CHECK(st::File::load(path).names() == std::vector<std::string>{"v"});
    CHECK(scratch.entries() == std::vector<std::string>{"model.safetensors"});
  }
  SECTION("a failed save leaves no file behind and the target as it was") {
    const std::string directory = (scratch.path / "a_directory").string();
    std::filesystem::create_directory(directory);
    CHECK_THROWS_AS(writer.save(directory), std::system_error);  // cannot rename over a directory
    CHECK(scratch.entries() == std::vector<std::string>{"a_directory", "model.safetensors"});
    CHECK(std::filesystem::is_empty(directory));
    CHECK_THROWS_AS(writer.save((scratch.path / "missing" / "x.safetensors").string()),
                    std::system_error);
    CHECK(scratch.entries() == std::vector<std::string>{"a_directory", "model.safetensors"});
  }
  SECTION("loading a missing file is a system_error naming it") {
    const std::string missing = (scratch.path / "missing.safetensors").string();
    try {
      (void)st::File::load(missing);
      FAIL("no exception");
    } catch (const std::system_error& error) {
      CHECK_THAT(error.what(), Catch::Contains(missing));
      CHECK(error.code() == std::errc::no_such_file_or_directory);
    }
  }
}

// --- Reading errors -------------------------------------------------------------------------

namespace {

template <typename Error>
std::string message_of(const std::function<void()>& action, std::string* argument = nullptr) {
  try {
    action();
  } catch (const Error& error) {
    if constexpr (std::is_base_of_v<mlstm::InvalidArgument, Error>) {
      if (argument != nullptr) *argument = error.argument();
    }
    return error.what();
  }
  return "(no exception)";
}

}  // namespace

TEST_CASE("safetensors: reading a wrong name, rank, dtype or shape is a typed error") {
  st::Writer writer;
  writer.add("weight", sample_tensor<float, 2>({2, 3}, 0));
  writer.add("steps", sample_tensor<std::int64_t, 1>({4}, 0));
  writer.add("flags", sample_tensor<bool, 1>({4}, 0));
  writer.set_metadata("format", "pt");
  const st::File file = st::File::parse(writer.serialize(), "model.safetensors");
  std::string argument;

  std::string message =
      message_of<mlstm::ValueError>([&] { (void)file.read<float, 2>("wieght"); }, &argument);
  CHECK(argument == "name");
  CHECK_THAT(message, Catch::Contains("no tensor \"wieght\" in \"model.safetensors\"") &&
                          Catch::Contains("3 tensors: \"weight\", \"steps\", \"flags\""));
  CHECK_FALSE(file.contains("wieght"));
  CHECK(file.contains("weight"));

  message = message_of<mlstm::ShapeError>([&] { (void)file.read<float, 3>("weight"); }, &argument);
  CHECK(argument == "weight");
  CHECK_THAT(message, Catch::Contains("tensor \"weight\" in \"model.safetensors\" has rank 2 with "
                                      "shape (2, 3); expected rank 3"));

  message = message_of<mlstm::ValueError>([&] { (void)file.read<bool, 2>("weight"); }, &argument);
  CHECK(argument == "weight");
  CHECK_THAT(message,
             Catch::Contains("has dtype F32, which does not convert to bool (that reads BOOL)"));
  message = message_of<mlstm::ValueError>([&] { (void)file.read<std::int32_t, 1>("steps"); });
  CHECK_THAT(message, Catch::Contains("has dtype I64, which does not convert to int32_t (that "
                                      "reads U8, I8, I16, I32, U16)"));
  message = message_of<mlstm::ValueError>([&] { (void)file.read<double, 1>("flags"); });
  CHECK_THAT(message,
             Catch::Contains("does not convert to double (that reads F64, F32, F16, BF16)"));

  mlstm::Tensor<float, 2> out(3, 2);
  out.setConstant(7.0f);
  message = message_of<mlstm::ShapeError>([&] { file.read_into("weight", out); }, &argument);
  CHECK(argument == "out");
  CHECK_THAT(message, Catch::Contains("has shape (2, 3), but `out` has shape (3, 2)"));
  CHECK(out(0, 0) == 7.0f);
  CHECK(out(2, 1) == 7.0f);

  message = message_of<mlstm::ValueError>([&] { (void)file.metadata("step"); }, &argument);
  CHECK(argument == "key");
  CHECK_THAT(message, Catch::Contains("no metadata \"step\"") && Catch::Contains("\"format\""));

  // Widening conversions are allowed.
  CHECK(file.read<double, 2>("weight")(1, 2) == double(sample_value<float>(5)));
  CHECK(file.read<std::int64_t, 1>("steps")(0) == std::numeric_limits<std::int64_t>::min());
}

TEST_CASE("safetensors: writer arguments are checked") {
  st::Writer writer;
  const auto x = sample_tensor<float, 1>({2}, 0);
  writer.add("x", x);
  std::string argument;
  CHECK_THAT(message_of<mlstm::ValueError>([&] { writer.add("x", x); }, &argument),
             Catch::Contains("a tensor named \"x\" was already added"));
  CHECK(argument == "name");
  CHECK_THAT(message_of<mlstm::ValueError>([&] { writer.add("__metadata__", x); }),
             Catch::Contains("reserved"));
  CHECK_THAT(message_of<mlstm::ValueError>([&] { writer.add("bad\xff", x); }),
             Catch::Contains("is not valid UTF-8"));
  CHECK_THAT(message_of<mlstm::ValueError>([&] { writer.add_converted("y", x, st::DType::I32); },
                                           &argument),
             Catch::Contains("expected F64, F32, F16 or BF16, got I32"));
  CHECK(argument == "dtype");
  CHECK_THAT(message_of<mlstm::ValueError>([&] { writer.set_metadata("k", "\xc3"); }, &argument),
             Catch::Contains("is not valid UTF-8"));
  CHECK(argument == "value");
  CHECK(st::File::parse(writer.serialize(), "checked").names() == std::vector<std::string>{"x"});

  SECTION("no more tensors than a file may hold") {
    const mlstm::Tensor<std::uint8_t, 1> empty(0);
    for (std::size_t i = 1; i < st::max_tensor_count; ++i) writer.add(std::to_string(i), empty);
    CHECK_THAT(message_of<mlstm::ValueError>([&] { writer.add("one_more", empty); }, &argument),
               Catch::Contains("cannot add \"one_more\": a file holds at most " +
                               std::to_string(st::max_tensor_count) + " tensors"));
    CHECK(argument == "name");
    CHECK(st::File::parse(writer.serialize(), "full").names().size() == st::max_tensor_count);
  }
}

// --- F16 and BF16 ---------------------------------------------------------------------------

TEST_CASE("safetensors: F16 and BF16 bit patterns decode to the values the formats define") {
  // half: sign | 5 exponent bits (bias 15) | 10 mantissa bits.
  //   0x3c00: exponent 15 -> 2^0, mantissa 0             -> 1.0
  //   0xc000: sign, exponent 16 -> 2^1                    -> -2.0
  //   0x3555: exponent 13 -> 2^-2, mantissa 0x155 = 341   -> (1 + 341/1024) / 4 = 0.333251953125
  //   0x7bff: exponent 30 -> 2^15, mantissa 1023          -> (2 - 2^-10) * 2^15 = 65504
  //   0x0400: exponent 1 -> 2^-14 (smallest normal)       -> 6.103515625e-05
  //   0x03ff: subnormal, 1023 * 2^-24                     -> 6.097555160522461e-05
  //   0x0001: subnormal, 1 * 2^-24                        -> 5.960464477539063e-08
  //   0x8000: -0; 0x7c00: +inf; 0xfc00: -inf; 0x7e00, 0x7c01: NaN
  // bfloat16: sign | 8 exponent bits (bias 127) | 7 mantissa bits, the top half of a float.
  //   0x3f80: 1.0; 0x4049: 2^1 * (1 + 0x49/128) = 2 * 1.5703125 = 3.140625
  //   0x7f7f: (2 - 2^-7) * 2^127 = 3.3895313892515355e38 (largest finite)
  //   0x0080: 2^-126 (smallest normal); 0x0001: 2^-133 (smallest subnormal); 0x007f: 127 * 2^-133
  struct Case {
    std::uint16_t bits;
    double value;
  };
  const double inf = std::numeric_limits<double>::infinity();
  const Case half_cases[] = {{0x3c00, 1.0},
                             {0xc000, -2.0},
                             {0x3555, 0.333251953125},
                             {0x7bff, 65504.0},
                             {0x0400, 6.103515625e-05},
                             {0x03ff, 6.097555160522461e-05},
                             {0x0001, 5.960464477539063e-08},
                             {0x8000, -0.0},
                             {0x7c00, inf},
                             {0xfc00, -inf}};
  for (const Case& c : half_cases) {
    INFO("half 0x" << std::hex << c.bits);
    CHECK(same_value(double(small_float_to_float<HalfLayout>(c.bits)), c.value));
    CHECK(small_float_from_double<HalfLayout>(c.value) == c.bits);
  }
  const Case bfloat16_cases[] = {{0x3f80, 1.0},
                                 {0x4049, 3.140625},
                                 {0x7f7f, 3.3895313892515355e38},
                                 {0x0080, std::ldexp(1.0, -126)},
                                 {0x0001, std::ldexp(1.0, -133)},
                                 {0x007f, std::ldexp(127.0, -133)},
                                 {0x8000, -0.0},
                                 {0xff80, -inf}};
  for (const Case& c : bfloat16_cases) {
    INFO("bfloat16 0x" << std::hex << c.bits);
    CHECK(same_value(double(small_float_to_float<BFloat16Layout>(c.bits)), c.value));
    CHECK(small_float_from_double<BFloat16Layout>(c.value) == c.bits);
  }
  for (std::uint16_t nan : {0x7e00, 0x7c01, 0xfe00}) {
    CHECK(std::isnan(small_float_to_float<HalfLayout>(nan)));
  }
  CHECK(std::isnan(small_float_to_float<BFloat16Layout>(0x7fc0)));
  CHECK(std::signbit(small_float_to_float<BFloat16Layout>(0xffc1)));
}

TEST_CASE("safetensors: rounding to F16 and BF16 is to nearest, ties to even") {
  struct Case {
    double value;
    std::uint16_t bits;
  };
  // half around 1.0 has a quantum of 2^-10: 1 + 2^-11 is a tie between 0x3c00 and 0x3c01 and goes
  // to the even 0x3c00; 1 + 3 * 2^-11 ties between 0x3c01 and 0x3c02 -> 0x3c02. 65520 is the tie
  // between 65504 (0x7bff, odd) and 2^16, which overflows to infinity. 2^-25 is half the smallest
  // subnormal: a tie with 0 -> 0; 3 * 2^-25 ties between 0x0001 and 0x0002 -> 0x0002.
  const Case half_cases[] = {{1 + std::ldexp(1.0, -11), 0x3c00},
                             {1 + 3 * std::ldexp(1.0, -11), 0x3c02},
                             {1 + std::ldexp(1.0, -11) + std::ldexp(1.0, -30), 0x3c01},
                             // Rounded to float first, this would be the tie 1 + 2^-11 -> 0x3c00.
                             {1 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40), 0x3c01},
                             {65519.99, 0x7bff},
                             {65520.0, 0x7c00},
                             {-1e10, 0xfc00},
                             {std::ldexp(1.0, -25), 0x0000},
                             {std::ldexp(1.0, -25) + std::ldexp(1.0, -40), 0x0001},
                             {3 * std::ldexp(1.0, -25), 0x0002},
                             {-std::ldexp(1.0, -26), 0x8000},
                             {std::ldexp(1.0, -1074), 0x0000},
                             {std::ldexp(1023.5, -24), 0x0400}};  // carries into the exponent
  for (const Case& c : half_cases) {
    INFO("half from " << c.value);
    CHECK(small_float_from_double<HalfLayout>(c.value) == c.bits);
  }
  // bfloat16 around 1.0 has a quantum of 2^-7; the largest finite is (2 - 2^-7) * 2^127 and the
  // overflow tie is (2 - 2^-8) * 2^127, so FLT_MAX = (2 - 2^-23) * 2^127 rounds to infinity.
  const Case bfloat16_cases[] = {{1 + std::ldexp(1.0, -8), 0x3f80},
                                 {1 + 3 * std::ldexp(1.0, -8), 0x3f82},
                                 {std::ldexp(2 - std::ldexp(1.0, -8), 127), 0x7f80},
                                 {std::ldexp(2 - std::ldexp(1.0, -8), 127) * (1 - 1e-16), 0x7f7f},
                                 {double(std::numeric_limits<float>::max()), 0x7f80},
                                 {std::ldexp(1.0, -134), 0x0000},
                                 {std::ldexp(3.0, -134), 0x0002},
                                 {1e300, 0x7f80}};
  for (const Case& c : bfloat16_cases) {
    INFO("bfloat16 from " << c.value);
    CHECK(small_float_from_double<BFloat16Layout>(c.value) == c.bits);
  }
  // NaN stays NaN, quiet, with its sign and the top of its payload.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(small_float_from_double<HalfLayout>(nan) == 0x7e00);
  CHECK(small_float_from_double<HalfLayout>(-nan) == 0xfe00);
  CHECK(small_float_from_double<BFloat16Layout>(nan) == 0x7fc0);
  CHECK(small_float_from_double<HalfLayout>(double(small_float_to_float<HalfLayout>(0x7c01))) ==
        0x7e01);
}

namespace {

// The value of a small-float bit pattern by the textbook formula, in double: for exponent field
// e and mantissa field m, (-1)^s * 2^(1 - bias - M) * m when e = 0, (-1)^s * 2^(e - bias - M) *
// (2^M + m) otherwise; e all ones is infinity (m = 0) or NaN.
double textbook_value(std::uint16_t bits, int exponent_bits, int mantissa_bits) {
  const int bias = (1 << (exponent_bits - 1)) - 1;
  const int e = (bits >> mantissa_bits) & ((1 << exponent_bits) - 1);
  const int m = bits & ((1 << mantissa_bits) - 1);
  const double sign = (bits >> 15) != 0 ? -1.0 : 1.0;
  if (e == (1 << exponent_bits) - 1) {
    return m == 0 ? sign * std::numeric_limits<double>::infinity()
                  : std::numeric_limits<double>::quiet_NaN();
  }
  if (e == 0) return sign * std::ldexp(double(m), 1 - bias - mantissa_bits);
  return sign * std::ldexp(double((1 << mantissa_bits) + m), e - bias - mantissa_bits);
}

template <typename Layout>
void check_all_patterns() {
  const bool is_half = Layout::mantissa_bits == 10;
  Index decode_mismatches = 0, second_opinion_mismatches = 0, round_trip_mismatches = 0;
  std::uint32_t first_bad = 0x10000;
  for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto pattern = static_cast<std::uint16_t>(bits);
    const float value = small_float_to_float<Layout>(pattern);
    const double expected = textbook_value(pattern, Layout::exponent_bits, Layout::mantissa_bits);
    const float eigen = is_half ? float(Eigen::numext::bit_cast<Eigen::half>(pattern))
                                : float(Eigen::numext::bit_cast<Eigen::bfloat16>(pattern));
    const bool ok_decode = same_value(double(value), expected) &&
                           (!std::isnan(value) || std::signbit(value) == ((bits >> 15) != 0));
    const bool ok_eigen = same_value(value, eigen);
    // Back from float and from double: the same pattern, except that NaNs come back quiet.
    const std::uint16_t quiet = std::isnan(value) ? (1u << (Layout::mantissa_bits - 1)) : 0;
    const bool ok_round_trip =
        small_float_from_double<Layout>(double(value)) == (pattern | quiet) &&
        (std::isnan(expected) || small_float_from_double<Layout>(expected) == pattern);
    decode_mismatches += !ok_decode;
    second_opinion_mismatches += !ok_eigen;
    round_trip_mismatches += !ok_round_trip;
    if ((!ok_decode || !ok_eigen || !ok_round_trip) && first_bad == 0x10000) first_bad = bits;
  }
  INFO("first mismatching pattern 0x" << std::hex << first_bad);
  CHECK(decode_mismatches == 0);
  CHECK(second_opinion_mismatches == 0);
  CHECK(round_trip_mismatches == 0);
}

// For every pair of adjacent finite non-negative patterns (a, a + 1): their midpoint rounds to
// the even one, and the floats just below and above it round down and up. The midpoint has one
// more significant bit than the format, so it is exact in float.
template <typename Layout>
void check_every_rounding_boundary() {
  const std::uint16_t largest_finite = static_cast<std::uint16_t>(Layout::infinity_bits - 1);
  Index mismatches = 0;
  std::uint32_t first_bad = 0;
  for (std::uint32_t a = 0; a < largest_finite; ++a) {
    const auto low = static_cast<std::uint16_t>(a), high = static_cast<std::uint16_t>(a + 1);
    const auto midpoint = static_cast<float>(
        (double(small_float_to_float<Layout>(low)) + double(small_float_to_float<Layout>(high))) /
        2);
    const std::uint16_t even = (low % 2 == 0) ? low : high;
    const float below = std::nextafter(midpoint, 0.0f);
    const float above = std::nextafter(midpoint, std::numeric_limits<float>::infinity());
    const bool ok = small_float_from_double<Layout>(midpoint) == even &&
                    small_float_from_double<Layout>(below) == low &&
                    small_float_from_double<Layout>(above) == high &&
                    small_float_from_double<Layout>(-midpoint) == (even | Layout::sign_bit);
    if (!ok && mismatches++ == 0) first_bad = a;
  }
  INFO("first mismatching pair starts at 0x" << std::hex << first_bad);
  CHECK(mismatches == 0);
  // Above the largest finite value: the tie with the next power of two goes to infinity.
  const float largest = small_float_to_float<Layout>(largest_finite);
  const float overflow_tie =
      largest + (largest - small_float_to_float<Layout>(largest_finite - 1)) / 2;
  CHECK(small_float_from_double<Layout>(overflow_tie) == Layout::infinity_bits);
  CHECK(small_float_from_double<Layout>(std::nextafter(overflow_tie, 0.0f)) == largest_finite);
}

// Eigen's float -> half / bfloat16 conversions as a second opinion, on random float patterns.
template <typename Layout>
void check_against_eigen_on_random_floats() {
  std::mt19937 generator(42);
  Index mismatches = 0;
  std::uint32_t first_bad = 0;
  for (int i = 0; i < 200000; ++i) {
    const float x = Eigen::numext::bit_cast<float>(static_cast<std::uint32_t>(generator()));
    if (std::isnan(x)) continue;
    const std::uint16_t ours = small_float_from_double<Layout>(x);
    const std::uint16_t eigen = Layout::mantissa_bits == 10
                                    ? Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(x))
                                    : Eigen::numext::bit_cast<std::uint16_t>(Eigen::bfloat16(x));
    if (ours != eigen && mismatches++ == 0) first_bad = float_bits(x);
  }
  INFO("first mismatching float 0x" << std::hex << first_bad);
  CHECK(mismatches == 0);
}

}  // namespace

TEST_CASE(
    "safetensors: all 65536 F16 patterns decode as the textbook formula and Eigen, and "
    "round-trip") {
  check_all_patterns<HalfLayout>();
}

TEST_CASE(
    "safetensors: all 65536 BF16 patterns decode as the textbook formula and Eigen, and "
    "round-trip") {
  check_all_patterns<BFloat16Layout>();
}

TEST_CASE(
    "safetensors: every F16 and BF16 rounding boundary, and Eigen's rounding as a second opinion") {
  check_every_rounding_boundary<HalfLayout>();
  check_every_rounding_boundary<BFloat16Layout>();
  check_against_eigen_on_random_floats<HalfLayout>();
  check_against_eigen_on_random_floats<BFloat16Layout>();
}

// --- Golden file from torch -----------------------------------------------------------------

namespace {

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  for (std::string part; std::getline(stream, part, separator);) parts.push_back(part);
  return parts;
}

const std::string fixture_path =
    std::string(MLSTM_REFERENCE_DATA_DIR) + "/safetensors_fixture.safetensors";

}  // namespace

TEST_CASE("safetensors: a file written by torch-side code reads as torch's own conversions") {
  const st::File file = st::File::load(fixture_path);
  CHECK(file.metadata("format") == "pt");
  CHECK(file.names().size() == 21);
  // PyTorch-style layout: 8-byte elements first.
  CHECK(file.names().front() == "expected.bf16");
  CHECK(file.info("f16").dtype == st::DType::F16);
  CHECK(file.info("bf16").dtype == st::DType::BF16);
  CHECK(file.info("bool").dtype == st::DType::BOOL);

  // Every element of each tensor, as double and as float, equals torch's conversion to F64.
  const auto check_against_expected = [&](const std::string& name, auto as_double, auto as_float,
                                          auto expected) {
    INFO(name);
    CHECK(expected.size() > 0);
    CHECK(first_difference(as_double, expected) == -1);
    const decltype(as_float) expected_float = expected.template cast<float>();
    CHECK(first_difference(as_float, expected_float) == -1);
  };
  check_against_expected("f32", file.read<double, 2>("f32"), file.read<float, 2>("f32"),
                         file.read<double, 2>("expected.f32"));
  check_against_expected("f16", file.read<double, 3>("f16"), file.read<float, 3>("f16"),
                         file.read<double, 3>("expected.f16"));
  check_against_expected("bf16", file.read<double, 2>("bf16"), file.read<float, 2>("bf16"),
                         file.read<double, 2>("expected.bf16"));
  check_against_expected("scalar", file.read<double, 0>("scalar"), file.read<float, 0>("scalar"),
                         file.read<double, 0>("expected.scalar"));
  CHECK(file.read<float, 2>("empty").dimension(0) == 0);
  CHECK(file.read<float, 2>("empty").dimension(1) == 3);
  CHECK(file.info("expected.empty").shape == std::vector<Index>{0, 3});

  const auto flags = file.read<bool, 2>("bool");
  const auto flags_expected = file.read<double, 2>("expected.bool");
  CHECK(flags.size() == 6);
  for (Index i = 0; i < flags.size(); ++i)
    CHECK(double(flags.data()[i]) == flags_expected.data()[i]);
  const auto i32 = file.read<std::int64_t, 1>("i32");
  const auto i32_expected = file.read<double, 1>("expected.i32");
  for (Index i = 0; i < 3; ++i) CHECK(double(i32(i)) == i32_expected(i));
  CHECK(file.read<std::int32_t, 1>("i32")(0) == std::numeric_limits<std::int32_t>::min());
  const auto u8 = file.read<std::uint8_t, 1>("u8");
  const auto u8_expected = file.read<double, 1>("expected.u8");
  for (Index i = 0; i < 4; ++i) CHECK(double(u8(i)) == u8_expected(i));

  // F64 and I64 against their exact text in the metadata.
  const auto f64 = file.read<double, 1>("f64");
  const std::vector<std::string> hex = split(file.metadata("f64.hex"), ',');
  REQUIRE(static_cast<Index>(hex.size()) == f64.size());
  for (Index i = 0; i < f64.size(); ++i) {
    INFO(hex[i]);
    CHECK(same_value(f64(i), std::strtod(hex[i].c_str(), nullptr)));
  }
  const auto i64 = file.read<std::int64_t, 1>("i64");
  const std::vector<std::string> decimal = split(file.metadata("i64.decimal"), ',');
  REQUIRE(static_cast<Index>(decimal.size()) == i64.size());
  for (Index i = 0; i < i64.size(); ++i) CHECK(i64(i) == std::stoll(decimal[i]));
}

TEST_CASE("safetensors: writing F16 and BF16 rounds as torch does") {
  const st::File file = st::File::load(fixture_path);
  const auto source = file.read<float, 1>("rounding.source");
  const mlstm::Tensor<double, 1> source_double = source.cast<double>();
  REQUIRE(source.size() > 200);
  for (const auto& [dtype, torch_name] :
       {std::pair{st::DType::F16, "rounding.f16"}, std::pair{st::DType::BF16, "rounding.bf16"}}) {
    INFO(torch_name);
    st::Writer writer;
    writer.add_converted("from_float", source, dtype)
        .add_converted("from_double", source_double, dtype);
    const st::File ours = st::File::parse(writer.serialize(), "ours");
    const auto expected = file.read<float, 1>(torch_name);
    CHECK(first_difference(ours.read<float, 1>("from_float"), expected) == -1);
    CHECK(first_difference(ours.read<float, 1>("from_double"), expected) == -1);
  }
}

// --- Corrupt files --------------------------------------------------------------------------

namespace {

// A valid file: {"__metadata__":{"k":"v"},"a":F32 [2] at [0,8],"b":F64 [1] at [8,16]}.
std::vector<std::uint8_t> valid_file() {
  mlstm::Tensor<float, 1> a(2);
  a.setValues({1.0f, 2.0f});
  mlstm::Tensor<double, 1> b(1);
  b.setValues({3.0});
  st::Writer writer;
  writer.add("a", a).add("b", b).set_metadata("k", "v");
  return writer.serialize();
}

std::string header_of(const std::vector<std::uint8_t>& bytes) {
  const auto length = mlstm::detail::load_little_endian<std::uint64_t>(bytes.data());
  return std::string(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(length));
}

// `bytes` with its header replaced by `header` (the length field updated, the buffer kept).
std::vector<std::uint8_t> with_header(const std::vector<std::uint8_t>& bytes,
                                      const std::string& header) {
  const std::size_t buffer_start = 8 + header_of(bytes).size();
  std::vector<std::uint8_t> result(8 + header.size() + (bytes.size() - buffer_start));
  mlstm::detail::store_little_endian<std::uint64_t>(header.size(), result.data());
  std::copy(header.begin(), header.end(), result.begin() + 8);
  std::copy(bytes.begin() + static_cast<long>(buffer_start), bytes.end(),
            result.begin() + 8 + static_cast<long>(header.size()));
  return result;
}

// The valid file with `from` replaced by `to` in its header.
std::vector<std::uint8_t> edited(const std::string& from, const std::string& to) {
  const std::vector<std::uint8_t> bytes = valid_file();
  std::string header = header_of(bytes);
  const std::size_t at = header.find(from);
  REQUIRE(at != std::string::npos);
  header.replace(at, from.size(), to);
  return with_header(bytes, header);
}

std::string repeated(const std::string& text, std::size_t times) {
  std::string result;
  for (std::size_t i = 0; i < times; ++i) result += text;
  return result;
}

void check_format_error(const std::vector<std::uint8_t>& bytes, const std::string& expected) {
  const std::string message =
      message_of<mlstm::FormatError>([&] { (void)st::File::parse(bytes, "corrupt.safetensors"); });
  INFO(message);
  CHECK_THAT(message, Catch::StartsWith("safetensors file \"corrupt.safetensors\": ") &&
                          Catch::Contains(expected));
}

}  // namespace

TEST_CASE("safetensors: each kind of corrupt file is a FormatError saying what is wrong") {
  const std::vector<std::uint8_t> valid = valid_file();
  REQUIRE(header_of(valid).rfind(R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],)"
                                 R"("data_offsets":[0,8]},"b":{"dtype":"F64","shape":[1],)"
                                 R"("data_offsets":[8,16]}})",
                                 0) == 0);
  REQUIRE_NOTHROW(st::File::parse(valid, "valid"));

  SECTION("too short for the length field") {
    check_format_error({1, 2, 3, 4, 5},
                       "the file is 5 bytes long, shorter than the 8-byte header length");
    check_format_error({}, "the file is 0 bytes long");
  }
  SECTION("header length past the end of the file, or absurd") {
    std::vector<std::uint8_t> bytes = valid;
    mlstm::detail::store_little_endian<std::uint64_t>(bytes.size() - 7, bytes.data());
    check_format_error(bytes, "header length " + std::to_string(bytes.size() - 7) +
                                  " exceeds the " + std::to_string(bytes.size() - 8) +
                                  " bytes after the length field");
    mlstm::detail::store_little_endian<std::uint64_t>(std::uint64_t(1) << 40, bytes.data());
    check_format_error(bytes,
                       "header length 1099511627776 is absurd (the limit is 100000000 bytes)");
    mlstm::detail::store_little_endian<std::uint64_t>(~std::uint64_t(0), bytes.data());
    check_format_error(bytes, "is absurd");
  }
  SECTION("header not JSON") {
    check_format_error(edited(R"("F32")", "F32"),
                       "the header is not valid JSON: [json.exception.parse_error");
    check_format_error(edited(R"("a":)", "\"\xff\":"),
                       "the header is not valid JSON");  // not UTF-8
    check_format_error(edited(R"([2])", "[1e999]"), "the header is not valid JSON");
    std::vector<std::uint8_t> cut = valid;
    mlstm::detail::store_little_endian<std::uint64_t>(20, cut.data());
    check_format_error(cut, "the header is not valid JSON");
  }
  SECTION("header not an object, entries not objects") {
    check_format_error(with_header(valid, "[1, 2]  "),
                       "the header must be a JSON object, got an array");
    check_format_error(with_header(valid, "12345678"),
                       "the header must be a JSON object, got 12345678");
    check_format_error(edited(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})", "5"),
                       "tensor \"a\": entry must be an object, got 5");
  }
  SECTION("fields missing") {
    check_format_error(edited(R"("dtype":"F32",)", ""), "tensor \"a\": missing field \"dtype\"");
    check_format_error(edited(R"("shape":[2],)", ""), "tensor \"a\": missing field \"shape\"");
    check_format_error(edited(R"(,"data_offsets":[0,8])", ""),
                       "tensor \"a\": missing field \"data_offsets\"");
  }
  SECTION("fields of the wrong type") {
    check_format_error(edited(R"("F32")", "5"), "field \"dtype\" must be a string, got 5");
    check_format_error(edited(R"([2])", R"("2")"), "field \"shape\" must be an array, got \"2\"");
    check_format_error(edited(R"([2])", "[2.0]"), "shape entries must be integers, got 2.0");
    check_format_error(edited(R"([2])", "[true]"), "shape entries must be integers, got true");
    check_format_error(
        edited("[0,8]", "[0]"),
        "field \"data_offsets\" must be [begin, end] with non-negative integers, got [0]");
    check_format_error(edited("[0,8]", R"([0,"8"])"), "got [0,\"8\"]");
    check_format_error(edited("[0,8]", "[-1,8]"), "got [-1,8]");
    check_format_error(edited("[0,8]", "[0,8.0]"), "got [0,8.0]");
    check_format_error(edited("[0,8]", R"({"begin":0})"), "got an object");
  }
  SECTION("unknown dtype") {
    check_format_error(edited(R"("F32")", R"("F8_E4M3")"),
                       "tensor \"a\": unsupported dtype \"F8_E4M3\"");
    check_format_error(edited(R"("F32")", R"("f32")"), "unsupported dtype \"f32\"");
  }
  SECTION("negative, huge and overflowing shapes") {
    check_format_error(edited("[2]", "[-2]"), "tensor \"a\": shape has the negative dimension -2");
    check_format_error(edited("[2]", "[9223372036854775808]"),
                       "shape has the dimension 9223372036854775808, beyond 2^63 - 1");
    check_format_error(
        edited("[2]", "[4294967296,4294967296]"),
        "shape (4294967296, 4294967296) of F32 overflows: its byte size is beyond 2^63 - 1");
    check_format_error(edited("[2]", "[2305843009213693952]"), "overflows");  // 2^61 * 4 bytes
    // A zero dimension makes the tensor empty, but the other dimensions' product must still fit:
    // element counts and strides multiply them.
    check_format_error(edited("[2]", "[4294967296,4294967296,0]"),
                       "shape (4294967296, 4294967296, 0) of F32 overflows: the byte size of its "
                       "nonzero dimensions is beyond 2^63 - 1");
    check_format_error(edited("[2]", "[4611686018427387904,4,0]"), "overflows");  // 2^62 x 4 x 0
    check_format_error(edited("[2]", "[0,4611686018427387904,4]"), "overflows");
    check_format_error(edited("[2]", "[3,0]"),
                       "data_offsets [0, 8] span 8 bytes, but F32 of shape (3, 0) needs 0");
  }
  SECTION("data_offsets that disagree with the shape or the buffer") {
    check_format_error(
        edited("[2]", "[3]"),
        "tensor \"a\": data_offsets [0, 8] span 8 bytes, but F32 of shape (3) needs 12");
    check_format_error(edited("[0,8]", "[8,0]"),
                       "tensor \"a\": data_offsets [8, 0] begin after they end");
    std::vector<std::uint8_t> short_buffer = valid;
    short_buffer.pop_back();
    check_format_error(
        short_buffer,
        "tensor \"b\": data_offsets [8, 16] reach past the end of the 15-byte data buffer");
    check_format_error(edited("[8,16]", "[18446744073709551608,0]"), "begin after they end");
  }
  SECTION("overlapping tensors") {
    check_format_error(edited("[8,16]", "[4,12]"),
                       "tensor \"b\" (bytes [4, 12)) overlaps tensor \"a\", which ends at byte 8");
    check_format_error(edited("[8,16]", "[0,8]"), "overlaps");
  }
  SECTION("holes and uncovered bytes") {
    check_format_error(
        edited(R"("shape":[2],"data_offsets":[0,8])", R"("shape":[1],"data_offsets":[0,4])"),
        "bytes [4, 8) of the data buffer, before tensor \"b\", belong to no tensor; "
        "tensors must cover the data buffer contiguously");
    std::vector<std::uint8_t> trailing = valid;
    trailing.insert(trailing.end(), {0, 0, 0});
    check_format_error(trailing,
                       "bytes [16, 19) at the end of the data buffer belong to no tensor");
    check_format_error(with_header(valid, "{}"),
                       "bytes [0, 16) at the end of the data buffer belong to no tensor");
  }
  SECTION("duplicate keys") {
    check_format_error(edited(R"("b":)", R"("a":)"),
                       "the header has the key \"a\" twice (two tensors of one name)");
    check_format_error(edited(R"("dtype":"F32")", R"("dtype":"F32","dtype":"F32")"),
                       "the header has the key \"dtype\" twice");
    check_format_error(edited(R"({"k":"v"})", R"({"k":"v","k":"w"})"),
                       "the header has the key \"k\" twice");
    check_format_error(edited(R"("a":)", R"("__metadata__":{},"a":)"),
                       "the header has the key \"__metadata__\" twice");
  }
  SECTION("metadata that is not an object of strings") {
    check_format_error(edited(R"({"k":"v"})", R"({"k":1})"),
                       "\"__metadata__\" value of \"k\" must be a string, got 1");
    check_format_error(edited(R"({"k":"v"})", R"({"k":null})"), "must be a string, got null");
    check_format_error(edited(R"({"k":"v"})", R"(["k"])"),
                       "\"__metadata__\" must be an object of strings, got [\"k\"]");
  }
  SECTION("nesting deeper than a header's, however deep") {
    check_format_error(edited(R"("v")", std::string(100000, '[') + std::string(100000, ']')),
                       "the header nests deeper than a safetensors header does");
    check_format_error(edited("[2]", "[[2]]"), "nests deeper");
  }
  SECTION("more tensors, dimensions or metadata entries than the limits") {
    // Empty tensors, so that the header alone decides; the limit is checked at the next name.
    std::string header = "{";
    for (std::size_t i = 0; i <= st::max_tensor_count; ++i) {
      header += "\"" + std::to_string(i) + R"(":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},)";
    }
    header.back() = '}';
    check_format_error(
        with_header({0, 0, 0, 0, 0, 0, 0, 0}, header),
        "the header has more than " + std::to_string(st::max_tensor_count) + " tensors, the limit");
    header.resize(header.rfind(",\"" + std::to_string(st::max_tensor_count) + "\":"));
    header += "}";
    REQUIRE(st::File::parse(with_header({0, 0, 0, 0, 0, 0, 0, 0}, header), "at the limit")
                .names()
                .size() == st::max_tensor_count);

    const std::string ones = "[2" + repeated(",1", st::max_tensor_rank - 1);
    REQUIRE(st::File::parse(edited("[2]", ones + "]"), "rank 64").info("a").shape.size() ==
            st::max_tensor_rank);
    check_format_error(
        edited("[2]", ones + ",1]"),
        "an array in the header has more than " + std::to_string(st::max_tensor_rank) + " entries");

    std::string entries = R"("k":"v")";
    for (std::size_t i = 1; i < st::max_metadata_entries; ++i)
      entries += ",\"" + std::to_string(i) + "\":\"\"";
    REQUIRE(st::File::parse(edited(R"("k":"v")", entries), "many entries").metadata().size() ==
            st::max_metadata_entries);
    check_format_error(edited(R"("k":"v")", entries + R"(,"x":"")"),
                       "an object in the header has more than " +
                           std::to_string(st::max_metadata_entries) + " keys");
  }
  SECTION("long names are cut in messages") {
    const std::string long_name(1000, 'n');
    const std::string message = message_of<mlstm::FormatError>([&] {
      (void)st::File::parse(
          edited(R"("a":{"dtype":"F32")", "\"" + long_name + R"(":{"dtype":"F99")"), "x");
    });
    CHECK_THAT(message,
               Catch::Contains("tensor \"nnnnnnnn") && Catch::Contains("...: unsupported dtype"));
    CHECK(message.size() < 300);
  }
}

TEST_CASE("safetensors: BOOL bytes other than 0 and 1 are a FormatError on read, before writing") {
  mlstm::Tensor<bool, 1> flags(3);
  flags.setValues({true, false, true});
  st::Writer writer;
  writer.add("flags", flags);
  std::vector<std::uint8_t> bytes = writer.serialize();
  bytes[bytes.size() - 2] = 2;
  const st::File file = st::File::parse(bytes, "bools.safetensors");
  mlstm::Tensor<bool, 1> out(3);
  out.setConstant(true);
  const std::string message = message_of<mlstm::FormatError>([&] { file.read_into("flags", out); });
  CHECK_THAT(message, Catch::Contains("safetensors file \"bools.safetensors\": tensor \"flags\": "
                                      "BOOL element 1 is the byte 2, not 0 or 1"));
  CHECK(out(1));
}

TEST_CASE("safetensors: any truncation or single-byte change of a file is read safely") {
  // Every outcome must be a valid file or a FormatError; under the sanitizers this also checks
  // that no corrupt header makes the reader touch memory outside the file.
  st::Writer writer;
  writer.add("h", sample_tensor<float, 2>({2, 2}, 0));
  writer.add_converted("half", sample_tensor<double, 1>({3}, 7), st::DType::F16);
  writer.add("flags", sample_tensor<bool, 1>({2}, 0));
  writer.add("count", sample_tensor<std::int64_t, 0>({}, 1));
  writer.set_metadata("format", "pt");
  const std::vector<std::uint8_t> valid = writer.serialize();
  // Reads every tensor of a file that parsed; a changed BOOL byte may make that a FormatError.
  const auto read_all = [](const st::File& file) {
    for (const std::string& name : file.names()) {
      const st::TensorInfo& info = file.info(name);
      const auto kind = mlstm::detail::describe(info.dtype).kind;
      const std::vector<Index> shape = info.shape;
      mlstm::Tensor<double, 1> as_double(info.numel());
      mlstm::Tensor<bool, 1> as_bool(info.numel());
      mlstm::Tensor<std::int64_t, 1> as_integer(info.numel());
      if (shape.size() != 1) continue;
      if (kind == mlstm::detail::DTypeKind::floating) file.read_into(name, as_double);
      if (kind == mlstm::detail::DTypeKind::boolean) file.read_into(name, as_bool);
      if (kind == mlstm::detail::DTypeKind::signed_integer) file.read_into(name, as_integer);
    }
  };
  Index parsed = 0, rejected = 0, other = 0;
  const auto attempt = [&](const std::vector<std::uint8_t>& bytes) {
    try {
      read_all(st::File::parse(bytes, "mutant"));
      ++parsed;
    } catch (const mlstm::FormatError&) {
      ++rejected;
    } catch (...) {
      ++other;
    }
  };
  for (std::size_t length = 0; length < valid.size(); ++length) {
    attempt(std::vector<std::uint8_t>(valid.begin(), valid.begin() + static_cast<long>(length)));
  }
  CHECK(rejected == static_cast<Index>(valid.size()));
  for (std::size_t at = 0; at < valid.size(); ++at) {
    for (std::uint8_t value :
         {0x00, 0x01, 0x02, 0x22, 0x2c, 0x2d, 0x30, 0x39, 0x5b, 0x7b, 0x7d, 0x80, 0xff}) {
      std::vector<std::uint8_t> bytes = valid;
      bytes[at] = value;
      attempt(bytes);
    }
  }
  INFO("parsed " << parsed << ", rejected " << rejected << ", other exceptions " << other);
  CHECK(other == 0);
  CHECK(parsed > 0);
  CHECK(rejected > static_cast<Index>(valid.size()));
}

// --- Mapping and views ------------------------------------------------------------------

TEST_CASE("safetensors: a loaded file is mapped, and views show each tensor's bytes in place") {
  const ScratchDirectory scratch;
  const std::string path = (scratch.path / "model.safetensors").string();
  const auto weights = sample_tensor<float, 2>({3, 4}, 5);
  const auto flags = sample_tensor<bool, 1>({3}, 0);
  st::Writer writer;
  writer.add("w", weights).add_converted("w_bf16", weights, st::DType::BF16).add("flags", flags);
  writer.save(path);
  const std::vector<std::uint8_t> bytes = writer.serialize();
  const std::size_t buffer_start = 8 + header_of(bytes).size();

  std::optional<st::File> loaded = st::File::load(path);
  CHECK(loaded->mapped());
  CHECK_FALSE(st::File::parse(bytes, "in memory").mapped());
  const st::File copy = *loaded;
  const st::TensorView w = loaded->view("w_bf16");
  loaded.reset();  // the copy keeps the mapping alive

  const st::TensorInfo& info = copy.info("w_bf16");
  CHECK(w.dtype == st::DType::BF16);
  CHECK(w.shape == std::vector<Index>{3, 4});
  CHECK(w.numel() == 12);
  CHECK(w.byte_size == 24);
  CHECK(w.aligned_to(2));
  CHECK(std::equal(w.data, w.data + w.byte_size,
                   bytes.begin() + static_cast<long>(buffer_start + info.begin)));
  CHECK(copy.view("flags").byte_size == 3);
  CHECK_THROWS_AS(copy.view("missing"), mlstm::ValueError);

  SECTION("decode_into decodes a tensor of any shape into flat memory") {
    std::vector<double> flat(12);
    copy.decode_into("w", flat.data(), flat.size());
    for (std::size_t i = 0; i < flat.size(); ++i)
      CHECK(same_value(flat[i], double(weights.data()[i])));
    std::vector<std::int32_t> wrong_type(12);
    CHECK_THROWS_AS(copy.decode_into("w", wrong_type.data(), wrong_type.size()), mlstm::ValueError);
    std::vector<float> short_target(11, -1.0f);
    const std::string message = message_of<mlstm::ShapeError>(
        [&] { copy.decode_into("w", short_target.data(), short_target.size()); });
    CHECK_THAT(message, Catch::Contains("has shape (3, 4) (12 elements), but `count` is 11"));
    CHECK(
        std::all_of(short_target.begin(), short_target.end(), [](float x) { return x == -1.0f; }));
  }
}

#if defined(__unix__) || defined(__APPLE__)
TEST_CASE("safetensors: a file that cannot be mapped (a pipe) is read instead") {
  const ScratchDirectory scratch;
  const std::string path = (scratch.path / "pipe").string();
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  const auto weights = sample_tensor<double, 1>({5}, 1);
  const std::vector<std::uint8_t> bytes = st::Writer().add("v", weights).serialize();
  std::thread feeder([&] {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  });
  const st::File file = st::File::load(path);
  feeder.join();
  CHECK_FALSE(file.mapped());
  CHECK(first_difference(file.read<double, 1>("v"), weights) == -1);
}
#endif
