// The parameters of xLSTM-Large: one parameter table (params/parameter_table.hpp) of names,
// shapes and init rules, and the views the forward uses, both from one description.
//
// Names, in the reference's spelling (xLSTMLarge.state_dict()); transformers' xLSTMForCausalLM
// spells the embedding `backbone.embeddings.weight` and always has an out norm without bias:
//
//   embedding.weight                                   (V, E)
//   backbone.blocks.<i>.norm_mlstm.weight [.bias]      (E)
//   backbone.blocks.<i>.mlstm_layer.
//     single: q.weight (DQK*NH, E), k.weight (DQK*NH, E), v.weight (DV*NH, E),
//             ogate_preact.weight (DV*NH, E)  [.bias each with use_bias],
//             igate_preact.weight (NH, E), igate_preact.bias (NH), fgate_preact.* alike
//     fused:  qkv_opreact.weight (2 qk_dim + 2 v_dim, E) [.bias]: q | k | v | o rows,
//             ifgate_preact.weight (2 NH, E), ifgate_preact.bias (2 NH): i | f rows
//     multihead_norm.weight [.bias] (v_dim), out_proj.weight (E, v_dim) [.bias]
//   backbone.blocks.<i>.norm_ffn.weight [.bias]        (E)
//   backbone.blocks.<i>.ffn.
//     single: proj_up_gate.weight (F, E), proj_up.weight (F, E)   [.bias]
//     fused:  proj_up_gate_z.weight (2F, E) [.bias]: gate | up rows
//     proj_down.weight (E, F) [.bias]
//   backbone.out_norm.weight [.bias]                   (E), with add_out_norm
//   lm_head.weight                                     (V, E)
//
// The fused matrices are bound as row slices (a row-major (out, in) matrix's rows are
// contiguous), so both modes run the same forward. Matrices (the embedding, the linear maps'
// weights) are stored in W, the model's weight type (T or bfloat16); vectors (biases, norm
// weights) in T, the type the model computes in.
//
// Init rules (what transformers' xLSTMPreTrainedModel._init_weights does, where it says):
// embedding, q, k, v, qkv_opreact, proj_up, lm_head small_init(E); out_proj wang(E, blocks),
// proj_down wang(F, blocks); the gate maps' weights (igate, fgate, ogate, ifgate, proj_up_gate,
// proj_up_gate_z) zero; igate bias -10 (a normal of std 0), fgate bias linspace(3, 6), other
// biases zero; norm weights one.
#pragma once

#include <string>
#include <type_traits>
#include <vector>

#include "mlstm/models/xlstm_large/config.hpp"
#include "mlstm/params/init_plan.hpp"
#include "mlstm/params/parameter_table.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {

// Which spelling of the names a checkpoint uses.
enum class XLSTMLargeNames { reference, transformers };

// A linear map y = x W^T + b as the forward sees it: W (out, in) row-major, b (out) or null.
template <typename T, typename W>
struct LinearView {
  const W* weight = nullptr;
  const T* bias = nullptr;
  Index out = 0;
  Index in = 0;

  // Rows [begin, begin + count) of the map: a slice of a fused matrix (unbound stays unbound).
  LinearView rows(Index begin, Index count) const {
    if (weight == nullptr) return {nullptr, nullptr, count, in};
    return {weight + begin * in, bias != nullptr ? bias + begin : nullptr, count, in};
  }
};

// A norm's scale and shift (null without bias).
template <typename T>
struct NormView {
  const T* weight = nullptr;
  const T* bias = nullptr;
};

template <typename T, typename W>
struct XLSTMLargeBlockWeights {
  NormView<T> norm_mlstm;
  LinearView<T, W> q, k, v, ogate, igate, fgate;  // fused: slices of qkv_opreact, ifgate_preact
  NormView<T> multihead_norm;
  LinearView<T, W> out_proj;
  NormView<T> norm_ffn;
  LinearView<T, W> ffn_gate, ffn_up;  // fused: the halves of proj_up_gate_z
  LinearView<T, W> ffn_down;
};

template <typename T, typename W = T>
struct XLSTMLargeWeights {
  const W* embedding = nullptr;  // (V, E)
  std::vector<XLSTMLargeBlockWeights<T, W>> blocks;
  NormView<T> out_norm;  // weight null without the out norm
  LinearView<T, W> lm_head;
};

namespace detail {

// The one description of the model's parameters, as rows of a parameter table: calls
// `visit(name, extents, init, slot)` for each parameter in registration order, where `slot` is
// the pointer of `weights` that views it (const W*& for a matrix, const T*& for a vector); fused
// matrices are then cut into the per-projection views.
template <typename T, typename W, typename Visit>
void describe_xlstm_large(const XLSTMLargeConfig& config, XLSTMLargeNames names,
                          XLSTMLargeWeights<T, W>& weights, Visit&& visit) {
  const Extent E = named_extent("embedding_dim", config.embedding_dim);
  const Extent V = named_extent("vocab_size", config.vocab_size);
  const Extent NH = named_extent("num_heads", config.num_heads);
  const Index QK = config.qk_dim(), DV = config.v_dim(), F = config.ffn_dim();
  const Index blocks = config.num_blocks;
  const bool bias = config.use_bias, single = config.weight_mode == WeightMode::single;
  const auto linear = [&](const std::string& name, Extent out, Extent in, bool with_bias,
                          const InitRule& init) {
    LinearView<T, W> view{nullptr, nullptr, out.value, in.value};
    visit(name + ".weight", std::vector<Extent>{out, in}, init, view.weight);
    if (with_bias) visit(name + ".bias", std::vector<Extent>{out}, InitRule::zeros(), view.bias);
    return view;
  };
  const auto norm = [&](const std::string& name, Extent size, bool with_bias) {
    NormView<T> view;
    visit(name + ".weight", std::vector<Extent>{size}, InitRule::ones(), view.weight);
    if (with_bias) visit(name + ".bias", std::vector<Extent>{size}, InitRule::zeros(), view.bias);
    return view;
  };
  const InitRule small = InitRule::small_init(E.value), zeros = InitRule::zeros();
  visit(names == XLSTMLargeNames::reference ? "embedding.weight" : "backbone.embeddings.weight",
        std::vector<Extent>{V, E}, small, weights.embedding);
  weights.blocks.assign(static_cast<std::size_t>(blocks), {});
  for (Index b = 0; b < blocks; ++b) {
    const std::string block = "backbone.blocks." + std::to_string(b) + ".";
    const std::string layer = block + "mlstm_layer.";
    XLSTMLargeBlockWeights<T, W>& w = weights.blocks[static_cast<std::size_t>(b)];
    w.norm_mlstm = norm(block + "norm_mlstm", E, bias);
    if (single) {
      w.q = linear(layer + "q", QK, E, bias, small);
      w.k = linear(layer + "k", QK, E, bias, small);
      w.v = linear(layer + "v", DV, E, bias, small);
      w.ogate = linear(layer + "ogate_preact", DV, E, bias, zeros);
      // The gates' biases always exist: the input gate starts closed, the forget gate open.
      w.igate = linear(layer + "igate_preact", NH, E, false, zeros);
      visit(layer + "igate_preact.bias", std::vector<Extent>{NH}, InitRule::normal(-10.0, 0.0),
            w.igate.bias);
      w.fgate = linear(layer + "fgate_preact", NH, E, false, zeros);
      visit(layer + "fgate_preact.bias", std::vector<Extent>{NH}, InitRule::bias_linspace(3, 6),
            w.fgate.bias);
    } else {
      const LinearView<T, W> qkvo = linear(layer + "qkv_opreact", 2 * QK + 2 * DV, E, bias, small);
      w.q = qkvo.rows(0, QK);
      w.k = qkvo.rows(QK, QK);
      w.v = qkvo.rows(2 * QK, DV);
      w.ogate = qkvo.rows(2 * QK + DV, DV);
      const LinearView<T, W> gates = linear(layer + "ifgate_preact", 2 * NH.value, E, true, zeros);
      w.igate = gates.rows(0, NH.value);
      w.fgate = gates.rows(NH.value, NH.value);
    }
    w.multihead_norm = norm(layer + "multihead_norm", DV, bias);
    w.out_proj = linear(layer + "out_proj", E, DV, bias, InitRule::wang(E.value, blocks));
    w.norm_ffn = norm(block + "norm_ffn", E, bias);
    if (single) {
      w.ffn_gate = linear(block + "ffn.proj_up_gate", F, E, bias, zeros);
      w.ffn_up = linear(block + "ffn.proj_up", F, E, bias, small);
    } else {
      const LinearView<T, W> up = linear(block + "ffn.proj_up_gate_z", 2 * F, E, bias, zeros);
      w.ffn_gate = up.rows(0, F);
      w.ffn_up = up.rows(F, F);
    }
    w.ffn_down = linear(block + "ffn.proj_down", E, F, bias, InitRule::wang(F, blocks));
  }
  if (names == XLSTMLargeNames::transformers) {
    weights.out_norm = norm("backbone.out_norm", E, false);  // transformers' has no bias
  } else if (config.add_out_norm) {
    weights.out_norm = norm("backbone.out_norm", E, bias);
  }
  weights.lm_head = linear("lm_head", V, E, false, small);
}

}  // namespace detail

// The parameter table of the model `config` describes, in the given spelling: every parameter
// in registration order, its shape (named extents vocab_size, embedding_dim, num_heads) and
// init rule. Register it (register_parameters) to train a float or double model.
inline ParameterTable xlstm_large_table(const XLSTMLargeConfig& config,
                                        XLSTMLargeNames names = XLSTMLargeNames::reference) {
  config.validate();
  ParameterTable table;
  XLSTMLargeWeights<float> unbound;
  detail::describe_xlstm_large(
      config, names, unbound,
      [&](std::string name, std::vector<Extent> extents, const InitRule& init, const float*&) {
        table.add(std::move(name), std::move(extents), init);
      });
  return table;
}

// Matrices (the embedding, the linear maps' weights: rank 2) are stored in the model's weight
// type; vectors (biases, norm weights) in its compute type.
inline bool is_matrix(const ParameterRow& row) { return row.extents.size() == 2; }

// The views of the parameters of xlstm_large_table(config, names): `matrix(name)` returns the
// first element (const W*) of a matrix, `vector(name)` that (const T*) of a bias or norm weight;
// the stored shapes must be the table's.
template <typename T, typename W, typename Matrix, typename Vector>
XLSTMLargeWeights<T, W> bind_xlstm_large_weights(const XLSTMLargeConfig& config,
                                                 XLSTMLargeNames names, Matrix&& matrix,
                                                 Vector&& vector) {
  XLSTMLargeWeights<T, W> weights;
  detail::describe_xlstm_large(config, names, weights,
                               [&](const std::string& name, const std::vector<Extent>& extents,
                                   const InitRule&, auto& slot) {
                                 using Slot = std::remove_reference_t<decltype(slot)>;
                                 if (extents.size() == 2) {
                                   if constexpr (std::is_same_v<Slot, const W*>)
                                     slot = matrix(name);
                                 } else if constexpr (std::is_same_v<Slot, const T*>) {
                                   slot = vector(name);
                                 }
                               });
  return weights;
}

}  // namespace mlstm
