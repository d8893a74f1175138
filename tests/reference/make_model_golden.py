#!/usr/bin/env python3
"""Golden data of the model tests (tests/test_model.cpp, tests/test_checkpoint.cpp).

Runs the reference package's own language model (`xlstm.xLSTMLMModel`, mLSTM blocks only) on
Debian's torch (CPU). Install the package beside that torch without its dependency list:

    /usr/bin/python3 -m venv --system-site-packages /tmp/venv
    /tmp/venv/bin/pip install --no-deps xlstm==2.0.6 mlstm_kernels==2.0.6
    /tmp/venv/bin/python tests/reference/make_model_golden.py

Every file is rewritten byte for byte the same on every run (fixed seeds, torch on one thread).

For each case, in data/:

- model_<case>.safetensors: the model's `state_dict()` in float32, exactly as a PyTorch user
  saves it (every name of the state dict, the tied embedding and head under both names), no
  metadata. This is the checkpoint the C++ model loads.
- model_<case>_f16.safetensors, model_<case>_bf16.safetensors (case `small` only): the same
  state dict converted by torch to float16 / bfloat16.
- model_<case>_outputs.safetensors: what the model computes, and the model's configuration in
  the metadata. Tensors:
    tokens              I64 (B, S_step)     token ids; the whole-sequence runs use the first S
    logits              F64 (B, S, V)       model.forward on tokens[:, :S], model in float64
    logits_f32ref       F32 (B, S, V)       the same in float32
    logits_step         F64 (B, S_step, V)  model.step token by token from no state, float64
    logits_step_f32ref  F32 (B, S_step, V)  the same in float32
    block_<i>_c, _n, _m F64                 mLSTM state of block i after S_step steps:
                                            (B, NH, DH, DH), (B, NH, DH, 1), (B, NH, 1, 1)
    block_<i>_conv      F64 (B, KS, D_inner) the conv state of block i after S_step steps
    param_sums_<dtype>  F64 (P, 2)          for f16/bf16: per parameter (state dict order,
                                            names in metadata `param_names`), the sum and the
                                            sum of absolute values of torch's conversion of the
                                            float32 values, in float64
  S = the context length (the reference's forward fails on longer sequences); S_step = S + 8,
  so the step golden data runs past the context length.
  Metadata (strings): `config` (JSON: the fields of the C++ model configuration), `description`,
  `seed`, `param_names` (JSON list), and measurements: `f32ref_rel_error`,
  `f32ref_step_rel_error` (max |float32 - float64| / max |float64| of the logits),
  `step_vs_forward_rel_diff` (the reference's own token-by-token logits against its
  whole-sequence logits, float64, first S positions), `igate_range`, `fgate_range`,
  `max_m` (the range of the gate pre-activations and the largest stabilizer seen by the steps).

Parameters: the reference's `reset_parameters()` init leaves the gate weights at zero, the norm
weights at zero (stored as offsets from one) and the skip at one, which would hide mistakes in
how those are used; every parameter is therefore perturbed after init with seeded normal noise
(scales in PERTURBATION below), so that every tensor matters to the logits.
"""

import copy
import json
import os
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from golden_io import write_safetensors  # noqa: E402

DATA_DIR = os.path.join(HERE, "data")
torch.set_num_threads(1)

try:
    from xlstm import mLSTMBlockConfig, mLSTMLayerConfig, xLSTMLMModel, xLSTMLMModelConfig
except ImportError as error:  # pragma: no cover - environment problem, explained to the user
    sys.exit(f"make_model_golden.py needs the reference package xlstm 2.0.6 ({error}); "
             "see the install lines at the top of this script")

EXTRA_STEPS = 8  # token-by-token steps past the context length

CASES = {
    # name: (model config fields, layer config fields, batch size, seed, F16/BF16 copies)
    "small": (dict(vocab_size=50, embedding_dim=32, num_blocks=2, context_length=16, bias=False,
                   tie_weights=False, add_post_blocks_norm=True),
              dict(num_heads=4, proj_factor=2.0, conv1d_kernel_size=4, qkv_proj_blocksize=4),
              3, 1234, True),
    "tied_bias": (dict(vocab_size=40, embedding_dim=48, num_blocks=1, context_length=12,
                       bias=True, tie_weights=True, add_post_blocks_norm=False),
                  dict(num_heads=2, proj_factor=1.3, conv1d_kernel_size=3, qkv_proj_blocksize=8),
                  2, 4321, False),
}

# Standard deviation of the noise added to each kind of parameter after reset_parameters(),
# by the last part of its name. The gate weights get enough to make the gates vary by about one
# unit over tokens; the biases of the gates spread the input gate and bring some forget gates
# towards zero.
PERTURBATION = {
    "igate.weight": 0.5, "fgate.weight": 0.5, "igate.bias": 1.0, "fgate.bias": 1.5,
    "norm.weight": 0.2, "outnorm.weight": 0.2, "learnable_skip": 0.2,
}
DEFAULT_PERTURBATION = 0.02


def perturbation_scale(name):
    for suffix, scale in PERTURBATION.items():
        if name.endswith(suffix):
            return scale
    return DEFAULT_PERTURBATION


def dumps(value):
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


def make_model(model_fields, layer_fields, seed):
    torch.manual_seed(seed)
    config = xLSTMLMModelConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(**layer_fields)), slstm_block=None,
        **model_fields)
    model = xLSTMLMModel(config)
    model.reset_parameters()
    noise = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():  # a tied weight is listed once
            param.add_(perturbation_scale(name) *
                       torch.randn(param.shape, generator=noise, dtype=param.dtype))
    return model.eval(), config


def config_json(config):
    layer = config.mlstm_block.mlstm
    return {
        "vocab_size": config.vocab_size, "embedding_dim": config.embedding_dim,
        "num_heads": layer.num_heads, "num_blocks": config.num_blocks,
        "context_length": config.context_length, "proj_factor": layer.proj_factor,
        "round_proj_up_dim_up": layer.round_proj_up_dim_up,
        "round_proj_up_to_multiple_of": layer.round_proj_up_to_multiple_of,
        "conv1d_kernel_size": layer.conv1d_kernel_size,
        "qkv_proj_blocksize": layer.qkv_proj_blocksize, "bias": config.bias,
        "add_post_blocks_norm": config.add_post_blocks_norm, "tie_weights": config.tie_weights,
        "inner_embedding_dim": layer._inner_embedding_dim,
    }


class GateRecorder:
    """Records the gate pre-activations and stabilizers the reference's cells compute."""

    def __init__(self, model):
        self.igate, self.fgate, self.m = [], [], []
        self.handles = []
        for block in model.xlstm_block_stack.blocks:
            cell = block.xlstm.mlstm_cell
            self.handles.append(cell.igate.register_forward_hook(
                lambda _m, _i, out: self.igate.append(out.detach())))
            self.handles.append(cell.fgate.register_forward_hook(
                lambda _m, _i, out: self.fgate.append(out.detach())))

    def close(self):
        for handle in self.handles:
            handle.remove()


def run_steps(model, tokens):
    """model.step token by token from no state: logits (B, S, V) and the final state."""
    state = None
    logits = []
    with torch.no_grad():
        for t in range(tokens.shape[1]):
            step_logits, state = model.step(tokens[:, t:t + 1], state)
            logits.append(step_logits)
    return torch.cat(logits, dim=1), state


def relative(actual, expected):
    return float((actual.double() - expected).abs().max() / expected.abs().max())


def case_golden(name, model_fields, layer_fields, batch, seed, low_precision_copies):
    model32, config = make_model(model_fields, layer_fields, seed)
    model64 = copy.deepcopy(model32).double()
    state_dict = model32.state_dict()
    param_names = list(state_dict.keys())

    written = []
    path = os.path.join(DATA_DIR, f"model_{name}.safetensors")
    write_safetensors(path, {key: value.clone() for key, value in state_dict.items()})
    written.append(path)

    outputs = {}
    if low_precision_copies:
        for dtype, label in ((torch.float16, "f16"), (torch.bfloat16, "bf16")):
            converted = {key: value.to(dtype) for key, value in state_dict.items()}
            path = os.path.join(DATA_DIR, f"model_{name}_{label}.safetensors")
            write_safetensors(path, converted)
            written.append(path)
            outputs[f"param_sums_{label}"] = torch.tensor(
                [[converted[key].double().sum().item(), converted[key].double().abs().sum().item()]
                 for key in param_names], dtype=torch.float64)

    context = config.context_length
    generator = torch.Generator().manual_seed(seed + 2)
    tokens = torch.randint(0, config.vocab_size, (batch, context + EXTRA_STEPS),
                           generator=generator, dtype=torch.int64)
    prompt = tokens[:, :context]

    recorder = GateRecorder(model64)
    with torch.no_grad():
        logits = model64(prompt)
        logits_f32 = model32(prompt)
    logits_step, state = run_steps(model64, tokens)
    recorder.close()
    logits_step_f32, _ = run_steps(model32, tokens)

    outputs.update({"tokens": tokens, "logits": logits, "logits_f32ref": logits_f32,
                    "logits_step": logits_step, "logits_step_f32ref": logits_step_f32})
    max_m = -float("inf")
    for block in range(config.num_blocks):
        c, n, m = state[f"block_{block}"]["mlstm_state"]
        (conv,) = state[f"block_{block}"]["conv_state"]
        outputs.update({f"block_{block}_c": c, f"block_{block}_n": n, f"block_{block}_m": m,
                        f"block_{block}_conv": conv})
        max_m = max(max_m, float(m.max()))

    igate = torch.cat([x.flatten() for x in recorder.igate])
    fgate = torch.cat([x.flatten() for x in recorder.fgate])
    step_vs_forward = relative(logits_step[:, :context], logits)
    metadata = {
        "config": dumps(config_json(config)),
        "description": f"reference xLSTMLMModel, mLSTM blocks only, case {name}, "
                       "parameters perturbed after reset_parameters()",
        "seed": str(seed),
        "param_names": dumps(param_names),
        "f32ref_rel_error": repr(relative(logits_f32, logits)),
        "f32ref_step_rel_error": repr(relative(logits_step_f32, logits_step)),
        "step_vs_forward_rel_diff": repr(step_vs_forward),
        "igate_range": dumps([float(igate.min()), float(igate.max())]),
        "fgate_range": dumps([float(fgate.min()), float(fgate.max())]),
        "max_m": repr(max_m),
    }
    path = os.path.join(DATA_DIR, f"model_{name}_outputs.safetensors")
    write_safetensors(path, outputs, metadata)
    written.append(path)
    return written, metadata


def main():
    os.makedirs(DATA_DIR, exist_ok=True)
    total = 0
    for name, (model_fields, layer_fields, batch, seed, copies) in CASES.items():
        written, metadata = case_golden(name, model_fields, layer_fields, batch, seed, copies)
        for path in written:
            size = os.path.getsize(path)
            total += size
            print(f"{os.path.relpath(path, HERE):42s} {size:8d} bytes")
        for key in ("f32ref_rel_error", "f32ref_step_rel_error", "step_vs_forward_rel_diff",
                    "igate_range", "fgate_range", "max_m"):
            print(f"    {key:26s} {metadata[key]}")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
