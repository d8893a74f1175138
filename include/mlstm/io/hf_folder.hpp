// A Hugging Face model folder as `save_pretrained` writes it:
//
//   config.json                          the model's configuration
//   model.safetensors                    the weights in one file, or
//   model.safetensors.index.json         {"weight_map": {tensor name: shard file name}, ...}
//   model-0000k-of-0000n.safetensors     the shards the index names
//
//   auto folder = mlstm::HFFolder::open("xLSTM-7b");   // checks the files are there
//   folder.config_text();                               // config.json's text
//   std::vector<mlstm::safetensors::File> shards = folder.open_shards();
//
// open() reads config.json and the index and checks that every shard the index names exists
// as a plain file name inside the folder; open_shards() maps the shards (validating each
// header) and checks that every tensor lies in the shard the index says and every indexed
// tensor is there. Errors are FormatError naming the file and what is wrong.
// The folder says nothing about a model: models/ interpret the configuration and the tensors.
#pragma once

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "mlstm/errors.hpp"
#include "mlstm/io/detail/json_parse.hpp"
#include "mlstm/io/safetensors.hpp"

namespace mlstm {

inline constexpr const char* hf_config_file = "config.json";
inline constexpr const char* hf_single_weights_file = "model.safetensors";
inline constexpr const char* hf_index_file = "model.safetensors.index.json";

class HFFolder {
 public:
  // Throws FormatError naming the folder and the missing or malformed file.
  static HFFolder open(const std::string& path) {
    HFFolder folder;
    folder.path_ = path;
    if (!is_file(folder.file_path(hf_config_file)))
      throw FormatError("model folder \"" + path + "\" has no " + hf_config_file);
    folder.config_text_ = read_text(folder.file_path(hf_config_file));
    if (is_file(folder.file_path(hf_index_file))) {
      folder.read_index();
    } else if (is_file(folder.file_path(hf_single_weights_file))) {
      folder.shards_.push_back(hf_single_weights_file);
    } else {
      throw FormatError("model folder \"" + path + "\" has neither " + hf_single_weights_file +
                        " nor " + hf_index_file);
    }
    return folder;
  }

  const std::string& path() const { return path_; }
  const std::string& config_text() const { return config_text_; }
  std::string config_path() const { return file_path(hf_config_file); }

  // The weight files, in the index's order of first mention (one without an index).
  const std::vector<std::string>& shards() const { return shards_; }

  // Tensor name -> shard file name from the index (empty without an index).
  const std::map<std::string, std::string>& weight_map() const { return weight_map_; }

  // Every shard, opened (memory-mapped where the system allows: the memory used is the headers')
  // and validated. FormatError if a shard holds a tensor the index puts elsewhere (or does not
  // list), or lacks one the index puts there.
  std::vector<safetensors::File> open_shards() const {
    std::vector<safetensors::File> files;
    for (const std::string& shard : shards_) {
      files.push_back(safetensors::File::load(file_path(shard)));
      if (!weight_map_.empty()) check_against_index(shard, files.back());
    }
    return files;
  }

  std::string file_path(const std::string& name) const { return path_ + "/" + name; }

 private:
  HFFolder() = default;

  static bool is_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return static_cast<bool>(in);
  }

  static std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in && !in.eof()) throw FormatError("cannot read \"" + path + "\"");
    return text.str();
  }

  void read_index() {
    const std::string index_path = file_path(hf_index_file);
    const nlohmann::json index =
        detail::parse_json(read_text(index_path), [&](const std::string& reason) {
          return FormatError("\"" + index_path + "\": the file " + reason);
        });
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw FormatError("\"" + index_path + "\": expected an object with a \"weight_map\" object");
    std::set<std::string> seen;
    for (const auto& [name, shard] : index["weight_map"].items()) {
      if (!shard.is_string())
        throw FormatError("\"" + index_path + "\": the shard of \"" + name +
                          "\" must be a file name, got " + shard.dump());
      const std::string shard_name = shard.get<std::string>();
      // A shard is a file of this folder: no path separators, no "..", nothing hidden.
      if (shard_name.empty() || shard_name.find('/') != std::string::npos ||
          shard_name.find('\\') != std::string::npos || shard_name.front() == '.')
        throw FormatError("\"" + index_path + "\": shard \"" + shard_name + "\" of \"" + name +
                          "\" is not a plain file name of the folder");
      weight_map_.emplace(name, shard_name);
      if (seen.insert(shard_name).second) shards_.push_back(shard_name);
    }
    if (weight_map_.empty()) throw FormatError("\"" + index_path + "\": the weight_map is empty");
    for (const std::string& shard : shards_) {
      if (!is_file(file_path(shard)))
        throw FormatError("model folder \"" + path_ + "\": shard \"" + shard + "\" named by " +
                          hf_index_file + " is missing");
    }
  }

  void check_against_index(const std::string& shard, const safetensors::File& file) const {
    for (const std::string& name : file.names()) {
      const auto found = weight_map_.find(name);
      if (found == weight_map_.end() || found->second != shard)
        throw FormatError(
            "\"" + file_path(shard) + "\" holds tensor \"" + name + "\", which " + hf_index_file +
            (found == weight_map_.end() ? " does not list" : " puts in \"" + found->second + "\""));
    }
    for (const auto& [name, where] : weight_map_) {
      if (where == shard && !file.contains(name))
        throw FormatError("\"" + file_path(shard) + "\" lacks tensor \"" + name + "\", which " +
                          hf_index_file + " puts there");
    }
  }

  std::string path_;
  std::string config_text_;
  std::vector<std::string> shards_;
  std::map<std::string, std::string> weight_map_;
};

}  // namespace mlstm
