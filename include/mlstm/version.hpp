// The version of mlstm, written here only: CMake's project() reads it from these lines.
#pragma once

#define MLSTM_VERSION_MAJOR 0
#define MLSTM_VERSION_MINOR 1
#define MLSTM_VERSION_PATCH 0

namespace mlstm {
inline constexpr int version_major = MLSTM_VERSION_MAJOR;
inline constexpr int version_minor = MLSTM_VERSION_MINOR;
inline constexpr int version_patch = MLSTM_VERSION_PATCH;
}  // namespace mlstm
