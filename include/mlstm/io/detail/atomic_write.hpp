// Writing a file atomically: readers see the old file or the complete new one, never a part.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "mlstm/io/detail/file_bytes.hpp"

namespace mlstm::detail {

// Writes the concatenated `pieces` to `path`: first to a new temporary file beside it, then
// renamed over it. The data reaches the disk before the rename, so that a crash leaves the old
// file or the new one. On any failure the temporary file is removed and `path` is untouched.
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
#if MLSTM_POSIX_IO
  if (std::fflush(file.get()) != 0 || ::fsync(::fileno(file.get())) != 0) {
    give_up(errno, "cannot write " + path_text(temporary));
  }
#endif
  if (std::fclose(file.release()) != 0) give_up(errno, "cannot write " + path_text(temporary));
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error)
    give_up(error.value(), "cannot rename " + path_text(temporary) + " to " + path_text(path));
}

}  // namespace mlstm::detail
