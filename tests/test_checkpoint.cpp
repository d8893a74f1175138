// Checkpoints: the reference's state dicts (tests/reference/data/model_*.safetensors, written
// from PyTorch by make_model_golden.py) into the registry; F16 / BF16 conversion; round trips with
// the configuration; inferring the configuration from a bare state dict; tied weights; and every
// way a file can fail to fit, each leaving the registry untouched.
#include <sys/resource.h>

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <mlstm/io/safetensors.hpp>
#include <mlstm/mlstm.hpp>

#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;
namespace st = mlstm::safetensors;

std::string data_path(const std::string& file) {
  return std::string(MLSTM_REFERENCE_DATA_DIR) + "/" + file;
}

// A scratch file in the temporary directory, removed at the end of its scope.
struct ScratchFile {
  std::string path;
  explicit ScratchFile(const std::string& name)
      : path(
            (std::filesystem::temp_directory_path() / ("mlstm_test_checkpoint_" + name)).string()) {
  }
  ~ScratchFile() { std::filesystem::remove(path); }
};

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

mlstm::LMModelConfig golden_config(const std::string& case_name) {
  const auto outputs = st::File::load(data_path("model_" + case_name + "_outputs.safetensors"));
  return mlstm::lm_model_config_from_json(outputs.metadata("config"));
}

// Every parameter's values, in registration order.
template <typename T>
std::vector<std::vector<T>> snapshot(const mlstm::Registry<T>& registry) {
  std::vector<std::vector<T>> values;
  for (const auto& parameter : registry)
    values.emplace_back(parameter.data(), parameter.data() + parameter.size());
  return values;
}

// A registry of the small model filled with a recognizable pattern.
mlstm::LanguageModel<float> patterned_model() {
  mlstm::LanguageModel<float> model(golden_config("small"));
  for (auto& parameter : model.registry())
    for (Index i = 0; i < parameter.size(); ++i)
      parameter.data()[i] = 0.25f + 0.001f * float(i % 97);
  return model;
}

// The tensors of `source` (every one, or all but `skip`), re-written with `edit` applied to the
// writer before saving.
template <typename Edit>
void rewrite(const std::string& source, const std::string& target, const std::string& skip,
             const Edit& edit) {
  const auto file = st::File::load(source);
  st::Writer writer;
  for (const std::string& name : file.names()) {
    if (name == skip) continue;
    const auto& shape = file.info(name).shape;
    if (shape.size() == 1) writer.add(name, file.read<float, 1>(name));
    else if (shape.size() == 2) writer.add(name, file.read<float, 2>(name));
    else writer.add(name, file.read<float, 3>(name));
  }
  edit(writer);
  writer.save(target);
}

}  // namespace

TEMPLATE_TEST_CASE("load_checkpoint reads the reference's state dict exactly", "[checkpoint]",
                   float, double) {
  for (const std::string case_name : {"small", "tied_bias"}) {
    CAPTURE(case_name);
    mlstm::LanguageModel<TestType> model(golden_config(case_name));
    const std::string path = data_path("model_" + case_name + ".safetensors");
    mlstm::load_checkpoint(model.registry(), path);
    const auto file = st::File::load(path);
    // Every state-dict name of the reference is one of the registry's and the other way round.
    CHECK(file.names().size() == model.registry().state_dict_names().size());
    for (const std::string& name : model.registry().state_dict_names()) {
      CAPTURE(name);
      const auto& parameter = model.registry().get(name);
      const auto& info = file.info(name);
      REQUIRE(info.shape == parameter.shape());
      // float32 values convert exactly to float and double.
      const auto same_values = [&](const auto& stored) {
        if (stored.size() != parameter.size()) return false;
        for (Index i = 0; i < stored.size(); ++i)
          if (static_cast<double>(parameter.data()[i]) != stored.data()[i]) return false;
        return true;
      };
      if (info.shape.size() == 1) CHECK(same_values(file.read<double, 1>(name)));
      else if (info.shape.size() == 2) CHECK(same_values(file.read<double, 2>(name)));
      else CHECK(same_values(file.read<double, 3>(name)));
    }
  }
}

TEST_CASE("load_checkpoint converts float16 and bfloat16 state dicts as torch does",
          "[checkpoint]") {
  const auto outputs = st::File::load(data_path("model_small_outputs.safetensors"));
  const auto names =
      nlohmann::json::parse(outputs.metadata("param_names")).get<std::vector<std::string>>();
  for (const std::string dtype : {"f16", "bf16"}) {
    CAPTURE(dtype);
    mlstm::LanguageModel<double> model(golden_config("small"));
    mlstm::load_checkpoint(model.registry(), data_path("model_small_" + dtype + ".safetensors"));
    // torch's conversion of each parameter, summed in float64 (sum, sum of |x|) by the script.
    const auto sums = outputs.read<double, 2>("param_sums_" + dtype);
    REQUIRE(sums.dimension(0) == static_cast<Index>(names.size()));
    for (std::size_t p = 0; p < names.size(); ++p) {
      CAPTURE(names[p]);
      const auto values = model.registry().get(names[p]).flat();
      double sum = 0.0, sum_abs = 0.0;
      for (Index i = 0; i < values.size(); ++i) {
        sum += values(i);
        sum_abs += std::abs(values(i));
      }
      const Index row = static_cast<Index>(p);
      CHECK(sum == Approx(sums(row, 0)).epsilon(1e-12).margin(1e-12 * sums(row, 1)));
      CHECK(sum_abs == Approx(sums(row, 1)).epsilon(1e-12));
    }
  }
}

TEST_CASE("save_language_model and load_language_model round-trip parameters and configuration",
          "[checkpoint]") {
  for (const std::string case_name : {"small", "tied_bias"}) {
    CAPTURE(case_name);
    const auto config = golden_config(case_name);
    mlstm::LanguageModel<float> model(config);
    mlstm::load_checkpoint(model.registry(), data_path("model_" + case_name + ".safetensors"));
    ScratchFile file(case_name + ".safetensors");
    mlstm::save_language_model(model, file.path);

    const auto saved = st::File::load(file.path);
    CHECK(saved.metadata("format") == "pt");
    CHECK(saved.names().size() == model.registry().state_dict_names().size());  // tied: both names
    const auto loaded = mlstm::load_language_model<float>(file.path);
    CHECK(mlstm::lm_model_config_to_json(loaded.config()) ==
          mlstm::lm_model_config_to_json(config));
    CHECK(snapshot(loaded.registry()) == snapshot(model.registry()));

    // Stored as bfloat16: every value is the float rounded to bfloat16 (its top 16 bits, to
    // nearest even).
    mlstm::save_language_model(model, file.path, st::DType::BF16);
    CHECK(st::File::load(file.path).info("token_embedding.weight").dtype == st::DType::BF16);
    const auto rounded = mlstm::load_language_model<float>(file.path);
    const auto& original = model.registry().get("xlstm_block_stack.blocks.0.xlstm.proj_up.weight");
    const auto& converted =
        rounded.registry().get("xlstm_block_stack.blocks.0.xlstm.proj_up.weight");
    float worst = 0.0f;  // |rounded - x| / |x|, at most half a bfloat16 ulp: 2^-8
    for (Index i = 0; i < original.size(); ++i)
      worst = std::max(
          worst, std::abs(converted.data()[i] - original.data()[i]) / std::abs(original.data()[i]));
    CHECK(worst <= 0x1p-8f);
    CHECK(worst > 0.0f);
  }
}

TEST_CASE("load_language_model infers the configuration of a bare PyTorch state dict",
          "[checkpoint]") {
  for (const std::string case_name : {"small", "tied_bias"}) {
    CAPTURE(case_name);
    const auto expected = golden_config(case_name);
    const auto file = st::File::load(data_path("model_" + case_name + ".safetensors"));
    CHECK(file.metadata().count(mlstm::lm_model_config_metadata_key) == 0);
    const auto inferred = mlstm::infer_lm_model_config(file, expected.context_length);
    CHECK(inferred.vocab_size == expected.vocab_size);
    CHECK(inferred.embedding_dim == expected.embedding_dim);
    CHECK(inferred.num_blocks == expected.num_blocks);
    CHECK(inferred.num_heads == expected.num_heads);
    CHECK(inferred.inner_embedding_dim() == expected.inner_embedding_dim());
    CHECK(inferred.qkv_proj_blocksize == expected.qkv_proj_blocksize);
    CHECK(inferred.conv1d_kernel_size == expected.conv1d_kernel_size);
    CHECK(inferred.bias == expected.bias);
    CHECK(inferred.add_post_blocks_norm == expected.add_post_blocks_norm);
    CHECK(inferred.tie_weights == expected.tie_weights);
    // The inferred model computes what the configured one does.
    const auto model = mlstm::load_language_model<double>(
        data_path("model_" + case_name + ".safetensors"), {}, expected.context_length);
    mlstm::LanguageModel<double> configured(expected);
    mlstm::load_checkpoint(configured.registry(), data_path("model_" + case_name + ".safetensors"));
    Tensor<std::int64_t, 2> tokens(1, 5);
    for (Index t = 0; t < 5; ++t) tokens(0, t) = (3 * t + 1) % expected.vocab_size;
    CHECK(mlstm::test::max_difference(model.forward(tokens), configured.forward(tokens)).max_abs ==
          0.0);
  }
}

TEST_CASE("tied weights: one name is enough, two must agree", "[checkpoint]") {
  const std::string source = data_path("model_tied_bias.safetensors");
  mlstm::LanguageModel<float> model(golden_config("tied_bias"));
  ScratchFile one_name("tied_one_name.safetensors");
  rewrite(source, one_name.path, "lm_head.weight", [](st::Writer&) {});  // the embedding alone
  mlstm::load_checkpoint(model.registry(), one_name.path);
  CHECK(snapshot(model.registry()) == [&] {
    mlstm::LanguageModel<float> full(golden_config("tied_bias"));
    mlstm::load_checkpoint(full.registry(), source);
    return snapshot(full.registry());
  }());
  CHECK(mlstm::infer_lm_model_config(st::File::load(one_name.path), 12).tie_weights);
  // safetensors' save_model keeps the first name in sorted order: lm_head.weight.
  ScratchFile head_only("tied_head_only.safetensors");
  rewrite(source, head_only.path, "token_embedding.weight", [](st::Writer&) {});
  const auto from_head = mlstm::load_language_model<float>(head_only.path, {}, 12);
  CHECK(from_head.config().tie_weights);
  CHECK(from_head.config().vocab_size == 40);
  CHECK(snapshot(from_head.registry()) == snapshot(model.registry()));

  ScratchFile differing("tied_differing.safetensors");
  rewrite(source, differing.path, "lm_head.weight", [](st::Writer& writer) {
    Tensor<float, 2> head(40, 48);
    head.setConstant(0.5f);
    writer.add("lm_head.weight", head);
  });
  const auto before = snapshot(model.registry());
  CHECK_THROWS_WITH(mlstm::load_checkpoint(model.registry(), differing.path),
                    Catch::Contains("tied parameters differ") && Catch::Contains("lm_head.weight"));
  CHECK(snapshot(model.registry()) == before);
  CHECK_FALSE(mlstm::infer_lm_model_config(st::File::load(differing.path), 12).tie_weights);
}

TEST_CASE("load_checkpoint lists missing, unexpected and mis-shaped tensors, writing nothing",
          "[checkpoint][errors]") {
  const std::string source = data_path("model_small.safetensors");
  auto model = patterned_model();
  const auto before = snapshot(model.registry());

  ScratchFile file("broken.safetensors");
  rewrite(source, file.path, "xlstm_block_stack.blocks.1.xlstm.learnable_skip",
          [](st::Writer& writer) {
            Tensor<float, 1> extra(3);
            extra.setZero();
            writer.add("xlstm_block_stack.blocks.2.xlstm.learnable_skip", extra);
          });
  CHECK_THROWS_AS(mlstm::load_checkpoint(model.registry(), file.path), mlstm::ValueError);
  CHECK_THROWS_WITH(
      mlstm::load_checkpoint(model.registry(), file.path),
      Catch::Contains("missing xlstm_block_stack.blocks.1.xlstm.learnable_skip") &&
          Catch::Contains("unexpected xlstm_block_stack.blocks.2.xlstm.learnable_skip"));
  CHECK(snapshot(model.registry()) == before);

  // Two mis-shaped tensors and one of an integer dtype, listed together.
  {
    const auto original = st::File::load(source);
    st::Writer writer;
    for (const std::string& name : original.names()) {
      const auto& shape = original.info(name).shape;
      if (name == "token_embedding.weight") {
        writer.add(name, Tensor<float, 2>(51, 32).setZero());
      } else if (name == "xlstm_block_stack.blocks.0.xlstm.conv1d.conv.weight") {
        writer.add(name, Tensor<float, 2>(64, 4).setZero());
      } else if (name == "xlstm_block_stack.post_blocks_norm.weight") {
        writer.add(name, Tensor<std::int32_t, 1>(32).setZero());
      } else if (shape.size() == 1) {
        writer.add(name, original.read<float, 1>(name));
      } else if (shape.size() == 2) {
        writer.add(name, original.read<float, 2>(name));
      } else {
        writer.add(name, original.read<float, 3>(name));
      }
    }
    writer.save(file.path);
  }
  CHECK_THROWS_AS(mlstm::load_checkpoint(model.registry(), file.path), mlstm::ShapeError);
  CHECK_THROWS_WITH(
      mlstm::load_checkpoint(model.registry(), file.path),
      Catch::Contains(
          "token_embedding.weight (file: F32 (51, 32), expected a float dtype (50, 32))") &&
          Catch::Contains("conv1d.conv.weight (file: F32 (64, 4)") &&
          Catch::Contains("post_blocks_norm.weight (file: I32 (32)"));
  CHECK(snapshot(model.registry()) == before);

  // A registry from another configuration: everything is listed, nothing written.
  mlstm::LMModelConfig other = golden_config("small");
  other.num_blocks = 3;
  mlstm::LanguageModel<float> bigger(other);
  CHECK_THROWS_WITH(mlstm::load_checkpoint(bigger.registry(), source),
                    Catch::Contains("missing xlstm_block_stack.blocks.2.xlstm_norm.weight"));
}

TEST_CASE("load_checkpoint rejects truncated and corrupt files, writing nothing",
          "[checkpoint][errors]") {
  const std::string source = data_path("model_small.safetensors");
  auto model = patterned_model();
  const auto before = snapshot(model.registry());
  const std::vector<std::uint8_t> bytes = read_bytes(source);
  ScratchFile file("corrupt.safetensors");

  // Truncated: the data ends early; the header is cut; only the length field is left.
  for (const std::size_t keep :
       {bytes.size() - 4, std::size_t(200), std::size_t(8), std::size_t(3)}) {
    CAPTURE(keep);
    write_bytes(file.path, std::vector<std::uint8_t>(
                               bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep)));
    CHECK_THROWS_AS(mlstm::load_checkpoint(model.registry(), file.path), mlstm::FormatError);
    CHECK(snapshot(model.registry()) == before);
  }

  // A header that lies about an offset (same length, so only the lie is wrong).
  std::uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i)
    header_length = header_length << 8 | bytes[static_cast<std::size_t>(i)];
  std::string header(bytes.begin() + 8,
                     bytes.begin() + 8 + static_cast<std::ptrdiff_t>(header_length));
  const std::string entry =
      "\"lm_head.weight\":{\"dtype\":\"F32\",\"shape\":[50,32],\"data_offsets\":[0,6400]}";
  const std::size_t at = header.find(entry);
  REQUIRE(at != std::string::npos);
  std::string lie = entry;
  lie.replace(lie.find("[0,6400]"), 8, "[8,6408]");
  header.replace(at, entry.size(), lie);
  std::vector<std::uint8_t> lying(bytes);
  std::copy(header.begin(), header.end(), lying.begin() + 8);
  write_bytes(file.path, lying);
  CHECK_THROWS_AS(mlstm::load_checkpoint(model.registry(), file.path), mlstm::FormatError);
  CHECK_THROWS_WITH(mlstm::load_checkpoint(model.registry(), file.path),
                    Catch::Contains("lm_head.weight") && Catch::Contains("belong to no tensor"));
  CHECK(snapshot(model.registry()) == before);

  // Garbage JSON in the header.
  std::vector<std::uint8_t> garbage(bytes);
  garbage[9] = '#';
  write_bytes(file.path, garbage);
  CHECK_THROWS_AS(mlstm::load_checkpoint(model.registry(), file.path), mlstm::FormatError);
  CHECK(snapshot(model.registry()) == before);

  // No file at all.
  CHECK_THROWS_AS(mlstm::load_checkpoint(model.registry(), file.path + ".absent"),
                  std::system_error);
}

TEST_CASE("checkpoint prefixes, as DataParallel and torch.compile write them", "[checkpoint]") {
  auto model = patterned_model();
  ScratchFile file("prefixed.safetensors");
  mlstm::CheckpointOptions prefixed;
  prefixed.prefix = "module.";
  mlstm::save_checkpoint(model.registry(), file.path, {}, std::nullopt, prefixed);
  CHECK(st::File::load(file.path).contains("module.token_embedding.weight"));

  mlstm::LanguageModel<float> other(golden_config("small"));
  CHECK_THROWS_WITH(mlstm::load_checkpoint(other.registry(), file.path),
                    Catch::Contains("does the file use a prefix"));
  mlstm::load_checkpoint(other.registry(), file.path, prefixed);
  CHECK(snapshot(other.registry()) == snapshot(model.registry()));
  CHECK(mlstm::infer_lm_model_config(st::File::load(file.path), 16, prefixed).num_blocks == 2);
}

TEST_CASE("model configuration JSON: round trip and errors", "[checkpoint][errors]") {
  const auto config = golden_config("tied_bias");
  const auto again = mlstm::lm_model_config_from_json(mlstm::lm_model_config_to_json(config));
  CHECK(mlstm::lm_model_config_to_json(again) == mlstm::lm_model_config_to_json(config));
  CHECK(again.proj_factor == config.proj_factor);
  CHECK_THROWS_WITH(mlstm::lm_model_config_from_json("{\"vocab_size\": 10, \"colour\": 1}"),
                    Catch::Contains("config.colour") && Catch::Contains("unknown field"));
  CHECK_THROWS_WITH(mlstm::lm_model_config_from_json("{\"vocab_size\": \"ten\"}"),
                    Catch::Contains("config.vocab_size") && Catch::Contains("integer"));
  CHECK_THROWS_WITH(mlstm::lm_model_config_from_json("{\"vocab_size\": 10,"),
                    Catch::Contains("not valid JSON"));
  CHECK_THROWS_WITH(mlstm::lm_model_config_from_json("{\"vocab_size\": 1e400}"),
                    Catch::Contains("not valid JSON"));
  CHECK_THROWS_WITH(mlstm::lm_model_config_from_json(std::string(17, '[') + std::string(17, ']')),
                    Catch::Contains("nests deeper than 16"));
  CHECK_THROWS_WITH(mlstm::lm_model_config_from_json(std::string(16, '[') + std::string(16, ']')),
                    Catch::Contains("expected a JSON object"));  // 16 levels parse
  CHECK_THROWS_WITH(
      mlstm::lm_model_config_from_json(
          "{\"vocab_size\": 10, \"context_length\": 4, \"inner_embedding_dim\": 100}"),
      Catch::Contains("config.inner_embedding_dim") && Catch::Contains("give 256"));
  CHECK_THROWS_WITH(mlstm::lm_model_config_from_json("{\"vocab_size\": 10}"),
                    Catch::Contains("config.context_length"));
}

namespace {

// The peak resident memory of the process so far, in bytes.
long long peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<long long>(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
}

// A safetensors file: `header` (tensors and "__metadata__") padded with spaces to `header_size`
// bytes if given, then `data_bytes` zero bytes of data.
std::vector<std::uint8_t> safetensors_bytes(const nlohmann::json& header, std::size_t data_bytes,
                                            std::size_t header_size = 0) {
  std::string text = header.dump();
  if (text.size() < header_size) text.append(header_size - text.size(), ' ');
  std::vector<std::uint8_t> bytes(8 + text.size() + data_bytes, 0);
  for (int i = 0; i < 8; ++i) bytes[static_cast<std::size_t>(i)] = (text.size() >> (8 * i)) & 0xff;
  std::copy(text.begin(), text.end(), bytes.begin() + 8);
  return bytes;
}

// Loads `bytes` as a language model, expecting the exception E, within 100 MB of peak memory.
template <typename E>
std::string rejected_cheaply(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  ScratchFile file(name);
  write_bytes(file.path, bytes);
  const long long before = peak_rss_bytes();
  std::string message;
  try {
    mlstm::load_language_model<float>(file.path, {}, 16);
    FAIL("expected an exception");
  } catch (const E& error) {
    message = error.what();
  }
  const long long growth = peak_rss_bytes() - before;
  INFO(message << "\npeak memory grew by " << growth << " bytes");
  CHECK(growth < 100LL * 1024 * 1024);
  return message;
}

// Metadata with a stored configuration of the reference's defaults but for these fields.
nlohmann::json stored_config(Index vocab_size, Index embedding_dim) {
  const nlohmann::json config{
      {"vocab_size", vocab_size}, {"embedding_dim", embedding_dim}, {"context_length", 16}};
  return {{mlstm::lm_model_config_metadata_key, config.dump()}};
}

}  // namespace

TEST_CASE("a checkpoint's configuration is checked against its tensors before anything is built",
          "[checkpoint][errors]") {
  // 384 bytes whose stored configuration says vocab 2^22, embedding 1024 (16 GiB of parameters).
  nlohmann::json header{
      {"__metadata__", stored_config(Index(1) << 22, 1024)},
      {"token_embedding.weight", {{"dtype", "F32"}, {"shape", {2, 4}}, {"data_offsets", {0, 32}}}}};
  const auto small_file = safetensors_bytes(header, 32, 384 - 8 - 32);
  REQUIRE(small_file.size() == 384);
  CHECK_THAT(rejected_cheaply<mlstm::ValueError>(small_file, "claims_16g.safetensors"),
             Catch::Contains("holds 8 elements") && Catch::Contains("describes"));

  // Vocab 2^18 x 512 with most tensors missing.
  header["__metadata__"] = stored_config(Index(1) << 18, 512);
  CHECK_THAT(
      rejected_cheaply<mlstm::ValueError>(safetensors_bytes(header, 32), "claims_1g.safetensors"),
      Catch::Contains("describes"));

  // A stored block count beyond the tensor count is refused before it is described.
  auto config =
      mlstm::lm_model_config_from_json(header["__metadata__"][mlstm::lm_model_config_metadata_key]);
  config.num_blocks = Index(1) << 40;
  header["__metadata__"][mlstm::lm_model_config_metadata_key] =
      mlstm::lm_model_config_to_json(config);
  CHECK_THAT(
      rejected_cheaply<mlstm::ValueError>(safetensors_bytes(header, 32), "many_blocks.safetensors"),
      Catch::Contains("1099511627776 blocks") && Catch::Contains("1 tensors"));
}

TEST_CASE("an inferred configuration is checked against every tensor before anything is built",
          "[checkpoint][errors]") {
  // A valid state dict but for conv1d.conv.weight, declared (0, 1, 2^31) in 0 bytes.
  const std::string conv = "xlstm_block_stack.blocks.0.xlstm.conv1d.conv.weight";
  const auto model = patterned_model();
  st::Writer writer;
  for (const std::string& name : model.registry().state_dict_names()) {
    const auto& parameter = model.registry().get(name);
    const auto& shape = parameter.shape();
    if (name == conv) {
      writer.add(name, Tensor<float, 3>(0, 1, Index(1) << 31));
    } else if (shape.size() == 1) {
      writer.add(name, parameter.map<1>());
    } else if (shape.size() == 2) {
      writer.add(name, parameter.map<2>());
    } else {
      writer.add(name, parameter.map<3>());
    }
  }
  CHECK_THAT(rejected_cheaply<mlstm::ShapeError>(writer.serialize(), "huge_kernel.safetensors"),
             Catch::Contains(conv) && Catch::Contains("inner_embedding_dim = 0"));
}
