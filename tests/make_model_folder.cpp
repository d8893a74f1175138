// make_model_folder KIND DIR TOKENIZER_JSON: writes a small model folder for the examples' tests:
// DIR/tokenizer.json (a copy) and a model with random weights (seed 0) whose vocabulary holds
// every id of the tokenizer. KIND is
//   xlstm-large   a Hugging Face folder as save_pretrained writes it: config.json and
//                 model.safetensors under transformers' parameter names
//   lm            model.safetensors of the mLSTM language model (save_language_model)
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include <mlstm/io/tokenizer.hpp>
#include <mlstm/mlstm.hpp>

namespace {

void write_xlstm_large(const std::filesystem::path& folder, mlstm::Index vocab_size) {
  mlstm::XLSTMLargeConfig config;
  config.vocab_size = vocab_size;
  config.embedding_dim = 32;
  config.num_heads = 2;
  config.num_blocks = 2;
  config.chunk_size = 8;
  config.ffn_round_up_to_multiple_of = 16;
  mlstm::XLSTMLarge<float> model(config, mlstm::XLSTMLargeNames::transformers);

  // Matrices and biases normal(0, 0.3), norm weights around one; written in table order.
  std::mt19937 engine(0);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  mlstm::safetensors::Writer writer;
  const mlstm::ParameterTable table = model.table();
  for (const mlstm::ParameterRow& row : table.rows()) {
    mlstm::TensorMap<float, 1> values =
        mlstm::is_matrix(row) ? model.matrix(row.name) : model.vector(row.name);
    const bool norm_weight = row.init && row.init->scheme == mlstm::InitScheme::ones;
    for (mlstm::Index i = 0; i < values.size(); ++i)
      values(i) = (norm_weight ? 1.0f : 0.0f) + normal(engine);
    const mlstm::Shape shape = row.shape();
    if (shape.size() == 2) {
      writer.add(row.name, mlstm::TensorMap<float, 2>(values.data(), shape[0], shape[1]));
    } else {
      writer.add(row.name, values);
    }
  }
  writer.save((folder / "model.safetensors").string());

  const nlohmann::json json = {{"model_type", "xlstm"},
                               {"architectures", {"xLSTMForCausalLM"}},
                               {"vocab_size", config.vocab_size},
                               {"hidden_size", config.embedding_dim},
                               {"num_heads", config.num_heads},
                               {"num_hidden_layers", config.num_blocks},
                               {"chunk_size", config.chunk_size},
                               {"ffn_round_up_to_multiple_of", config.ffn_round_up_to_multiple_of},
                               {"weight_mode", "single"},
                               {"tie_word_embeddings", false}};
  std::ofstream(folder / "config.json") << json.dump(2) << "\n";
}

void write_language_model(const std::filesystem::path& folder, mlstm::Index vocab_size) {
  mlstm::LMModelConfig config;
  config.vocab_size = vocab_size;
  config.embedding_dim = 32;
  config.num_heads = 2;
  config.num_blocks = 1;
  config.context_length = 64;
  mlstm::LanguageModel<float> model(config);
  mlstm::Generator generator(0);
  model.reset_parameters(generator);
  mlstm::save_language_model(model, (folder / "model.safetensors").string());
}

}  // namespace

int main(int argc, char** argv) {
  const std::string kind = argc == 4 ? argv[1] : "";
  if (kind != "xlstm-large" && kind != "lm") {
    std::cerr << "usage: make_model_folder xlstm-large|lm DIR TOKENIZER_JSON\n";
    return 2;
  }
  try {
    const std::filesystem::path folder = argv[2];
    const mlstm::Tokenizer tokenizer = mlstm::Tokenizer::from_file(argv[3]);
    std::filesystem::create_directories(folder);
    std::filesystem::copy_file(argv[3], folder / "tokenizer.json",
                               std::filesystem::copy_options::overwrite_existing);
    if (kind == "xlstm-large") {
      write_xlstm_large(folder, tokenizer.id_count());
    } else {
      write_language_model(folder, tokenizer.id_count());
    }
  } catch (const std::exception& error) {
    std::cerr << "make_model_folder: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
