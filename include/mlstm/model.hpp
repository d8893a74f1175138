// The mLSTM-only xLSTM language model and its pieces: include this header for all of them.
#pragma once

#include "mlstm/model/activations.hpp"
#include "mlstm/model/causal_conv1d.hpp"
#include "mlstm/model/checkpoint.hpp"
#include "mlstm/model/config_json.hpp"
#include "mlstm/model/language_model.hpp"
#include "mlstm/model/layer_norm.hpp"
#include "mlstm/model/linear.hpp"
#include "mlstm/model/linear_headwise.hpp"
#include "mlstm/model/lm_checkpoint.hpp"
#include "mlstm/model/mlstm_block.hpp"
#include "mlstm/model/mlstm_cell.hpp"
#include "mlstm/model/mlstm_layer.hpp"
#include "mlstm/model/model_state.hpp"
