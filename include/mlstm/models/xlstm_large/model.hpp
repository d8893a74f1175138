// xLSTM-Large, the architecture of xLSTM 7B: the reference's xLSTMLarge and transformers'
// xLSTMForCausalLM.
//
//   tokens (B, S) -> logits (B, S, V)
//   x = embedding[tokens]                              (B, S, E)
//   x = block_{N-1}( ... block_0(x))                   (block.hpp)
//   x = rms_norm(x)                                    out norm, with add_out_norm
//   logits = soft_cap(x lm_head^T)                     cap output_logit_soft_cap
//
//   mlstm::XLSTMLarge<float> model(config);                 // zero matrices, or
//   auto model = mlstm::load_xlstm_large<float>("dir");     // a Hugging Face folder
//   auto logits = model.forward(tokens);                    // whole sequence, zero state
//
//   auto state = model.initial_state(batch);
//   auto last = model.prefill(prompt, state, mlstm::Logits::last);   // (B, 1, V), state advanced
//   auto next = model.step(next_tokens, state);             // one token per sequence: (B, V)
//
// XLSTMLarge<T, W>: computes in T (float or double); stores its matrices in W (T, or bfloat16
// for a float model: summed in float by the linear layer) and its biases, norms and state in T.
//
// forward and prefill run the chunkwise kernel (config.chunk_size, any length); step the
// recurrent step. The state per block is (c (B, NH, DQK, DV), n (B, NH, DQK, 1),
// m (B, NH, 1, 1)) in T (float for a float model, as the reference's inference state). The
// library scales k by 1/sqrt(DQK) where mlstm_kernels scales q: its c and n are these times
// sqrt(DQK).
//
// Errors: tokens and the state's shapes are checked before anything is computed (ValueError /
// ShapeError naming them).
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mlstm/detail/aligned_array.hpp"
#include "mlstm/detail/bfloat16.hpp"
#include "mlstm/detail/reused_workspace.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/kernels/state.hpp"
#include "mlstm/models/token_model.hpp"
#include "mlstm/models/xlstm_large/block.hpp"
#include "mlstm/models/xlstm_large/config.hpp"
#include "mlstm/models/xlstm_large/parameters.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

// The state a model carries between calls: one (c, n, m) per block, in block order.
template <typename T>
struct XLSTMLargeState {
  std::vector<RecurrentState<T>> blocks;

  // Back to the zero state in place, for the next prompt (a new state's memory, 134 MB for
  // xLSTM 7B in float32, is faulted in by the system on first use).
  void set_zero() {
    for (RecurrentState<T>& block : blocks) block.set_zero();
  }
};

template <typename T, typename W = T>
class XLSTMLarge : public TokenModel<XLSTMLarge<T, W>, T, XLSTMLargeState<T>> {
  friend class TokenModel<XLSTMLarge<T, W>, T, XLSTMLargeState<T>>;
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "mlstm::XLSTMLarge computes in float or double");
  static_assert(std::is_same_v<W, T> || (std::is_same_v<T, float> && detail::is_bfloat16<W>),
                "mlstm::XLSTMLarge stores its matrices in T, or in bfloat16 for a float model");

 public:
  using Scalar = T;
  using WeightScalar = W;

  // A model of `config` whose parameters, named in the spelling `names`, it holds itself:
  // matrices and biases zero, norm weights one. Throws ValueError for an invalid configuration.
  explicit XLSTMLarge(const XLSTMLargeConfig& config,
                      XLSTMLargeNames names = XLSTMLargeNames::reference, int num_threads = 0)
      : XLSTMLarge(config, names, num_threads, nullptr,
                   [](const ParameterRow&) { return static_cast<const W*>(nullptr); }) {}

  // For loaders: as above, except that each matrix for which `external(parameter)` returns
  // data (not null) is used where it lies, in memory that `keep_alive` keeps (a mapped file).
  template <typename External>
  XLSTMLarge(const XLSTMLargeConfig& config, XLSTMLargeNames names, int num_threads,
             std::shared_ptr<const void> keep_alive, External&& external)
      : config_(validated(config)),
        names_(names),
        num_threads_(num_threads),
        keep_alive_(std::move(keep_alive)) {
    detail::resolve_num_threads(num_threads, "num_threads");
    Index matrices = 0, vectors = 0;
    const ParameterTable table = xlstm_large_table(config_, names_);
    for (const ParameterRow& parameter : table.rows()) {
      Slot slot{0, 1, parameter, nullptr};
      for (const Extent& extent : parameter.extents) slot.size *= extent.value;
      if (is_matrix(parameter)) {
        slot.external = external(parameter);
        if (slot.external == nullptr) {
          slot.offset = matrices;
          matrices += slot.size;
        }
      } else {
        slot.offset = vectors;
        vectors += slot.size;
      }
      slots_.emplace(parameter.name, slot);
    }
    matrices_ = detail::AlignedArray<W>(matrices);  // zeros, on huge pages where granted
    vectors_.assign(static_cast<std::size_t>(vectors), T(0));
    for (const auto& [name, slot] : slots_) {
      if (slot.parameter.init && slot.parameter.init->scheme == InitScheme::ones)
        std::fill_n(vectors_.data() + slot.offset, slot.size, T(1));
    }
    weights_ = bind_xlstm_large_weights<T, W>(
        config_, names_,
        [&](const std::string& name) -> const W* {
          const Slot& slot = slots_.at(name);
          return slot.external != nullptr ? slot.external : matrices_.data() + slot.offset;
        },
        [&](const std::string& name) -> const T* {
          return vectors_.data() + slots_.at(name).offset;
        });
  }

  // The views point into buffers that do not move with the model; copying would alias.
  XLSTMLarge(XLSTMLarge&&) = default;
  XLSTMLarge(const XLSTMLarge&) = delete;
  XLSTMLarge& operator=(const XLSTMLarge&) = delete;

  const XLSTMLargeConfig& config() const { return config_; }
  XLSTMLargeNames names() const { return names_; }
  const XLSTMLargeWeights<T, W>& weights() const { return weights_; }

  // The parameter table (xlstm_large_table(config(), names())).
  ParameterTable table() const { return xlstm_large_table(config_, names_); }

  // The table entry of parameter `name`; ValueError("name") for a name the model does not have.
  const ParameterRow& parameter(const std::string& name) const {
    const auto found = slots_.find(name);
    if (found == slots_.end())
      throw ValueError("name", "the model has no parameter \"" + name + "\"");
    return found->second.parameter;
  }

  // A matrix parameter (rank 2: the embedding, a linear map's weight) as a flat view of
  // its elements, writable while the model holds it. ValueError("name") for a name the model
  // does not have, a vector parameter, or a matrix used in place in a loaded file.
  TensorMap<W, 1> matrix(const std::string& name) {
    const Slot& slot = slot_of(name, true);
    if (slot.external != nullptr)
      throw ValueError("name", "parameter \"" + name + "\" is used in place in a loaded file");
    return TensorMap<W, 1>(matrices_.data() + slot.offset, slot.size);
  }
  // A vector parameter (a bias or a norm's weight) as a flat view; ValueError("name") for a name
  // the model does not have or a matrix.
  TensorMap<T, 1> vector(const std::string& name) {
    const Slot& slot = slot_of(name, false);
    return TensorMap<T, 1>(vectors_.data() + slot.offset, slot.size);
  }

  // How the linear maps take their inputs (layers/input_rounding.hpp): InputRounding::none (the
  // default: exact products of the stored weights) or, for bfloat16 weights only,
  // InputRounding::bfloat16: activations rounded to bfloat16 before each product, as PyTorch's
  // bfloat16 model computes, which a processor with AMX-BF16 multiplies on its tile unit (the
  // prefill several times faster). ValueError("rounding") for bfloat16 with float weights. Not
  // to be called while another thread runs the model.
  void set_input_rounding(InputRounding rounding) {
    if (rounding == InputRounding::bfloat16 && !detail::is_bfloat16<W>)
      throw ValueError("rounding",
                       "expected InputRounding::none for a model with weights in its "
                       "compute scalar; bfloat16 inputs need bfloat16 weights");
    input_rounding_ = rounding;
  }
  InputRounding input_rounding() const { return input_rounding_; }

  // Whether matrix `name` is used in place in a loaded file rather than held by the model.
  bool in_place(const std::string& name) const { return slot_of(name, true).external != nullptr; }

  // The zero state for `batch` sequences.
  XLSTMLargeState<T> initial_state(Index batch) const {
    if (batch < 1) throw ValueError("batch", "expected >= 1, got " + std::to_string(batch));
    XLSTMLargeState<T> state;
    // Reserved: a growing vector copies its tensors (Eigen's Tensor moves are not noexcept).
    state.blocks.reserve(static_cast<std::size_t>(config_.num_blocks));
    for (Index b = 0; b < config_.num_blocks; ++b)
      state.blocks.push_back(RecurrentState<T>::zeros(batch, config_.num_heads,
                                                      config_.qk_head_dim(), config_.v_head_dim()));
    return state;
  }

  // forward (tokens (B, S)), prefill (tokens, state, Logits) and step (tokens (B), state):
  // TokenModel (token_model.hpp). Calls over sequences keep their activations for the next call
  // (resized when the shape changes; const calls from several threads stay correct, each but one
  // in buffers of its own); this frees them.
  void release_inference_workspace() { inference_workspace_.release(); }

 private:
  struct Slot {
    Index offset;  // in matrices_ or vectors_
    Index size;
    ParameterRow parameter;
    const W* external;  // a matrix used where it lies, else null
  };

  // What inference over sequences keeps between calls: the residual stream and one block's
  // activations, which the blocks use in turn.
  struct Workspace {
    Tensor<T, 3> x;  // (B, S, E)
    XLSTMLargeBlockActivations<T> activations;
  };

  const Slot& slot_of(const std::string& name, bool matrix) const {
    if (is_matrix(parameter(name)) != matrix)
      throw ValueError("name", "parameter \"" + name + "\" is a " +
                                   (matrix ? "vector (bias or norm weight)" : "matrix"));
    return slots_.at(name);
  }

  void check_state(const XLSTMLargeState<T>& state, Index batch) const {
    if (static_cast<Index>(state.blocks.size()) != config_.num_blocks) {
      throw ShapeError("state", "expected one block state per block (" +
                                    std::to_string(config_.num_blocks) + "), got " +
                                    std::to_string(state.blocks.size()));
    }
    const Index NH = config_.num_heads, DQK = config_.qk_head_dim(), DV = config_.v_head_dim();
    for (std::size_t b = 0; b < state.blocks.size(); ++b) {
      const std::string name = "state.blocks[" + std::to_string(b) + "]";
      const RecurrentState<T>& s = state.blocks[b];
      detail::expect_shape<T, 4>(s.c, {batch, NH, DQK, DV}, (name + ".c").c_str(),
                                 "(B, NH, DQK, DV)");
      detail::expect_shape<T, 4>(s.n, {batch, NH, DQK, 1}, (name + ".n").c_str(),
                                 "(B, NH, DQK, 1)");
      detail::expect_shape<T, 4>(s.m, {batch, NH, 1, 1}, (name + ".m").c_str(), "(B, NH, 1, 1)");
    }
  }

  KernelOptions kernel_options() const {
    KernelOptions options;
    options.forward_kernel = SequenceKernel::chunkwise;
    // The reference's inference mode runs the chunkwise form for every prompt; the parallel form
    // places eps against another stabilizer (differences of order eps, beyond double rounding).
    options.parallel_prefill_max = 0;
    options.chunk_size = config_.chunk_size;
    options.eps = config_.eps;
    options.num_threads = num_threads_;
    return options;
  }

  // The model on validated token ids (B, S); `state` null: from the zero state, none kept.
  // Sequences run in the kept inference workspace; a step in buffers of its own, so that the
  // kept ones stay sized for the prompts.
  template <typename Id>
  Tensor<T, 3> run(const Id* ids, Index batch, Index seq_len, XLSTMLargeState<T>* state,
                   Logits logits) const {
    const auto lease = inference_workspace_.lease(seq_len > 1);
    Workspace& w = *lease;
    const Index E = config_.embedding_dim, V = config_.vocab_size;
    const KernelOptions options = kernel_options();
    Tensor<T, 3>& x = w.x;
    x.resize(batch, seq_len, E);
    for (Index r = 0; r < batch * seq_len; ++r) {
      const W* row = weights_.embedding + static_cast<Index>(ids[r]) * E;
      for (Index j = 0; j < E; ++j) x.data()[r * E + j] = static_cast<T>(row[j]);
    }
    for (std::size_t b = 0; b < weights_.blocks.size(); ++b)
      detail::xlstm_large_block_forward(
          weights_.blocks[b], config_, x.data(), batch, seq_len, options, input_rounding_,
          state != nullptr ? &state->blocks[b] : nullptr, w.activations);
    // The norm and the head act per position: only the positions asked for are computed.
    const Index positions = logits == Logits::last ? 1 : seq_len;
    Tensor<T, 3> last(batch, positions, E);
    for (Index b = 0; b < batch; ++b) {
      const T* source = x.data() + (b * seq_len + seq_len - positions) * E;
      T* target = last.data() + b * positions * E;
      if (weights_.out_norm.weight != nullptr) {
        detail::rms_norm_rows(source, positions, E, weights_.out_norm, config_.norm_eps, target);
      } else {
        std::copy(source, source + positions * E, target);
      }
    }
    Tensor<T, 3> out(batch, positions, V);
    detail::linear_view_rows(last.data(), batch * positions, weights_.lm_head, out.data(),
                             detail::resolve_num_threads(num_threads_, "num_threads"),
                             input_rounding_);
    if (config_.output_logit_soft_cap)
      detail::soft_cap_inplace(out.data(), out.size(),
                               static_cast<T>(*config_.output_logit_soft_cap));
    return out;
  }

  static XLSTMLargeConfig validated(const XLSTMLargeConfig& config) {
    config.validate();
    return config;
  }

  XLSTMLargeConfig config_;
  XLSTMLargeNames names_;
  int num_threads_;
  InputRounding input_rounding_ = InputRounding::none;
  std::shared_ptr<const void> keep_alive_;
  std::map<std::string, Slot> slots_;
  detail::AlignedArray<W> matrices_{0};
  std::vector<T> vectors_;
  XLSTMLargeWeights<T, W> weights_;
  detail::ReusedWorkspace<Workspace> inference_workspace_;
};

}  // namespace mlstm
