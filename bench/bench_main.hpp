// The main() of the benchmark programs: Google Benchmark's, with the library's thread count,
// matrix product and the linear layers' prefill product (and any `context` the program adds) in
// the report's context, where the comparison scripts read them.
#pragma once

#include <benchmark/benchmark.h>

#include <initializer_list>
#include <string>
#include <utility>

#include <mlstm/build_info.hpp>
#include <mlstm/threading.hpp>

namespace mlstm_bench {

inline int run_benchmarks(int argc, char** argv,
                          std::initializer_list<std::pair<std::string, std::string>> context = {}) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("mlstm_threads", std::to_string(mlstm::get_num_threads()));
  benchmark::AddCustomContext("mlstm_gemm", mlstm::float_product_name());
  benchmark::AddCustomContext("mlstm_linear_product", mlstm::linear_product_name());
  benchmark::AddCustomContext("mlstm_bfloat16_inputs_product",
                              mlstm::bfloat16_inputs_product_name());
  for (const auto& [key, value] : context) benchmark::AddCustomContext(key, value);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace mlstm_bench
