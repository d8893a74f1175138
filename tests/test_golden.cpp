// The kernels against golden data from the PyTorch reference (tests/reference/make_golden.py):
// every parallel_*.safetensors and step_*.safetensors case, in double and in float.
//
// double: within `double_relative` of the reference's magnitude.
// float:  the inputs rounded to float as the reference's float32 run rounded them; the error
//         against the float64 output within `float_reference_loss_factor` times the reference's
//         own float32 error on that case (|h_f32ref - h|), and never below float rounding; the
//         parallel form's cases, with rows where the normalizer's sum nearly cancels, within
//         `float_cancellation_loss_factor` times it.
// Set MLSTM_GOLDEN_REPORT=1 to print the measured errors of every case.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <mlstm/io/safetensors.hpp>
#include <mlstm/mlstm.hpp>

#include "support/tolerance.hpp"

namespace {

using mlstm::Index;
using mlstm::Tensor;

std::vector<std::filesystem::path> reference_files(const std::string& prefix) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(MLSTM_REFERENCE_DATA_DIR)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && entry.path().extension() == ".safetensors")
      files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

void report(const std::string& case_name, const char* what, const mlstm::test::Difference& d,
            double reference_loss) {
  if (std::getenv("MLSTM_GOLDEN_REPORT") == nullptr) return;
  std::printf("%-40s %-10s relative error %.3g", case_name.c_str(), what,
              d.scale > 0 ? d.max_abs / d.scale : d.max_abs);
  if (reference_loss >= 0)
    std::printf("  (reference float32 %.3g, ratio %.2f)", reference_loss / d.scale,
                reference_loss > 0 ? d.max_abs / reference_loss : 0.0);
  std::printf("\n");
}

double double_budget(const Tensor<double, 4>& reference) {
  return mlstm::test::double_relative * mlstm::test::magnitude(reference);
}

// The float result's budget on a case: from the reference's own float32 loss.
struct FloatCheck {
  double budget;
  double reference_loss;
};

FloatCheck float_check(const Tensor<double, 4>& reference, const Tensor<float, 4>& reference_f32,
                       double loss_factor = mlstm::test::float_reference_loss_factor) {
  const double loss = mlstm::test::max_difference(reference_f32, reference).max_abs;
  return {mlstm::test::float_budget(loss, mlstm::test::magnitude(reference), loss_factor), loss};
}

template <typename T>
struct ParallelCase {
  Tensor<T, 4> q, k, v, igate, fgate;
  mlstm::ParallelOptions options;

  explicit ParallelCase(const mlstm::safetensors::File& file)
      : q(file.read<T, 4>("q")),
        k(file.read<T, 4>("k")),
        v(file.read<T, 4>("v")),
        igate(file.read<T, 4>("igate_preact")),
        fgate(file.read<T, 4>("fgate_preact")) {
    options.stabilize_rowwise = file.metadata("stabilize_rowwise") == "true";
    options.eps = std::stod(file.metadata("eps"));
    if (file.contains("mask")) options.mask = file.read<bool, 2>("mask");
  }

  Tensor<T, 4> run() const { return mlstm::parallel_stabilized(q, k, v, igate, fgate, options); }
};

}  // namespace

TEST_CASE("parallel_stabilized reproduces the reference's golden outputs", "[golden][parallel]") {
  const auto files = reference_files("parallel_");
  REQUIRE(files.size() >= 10);
  for (const auto& path : files) {
    const std::string name = path.stem().string();
    CAPTURE(name);
    const auto file = mlstm::safetensors::File::load(path.string());
    const auto expected = file.read<double, 4>("h");

    const auto h = ParallelCase<double>(file).run();
    MLSTM_CHECK_CLOSE(h, expected, double_budget(expected));
    report(name, "double", mlstm::test::max_difference(h, expected), -1);

    const auto check = float_check(expected, file.read<float, 4>("h_f32ref"),
                                   mlstm::test::float_cancellation_loss_factor);
    const auto h_float = ParallelCase<float>(file).run();
    MLSTM_CHECK_CLOSE(h_float, expected, check.budget);
    report(name, "float", mlstm::test::max_difference(h_float, expected), check.reference_loss);
  }
}

TEST_CASE("recurrent_sequence reproduces the reference's recurrent run and final state",
          "[golden][recurrent]") {
  Index checked = 0;
  for (const auto& path : reference_files("parallel_")) {
    const auto file = mlstm::safetensors::File::load(path.string());
    if (!file.contains("h_recurrent")) continue;
    const std::string name = path.stem().string();
    CAPTURE(name);
    const ParallelCase<double> c(file);
    const auto out = mlstm::recurrent_sequence(c.q, c.k, c.v, c.igate, c.fgate, {c.options.eps});
    for (const auto& [tensor, reference_name] :
         {std::pair{&out.h, "h_recurrent"}, std::pair{&out.state.c, "c_final"},
          std::pair{&out.state.n, "n_final"}, std::pair{&out.state.m, "m_final"}}) {
      CAPTURE(reference_name);
      const auto expected = file.read<double, 4>(reference_name);
      MLSTM_CHECK_CLOSE(*tensor, expected, double_budget(expected));
    }
    ++checked;
  }
  CHECK(checked >= 8);
}

TEST_CASE("the recurrent step reproduces the reference's golden steps", "[golden][recurrent]") {
  const auto files = reference_files("step_");
  REQUIRE(files.size() >= 4);
  for (const auto& path : files) {
    const std::string name = path.stem().string();
    CAPTURE(name);
    const auto file = mlstm::safetensors::File::load(path.string());
    const double eps = std::stod(file.metadata("eps"));
    const char* outputs[] = {"h", "c_new", "n_new", "m_new"};

    const auto step = [&](auto zero) {
      using T = decltype(zero);
      return mlstm::recurrent_step_stabilized(
          file.read<T, 4>("c"), file.read<T, 4>("n"), file.read<T, 4>("m"), file.read<T, 4>("q"),
          file.read<T, 4>("k"), file.read<T, 4>("v"), file.read<T, 4>("igate_preact"),
          file.read<T, 4>("fgate_preact"), {eps});
    };
    const auto out = step(0.0);
    const auto out_float = step(0.0f);
    const Tensor<double, 4>* results[] = {&out.h, &out.state.c, &out.state.n, &out.state.m};
    const Tensor<float, 4>* results_float[] = {&out_float.h, &out_float.state.c, &out_float.state.n,
                                               &out_float.state.m};
    for (int which = 0; which < 4; ++which) {
      CAPTURE(outputs[which]);
      const auto expected = file.read<double, 4>(outputs[which]);
      MLSTM_CHECK_CLOSE(*results[which], expected, double_budget(expected));
      const auto check =
          float_check(expected, file.read<float, 4>(std::string(outputs[which]) + "_f32ref"));
      MLSTM_CHECK_CLOSE(*results_float[which], expected, check.budget);
      report(name + "." + outputs[which], "float",
             mlstm::test::max_difference(*results_float[which], expected), check.reference_loss);
    }
  }
}
