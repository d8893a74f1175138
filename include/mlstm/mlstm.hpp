// mlstm: the mLSTM cell of xLSTM over Eigen tensors. Include this header for everything.
#pragma once

#include "mlstm/version.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/state.hpp"
#include "mlstm/mask.hpp"
#include "mlstm/parallel.hpp"
#include "mlstm/recurrent.hpp"
#include "mlstm/backend.hpp"
#include "mlstm/params/generator.hpp"
#include "mlstm/params/registry.hpp"
#include "mlstm/params/init.hpp"
#include "mlstm/params/init_plan.hpp"
#include "mlstm/params/weight_decay.hpp"
#include "mlstm/params/adamw.hpp"
#include "mlstm/params/model_config.hpp"
#include "mlstm/params/model_params.hpp"
