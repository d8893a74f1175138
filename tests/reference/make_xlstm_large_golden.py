#!/usr/bin/env python3
"""Golden data of the xLSTM-Large tests (tests/test_xlstm_large.cpp).

Runs the reference package's `xlstm.xlstm_large.xLSTMLarge` (xlstm 2.0.6, mlstm_kernels 2.0.6)
and transformers' `xLSTMForCausalLM` on PyTorch 2 (CPU), with the native kernels chosen
explicitly (the defaults need Triton):

    python -m venv /tmp/torch-peer && /tmp/torch-peer/bin/pip install torch xlstm==2.0.6 \
        mlstm_kernels==2.0.6 transformers
    /tmp/torch-peer/bin/python tests/reference/make_xlstm_large_golden.py

Every file is rewritten byte for byte the same on every run (fixed seeds, one thread).

Cases (small random configurations; DQK = E * qk_dim_factor / NH differs from DV = E / NH,
several heads, soft caps small enough to bend the gates and the logits):

- xlstm_large_<case>.safetensors: the reference model's `state_dict()` in float32 under the
  reference's names (`embedding.weight`, `backbone.blocks.{i}.mlstm_layer.q.weight`, ...), and
  in the metadata `config`, the reference's configuration as JSON (xLSTMLargeConfig's fields).
- xlstm_large_<case>_outputs.safetensors: what the reference computes from those float32
  weights run in float64 (state in float64, norms reduced in float64):
    tokens              I64 (B, S)
    logits              F64 (B, S, V)   forward over the whole sequence from the zero state
    logits_steps        F64 (B, S, V)   prefill of the first P tokens (one call), then one step
                                        per token for the remaining S - P
    block_<i>_c, _n, _m F64             the state of block i after prefill and steps:
                                        (B, NH, DQK, DV), (B, NH, DQK, 1), (B, NH, 1, 1)
  Metadata: `prefill_length` P, `chunk_size` of the reference's chunkwise kernel, and the
  reference's own float32 error (the same model in float32, state in float32, norms reduced in
  float32, against the float64 run): `f32ref_logits_error`, `f32ref_steps_error` (max |f32 -
  f64| / max |f64| of the logits) and `f32ref_state_error` (the same over the c, n of every
  block, unstabilized: c * exp(m), n * exp(m), per block relative to its largest value), plus
  `forward_vs_steps_diff` (the float64 runs against each other, relative) and `igate_range`,
  `fgate_range`, `logit_range` (before the soft caps: they show the caps bend the values).
- xlstm_large_hf/: transformers' `save_pretrained` of an `xLSTMForCausalLM` with a small
  max_shard_size: config.json, model-0000k-of-0000n.safetensors (several shards) and
  model.safetensors.index.json, weights in float32 under transformers' names
  (`backbone.embeddings.weight`, ...). xlstm_large_hf_outputs.safetensors holds the same
  outputs as above; the script checks that transformers' own float32 logits agree with the
  reference model run on the same weights (metadata `transformers_vs_reference_f32`).

Parameters: the models' own initializations leave the norm weights at one and the biases at
zero; every parameter is perturbed with seeded normal noise (PERTURBATION) so that each one
matters to the logits, and the gate biases are shifted so that the soft caps are active.
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from golden_io import write_safetensors  # noqa: E402

DATA_DIR = os.path.join(HERE, "data")
torch.set_num_threads(1)

try:
    from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig
except ImportError as error:  # pragma: no cover - environment problem, explained to the user
    sys.exit(f"make_xlstm_large_golden.py needs xlstm 2.0.6 and PyTorch 2 ({error}); "
             "see the install lines at the top of this script")

NATIVE_KERNELS = dict(chunkwise_kernel="chunkwise--native_autograd",
                      sequence_kernel="native_sequence__native", step_kernel="native",
                      mode="inference", return_last_states=True)
# The reference's inference backend pads a sequence to a multiple of the chunk size with
# f = 25, i = -25, which is not exactly "keep the state": logsigmoid(25) = -1.4e-11 decays the
# final state by that much per padded position. The forward's outputs before the padding are
# exact; the prefill is one whole chunk so that its final state is exact too.
BATCH, SEQ_LEN, CHUNK_SIZE = 2, 20, 16
PREFILL = CHUNK_SIZE

COMMON = dict(embedding_dim=16, num_heads=2, vocab_size=24, qk_dim_factor=0.5, v_dim_factor=1.0,
              ffn_proj_factor=1.3, ffn_round_up_to_multiple_of=8, norm_eps=1e-6, eps=1e-6,
              add_out_norm=True)
CASES = {
    # name: (config fields beyond COMMON, seed)
    "single": (dict(num_blocks=2, weight_mode="single", use_bias=False, gate_soft_cap=4.0,
                    output_logit_soft_cap=3.0), 2025),
    "fused_bias": (dict(num_blocks=1, weight_mode="fused", use_bias=True, gate_soft_cap=3.0,
                        output_logit_soft_cap=4.0, num_heads=4, qk_dim_factor=0.25), 2026),
}
HF_CASE = (dict(num_blocks=2, weight_mode="single", use_bias=False, gate_soft_cap=4.0,
                output_logit_soft_cap=3.0), 2027)
HF_MAX_SHARD_SIZE = "8KB"

# Standard deviation of the noise added to each parameter, by the end of its name.
PERTURBATION = {"weight": 0.3, "bias": 0.5}
GATE_BIAS_SHIFT = {"igate": 2.0, "fgate": 3.0}  # pushes the gates past the soft cap


def reference_config(fields, dtype):
    state_dtype = "float64" if dtype == torch.float64 else "float32"
    return xLSTMLargeConfig(**{**COMMON, **fields}, **NATIVE_KERNELS, chunk_size=CHUNK_SIZE,
                            inference_state_dtype=state_dtype,
                            norm_reduction_force_float32=dtype != torch.float64)


def perturb(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            scale = PERTURBATION[name.rsplit(".", 1)[1]]
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
            for gate, shift in GATE_BIAS_SHIFT.items():
                if gate in name and name.endswith("bias"):
                    parameter.add_(shift)


def fused_gate_shift(model, config):
    """In the fused mode the input and forget gate biases share one tensor: shift each half."""
    with torch.no_grad():
        for block in model.backbone.blocks:
            bias = block.mlstm_layer.ifgate_preact.bias
            bias[:config.num_heads] += GATE_BIAS_SHIFT["igate"]
            bias[config.num_heads:] += GATE_BIAS_SHIFT["fgate"]


def gate_ranges(model, tokens):
    """The range of the gate pre-activations before the soft cap, and of the logits."""
    seen = {"igate": [], "fgate": []}
    hooks = []
    for block in model.backbone.blocks:
        layer = block.mlstm_layer
        if layer.config.weight_mode == "single":
            for gate, module in (("igate", layer.igate_preact), ("fgate", layer.fgate_preact)):
                hooks.append(module.register_forward_hook(
                    lambda _m, _i, out, gate=gate: seen[gate].append(out.detach())))
        else:
            heads = layer.config.num_heads

            def both(_m, _i, out, heads=heads):
                seen["igate"].append(out[..., :heads].detach())
                seen["fgate"].append(out[..., heads:].detach())
            hooks.append(layer.ifgate_preact.register_forward_hook(both))
    head = []
    hooks.append(model.lm_head.register_forward_hook(lambda _m, _i, out: head.append(out)))
    with torch.no_grad():
        model(tokens)
    for hook in hooks:
        hook.remove()

    def span(values):
        joined = torch.cat([v.flatten() for v in values])
        return f"[{joined.min().item():.3f}, {joined.max().item():.3f}]"
    return span(seen["igate"]), span(seen["fgate"]), span(head)


def run(model, tokens):
    """(forward logits, prefill-then-steps logits, final state) of `model` on `tokens`."""
    with torch.no_grad():
        logits, _ = model(tokens)
        prefill_logits, state = model(tokens[:, :PREFILL])
        pieces = [prefill_logits]
        for t in range(PREFILL, tokens.shape[1]):
            step_logits, state = model(tokens[:, t:t + 1], state)
            pieces.append(step_logits)
    return logits, torch.cat(pieces, dim=1), state


def relative(a, b):
    return (a.double() - b.double()).abs().max().item() / b.double().abs().max().item()


def state_error(state32, state64):
    worst = 0.0
    for i in state64:
        c64, n64, m64 = (t.double() for t in state64[i])
        c32, n32, m32 = (t.double() for t in state32[i])
        for x32, x64 in ((c32 * torch.exp(m32[..., None]), c64 * torch.exp(m64[..., None])),
                         (n32 * torch.exp(m32), n64 * torch.exp(m64))):
            worst = max(worst, relative(x32, x64))
    return worst


def golden_outputs(fields, weights32, seed):
    """Runs the reference model on the float32 weights in float64 and float32."""
    models = {}
    for dtype in (torch.float64, torch.float32):
        model = xLSTMLarge(reference_config(fields, dtype)).to(dtype).eval()
        model.load_state_dict({name: value.to(dtype) for name, value in weights32.items()})
        models[dtype] = model
    config = models[torch.float64].config
    generator = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(0, config.vocab_size, (BATCH, SEQ_LEN), generator=generator)
    logits64, steps64, state64 = run(models[torch.float64], tokens)
    logits32, steps32, state32 = run(models[torch.float32], tokens)
    igate, fgate, logit_range = gate_ranges(models[torch.float64], tokens)

    tensors = {"tokens": tokens, "logits": logits64, "logits_steps": steps64}
    for i, (c, n, m) in state64.items():
        tensors[f"block_{i}_c"] = c
        tensors[f"block_{i}_n"] = n[..., None]
        tensors[f"block_{i}_m"] = m[..., None]
    metadata = {
        "prefill_length": str(PREFILL),
        "chunk_size": str(CHUNK_SIZE),
        "f32ref_logits_error": f"{relative(logits32, logits64):.3e}",
        "f32ref_steps_error": f"{relative(steps32, steps64):.3e}",
        "f32ref_state_error": f"{state_error(state32, state64):.3e}",
        "forward_vs_steps_diff": f"{relative(steps64, logits64):.3e}",
        "igate_range": igate,
        "fgate_range": fgate,
        "logit_range": logit_range,
    }
    return tensors, metadata, models[torch.float32], tokens


def config_json(config):
    fields = ("embedding_dim", "num_heads", "num_blocks", "vocab_size", "use_bias", "norm_eps",
              "add_out_norm", "qk_dim_factor", "v_dim_factor", "chunk_size", "eps",
              "ffn_proj_factor", "ffn_round_up_to_multiple_of", "gate_soft_cap",
              "output_logit_soft_cap", "weight_mode")
    return json.dumps({name: getattr(config, name) for name in fields}, sort_keys=True)


def write(name, tensors, metadata):
    path = os.path.join(DATA_DIR, name)
    write_safetensors(path, tensors, metadata)
    return path


def make_reference_case(name, fields, seed):
    torch.manual_seed(seed)
    model = xLSTMLarge(reference_config(fields, torch.float32))
    perturb(model, seed)
    if fields["weight_mode"] == "fused":
        fused_gate_shift(model, model.config)
    weights = {key: value.detach().clone() for key, value in model.state_dict().items()}
    write(f"xlstm_large_{name}.safetensors", weights, {"config": config_json(model.config)})
    tensors, metadata, _, _ = golden_outputs(fields, weights, seed)
    return write(f"xlstm_large_{name}_outputs.safetensors", tensors, metadata), metadata


def transformers_to_reference(name):
    """transformers' parameter name -> the reference's (the blocks share their names)."""
    if name == "backbone.embeddings.weight":
        return "embedding.weight"
    return name


def make_transformers_case():
    from transformers import xLSTMConfig, xLSTMForCausalLM

    fields, seed = HF_CASE
    merged = {**COMMON, **fields}
    torch.manual_seed(seed)
    hf_config = xLSTMConfig(
        hidden_size=merged["embedding_dim"], num_hidden_layers=merged["num_blocks"],
        **{k: v for k, v in merged.items() if k not in ("embedding_dim", "num_blocks")},
        **NATIVE_KERNELS, chunk_size=CHUNK_SIZE, tie_word_embeddings=False)
    model = xLSTMForCausalLM(hf_config).float().eval()
    perturb(model, seed)
    folder = os.path.join(DATA_DIR, "xlstm_large_hf")
    shutil.rmtree(folder, ignore_errors=True)
    with tempfile.TemporaryDirectory() as scratch:
        model.save_pretrained(scratch, max_shard_size=HF_MAX_SHARD_SIZE)
        os.makedirs(folder)
        # What a model folder needs: the configuration, the shards and their index.
        for entry in sorted(os.listdir(scratch)):
            if entry == "config.json" or entry.startswith("model"):
                shutil.copy(os.path.join(scratch, entry), os.path.join(folder, entry))

    weights = {transformers_to_reference(key): value.detach().clone()
               for key, value in model.state_dict().items()}
    tensors, metadata, reference32, tokens = golden_outputs(fields, weights, seed)
    with torch.no_grad():
        hf_logits = model(tokens, use_cache=False).logits
        ours = reference32(tokens)[0]
    agreement = relative(hf_logits, ours)
    if agreement > 1e-5:
        sys.exit(f"transformers and the reference disagree: {agreement:.3e}")
    metadata["transformers_vs_reference_f32"] = f"{agreement:.3e}"
    shards = sorted(e for e in os.listdir(folder) if e.endswith(".safetensors"))
    metadata["shards"] = str(len(shards))
    return write("xlstm_large_hf_outputs.safetensors", tensors, metadata), metadata


def main():
    os.makedirs(DATA_DIR, exist_ok=True)
    results = [make_reference_case(name, fields, seed) for name, (fields, seed) in CASES.items()]
    results.append(make_transformers_case())
    keys = ("f32ref_logits_error", "f32ref_steps_error", "f32ref_state_error",
            "forward_vs_steps_diff", "igate_range", "fgate_range", "logit_range")
    for path, metadata in results:
        print(os.path.basename(path), os.path.getsize(path), "bytes")
        for key in keys:
            print(f"  {key:24s} {metadata[key]}")


if __name__ == "__main__":
    main()
