// Training in C++: an mLSTM layer (q, k, v and gate projections of the input, then the cell)
// starts from a teacher layer's weights disturbed by noise and learns back the teacher's
// outputs, by Adam on the exact gradients of the chunkwise form.
//
// The sequences (S = 256) are processed in segments of 64 steps, as training over a long
// sequence would be: the forward carries the state from segment to segment, and the backward
// runs the segments in reverse, handing the gradient of each segment's initial state to the
// segment before as the gradient of its final state. The gradients are those of the whole
// sequence (tests/test_chunkwise_backward.cpp checks that).
//
// Exits with 1 unless the loss falls to a tenth of where it started.
#include <array>
#include <cmath>
#include <cstdio>
#include <optional>
#include <random>
#include <vector>

#include <Eigen/Core>

#include <mlstm/kernels/chunkwise_backward.hpp>
#include <mlstm/mlstm.hpp>

#include "build_banner.hpp"

namespace {

using mlstm::Index;
using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Tensor4 = mlstm::Tensor<float, 4>;

constexpr Index B = 4, S = 256, E = 16, NH = 2, D = 8, segment = 64;

// The layer's parameters: x (B * S, E) -> q, k, v (B * S, NH * D), gates (B * S, NH).
struct Layer {
  Matrix wq, wk, wv, wi, wf;
  Eigen::RowVectorXf bi, bf;

  static Layer random(std::uint32_t seed, float input_bias) {
    std::mt19937 engine(seed);
    std::normal_distribution<float> normal(0.0f, 0.3f);
    auto draw = [&](Index rows, Index cols) {
      Matrix w(rows, cols);
      for (Index i = 0; i < w.size(); ++i) w.data()[i] = normal(engine);
      return w;
    };
    return {draw(E, NH * D),
            draw(E, NH * D),
            draw(E, NH * D),
            draw(E, NH),
            draw(E, NH),
            Eigen::RowVectorXf::Constant(NH, input_bias),
            Eigen::RowVectorXf::Constant(NH, 3.0f)};
  }

  // Every weight plus `other`'s times `amount`.
  Layer plus(const Layer& other, float amount) const {
    return {wq + amount * other.wq, wk + amount * other.wk, wv + amount * other.wv,
            wi + amount * other.wi, wf + amount * other.wf, bi + amount * other.bi,
            bf + amount * other.bf};
  }
};

// (B * S, NH * width) rows (b, s) -> (B, NH, S, width), and back.
Tensor4 to_heads(const Matrix& x, Index width) {
  Tensor4 out(B, NH, S, width);
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < NH; ++h)
      for (Index s = 0; s < S; ++s)
        for (Index d = 0; d < width; ++d) out(b, h, s, d) = x(b * S + s, h * width + d);
  return out;
}

Matrix from_heads(const Tensor4& x) {
  const Index width = x.dimension(3);
  Matrix out(B * S, NH * width);
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < NH; ++h)
      for (Index s = 0; s < S; ++s)
        for (Index d = 0; d < width; ++d) out(b * S + s, h * width + d) = x(b, h, s, d);
  return out;
}

Tensor4 steps(const Tensor4& x, Index begin, Index length) {
  return x.slice(std::array<Index, 4>{0, 0, begin, 0},
                 std::array<Index, 4>{B, NH, length, x.dimension(3)});
}

struct Inputs {
  Tensor4 q, k, v, igate, fgate;
};

Inputs project(const Layer& w, const Matrix& x) {
  return {to_heads(x * w.wq, D), to_heads(x * w.wk, D), to_heads(x * w.wv, D),
          to_heads((x * w.wi).rowwise() + w.bi, 1), to_heads((x * w.wf).rowwise() + w.bf, 1)};
}

// The cell over the whole sequence, segment by segment, carrying the state.
Tensor4 forward(const Inputs& in, const mlstm::ChunkwiseOptions& options) {
  Tensor4 h(B, NH, S, D);
  std::optional<mlstm::RecurrentState<float>> state;
  for (Index begin = 0; begin < S; begin += segment) {
    auto out = mlstm::chunkwise_stabilized(
        steps(in.q, begin, segment), steps(in.k, begin, segment), steps(in.v, begin, segment),
        steps(in.igate, begin, segment), steps(in.fgate, begin, segment), options, state);
    h.slice(std::array<Index, 4>{0, 0, begin, 0}, std::array<Index, 4>{B, NH, segment, D}) = out.h;
    state = std::move(out.state);
  }
  return h;
}

// d loss / d (q, k, v, igate, fgate) given dh, segment by segment in reverse.
Inputs backward(const Inputs& in, const Tensor4& dh, const mlstm::ChunkwiseOptions& options) {
  // The state at the start of every segment (recomputed: the forward kept none).
  std::vector<std::optional<mlstm::RecurrentState<float>>> initial{std::nullopt};
  for (Index begin = 0; begin + segment < S; begin += segment) {
    initial.push_back(
        mlstm::chunkwise_stabilized(steps(in.q, begin, segment), steps(in.k, begin, segment),
                                    steps(in.v, begin, segment), steps(in.igate, begin, segment),
                                    steps(in.fgate, begin, segment), options, initial.back())
            .state);
  }
  Inputs grads{Tensor4(B, NH, S, D), Tensor4(B, NH, S, D), Tensor4(B, NH, S, D),
               Tensor4(B, NH, S, 1), Tensor4(B, NH, S, 1)};
  std::optional<mlstm::RecurrentState<float>> dfinal;
  for (Index j = S / segment - 1; j >= 0; --j) {
    const Index begin = j * segment;
    auto g = mlstm::chunkwise_stabilized_backward(
        steps(in.q, begin, segment), steps(in.k, begin, segment), steps(in.v, begin, segment),
        steps(in.igate, begin, segment), steps(in.fgate, begin, segment), steps(dh, begin, segment),
        options, initial[static_cast<size_t>(j)], dfinal);
    const std::array<Index, 4> at{0, 0, begin, 0};
    grads.q.slice(at, std::array<Index, 4>{B, NH, segment, D}) = g.dq;
    grads.k.slice(at, std::array<Index, 4>{B, NH, segment, D}) = g.dk;
    grads.v.slice(at, std::array<Index, 4>{B, NH, segment, D}) = g.dv;
    grads.igate.slice(at, std::array<Index, 4>{B, NH, segment, 1}) = g.di;
    grads.fgate.slice(at, std::array<Index, 4>{B, NH, segment, 1}) = g.df;
    dfinal = std::move(g.dinitial_state);
  }
  return grads;
}

// Adam on one parameter matrix.
struct Adam {
  Matrix first, second;
  void step(Matrix& w, const Matrix& grad, int t, float rate) {
    if (first.size() == 0) first = second = Matrix::Zero(w.rows(), w.cols());
    first = 0.9f * first + 0.1f * grad;
    second = 0.999f * second + 0.001f * grad.cwiseProduct(grad);
    const float c1 = 1.0f - std::pow(0.9f, float(t)), c2 = 1.0f - std::pow(0.999f, float(t));
    w.array() -= rate * (first.array() / c1) / ((second.array() / c2).sqrt() + 1e-8f);
  }
};

}  // namespace

int main() {
  example::print_build_banner("train_cell");
  mlstm::ChunkwiseOptions options;
  options.chunk_size = 16;

  std::mt19937 engine(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Matrix x(B * S, E);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = normal(engine);
  const Layer teacher = Layer::random(1, -2.0f);
  const Tensor4 target = forward(project(teacher, x), options);

  Layer layer = teacher.plus(Layer::random(2, 0.0f), 0.5f);
  Matrix bi = layer.bi, bf = layer.bf;  // biases as 1 x NH matrices for Adam
  std::array<Adam, 7> adam;
  const float count = static_cast<float>(target.size());
  float first_loss = 0.0f, loss = 0.0f;
  for (int step = 1; step <= 200; ++step) {
    layer.bi = bi;
    layer.bf = bf;
    const Inputs in = project(layer, x);
    const Tensor4 h = forward(in, options);
    const Tensor4 error = h - target;
    loss = 0.5f * Eigen::Tensor<float, 0, Eigen::RowMajor>(error.square().sum())() / count;
    if (step == 1) first_loss = loss;
    if (step == 1 || step % 50 == 0) std::printf("step %3d  loss %.6f\n", step, loss);

    const Inputs g = backward(in, Tensor4(error / count), options);
    const Matrix dq = from_heads(g.q), dk = from_heads(g.k), dv = from_heads(g.v);
    const Matrix di = from_heads(g.igate), df = from_heads(g.fgate);
    adam[0].step(layer.wq, x.transpose() * dq, step, 3e-2f);
    adam[1].step(layer.wk, x.transpose() * dk, step, 3e-2f);
    adam[2].step(layer.wv, x.transpose() * dv, step, 3e-2f);
    adam[3].step(layer.wi, x.transpose() * di, step, 3e-2f);
    adam[4].step(layer.wf, x.transpose() * df, step, 3e-2f);
    adam[5].step(bi, di.colwise().sum(), step, 3e-2f);
    adam[6].step(bf, df.colwise().sum(), step, 3e-2f);
  }
  std::printf("loss %.6f -> %.6f (%.1fx lower)\n", first_loss, loss, first_loss / loss);
  return loss < 0.1f * first_loss ? 0 : 1;
}
