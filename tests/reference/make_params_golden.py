#!/usr/bin/env python3
"""Golden data of the parameter utilities' tests (tests/test_params_*.cpp).

Needs torch (Debian's python3-torch) and the reference package `xlstm` 2.0.6 installed beside
it without its dependency list:

    /usr/bin/python3 -m venv --system-site-packages /tmp/venv
    /tmp/venv/bin/pip install --no-deps xlstm==2.0.6 mlstm_kernels==2.0.6
    /tmp/venv/bin/python tests/reference/make_params_golden.py

(the package's __init__ imports its sLSTM CUDA loader, which needs `packaging`; Debian's
python3-packaging provides it). Every file is rewritten byte for byte the same on every run.

Files written to data/:

- params_model_<case>.safetensors: a small mLSTM-only xLSTMLMModel of the reference. Metadata
  (JSON strings): `config`; `names` (named_parameters order); `shapes`; `requires_grad`;
  `state_dict_names`; `groups_name_rule` and `groups_rank_rule` ({"decay": [...],
  "no_decay": [...]}, from get_weight_decay_optim_group_param_names with the reference's
  current rule and with the rule of xlstm 1.0.x); `init_calls`: every init call of
  model.reset_parameters() in order, then, for each parameter that reset_parameters leaves
  alone, the last init call made while constructing the model. Tensor `fgate_bias`: the
  reference's block 0 forget-gate bias after reset_parameters (float32).
- params_toy_groups.safetensors: the same metadata (without config and init calls) for a toy
  module on which the two weight-decay rules disagree, with a tied and a frozen parameter.
- params_linspace.safetensors: torch.linspace(start, end, n) in float32 and float64; metadata
  `cases` lists each tensor's start, end, n, dtype, and whether torch took its scalar path
  (then the library must match bit for bit; see the test).
- params_generator.safetensors: the output of mlstm::Generator's documented algorithm
  (xoshiro256** seeded by splitmix64, Box-Muller) from an independent Python port, and of the
  init functions drawn from it.
- params_adamw.safetensors: torch.optim.AdamW on two parameter groups (decay, no decay) over
  several steps with given gradients, in float64 and float32.
"""

import inspect
import json
import math
import os
import sys
from fractions import Fraction

import numpy as np
import torch

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from golden_io import write_safetensors  # noqa: E402

DATA_DIR = os.path.join(HERE, "data")
torch.set_num_threads(1)

try:
    import xlstm  # noqa: E402
    import xlstm.utils
    from xlstm import mLSTMBlockConfig, mLSTMLayerConfig, xLSTMLMModel, xLSTMLMModelConfig
except ImportError as error:  # pragma: no cover - environment problem, explained to the user
    sys.exit(f"make_params_golden.py needs the reference package xlstm 2.0.6 ({error}); "
             "see the install lines at the top of this script")


def dumps(value):
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


# ---------------------------------------------------------------------------------------------
# Model cases: names, shapes, weight-decay groups, init calls
# ---------------------------------------------------------------------------------------------

MODEL_CASES = {
    # name: (config fields, layer fields, parameters to freeze)
    "small": (dict(vocab_size=64, embedding_dim=128, num_blocks=2, context_length=32,
                   bias=False, tie_weights=False, weight_decay_on_embedding=False),
              dict(num_heads=4, proj_factor=2.0, conv1d_kernel_size=4, qkv_proj_blocksize=4),
              []),
    "tied_bias": (dict(vocab_size=64, embedding_dim=128, num_blocks=2, context_length=32,
                       bias=True, tie_weights=True, weight_decay_on_embedding=True),
                  dict(num_heads=4, proj_factor=2.0, conv1d_kernel_size=4, qkv_proj_blocksize=4),
                  []),
    "odd": (dict(vocab_size=50, embedding_dim=96, num_blocks=3, context_length=16, bias=True,
                 tie_weights=False, weight_decay_on_embedding=True, add_post_blocks_norm=False),
            dict(num_heads=2, proj_factor=1.3, conv1d_kernel_size=3, qkv_proj_blocksize=8),
            []),
    "round_down_tied_frozen": (
        dict(vocab_size=40, embedding_dim=64, num_blocks=1, context_length=8, bias=False,
             tie_weights=True, weight_decay_on_embedding=False),
        dict(num_heads=2, proj_factor=1.7, round_proj_up_dim_up=False, conv1d_kernel_size=2,
             qkv_proj_blocksize=4),
        ["xlstm_block_stack.blocks.0.xlstm.learnable_skip",
         "xlstm_block_stack.blocks.0.xlstm.q_proj.weight"]),
}


class InitRecorder:
    """Records the outermost init call on each tensor while patched into the reference."""

    # (module, attribute) of every init function the reference's modules call.
    TARGETS = [
        ("torch.nn.init", "zeros_"), ("torch.nn.init", "ones_"), ("torch.nn.init", "normal_"),
        ("torch.nn.init", "uniform_"), ("torch.nn.init", "kaiming_uniform_"),
        ("xlstm.blocks.mlstm.layer", "small_init_init_"),
        ("xlstm.blocks.mlstm.layer", "wang_init_"),
        ("xlstm.blocks.mlstm.cell", "bias_linspace_init_"),
        ("xlstm.xlstm_lm_model", "small_init_init_"),
    ]

    def __init__(self):
        self.calls = []  # (tensor, function name, bound arguments)
        self.depth = 0
        self.saved = []

    def __enter__(self):
        for module_name, attribute in self.TARGETS:
            module = sys.modules[module_name]
            original = getattr(module, attribute)
            self.saved.append((module, attribute, original))
            setattr(module, attribute, self._wrap(attribute, original))
        return self

    def __exit__(self, *exc):
        for module, attribute, original in reversed(self.saved):
            setattr(module, attribute, original)
        self.saved = []

    def _wrap(self, name, original):
        signature = inspect.signature(original)

        def wrapped(*args, **kwargs):
            if self.depth == 0:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                tensor = arguments.pop(next(iter(signature.parameters)))
                self.calls.append((tensor, name, arguments))  # keeps the tensor alive
            self.depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                self.depth -= 1

        return wrapped


def describe_call(tensor, function, arguments):
    """The call as the C++ plan spells it: scheme and its arguments."""
    if function == "small_init_init_":
        return {"scheme": "small_init", "dim": arguments["dim"]}
    if function == "wang_init_":
        return {"scheme": "wang", "dim": arguments["dim"], "num_blocks": arguments["num_blocks"]}
    if function == "bias_linspace_init_":
        return {"scheme": "bias_linspace", "start": arguments["start"], "end": arguments["end"]}
    if function in ("zeros_", "ones_"):
        return {"scheme": function[:-1]}
    if function == "normal_":
        return {"scheme": "normal", "mean": arguments["mean"], "std": arguments["std"]}
    if function == "uniform_":
        return {"scheme": "uniform", "low": arguments["a"], "high": arguments["b"]}
    if function == "kaiming_uniform_":
        # The bound as torch 1.13 computes it: gain = calculate_gain("leaky_relu", a),
        # bound = sqrt(3) * (gain / sqrt(fan_in)).
        assert arguments["mode"] == "fan_in" and arguments["nonlinearity"] == "leaky_relu"
        fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(tensor)
        gain = torch.nn.init.calculate_gain("leaky_relu", arguments["a"])
        bound = math.sqrt(3.0) * (gain / math.sqrt(fan_in))
        return {"scheme": "uniform", "low": -bound, "high": bound}
    raise AssertionError(f"unexpected init function {function}")


def rank_rule_groups(self, **kwargs):
    """The weight-decay rule of xlstm 1.0.x (parameters of rank > 1 decay), ported."""
    decay, no_decay = set(), set()
    for _, param in self.named_parameters():
        if param.requires_grad:
            if param.ndim > 1:
                decay.add(param)
            elif param.ndim == 1:
                no_decay.add(param)
            else:
                raise ValueError(f"Unsupported parameter shape: {param.shape}")
    return tuple(decay), tuple(no_decay)


def group_names(model, rank_rule):
    mixin = xlstm.utils.WeightDecayOptimGroupMixin
    current = mixin._create_weight_decay_optim_groups
    if rank_rule:
        mixin._create_weight_decay_optim_groups = rank_rule_groups
    try:
        decay, no_decay = model.get_weight_decay_optim_group_param_names()
    finally:
        mixin._create_weight_decay_optim_groups = current
    return {"decay": list(decay), "no_decay": list(no_decay)}


def model_case(name, model_fields, layer_fields, frozen):
    torch.manual_seed(0)
    config = xLSTMLMModelConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(**layer_fields)), slstm_block=None,
        **model_fields)
    with InitRecorder() as construction:
        model = xLSTMLMModel(config)
    with InitRecorder() as reset:
        model.reset_parameters()
    for parameter_name in frozen:
        model.get_parameter(parameter_name).requires_grad_(False)

    named = list(model.named_parameters())
    name_of = {param.data_ptr(): pname for pname, param in named}

    init_calls = []
    touched = set()
    for tensor, function, arguments in reset.calls:
        pname = name_of[tensor.data_ptr()]
        touched.add(pname)
        init_calls.append({"name": pname, "stage": "reset_parameters",
                           **describe_call(tensor, function, arguments)})
    last_construction_call = {}
    for tensor, function, arguments in construction.calls:
        pname = name_of.get(tensor.data_ptr())
        if pname is not None:
            last_construction_call[pname] = (tensor, function, arguments)
    for pname, _ in named:
        if pname not in touched:
            tensor, function, arguments = last_construction_call[pname]
            init_calls.append({"name": pname, "stage": "construction",
                               **describe_call(tensor, function, arguments)})
    assert len(touched) + sum(c["stage"] == "construction" for c in init_calls) == len(named)

    layer = config.mlstm_block.mlstm
    config_json = {
        "vocab_size": config.vocab_size, "embedding_dim": config.embedding_dim,
        "num_heads": layer.num_heads, "num_blocks": config.num_blocks,
        "context_length": config.context_length, "proj_factor": layer.proj_factor,
        "round_proj_up_dim_up": layer.round_proj_up_dim_up,
        "round_proj_up_to_multiple_of": layer.round_proj_up_to_multiple_of,
        "conv1d_kernel_size": layer.conv1d_kernel_size,
        "qkv_proj_blocksize": layer.qkv_proj_blocksize, "bias": config.bias,
        "add_post_blocks_norm": config.add_post_blocks_norm, "tie_weights": config.tie_weights,
        "weight_decay_on_embedding": config.weight_decay_on_embedding,
        "inner_embedding_dim": layer._inner_embedding_dim,
    }
    metadata = {
        "config": dumps(config_json),
        "names": dumps([pname for pname, _ in named]),
        "shapes": dumps({pname: list(param.shape) for pname, param in named}),
        "requires_grad": dumps({pname: param.requires_grad for pname, param in named}),
        "frozen": dumps(frozen),
        "state_dict_names": dumps(list(model.state_dict().keys())),
        "groups_name_rule": dumps(group_names(model, rank_rule=False)),
        "groups_rank_rule": dumps(group_names(model, rank_rule=True)),
        "init_calls": dumps(init_calls),
    }
    fgate_bias = model.xlstm_block_stack.blocks[0].xlstm.mlstm_cell.fgate.bias.detach().clone()
    path = os.path.join(DATA_DIR, f"params_model_{name}.safetensors")
    write_safetensors(path, {"fgate_bias": fgate_bias}, metadata)
    return path, len(named), sum(p.numel() for _, p in named), len(init_calls)


class ToyModule(xlstm.utils.WeightDecayOptimGroupMixin, torch.nn.Module):
    """A module on which the two weight-decay rules disagree, and with a tied and a frozen
    parameter."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 4)                                  # 2-D weight, 1-D bias
        self.norm = torch.nn.LayerNorm(4)                                  # 1-D, name has norm
        self.scale = torch.nn.Parameter(torch.ones(3, 3))                  # 2-D, no "weight"
        self.gate_weight = torch.nn.Parameter(torch.zeros(5))              # 1-D with "weight"
        self.normalizer = torch.nn.Linear(2, 2, bias=False)                # 2-D, name has norm
        self.frozen = torch.nn.Linear(2, 2, bias=False)
        self.frozen.weight.requires_grad_(False)
        self.head = torch.nn.Linear(3, 4, bias=False)
        self.head.weight = self.proj.weight                                # tied


def toy_golden():
    module = ToyModule()
    named = list(module.named_parameters())
    metadata = {
        "names": dumps([name for name, _ in named]),
        "shapes": dumps({name: list(param.shape) for name, param in named}),
        "requires_grad": dumps({name: param.requires_grad for name, param in named}),
        "state_dict_names": dumps(list(module.state_dict().keys())),
        "groups_name_rule": dumps(group_names(module, rank_rule=False)),
        "groups_rank_rule": dumps(group_names(module, rank_rule=True)),
    }
    path = os.path.join(DATA_DIR, "params_toy_groups.safetensors")
    write_safetensors(path, {}, metadata)
    return path


# ---------------------------------------------------------------------------------------------
# torch.linspace
# ---------------------------------------------------------------------------------------------

def fma_rounded(a, b, c, numpy_type):
    """a * b + c with one rounding to numpy_type (exact rational arithmetic)."""
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    if numpy_type is np.float64:
        return np.float64(float(exact))  # Fraction -> float rounds correctly
    nearest = np.float32(float(exact))  # may round twice; settle on the nearest float32
    candidates = [np.nextafter(nearest, np.float32(-np.inf)), nearest,
                  np.nextafter(nearest, np.float32(np.inf))]

    def key(candidate):
        bits = int(np.array(candidate, dtype=np.float32).view(np.uint32))
        return abs(Fraction(float(candidate)) - exact), bits & 1  # ties to even
    return min(candidates, key=key)


def linspace_scalar_path(start, end, n, numpy_type):
    """torch.linspace's scalar formula with the fused multiply-add the library uses."""
    first, last = numpy_type(start), numpy_type(end)
    if n == 1:
        return np.array([first], dtype=numpy_type)
    step = (last - first) / numpy_type(n - 1)
    half = n // 2
    values = [fma_rounded(step, numpy_type(i), first, numpy_type) if i < half
              else fma_rounded(-step, numpy_type(n - 1 - i), last, numpy_type)
              for i in range(n)]
    return np.array(values, dtype=numpy_type)


def cpu_vector_bytes():
    text = torch.__config__.show()
    for capability, width in (("AVX512", 64), ("AVX2", 32)):
        if f"CPU capability usage: {capability}" in text:
            return width
    return 16  # the default build vectorizes with 128-bit registers


def endpoint_ulps_apart(a, b, start, end):
    """Largest |a - b| in units of the spacing of floats at max(|start|, |end|)."""
    if a.size == 0:
        return 0.0
    magnitude = max(abs(a.dtype.type(start)), abs(a.dtype.type(end)))
    spacing = np.spacing(magnitude)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))) / spacing)


def linspace_golden():
    ranges = [(3.4, 6.0), (3.0, 6.0), (-1.0, 1.0), (0.1, 0.7), (6.0, 3.0)]
    counts = list(range(1, 34)) + [64, 255, 1000]
    vector_bytes = cpu_vector_bytes()
    tensors, cases = {}, []
    worst_ulps = 0.0
    for dtype, numpy_type, size in ((torch.float32, np.float32, 4),
                                    (torch.float64, np.float64, 8)):
        # torch's CPU loop runs vectors of two registers when at least that many elements
        # remain; below that every element takes the scalar path.
        scalar_below = 2 * vector_bytes // size
        for start, end in ranges:
            for n in counts:
                key = f"{'f32' if size == 4 else 'f64'}_{len(cases):03d}"
                values = torch.linspace(start, end, n, dtype=dtype).numpy()
                model = linspace_scalar_path(start, end, n, numpy_type)
                ulps = endpoint_ulps_apart(values, model, start, end)
                scalar = n < scalar_below
                if scalar:
                    assert ulps == 0, f"scalar path of torch.linspace not reproduced: {key}"
                worst_ulps = max(worst_ulps, ulps)
                tensors[key] = values
                cases.append({"key": key, "start": start, "end": end, "n": n,
                              "dtype": "float32" if size == 4 else "float64",
                              "torch_scalar_path": scalar})
    metadata = {"cases": dumps(cases), "max_endpoint_ulps_vs_library_formula": repr(worst_ulps),
                "cpu_vector_bytes": str(vector_bytes)}
    path = os.path.join(DATA_DIR, "params_linspace.safetensors")
    write_safetensors(path, tensors, metadata)
    return path, len(cases), worst_ulps


# ---------------------------------------------------------------------------------------------
# mlstm::Generator, ported from its documentation in include/mlstm/params/generator.hpp
# ---------------------------------------------------------------------------------------------

MASK64 = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK64


class PortedGenerator:
    def __init__(self, seed=None, state=None):
        if state is None:
            state, words = seed & MASK64, []
            for _ in range(4):
                state, word = splitmix64(state)
                words.append(word)
            state = words
        self.s = list(state)
        self.cached = None

    def next_u64(self):
        s = self.s
        result = (rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def uniform(self):
        return (self.next_u64() >> 11) * 2.0 ** -53

    def normal(self):
        if self.cached is not None:
            value, self.cached = self.cached, None
            return value
        u1 = ((self.next_u64() >> 11) + 1) * 2.0 ** -53
        u2 = (self.next_u64() >> 11) * 2.0 ** -53
        radius = math.sqrt(-2.0 * math.log(u1))
        angle = 2.0 * math.pi * u2
        self.cached = radius * math.sin(angle)
        return radius * math.cos(angle)


def generator_golden():
    # Published test vectors: splitmix64 from 1234567, xoshiro256** from the state {1, 2, 3, 4}.
    assert splitmix64(1234567)[1] == 6457827717110365317
    vector = PortedGenerator(state=[1, 2, 3, 4])
    assert [vector.next_u64() for _ in range(2)] == [11520, 0]

    tensors = {}
    seeds = [0, 1, 42, 1234567, MASK64]
    for index, seed in enumerate(seeds):
        gen = PortedGenerator(seed)
        tensors[f"seed{index}.u64"] = np.array([gen.next_u64() for _ in range(64)], np.uint64)
        gen = PortedGenerator(seed)
        tensors[f"seed{index}.uniform"] = np.array([gen.uniform() for _ in range(64)])
        gen = PortedGenerator(seed)
        tensors[f"seed{index}.normal"] = np.array([gen.normal() for _ in range(1001)])
    state_gen = PortedGenerator(state=[1, 2, 3, 4])
    tensors["state1234.u64"] = np.array([state_gen.next_u64() for _ in range(16)], np.uint64)

    # The init functions on one generator, in this order (seed 7): each value is
    # mean + std * z (or low + (high - low) * u) with one rounding, then rounded to the dtype.
    gen = PortedGenerator(7)
    small_std = math.sqrt(2 / (5 * 128))
    tensors["init.small_init_f32"] = np.array(
        [np.float32(fma_rounded(small_std, gen.normal(), 0.0, np.float64)) for _ in range(20)],
        np.float32).reshape(4, 5)
    wang_std = 2 / 3 / math.sqrt(64)
    tensors["init.wang_f64"] = np.array(
        [fma_rounded(wang_std, gen.normal(), 0.0, np.float64) for _ in range(21)]).reshape(3, 7)
    tensors["init.normal_f32"] = np.array(
        [np.float32(fma_rounded(2.0, gen.normal(), 0.5, np.float64)) for _ in range(13)],
        np.float32)
    tensors["init.uniform_f64"] = np.array(
        [fma_rounded(0.5 - (-0.25), gen.uniform(), -0.25, np.float64) for _ in range(11)])
    metadata = {
        "seeds": dumps([str(seed) for seed in seeds]),
        "init_order": dumps([
            "small_init_init_(float32 (4, 5), dim=128)",
            "wang_init_(float64 (3, 7), dim=64, num_blocks=3)",
            "normal_(float32 (13), mean=0.5, std=2)",
            "uniform_(float64 (11), low=-0.25, high=0.5)"]),
    }
    path = os.path.join(DATA_DIR, "params_generator.safetensors")
    write_safetensors(path, tensors, metadata)
    return path


# ---------------------------------------------------------------------------------------------
# torch.optim.AdamW on (decay, no_decay) groups
# ---------------------------------------------------------------------------------------------

ADAMW_CASES = {
    "default": dict(lrs=[1e-2] * 6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1,
                    amsgrad=False, maximize=False),
    "amsgrad_schedule": dict(lrs=[5e-3 * 0.7 ** k for k in range(6)], betas=(0.8, 0.95),
                             eps=1e-6, weight_decay=0.3, amsgrad=True, maximize=False),
    "maximize": dict(lrs=[1e-3] * 4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                     amsgrad=False, maximize=True),
}
ADAMW_PARAMS = {"w2": ((3, 4), True), "w3": ((2, 3, 2), True), "b": ((5,), False)}


def adamw_golden():
    tensors, metadata = {}, {}
    for case_index, (case, options) in enumerate(ADAMW_CASES.items()):
        draw = np.random.default_rng(1000 + case_index)
        initial = {name: draw.standard_normal(shape) for name, (shape, _) in ADAMW_PARAMS.items()}
        steps = len(options["lrs"])
        # Gradients of mixed magnitude, so that eps and the second moment both matter.
        scales = [1.0, 1e-3, 10.0, 1e-4, 1.0, 0.5]
        grads = [{name: draw.standard_normal(shape) * scales[k]
                  for name, (shape, _) in ADAMW_PARAMS.items()} for k in range(steps)]
        for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
            params = {name: torch.tensor(initial[name], dtype=dtype, requires_grad=True)
                      for name in ADAMW_PARAMS}
            groups = [
                {"params": [params[n] for n, (_, d) in ADAMW_PARAMS.items() if d],
                 "weight_decay": options["weight_decay"]},
                {"params": [params[n] for n, (_, d) in ADAMW_PARAMS.items() if not d],
                 "weight_decay": 0.0},
            ]
            optimizer = torch.optim.AdamW(groups, lr=options["lrs"][0], betas=options["betas"],
                                          eps=options["eps"], amsgrad=options["amsgrad"],
                                          maximize=options["maximize"])
            for name in ADAMW_PARAMS:
                tensors[f"{case}.{tag}.{name}.initial"] = params[name].detach().clone()
            for k in range(steps):
                for group in optimizer.param_groups:
                    group["lr"] = options["lrs"][k]
                for name in ADAMW_PARAMS:
                    params[name].grad = torch.tensor(grads[k][name], dtype=dtype)
                    tensors[f"{case}.{tag}.{name}.grad{k}"] = params[name].grad.clone()
                optimizer.step()
                for name in ADAMW_PARAMS:
                    tensors[f"{case}.{tag}.{name}.step{k}"] = params[name].detach().clone()
        metadata[case] = dumps({"lrs": options["lrs"], "beta1": options["betas"][0],
                                "beta2": options["betas"][1], "eps": options["eps"],
                                "weight_decay": options["weight_decay"],
                                "amsgrad": options["amsgrad"], "maximize": options["maximize"],
                                "steps": steps})
    metadata["params"] = dumps({name: {"shape": list(shape), "decay": decay}
                                for name, (shape, decay) in ADAMW_PARAMS.items()})
    path = os.path.join(DATA_DIR, "params_adamw.safetensors")
    write_safetensors(path, tensors, metadata)
    return path


def main():
    os.makedirs(DATA_DIR, exist_ok=True)
    print(f"xlstm {xlstm.__version__}, torch {torch.__version__}")
    for case, (model_fields, layer_fields, frozen) in MODEL_CASES.items():
        path, count, elements, calls = model_case(case, model_fields, layer_fields, frozen)
        print(f"{os.path.basename(path)}: {count} parameters, {elements} elements, "
              f"{calls} init calls, {os.path.getsize(path)} bytes")
    path, cases, worst = linspace_golden()
    print(f"{os.path.basename(path)}: {cases} cases, torch vs library formula at most "
          f"{worst} ulp of the larger endpoint apart, {os.path.getsize(path)} bytes")
    for path in (toy_golden(), generator_golden(), adamw_golden()):
        print(f"{os.path.basename(path)}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
