// The mLSTM-only xLSTM language model, the reference's xLSTMLMModel with mLSTM blocks only:
//
//   tokens (B, S) -> logits (B, S, V)
//   x = token_embedding[tokens]                        (B, S, E)
//   x = block_{N-1}( ... block_0(x))                   mLSTM blocks (mlstm_block.hpp)
//   x = post_blocks_norm(x)                            if config.add_post_blocks_norm
//   logits = x lm_head^T                               no bias; lm_head is the embedding when
//                                                      config.tie_weights
//
// Three ways to run it, which agree (see "Forms" below):
//
//   auto model = mlstm::load_language_model<float>("model.safetensors");   // checkpoint.hpp
//   // or: mlstm::LanguageModel<float> model(config); model.reset_parameters(generator);
//   auto logits = model.forward(tokens);                // whole sequence, from the zero state
//
//   auto state = model.initial_state(batch);            // zero state
//   auto last = model.prefill(prompt, state, mlstm::Logits::last);   // (B, 1, V), state advanced
//   auto next = model.step(next_tokens, state);         // one token per sequence: (B, V)
//
// forward runs options().forward_kernel (parallel by default, like the reference's forward);
// prefill runs the chunkwise kernel from the given state; step runs the recurrent step and the
// convolution's step. Any sequence length works (the reference's forward stops at
// context_length; its step does not). Token ids are integers of any type in [0, vocab_size).
//
// Forms. The parallel form's stabilizer is the row maximum of the log decay matrix; the
// chunkwise and recurrent forms' also includes the initial state's term (m starts at 0). The
// normalizer is max(|q.n|, 1) + eps * exp(m) in unstabilized units, so the forms differ only by
// eps * exp(m) (eps = 1e-6): the reference's own step and forward differ by about 5e-8 of the
// logits' magnitude on the golden models, below float32 rounding (see tests/test_model.cpp).
//
// Training. forward_backward(tokens, targets) runs the forward from the zero state keeping every
// layer's cache (with forward_kernel parallel: the parallel form's backward; otherwise the
// chunkwise form's, chunk_size), the cross-entropy over the vocabulary (cross_entropy.hpp), and
// the backward through the head, the post-blocks norm, the blocks in reverse and the embedding,
// adding loss_scale times the gradient of the mean loss to every parameter's gradient buffer in
// the registry. Gradients accumulate: zero them before a step (AdamW::zero_grad), and give each
// of k micro-batches loss_scale = 1/k to train on their mean. loss(tokens, targets) is the same
// loss without the backward.
//
// The model keeps forward_backward's activations and working buffers between calls (an
// LMTrainingWorkspace, training_workspace.hpp): a training loop's steps at one (batch, seq_len)
// reuse the memory the first one sized, and a step at another shape resizes it.
// release_training_workspace() frees it (e.g. once training is done); inference (forward,
// prefill, step, loss) does not use it. Inference over sequences keeps its own buffers between
// calls (inference_workspace.hpp; release_inference_workspace() frees them): const calls from
// several threads at once stay correct, each but one in buffers of its own.
//
// Errors: tokens, the state's shapes and the options are checked before anything is computed
// or written (ValueError / ShapeError naming them). A non-finite value arising inside (from
// non-finite parameters) is rejected by the kernels with a ValueError; the state passed to that
// call is then partly advanced and should be discarded.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mlstm/detail/reused_workspace.hpp"
#include "mlstm/layers/cross_entropy.hpp"
#include "mlstm/layers/embedding.hpp"
#include "mlstm/layers/layer_norm.hpp"
#include "mlstm/layers/linear.hpp"
#include "mlstm/models/token_model.hpp"
#include "mlstm/models/xlstm_lm/config.hpp"
#include "mlstm/models/xlstm_lm/gradients.hpp"
#include "mlstm/models/xlstm_lm/inference_workspace.hpp"
#include "mlstm/models/xlstm_lm/mlstm_block.hpp"
#include "mlstm/models/xlstm_lm/model_state.hpp"
#include "mlstm/models/xlstm_lm/parameters.hpp"
#include "mlstm/models/xlstm_lm/training_workspace.hpp"
#include "mlstm/params/generator.hpp"
#include "mlstm/params/parameter_table.hpp"
#include "mlstm/params/registry.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {

// Views of the model's parameters.
template <typename T>
struct LMModelWeights {
  // Names: token_embedding.weight (V, E); xlstm_block_stack.blocks.<i>.*;
  // xlstm_block_stack.post_blocks_norm.weight (E), absent without the norm; lm_head.weight (V, E).
  ConstTensorMap<T, 2> token_embedding;
  std::vector<MLSTMBlockWeights<T>> blocks;
  std::optional<ConstTensorMap<T, 1>> post_blocks_norm;
  ConstTensorMap<T, 2> lm_head;
};

namespace detail {

// The layer's views from the rows of mlstm_layer_table.
template <typename T>
MLSTMLayerWeights<T> bind_layer_weights(const ParameterViews<T>& layer) {
  const ParameterViews<T> cell = layer.scope("mlstm_cell");
  return MLSTMLayerWeights<T>{
      layer.template get<2>("proj_up.weight"),
      layer.template optional<1>("proj_up.bias"),
      layer.template get<3>("q_proj.weight"),
      layer.template optional<1>("q_proj.bias"),
      layer.template get<3>("k_proj.weight"),
      layer.template optional<1>("k_proj.bias"),
      layer.template get<3>("v_proj.weight"),
      layer.template optional<1>("v_proj.bias"),
      layer.template get<3>("conv1d.conv.weight"),
      layer.template get<1>("conv1d.conv.bias"),
      MLSTMCellWeights<T>{cell.template get<2>("igate.weight"), cell.template get<1>("igate.bias"),
                          cell.template get<2>("fgate.weight"), cell.template get<1>("fgate.bias"),
                          cell.template get<1>("outnorm.weight")},
      layer.template get<1>("learnable_skip"),
      layer.template get<2>("proj_down.weight"),
      layer.template optional<1>("proj_down.bias")};
}

}  // namespace detail

// Views of the parameters of the model `config` describes, registered in `registry` under
// `prefix` (the rows of lm_model_table). Throws ValueError for a missing parameter, ShapeError
// for one whose shape is not the configuration's.
template <typename T>
LMModelWeights<T> bind_lm_model_weights(const Registry<T>& registry, const LMModelConfig& config,
                                        const std::string& prefix = "") {
  const ParameterTable table = lm_model_table(config);
  const ParameterViews<T> model(registry, table, prefix);
  const ParameterViews<T> stack = model.scope("xlstm_block_stack");
  LMModelWeights<T> weights{model.template get<2>("token_embedding.weight"),
                            {},
                            stack.template optional<1>("post_blocks_norm.weight"),
                            model.template get<2>("lm_head.weight")};
  for (Index b = 0; b < config.num_blocks; ++b) {
    const ParameterViews<T> block = stack.scope("blocks." + std::to_string(b));
    weights.blocks.push_back(
        MLSTMBlockWeights<T>{block.template get<1>("xlstm_norm.weight"),
                             detail::bind_layer_weights(block.scope("xlstm"))});
  }
  model.check_all_bound();
  return weights;
}

template <typename T>
class LanguageModel : public TokenModel<LanguageModel<T>, T, ModelState<T>> {
  friend class TokenModel<LanguageModel<T>, T, ModelState<T>>;
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "mlstm::LanguageModel computes in float or double");

 public:
  using Scalar = T;

  // A model of `config` with its parameters registered, zero-filled, under the reference's
  // names (register_lm_model). Throws ValueError for an invalid configuration or options.
  explicit LanguageModel(const LMModelConfig& config, const KernelOptions& options = {})
      : config_(validated(config)),
        options_(validated(options)),
        registry_(registered(config_)),
        weights_(bind_lm_model_weights(registry_, config_)) {}

  // Movable (parameters do not move, so the views stay valid); not copyable or assignable.
  LanguageModel(LanguageModel&&) = default;

  const LMModelConfig& config() const { return config_; }
  const KernelOptions& options() const { return options_; }
  void set_options(const KernelOptions& options) {
    detail::check_kernel_options(options);
    options_ = options;
  }

  // The parameters, under the reference's state_dict names. Values may be changed in place;
  // parameters must not be added (the model's views refer to the registered ones).
  Registry<T>& registry() { return registry_; }
  const Registry<T>& registry() const { return registry_; }
  const LMModelWeights<T>& weights() const { return weights_; }

  // The reference's initialization of a new model (reset_parameters, and the construction
  // values of the convolutions), drawn from `generator`.
  void reset_parameters(Generator& generator) {
    apply_init_plan(lm_model_init_plan(config_), registry_, generator);
  }

  // The zero state for `batch` sequences: where the reference's step starts.
  ModelState<T> initial_state(Index batch) const {
    if (batch < 1) throw ValueError("batch", "expected >= 1, got " + std::to_string(batch));
    const MLSTMLayerConfig layer = config_.layer();
    ModelState<T> state;
    // Reserved: a growing vector copies its tensors (Eigen's Tensor moves are not noexcept).
    state.blocks.reserve(static_cast<std::size_t>(config_.num_blocks));
    for (Index b = 0; b < config_.num_blocks; ++b) {
      state.blocks.push_back(
          MLSTMLayerState<T>::zeros(batch, layer.num_heads, layer.cell().head_dim(),
                                    layer.conv1d_kernel_size, layer.inner_embedding_dim));
    }
    return state;
  }

  // forward (tokens (B, S)), prefill (tokens, state, Logits) and step (tokens (B), state):
  // TokenModel (token_model.hpp).

  // The mean cross-entropy of the next-token logits for tokens (B, S) against targets (B, S)
  // (integers in [0, V) or options.ignore_index), with loss_scale times its gradient added to
  // every parameter's gradient (see "Training" above). Returns the (unscaled) loss.
  template <typename Tokens, typename Targets>
  double forward_backward(const Tokens& tokens, const Targets& targets, double loss_scale = 1.0,
                          const CrossEntropyOptions& options = {}) {
    if (!std::isfinite(loss_scale)) {
      throw ValueError("loss_scale", "expected a finite value, got " + std::to_string(loss_scale));
    }
    const auto ids = this->template check_tokens<2>(tokens, "(B, S)");
    const auto labels = check_targets(targets, ids);
    const Index batch = ids.dimension(0), seq_len = ids.dimension(1), rows = batch * seq_len;
    const Index E = config_.embedding_dim, V = config_.vocab_size;
    const Index counted = detail::count_targets(labels.data(), rows, V, options, "targets");
    const int threads = detail::resolve_num_threads(options_.num_threads, "options.num_threads");
    LMModelGradients<T> grads = bind_lm_model_gradients(registry_, config_);

    // Forward, keeping each block's input and cache in the workspace.
    LMTrainingWorkspace<T>& w = workspace_;
    w.inputs.resize(weights_.blocks.size() + 1);
    w.caches.resize(weights_.blocks.size());
    MLSTMLayerState<T>* const no_state = nullptr;
    w.inputs[0].resize(batch, seq_len, E);
    detail::embedding_forward(ids.data(), rows, weights_.token_embedding.data(), E,
                              w.inputs[0].data());
    for (std::size_t b = 0; b < weights_.blocks.size(); ++b) {
      detail::mlstm_block_forward(weights_.blocks[b], w.inputs[b].data(), batch, seq_len, options_,
                                  no_state, w.caches[b], detail::Keep::for_backward,
                                  w.inputs[b + 1]);
    }
    const Tensor<T, 3>& last = w.inputs.back();
    const T* head_input = last.data();
    if (weights_.post_blocks_norm) {
      w.normed.resize(batch, seq_len, E);
      detail::layer_norm_rows(last.data(), rows, E, weights_.post_blocks_norm->data(),
                              static_cast<const T*>(nullptr), true, LayerNormOptions{}.eps,
                              w.normed.data(), threads);
      head_input = w.normed.data();
    }
    Tensor<T, 3>& logits = w.logits;
    logits.resize(batch, seq_len, V);
    detail::linear_rows(head_input, rows, E, weights_.lm_head.data(), V,
                        static_cast<const T*>(nullptr), logits.data(), threads);
    const double loss = detail::cross_entropy_forward(logits.data(), rows, V, labels.data(),
                                                      counted, options, threads);

    // Backward, in reverse; `dx` is the gradient of the current activation (B, S, E). The
    // logits' gradient overwrites them.
    T* const dlogits = logits.data();
    detail::cross_entropy_backward(logits.data(), rows, V, labels.data(), counted, options,
                                   loss_scale, dlogits, threads);
    Tensor<T, 3>&dx = w.dx, &dnext = w.dnext;
    dx.resize(batch, seq_len, E);
    dnext.resize(batch, seq_len, E);
    detail::linear_rows_backward(head_input, rows, E, weights_.lm_head.data(), V, dlogits,
                                 dx.data(), grads.lm_head, static_cast<T*>(nullptr), threads);
    if (weights_.post_blocks_norm) {
      detail::layer_norm_rows_backward(last.data(), rows, E, weights_.post_blocks_norm->data(),
                                       true, LayerNormOptions{}.eps, dx.data(), dnext.data(),
                                       grads.post_blocks_norm, static_cast<T*>(nullptr), threads);
      std::swap(dx, dnext);
    }
    for (std::size_t b = weights_.blocks.size(); b-- > 0;) {
      detail::mlstm_block_backward(weights_.blocks[b], grads.blocks[b], w.inputs[b].data(), batch,
                                   seq_len, options_, w.caches[b], dx.data(), dnext.data(),
                                   w.backward);
      std::swap(dx, dnext);
    }
    detail::embedding_backward(ids.data(), rows, E, dx.data(), grads.token_embedding);
    return loss;
  }

  // Frees the memory forward_backward keeps between calls; the next call sizes it again.
  void release_training_workspace() { workspace_ = LMTrainingWorkspace<T>(); }

  // Frees the memory forward, prefill and loss keep between calls (inference_workspace.hpp).
  void release_inference_workspace() { inference_workspace_.release(); }

  // The loss forward_backward returns, without the backward.
  template <typename Tokens, typename Targets>
  double loss(const Tokens& tokens, const Targets& targets,
              const CrossEntropyOptions& options = {}) const {
    const auto ids = this->template check_tokens<2>(tokens, "(B, S)");
    const auto labels = check_targets(targets, ids);
    const Index rows = ids.dimension(0) * ids.dimension(1), V = config_.vocab_size;
    const Index counted = detail::count_targets(labels.data(), rows, V, options, "targets");
    const Tensor<T, 3> logits =
        run(ids.data(), ids.dimension(0), ids.dimension(1), nullptr, Logits::all);
    return detail::cross_entropy_forward(
        logits.data(), rows, V, labels.data(), counted, options,
        detail::resolve_num_threads(options_.num_threads, "options.num_threads"));
  }

 private:
  // targets (B, S) of integers, the shape of the token ids; values are checked by count_targets.
  template <typename Targets, typename Ids>
  auto check_targets(const Targets& targets, const Ids& ids) const {
    detail::require_argument_type<Targets>();
    using Id = ScalarOf<Targets>;
    static_assert(std::is_integral_v<Id> && !std::is_same_v<Id, bool>,
                  "mlstm::LanguageModel: targets are integers");
    const auto labels = detail::const_view<2>(targets, "targets", "(B, S)");
    detail::expect_shape<Id, 2>(labels, {ids.dimension(0), ids.dimension(1)}, "targets",
                                "(B, S) of tokens");
    return labels;
  }

  void check_state(const ModelState<T>& state, Index batch) const {
    if (static_cast<Index>(state.blocks.size()) != config_.num_blocks) {
      throw ShapeError("state", "expected one block state per block (" +
                                    std::to_string(config_.num_blocks) + "), got " +
                                    std::to_string(state.blocks.size()));
    }
    for (Index b = 0; b < config_.num_blocks; ++b) {
      detail::check_layer_state(state.blocks[static_cast<std::size_t>(b)], weights_.blocks[b].xlstm,
                                batch, "state.blocks[" + std::to_string(b) + "]");
    }
  }

  // The model on validated token ids (B, S); `state` null: from the zero state, none kept.
  // Sequences run in the kept inference workspace; a step in buffers of its own, so that the
  // kept ones stay sized for the prompts.
  template <typename Id>
  Tensor<T, 3> run(const Id* ids, Index batch, Index seq_len, ModelState<T>* state,
                   Logits logits) const {
    const auto lease = inference_workspace_.lease(seq_len > 1);
    LMInferenceWorkspace<T>& w = *lease;
    const Index E = config_.embedding_dim, V = config_.vocab_size;
    Tensor<T, 3>&x = w.x, &y = w.y;
    x.resize(batch, seq_len, E);
    detail::embedding_forward(ids, batch * seq_len, weights_.token_embedding.data(), E, x.data());
    for (std::size_t b = 0; b < weights_.blocks.size(); ++b) {
      detail::mlstm_block_forward(weights_.blocks[b], x.data(), batch, seq_len, options_,
                                  state != nullptr ? &state->blocks[b] : nullptr, w.activations,
                                  detail::Keep::none, y);
      std::swap(x, y);
    }
    // The norm and the head act per position: only the positions asked for are computed.
    const Index positions = logits == Logits::last ? 1 : seq_len;
    Tensor<T, 3> last(batch, positions, E);
    for (Index b = 0; b < batch; ++b) {
      const T* source = x.data() + (b * seq_len + seq_len - positions) * E;
      T* target = last.data() + b * positions * E;
      if (weights_.post_blocks_norm) {
        for (Index t = 0; t < positions; ++t)
          detail::layer_norm_row(source + t * E, E, weights_.post_blocks_norm->data(),
                                 static_cast<const T*>(nullptr), true, LayerNormOptions{}.eps,
                                 target + t * E);
      } else {
        std::copy(source, source + positions * E, target);
      }
    }
    Tensor<T, 3> out(batch, positions, V);
    detail::linear_rows(last.data(), batch * positions, E, weights_.lm_head.data(), V,
                        static_cast<const T*>(nullptr), out.data(),
                        detail::resolve_num_threads(options_.num_threads, "options.num_threads"));
    return out;
  }

  static LMModelConfig validated(const LMModelConfig& config) {
    config.validate();
    return config;
  }
  static KernelOptions validated(const KernelOptions& options) {
    detail::check_kernel_options(options);
    return options;
  }
  static Registry<T> registered(const LMModelConfig& config) {
    Registry<T> registry;
    register_lm_model(registry, config);
    return registry;
  }

  LMModelConfig config_;
  KernelOptions options_;
  Registry<T> registry_;
  LMModelWeights<T> weights_;
  LMTrainingWorkspace<T> workspace_;
  detail::ReusedWorkspace<LMInferenceWorkspace<T>> inference_workspace_;
};

}  // namespace mlstm
