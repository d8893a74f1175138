#include <catch2/catch.hpp>
#include <mlstm/mlstm.hpp>

TEST_CASE("smoke") {
  mlstm::Tensor<double, 4> q(1, 1, 5, 3), k(1, 1, 5, 3), v(1, 1, 5, 2), i(1, 1, 5, 1), f(1, 1, 5, 1);
  q.setRandom(); k.setRandom(); v.setRandom(); i.setRandom(); f.setRandom();
  auto h = mlstm::parallel_stabilized(q, k, v, i, f);
  auto r = mlstm::recurrent_sequence(q, k, v, i, f);
  auto step = mlstm::recurrent_step_stabilized(r.state.c, r.state.n, r.state.m,
     mlstm::Tensor<double,4>(q.slice(std::array<long,4>{0,0,0,0}, std::array<long,4>{1,1,1,3})),
     mlstm::Tensor<double,4>(k.slice(std::array<long,4>{0,0,0,0}, std::array<long,4>{1,1,1,3})),
     mlstm::Tensor<double,4>(v.slice(std::array<long,4>{0,0,0,0}, std::array<long,4>{1,1,1,2})),
     mlstm::Tensor<double,4>(i.slice(std::array<long,4>{0,0,0,0}, std::array<long,4>{1,1,1,1})),
     mlstm::Tensor<double,4>(f.slice(std::array<long,4>{0,0,0,0}, std::array<long,4>{1,1,1,1})));
  double d = 0;
  for (int t = 0; t < 5; ++t) for (int j = 0; j < 2; ++j) d = std::max(d, std::abs(h(0,0,t,j) - r.h(0,0,t,j)));
  INFO(d);
  CHECK(d < 1e-9);
  CHECK(step.h.dimension(2) == 1);
}
