// mlstm: the mLSTM cell of xLSTM over Eigen tensors. Include this header for everything.
#pragma once

#include "mlstm/version.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/state.hpp"
#include "mlstm/mask.hpp"
#include "mlstm/threading.hpp"
#include "mlstm/parallel.hpp"
#include "mlstm/recurrent.hpp"
#include "mlstm/chunkwise.hpp"
#include "mlstm/parallel_backward.hpp"
#include "mlstm/recurrent_backward.hpp"
#include "mlstm/chunkwise_backward.hpp"
#include "mlstm/backend.hpp"
