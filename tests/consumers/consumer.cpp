// A program of a project that uses mlstm: built by each consumer project under tests/consumers/
// to prove one way of bringing the library in.
#include <cmath>
#include <cstdio>
#include <string>

#include <mlstm/mlstm.hpp>

int main() {
  mlstm::Tensor<double, 4> q(1, 2, 5, 4), k(1, 2, 5, 4), v(1, 2, 5, 3);
  mlstm::Tensor<double, 4> igate(1, 2, 5, 1), fgate(1, 2, 5, 1);
  q.setConstant(0.5);
  k.setConstant(0.25);
  v.setConstant(2.0);
  igate.setConstant(1.0);
  fgate.setConstant(3.0);
  const auto h = mlstm::Backend().forward(q, k, v, igate, fgate);
  // With equal values every output is 2 * sum / (sum + eps) for a positive sum >= 1.
  const bool ok = h.dimension(3) == 3 && std::abs(h(0, 1, 4, 2) - 2.0) < 1e-5;
  std::printf("mlstm %d.%d.%d consumer: h(0, 1, 4, 2) = %.9f %s\n", mlstm::version_major,
              mlstm::version_minor, mlstm::version_patch, h(0, 1, 4, 2), ok ? "ok" : "WRONG");
#ifdef MLSTM_PACKAGE_VERSION
  // The installed package's version (mlstmConfigVersion.cmake) is the header's.
  const std::string header_version = std::to_string(mlstm::version_major) + "." +
                                     std::to_string(mlstm::version_minor) + "." +
                                     std::to_string(mlstm::version_patch);
  if (header_version != MLSTM_PACKAGE_VERSION) {
    std::printf("package version %s, header version %s\n", MLSTM_PACKAGE_VERSION,
                header_version.c_str());
    return 1;
  }
#endif
  return ok ? 0 : 1;
}
