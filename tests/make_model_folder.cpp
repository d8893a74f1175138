// make_model_folder DIR TOKENIZER_JSON: writes a model folder for the generate example's test:
// DIR/tokenizer.json (a copy) and DIR/model.safetensors, a small new language model (seed 0)
// whose vocabulary holds every id of the tokenizer.
#include <filesystem>
#include <iostream>

#include <mlstm/io/tokenizer.hpp>
#include <mlstm/mlstm.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_model_folder DIR TOKENIZER_JSON\n";
    return 2;
  }
  try {
    const std::filesystem::path folder = argv[1];
    const mlstm::Tokenizer tokenizer = mlstm::Tokenizer::from_file(argv[2]);
    std::filesystem::create_directories(folder);
    std::filesystem::copy_file(argv[2], folder / "tokenizer.json",
                               std::filesystem::copy_options::overwrite_existing);
    mlstm::LMModelConfig config;
    config.vocab_size = tokenizer.id_count();
    config.embedding_dim = 32;
    config.num_heads = 2;
    config.num_blocks = 1;
    config.context_length = 64;
    mlstm::LanguageModel<float> model(config);
    mlstm::Generator generator(0);
    model.reset_parameters(generator);
    mlstm::save_language_model(model, (folder / "model.safetensors").string());
  } catch (const std::exception& error) {
    std::cerr << "make_model_folder: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
