// A program of a project that uses mlstm: built by each consumer project under tests/consumers/
// to prove one way of bringing the library in.
#include <cmath>
#include <cstdio>
#include <mlstm/mlstm.hpp>
#include <string>

int main() {
  mlstm::Tensor<double, 4> q(1, 2, 5, 4), k(1, 2, 5, 4), v(1, 2, 5, 3);
  mlstm::Tensor<double, 4> igate(1, 2, 5, 1), fgate(1, 2, 5, 1);
  q.setConstant(0.5);
  k.setConstant(0.25);
  v.setConstant(2.0);
  igate.setConstant(1.0);
  fgate.setConstant(3.0);
  const auto h = mlstm::kernel_forward(q, k, v, igate, fgate);
  // With equal values every output is 2 * sum / (sum + eps) for a positive sum >= 1.
  const bool h_ok = h.dimension(3) == 3 && std::abs(h(0, 1, 4, 2) - 2.0) < 1e-5;
  // A float linear layer large enough to take the matrix product (oneDNN's in a MLSTM_GEMM=oneDNN
  // build): every output is 64 * 0.5 * 0.25 = 8 exactly.
  mlstm::Tensor<float, 2> x(300, 64), w(600, 64);
  x.setConstant(0.5f);
  w.setConstant(0.25f);
  const mlstm::Tensor<float, 2> y = mlstm::linear_forward(x, w);
  bool y_ok = true;
  for (mlstm::Index i = 0; i < y.size(); ++i) y_ok = y_ok && y.data()[i] == 8.0f;
#ifdef MLSTM_USE_ONEDNN
  const char* gemm = "oneDNN";
#else
  const char* gemm = "Eigen";
#endif
  const bool ok = h_ok && y_ok;
  std::printf("mlstm %d.%d.%d consumer (%s products): h(0, 1, 4, 2) = %.9f, linear %s: %s\n",
              mlstm::version_major, mlstm::version_minor, mlstm::version_patch, gemm, h(0, 1, 4, 2),
              y_ok ? "exact" : "WRONG", ok ? "ok" : "WRONG");
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
