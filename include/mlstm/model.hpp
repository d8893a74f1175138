// The mLSTM-only xLSTM language model and its pieces: include this header for all of them.
#pragma once

#include "mlstm/layers/activations.hpp"
#include "mlstm/layers/causal_conv1d.hpp"
#include "mlstm/io/checkpoint.hpp"
#include "mlstm/io/training_checkpoint.hpp"
#include "mlstm/models/xlstm_lm/config_json.hpp"
#include "mlstm/models/xlstm_lm/language_model.hpp"
#include "mlstm/layers/layer_norm.hpp"
#include "mlstm/layers/linear.hpp"
#include "mlstm/layers/linear_headwise.hpp"
#include "mlstm/models/xlstm_lm/checkpoint.hpp"
#include "mlstm/models/xlstm_lm/mlstm_block.hpp"
#include "mlstm/models/xlstm_lm/mlstm_cell.hpp"
#include "mlstm/models/xlstm_lm/mlstm_layer.hpp"
#include "mlstm/models/xlstm_lm/model_state.hpp"
