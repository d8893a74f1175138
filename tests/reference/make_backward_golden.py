#!/usr/bin/env -S /usr/bin/python3
"""Golden gradients for the backward passes that make_golden.py does not cover.

Run with Debian's python (it has torch):

    /usr/bin/python3 tests/reference/make_backward_golden.py

Writes tests/reference/data/backward_*.safetensors (same format and writer as
make_golden.py), deterministically:

- backward_step_<case>: autograd of mlstm_reference.recurrent_step_stabilized with respect
  to q, k, v, the gates and the old state (c, n, m), for the loss
  sum(h * dh) + sum(c_new * dc_new) + sum(n_new * dn_new) + sum(m_new * dm_new).
- backward_sequence_<case>: autograd of mlstm_reference.recurrent_sequence from an initial
  state (c0, n0, m0), for sum(h * dh) + <(dc_final, dn_final, dm_final), final state>, with
  respect to q, k, v, the gates and the initial state. The chunkwise form computes this same
  function (for any chunk size), so these are the golden gradients of its backward.
- backward_parallel_tie_<case>, backward_step_tie_<case>: inputs built so that a max or an
  abs of the forward is exactly at a tie, in float64 and float32 alike; the gradients show
  autograd's conventions there (torch.maximum: half to each side; torch.max(dim): all to
  the first maximal index).
"""

import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mlstm_reference as ref  # noqa: E402
from make_golden import DATA_DIR, Draw, read_safetensors, write_safetensors  # noqa: E402

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)

SEQUENCE_INPUTS = ("q", "k", "v", "igate_preact", "fgate_preact")
STEP_INPUTS = ("c", "n", "m") + SEQUENCE_INPUTS
STEP_OUTPUT_GRADIENTS = ("dh", "dc_new", "dn_new", "dm_new")
SUMMARY = []


def _grad_name(name):
    return "d" + name


def _rel(a, b):
    a, b = a.double(), b.double()
    diff, scale = (a - b).abs().max().item(), b.abs().max().item()
    return 0.0 if diff == 0.0 else diff / max(scale, 1e-300)


def _write(stem, tensors, metadata):
    path = os.path.join(DATA_DIR, stem + ".safetensors")
    write_safetensors(path, tensors, metadata)
    back, back_meta = read_safetensors(path)
    assert back_meta == {k: str(v) for k, v in metadata.items()}
    for key, value in tensors.items():
        assert torch.equal(back[key], value.detach().cpu()), f"{stem}: round trip of {key}"
    SUMMARY.append((stem, os.path.getsize(path), metadata.get("f32ref_grad_max_rel_error", "-")))


# ---------------------------------------------------------------------------
# recurrent step
# ---------------------------------------------------------------------------

def _step_gradients(inputs, cotangents, eps):
    """Gradients of the step's loss with respect to STEP_INPUTS, in the inputs' dtype."""
    leaves = {n: inputs[n].clone().requires_grad_(True) for n in STEP_INPUTS}
    h, (c1, n1, m1) = ref.recurrent_step_stabilized(*(leaves[n] for n in STEP_INPUTS), eps=eps)
    dtype = h.dtype
    loss = ((h * cotangents["dh"].to(dtype)).sum() + (c1 * cotangents["dc_new"].to(dtype)).sum()
            + (n1 * cotangents["dn_new"].to(dtype)).sum()
            + (m1 * cotangents["dm_new"].to(dtype)).sum())
    grads = torch.autograd.grad(loss, [leaves[n] for n in STEP_INPUTS])
    return dict(zip(STEP_INPUTS, grads)), {"h": h, "c_new": c1, "n_new": n1, "m_new": m1}


def step_file(stem, description, inputs, cotangents, eps=1e-6, extra_metadata=None):
    grads, outputs = _step_gradients(inputs, cotangents, eps)
    grads32, _ = _step_gradients({n: t.float() for n, t in inputs.items()}, cotangents, eps)
    for name, g in list(grads.items()) + list(grads32.items()):
        assert not torch.isnan(g).any(), f"{stem}: autograd gives NaN for d{name}"
    tensors = dict(inputs)
    tensors.update(cotangents)
    tensors.update({n: t.detach() for n, t in outputs.items()})
    for name in STEP_INPUTS:
        tensors[_grad_name(name)] = grads[name]
        tensors[_grad_name(name) + "_f32ref"] = grads32[name]
    metadata = {"kind": "step_backward", "description": description, "eps": repr(eps),
                "f32ref_grad_max_rel_error": ", ".join(
                    f"d{n} {_rel(grads32[n], grads[n]):.3g}" for n in STEP_INPUTS)}
    metadata.update(extra_metadata or {})
    _write(stem, tensors, metadata)


def random_step(seed, batch, heads, dqk, dv, *, state="random", i_range=None, f_range=None,
                m_range=(-5.0, 5.0), zero_state_gradient=False):
    draw = Draw(seed)
    if state == "zero":
        c, n, m = ref.zero_state(batch, heads, dqk, dv)
    else:
        c = draw.normal(batch, heads, dqk, dv)
        n = draw.normal(batch, heads, dqk, 1)
        m = draw.uniform(*m_range, batch, heads, 1, 1)
    gate = (batch, heads, 1, 1)
    inputs = {"c": c, "n": n, "m": m,
              "q": draw.normal(batch, heads, 1, dqk), "k": draw.normal(batch, heads, 1, dqk),
              "v": draw.normal(batch, heads, 1, dv),
              "igate_preact": draw.uniform(*i_range, *gate) if i_range
              else draw.normal(*gate, scale=3.0),
              "fgate_preact": draw.uniform(*f_range, *gate) if f_range
              else draw.normal(*gate, shift=3.0)}
    cotangents = {"dh": draw.normal(batch, heads, 1, dv),
                  "dc_new": draw.normal(batch, heads, dqk, dv),
                  "dn_new": draw.normal(batch, heads, dqk, 1),
                  "dm_new": draw.normal(batch, heads, 1, 1)}
    if zero_state_gradient:
        for name in ("dc_new", "dn_new", "dm_new"):
            cotangents[name] = torch.zeros_like(cotangents[name])
    return inputs, cotangents


# ---------------------------------------------------------------------------
# sequence (the chunkwise form's function)
# ---------------------------------------------------------------------------

SEQUENCE_LEAVES = SEQUENCE_INPUTS + ("c0", "n0", "m0")


def _sequence_gradients(inputs, cotangents, eps):
    leaves = {n: inputs[n].clone().requires_grad_(True) for n in SEQUENCE_LEAVES}
    h, (c, n, m) = ref.recurrent_sequence(*(leaves[x] for x in SEQUENCE_INPUTS), eps=eps,
                                          state=(leaves["c0"], leaves["n0"], leaves["m0"]))
    dtype = h.dtype
    loss = ((h * cotangents["dh"].to(dtype)).sum()
            + (c * cotangents["dc_final"].to(dtype)).sum()
            + (n * cotangents["dn_final"].to(dtype)).sum()
            + (m * cotangents["dm_final"].to(dtype)).sum())
    grads = torch.autograd.grad(loss, [leaves[x] for x in SEQUENCE_LEAVES])
    return dict(zip(SEQUENCE_LEAVES, grads))


def sequence_case(name, description, seed, batch, heads, seq, dqk, dv, *, state="random",
                  final_gradient=True, i_range=None, f_range=None, m_range=(-3.0, 3.0),
                  eps=1e-6):
    draw = Draw(seed)
    gate = (batch, heads, seq, 1)
    inputs = {"q": draw.normal(batch, heads, seq, dqk), "k": draw.normal(batch, heads, seq, dqk),
              "v": draw.normal(batch, heads, seq, dv),
              "igate_preact": draw.uniform(*i_range, *gate) if i_range
              else draw.normal(*gate, scale=3.0),
              "fgate_preact": draw.uniform(*f_range, *gate) if f_range
              else draw.normal(*gate, shift=3.0)}
    if state == "zero":
        inputs["c0"], inputs["n0"], inputs["m0"] = ref.zero_state(batch, heads, dqk, dv)
    else:
        inputs["c0"] = draw.normal(batch, heads, dqk, dv)
        inputs["n0"] = draw.normal(batch, heads, dqk, 1)
        inputs["m0"] = draw.uniform(*m_range, batch, heads, 1, 1)
    cotangents = {"dh": draw.normal(batch, heads, seq, dv),
                  "dc_final": draw.normal(batch, heads, dqk, dv),
                  "dn_final": draw.normal(batch, heads, dqk, 1),
                  "dm_final": draw.normal(batch, heads, 1, 1)}
    if not final_gradient:
        for key in ("dc_final", "dn_final", "dm_final"):
            cotangents[key] = torch.zeros_like(cotangents[key])
    grads = _sequence_gradients(inputs, cotangents, eps)
    grads32 = _sequence_gradients({n: t.float() for n, t in inputs.items()}, cotangents, eps)
    tensors = dict(inputs)
    tensors.update(cotangents)
    for leaf in SEQUENCE_LEAVES:
        assert not torch.isnan(grads[leaf]).any() and not torch.isnan(grads32[leaf]).any()
        tensors[_grad_name(leaf)] = grads[leaf]
        tensors[_grad_name(leaf) + "_f32ref"] = grads32[leaf]
    metadata = {"kind": "sequence_backward", "description": description, "eps": repr(eps),
                "seed": str(seed), "initial_state": state,
                "f32ref_grad_max_rel_error": ", ".join(
                    f"d{n} {_rel(grads32[n], grads[n]):.3g}" for n in SEQUENCE_LEAVES)}
    _write(f"backward_sequence_{name}", tensors, metadata)


# ---------------------------------------------------------------------------
# ties
# ---------------------------------------------------------------------------

def parallel_tie_file(stem, description, inputs, rowwise, check):
    """A parallel case whose inputs put the forward exactly at a tie; `check(parts)` asserts
    the tie holds in the dtype of `parts`."""
    draw = Draw(300)
    dh = draw.normal(*inputs["v"].shape)
    tensors = dict(inputs)
    tensors["dh"] = dh
    errors = []
    for dtype, suffix in ((torch.float64, ""), (torch.float32, "_f32ref")):
        cast = {n: t.to(dtype) for n, t in inputs.items()}
        check(ref.parallel_stabilized_parts(*(cast[n] for n in SEQUENCE_INPUTS),
                                            stabilize_rowwise=rowwise))
        leaves = {n: t.clone().requires_grad_(True) for n, t in cast.items()}
        h = ref.parallel_stabilized(*(leaves[n] for n in SEQUENCE_INPUTS),
                                    stabilize_rowwise=rowwise)
        grads = torch.autograd.grad((h * dh.to(dtype)).sum(), [leaves[n] for n in SEQUENCE_INPUTS])
        for name, g in zip(SEQUENCE_INPUTS, grads):
            assert not torch.isnan(g).any()
            tensors[_grad_name(name) + suffix] = g
        if suffix:
            errors = [f"d{n} {_rel(tensors[_grad_name(n) + suffix], tensors[_grad_name(n)]):.3g}"
                      for n in SEQUENCE_INPUTS]
    metadata = {"kind": "parallel_backward_tie", "description": description, "eps": "1e-06",
                "stabilize_rowwise": "true" if rowwise else "false",
                "f32ref_grad_max_rel_error": ", ".join(errors)}
    _write(stem, tensors, metadata)


def parallel_ties():
    # Row 0 of head 0: q_0 . k_0 / sqrt(4) = 1 = exp(-i_0) with i_0 = 0, so |b_0| == exp(-m_0).
    draw = Draw(301)
    q = draw.normal(1, 1, 4, 4)
    k = draw.normal(1, 1, 4, 4)
    q[0, 0, 0] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    k[0, 0, 0] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    i = draw.normal(1, 1, 4, 1)
    i[0, 0, 0, 0] = 0.0
    inputs = {"q": q, "k": k, "v": draw.normal(1, 1, 4, 3), "igate_preact": i,
              "fgate_preact": draw.normal(1, 1, 4, 1, shift=3.0)}

    def normalizer_tie(parts):
        assert parts["row_sum"][0, 0, 0, 0].abs() == torch.exp(-parts["m"][0, 0, 0, 0])

    parallel_tie_file("backward_parallel_tie_normalizer",
                      "row 0: |row sum| == exp(-m) exactly (q0 = k0 = (1, 1, 0, 0), i0 = 0)",
                      inputs, True, normalizer_tie)

    # f_1 = f_2 = 800 give logsigmoid = 0 exactly, so logD[t, s] = i_s for s < t <= 2; with
    # i_0 = i_1 = i_2 = -3 rows 1 and 2 have two or three maximal entries, and the one max of
    # the head has five. i = -3 keeps the lower bound exp(3) active, so m's gradient matters.
    draw = Draw(302)
    f = draw.normal(1, 1, 4, 1, shift=3.0)
    f[0, 0, 1, 0] = f[0, 0, 2, 0] = 800.0
    i = draw.normal(1, 1, 4, 1, shift=-6.0)
    i[0, 0, 0:3, 0] = -3.0
    inputs = {"q": draw.normal(1, 1, 4, 4, scale=0.3), "k": draw.normal(1, 1, 4, 4, scale=0.3),
              "v": draw.normal(1, 1, 4, 3), "igate_preact": i, "fgate_preact": f}

    def stabilizer_tie(parts):
        assert (parts["row_sum"].abs() < torch.exp(-parts["m"])).all()

    for rowwise, tag in ((True, "rowwise"), (False, "global")):
        parallel_tie_file(f"backward_parallel_tie_stabilizer_{tag}",
                          "logD has tied maxima (f = 800 gives logsigmoid(f) = 0, equal i) "
                          "with the lower bound active on every row", inputs, rowwise,
                          stabilizer_tie)


def step_ties():
    # m' = max(logsigmoid(f) + m, i) with logsigmoid(800) = 0 and m = i: a tie.
    inputs, cotangents = random_step(401, 1, 2, 4, 3, i_range=(-4.0, -2.0))
    inputs["fgate_preact"][:] = 800.0
    inputs["m"] = inputs["igate_preact"].clone()
    step_file("backward_step_tie_stabilizer", "logsigmoid(f) + m == i exactly", inputs,
              cotangents)
    # Zero state and i = 0: m' = max(logsigmoid(f), 0) = 0 = i (no tie there), ia = 1 and
    # q . n' = q . k / sqrt(4) = 1 = exp(-m'): a normalizer tie.
    inputs, cotangents = random_step(402, 1, 1, 4, 3, state="zero")
    inputs["q"][0, 0, 0] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    inputs["k"][0, 0, 0] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    inputs["igate_preact"][:] = 0.0
    _, outputs = _step_gradients(inputs, cotangents, 1e-6)
    qn = (inputs["q"] @ outputs["n_new"]).item()
    assert qn == torch.exp(-outputs["m_new"]).item() == 1.0
    step_file("backward_step_tie_normalizer", "|q . n'| == exp(-m') exactly", inputs, cotangents)


def main():
    os.makedirs(DATA_DIR, exist_ok=True)
    step_file("backward_step_zero_state", "step from the zero state",
              *random_step(211, 2, 3, 8, 8, state="zero"))
    step_file("backward_step_random_state", "c, n normal, m uniform in [-5, 5]",
              *random_step(212, 2, 3, 8, 8))
    step_file("backward_step_wide_gates", "i, f uniform in [-40, 40], m uniform in [-30, 30]",
              *random_step(213, 2, 3, 8, 8, i_range=(-40.0, 40.0), f_range=(-40.0, 40.0),
                           m_range=(-30.0, 30.0)))
    step_file("backward_step_dqk_ne_dv", "DQK = 8 != DV = 5, random state",
              *random_step(214, 2, 3, 8, 5))
    step_file("backward_step_lower_bound", "i uniform in [-12, -8], m uniform in [-12, -8]: "
              "exp(-m') is the normalizer", *random_step(215, 2, 3, 8, 8, i_range=(-12.0, -8.0),
                                                          m_range=(-12.0, -8.0)))
    step_file("backward_step_no_state_gradient", "dc_new, dn_new, dm_new = 0 (a last step)",
              *random_step(216, 2, 3, 8, 8, zero_state_gradient=True))
    sequence_case("prime37", "S = 37, DQK = 8 != DV = 12, random initial state and final "
                  "gradient", 221, 1, 2, 37, 8, 12)
    sequence_case("zero_state", "from the zero state, no final-state gradient (a training "
                  "sequence)", 222, 1, 2, 40, 8, 8, state="zero", final_gradient=False)
    sequence_case("wide_gates", "i, f uniform in [-40, 40], m0 uniform in [-30, 30]", 223, 1, 2,
                  33, 8, 8, i_range=(-40.0, 40.0), f_range=(-40.0, 40.0), m_range=(-30.0, 30.0))
    sequence_case("lower_bound", "i uniform in [-12, -8], m0 in [-12, -8]: the lower bound is "
                  "the normalizer", 224, 1, 2, 24, 8, 8, i_range=(-12.0, -8.0),
                  m_range=(-12.0, -8.0))
    sequence_case("forget_near_zero", "f uniform in [-30, -15]", 225, 1, 2, 24, 8, 8,
                  f_range=(-30.0, -15.0))
    sequence_case("s1", "S = 1 from a random state", 226, 1, 2, 1, 8, 8)
    parallel_ties()
    step_ties()

    total = 0
    print(f"{'file':48s} {'bytes':>7s}  float32 reference gradient error (max rel)")
    for stem, size, err in SUMMARY:
        total += size
        print(f"{stem + '.safetensors':48s} {size:7d}  {err}")
    print(f"total {total} bytes in {len(SUMMARY)} files")


if __name__ == "__main__":
    main()
