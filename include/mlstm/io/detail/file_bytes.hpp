// The bytes of a whole file, read-only: mapped into memory where the system allows it, else read.
//
// Mapping costs address space, not memory: pages are read when first touched and can be dropped
// again by the OS, so opening a large checkpoint takes memory for its header only. A mapped file
// must not be truncated while mapped (reading the lost pages raises SIGBUS); files replaced by
// rename, as mlstm's writers do, are safe.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "mlstm/errors.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define MLSTM_POSIX_IO 1
#else
#define MLSTM_POSIX_IO 0
#endif

namespace mlstm::detail {

[[noreturn]] inline void throw_io_error(int error, const std::string& what) {
  throw IoError(error, std::generic_category(), "mlstm: " + what);
}

// A file path for messages, whole.
inline std::string path_text(const std::string& path) { return "\"" + path + "\""; }

struct CloseFile {
  void operator()(std::FILE* file) const { std::fclose(file); }
};
using FileHandle = std::unique_ptr<std::FILE, CloseFile>;

// Reads `file` from its current position to its end.
inline std::vector<std::uint8_t> read_to_end(std::FILE* file, const std::string& path) {
  std::vector<std::uint8_t> bytes;
  std::size_t size = 0;
  for (;;) {
    const std::size_t chunk = std::max<std::size_t>(size, std::size_t(1) << 16);
    bytes.resize(size + chunk);
    const std::size_t got = std::fread(bytes.data() + size, 1, chunk, file);
    size += got;
    if (got < chunk) break;
  }
  if (std::ferror(file)) throw_io_error(errno, "cannot read " + path_text(path));
  bytes.resize(size);
  bytes.shrink_to_fit();
  return bytes;
}

inline std::vector<std::uint8_t> read_whole_file(const std::string& path) {
  const FileHandle file(std::fopen(path.c_str(), "rb"));
  if (!file) throw_io_error(errno, "cannot open " + path_text(path));
  return read_to_end(file.get(), path);
}

// Read-only bytes that stay where they are for the object's life: a mapping or an owned buffer.
class FileBytes {
 public:
  // The file at `path`, mapped if it is a regular file the system maps, read otherwise. Throws
  // IoError if it cannot be opened or read.
  static std::shared_ptr<const FileBytes> open(const std::string& path) {
#if MLSTM_POSIX_IO
    const int descriptor = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (descriptor < 0) throw_io_error(errno, "cannot open " + path_text(path));
    struct stat status {};
    void* mapping = MAP_FAILED;
    std::size_t length = 0;
    if (::fstat(descriptor, &status) == 0 && S_ISREG(status.st_mode) && status.st_size > 0 &&
        static_cast<std::uintmax_t>(status.st_size) <= SIZE_MAX) {
      length = static_cast<std::size_t>(status.st_size);
      mapping = ::mmap(nullptr, length, PROT_READ, MAP_PRIVATE, descriptor, 0);
    }
    if (mapping != MAP_FAILED) {
      ::close(descriptor);  // the mapping keeps the file's pages reachable
      return std::shared_ptr<const FileBytes>(
          new FileBytes(static_cast<const std::uint8_t*>(mapping), length, {}, true));
    }
    const FileHandle file(::fdopen(descriptor, "rb"));
    if (!file) {
      const int error = errno;
      ::close(descriptor);
      throw_io_error(error, "cannot open " + path_text(path));
    }
    return hold(read_to_end(file.get(), path));
#else
    return hold(read_whole_file(path));
#endif
  }

  // `bytes`, kept.
  static std::shared_ptr<const FileBytes> hold(std::vector<std::uint8_t> bytes) {
    const std::uint8_t* data = bytes.data();
    const std::size_t size = bytes.size();
    return std::shared_ptr<const FileBytes>(new FileBytes(data, size, std::move(bytes), false));
  }

  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;

  ~FileBytes() {
#if MLSTM_POSIX_IO
    if (mapped_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
#endif
  }

  const std::uint8_t* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }

  // Whether the bytes are a mapping of the file rather than a copy in memory.
  bool mapped() const noexcept { return mapped_; }

 private:
  // A moved vector keeps its buffer, so `data` stays valid once `owned` is moved in.
  FileBytes(const std::uint8_t* data, std::size_t size, std::vector<std::uint8_t> owned,
            bool mapped)
      : data_(data), size_(size), owned_(std::move(owned)), mapped_(mapped) {}

  const std::uint8_t* data_;
  std::size_t size_;
  std::vector<std::uint8_t> owned_;
  bool mapped_;
};

}  // namespace mlstm::detail
