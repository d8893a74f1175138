#!/usr/bin/env -S /usr/bin/python3
"""Generate the golden data of the C++ tests: tests/reference/data/*.safetensors.

Run from anywhere with Debian's python (it has torch):

    /usr/bin/python3 tests/reference/make_golden.py

Deterministic: every case draws its inputs from its own fixed seed, torch runs on one
thread, and the files are written byte for byte the same on every run.

If the reference package (`xlstm`) is importable, every case is also cross-checked
against its `parallel_stabilized_simple` / `recurrent_step_stabilized_simple` in float64
(outputs and, for the parallel form, gradients); otherwise the cross-check is skipped
and the script says so.
"""

import os
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import golden_io  # noqa: E402
import mlstm_reference as ref  # noqa: E402

DATA_DIR = os.path.join(HERE, "data")
CROSS_CHECK_TOL = 1e-12  # relative to max(1, max |reference value|), float64

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)


# ---------------------------------------------------------------------------
# safetensors files, through the shared writer and reader of golden_io.py
# ---------------------------------------------------------------------------

def write_safetensors(path, tensors, metadata):
    """golden_io's writer, with every metadata value turned into its string."""
    golden_io.write_safetensors(path, tensors, {key: str(value) for key, value in metadata.items()})


def read_safetensors(path):
    """golden_io's reader, with the tensors as torch tensors."""
    arrays, metadata = golden_io.read_safetensors(path)
    return {name: torch.from_numpy(array) for name, array in arrays.items()}, metadata


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------

class Draw:
    """Inputs drawn from a fixed seed (NumPy's PCG64 stream), returned as float64 tensors."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def normal(self, *shape, scale=1.0, shift=0.0):
        return torch.from_numpy(self.rng.standard_normal(shape) * scale + shift)

    def uniform(self, low, high, *shape):
        return torch.from_numpy(self.rng.uniform(low, high, shape))


def parallel_inputs(seed, batch, heads, seq, dqk, dv, i_range=None, f_range=None,
                    qk_scale=1.0, i_shift=0.0):
    draw = Draw(seed)
    q = draw.normal(batch, heads, seq, dqk, scale=qk_scale)
    k = draw.normal(batch, heads, seq, dqk)
    v = draw.normal(batch, heads, seq, dv)
    gate = (batch, heads, seq, 1)
    i = draw.uniform(*i_range, *gate) if i_range else draw.normal(*gate, scale=3.0, shift=i_shift)
    f = draw.uniform(*f_range, *gate) if f_range else draw.normal(*gate, shift=3.0)
    dh = draw.normal(batch, heads, seq, dv)
    return {"q": q, "k": k, "v": v, "igate_preact": i, "fgate_preact": f}, dh


def band_mask(size, width):
    idx = torch.arange(size)
    diff = idx[:, None] - idx[None, :]
    return (diff >= 0) & (diff < width)


# ---------------------------------------------------------------------------
# cross-check against the reference package
# ---------------------------------------------------------------------------

BACKENDS, BACKENDS_HOW = ref.load_reference_backends()
CROSS_CHECK_WORST = {}


def _check_close(case, name, mine, theirs):
    mine, theirs = mine.detach(), theirs.detach()
    assert mine.shape == theirs.shape, f"{case}/{name}: shape {mine.shape} vs {theirs.shape}"
    assert torch.equal(torch.isnan(mine), torch.isnan(theirs)), f"{case}/{name}: NaN pattern"
    ok = ~torch.isnan(mine)
    diff = (mine[ok] - theirs[ok]).abs().max().item() if ok.any() else 0.0
    scale = max(1.0, theirs[ok].abs().max().item() if ok.any() else 0.0)
    assert diff <= CROSS_CHECK_TOL * scale, f"{case}/{name}: differs from the reference by {diff}"
    CROSS_CHECK_WORST[f"{case}/{name}"] = diff
    return diff


def _cross_check_parallel(case, inputs, mask, rowwise, eps, dh, h, grads):
    if BACKENDS is None:
        return "skipped (reference package not importable)"
    if mask is not None and mask.size(-1) < inputs["q"].size(-2):
        return "skipped (the reference fails on a mask shorter than the sequence)"
    leaves = {name: t.clone().requires_grad_(True) for name, t in inputs.items()}
    theirs = BACKENDS.parallel_stabilized_simple(
        leaves["q"], leaves["k"], leaves["v"], leaves["igate_preact"], leaves["fgate_preact"],
        lower_triangular_matrix=mask, stabilize_rowwise=rowwise, eps=eps)
    h_diff = _check_close(case, "h", h, theirs)
    text = f"h diff {h_diff:.2g}"
    if grads is not None:
        their_grads = torch.autograd.grad((theirs * dh).sum(), list(leaves.values()))
        g_rel = 0.0
        for name, g in zip(leaves, their_grads):
            _check_close(case, "d" + name, grads[name], g)
            g_rel = max(g_rel, _rel(grads[name], g))
        text += f", grads rel diff {g_rel:.2g}"
    return "OK: " + text


def _cross_check_step(case, inputs, eps, outputs):
    if BACKENDS is None:
        return "skipped (reference package not importable)"
    # the reference squeezes q, k, v in place: hand it copies
    args = [inputs[n].clone() for n in ("c", "n", "m", "q", "k", "v",
                                         "igate_preact", "fgate_preact")]
    h, (c, n, m) = BACKENDS.recurrent_step_stabilized_simple(*args, eps=eps)
    worst = 0.0
    for name, value in zip(("h", "c_new", "n_new", "m_new"), (h, c, n, m)):
        worst = max(worst, _check_close(case, name, outputs[name], value))
    return f"OK: h, c, n, m diff {worst:.2g}"


# ---------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------

GATE_NAMES = ("q", "k", "v", "igate_preact", "fgate_preact")
SUMMARY = []


def _run_parallel(inputs, mask, rowwise, eps, dh):
    """h and the gradients of sum(h * dh) (None if autograd gives NaN), in the inputs' dtype."""
    leaves = {name: inputs[name].clone().requires_grad_(True) for name in GATE_NAMES}
    h = ref.parallel_stabilized(*(leaves[n] for n in GATE_NAMES), mask=mask,
                                stabilize_rowwise=rowwise, eps=eps)
    grads = torch.autograd.grad((h * dh.to(h.dtype)).sum(), list(leaves.values()))
    grads = dict(zip(GATE_NAMES, grads))
    if any(torch.isnan(g).any() for g in grads.values()):
        grads = None
    return h.detach(), grads


def _rel(a, b):
    """max |a - b| / max |b| (0 when both are all zero)."""
    a, b = a.double(), b.double()
    diff, scale = (a - b).abs().max().item(), b.abs().max().item()
    return 0.0 if diff == 0.0 else diff / scale


def parallel_case(name, description, seed, batch, heads, seq, dqk, dv, *,
                  rowwise=True, eps=1e-6, mask=None, mask_kind="none", **draw_args):
    inputs, dh = parallel_inputs(seed, batch, heads, seq, dqk, dv, **draw_args)
    h, grads = _run_parallel(inputs, mask, rowwise, eps, dh)
    parts = ref.parallel_stabilized_parts(*(inputs[n] for n in GATE_NAMES), mask=mask,
                                          stabilize_rowwise=rowwise, eps=eps)
    assert torch.equal(parts["h"], h)
    rows = parts["row_sum"].numel()
    bound_rows = int((parts["row_sum"].abs() < torch.exp(-parts["m"])).sum())
    inputs32 = {n: t.float() for n, t in inputs.items()}
    h32, grads32 = _run_parallel(inputs32, mask, rowwise, eps, dh)

    tensors = dict(inputs)
    tensors["h"] = h
    tensors["h_f32ref"] = h32
    if mask is not None:
        tensors["mask"] = mask
    metadata = {"kind": "parallel", "description": description, "eps": repr(eps),
                "stabilize_rowwise": "true" if rowwise else "false", "mask": mask_kind,
                "seed": str(seed),
                "rows_lower_bound_active": f"{bound_rows} of {rows}",
                "max_abs_row_sum": f"{parts['row_sum'].abs().max().item():.3g}",
                "min_normalizer": f"{parts['normalizer'].min().item():.3g}"}

    if grads is not None and grads32 is not None:
        tensors["dh"] = dh
        for n in GATE_NAMES:
            tensors["d" + n] = grads[n]
            tensors["d" + n + "_f32ref"] = grads32[n]
        metadata["gradients"] = "true"
        metadata["f32ref_grad_max_rel_error"] = ", ".join(
            f"d{n} {_rel(grads32[n], grads[n]):.3g}" for n in GATE_NAMES)
    else:
        metadata["gradients"] = "false (autograd gives NaN for this case)"

    causal = mask_kind in ("none", "longer", "causal_shorter")
    if causal:
        h_rec, (c, n, m) = ref.recurrent_sequence(*(inputs[n] for n in GATE_NAMES), eps=eps)
        tensors.update(h_recurrent=h_rec, c_final=c, n_final=n, m_final=m)
        metadata["h_recurrent_max_rel_diff"] = f"{_rel(h_rec, h):.3g}"

    check = _cross_check_parallel(name, inputs, mask, rowwise, eps, dh, h, grads)
    metadata["f32ref_max_rel_error"] = f"{_rel(h32, h):.3g}"
    _write(f"parallel_{name}", tensors, metadata, check)


def step_case(name, description, seed, batch, heads, dqk, dv, *, state="random",
              i_range=None, f_range=None, m_range=(-5.0, 5.0), eps=1e-6):
    draw = Draw(seed)
    if state == "zero":
        c, n, m = ref.zero_state(batch, heads, dqk, dv)
    else:
        c = draw.normal(batch, heads, dqk, dv)
        n = draw.normal(batch, heads, dqk, 1)
        m = draw.uniform(*m_range, batch, heads, 1, 1)
    q = draw.normal(batch, heads, 1, dqk)
    k = draw.normal(batch, heads, 1, dqk)
    v = draw.normal(batch, heads, 1, dv)
    gate = (batch, heads, 1, 1)
    i = draw.uniform(*i_range, *gate) if i_range else draw.normal(*gate, scale=3.0)
    f = draw.uniform(*f_range, *gate) if f_range else draw.normal(*gate, shift=3.0)
    inputs = {"c": c, "n": n, "m": m, "q": q, "k": k, "v": v,
              "igate_preact": i, "fgate_preact": f}
    order = ("c", "n", "m", "q", "k", "v", "igate_preact", "fgate_preact")

    h, (c1, n1, m1) = ref.recurrent_step_stabilized(*(inputs[x] for x in order), eps=eps)
    h32, (c32, n32, m32) = ref.recurrent_step_stabilized(
        *(inputs[x].float() for x in order), eps=eps)
    outputs = {"h": h, "c_new": c1, "n_new": n1, "m_new": m1}
    tensors = dict(inputs)
    tensors.update(outputs)
    tensors.update(h_f32ref=h32, c_new_f32ref=c32, n_new_f32ref=n32, m_new_f32ref=m32)
    metadata = {"kind": "step", "description": description, "eps": repr(eps),
                "seed": str(seed), "f32ref_max_rel_error": f"{_rel(h32, h):.3g}"}
    check = _cross_check_step(name, inputs, eps, outputs)
    _write(f"step_{name}", tensors, metadata, check)


def _write(stem, tensors, metadata, check):
    path = os.path.join(DATA_DIR, stem + ".safetensors")
    write_safetensors(path, tensors, metadata)
    back, back_meta = read_safetensors(path)
    assert back_meta == {k: str(v) for k, v in metadata.items()}
    for key, value in tensors.items():
        assert torch.equal(back[key], value.detach().cpu()), f"{stem}: round trip of {key}"
    size = os.path.getsize(path)
    SUMMARY.append((stem, size, metadata["f32ref_max_rel_error"],
                    metadata.get("h_recurrent_max_rel_diff", "-"),
                    metadata.get("rows_lower_bound_active", "-"), check))


def main():
    os.makedirs(DATA_DIR, exist_ok=True)
    P = parallel_case

    P("s1", "single step sequence (S = 1)", 101, 1, 1, 1, 8, 8)
    P("prime37", "prime S = 37, B = 2, NH = 3, DQK = 16 != DV = 24", 102, 2, 3, 37, 16, 24)
    P("s256", "long sequence S = 256", 103, 1, 2, 256, 16, 16)
    P("wide_gates", "gates uniform in [-40, 40]: exp overflows float32 without the stabilizer",
      104, 1, 2, 64, 16, 16, i_range=(-40.0, 40.0), f_range=(-40.0, 40.0))
    P("forget_near_one", "forget gates near 1 (f uniform in [15, 30])",
      105, 1, 2, 48, 16, 16, f_range=(15.0, 30.0))
    P("forget_near_zero", "forget gates near 0 (f uniform in [-30, -15])",
      106, 1, 2, 48, 16, 16, f_range=(-30.0, -15.0))
    P("global_max", "stabilize_rowwise = false (one max per batch and head), moderate gates",
      107, 1, 2, 48, 16, 16, rowwise=False)
    P("global_max_wide_gates", "stabilize_rowwise = false with gates uniform in [-40, 40]",
      108, 1, 2, 48, 16, 16, rowwise=False, i_range=(-40.0, 40.0), f_range=(-40.0, 40.0))

    given = band_mask(23, 5)
    for t, s in ((4, 1), (9, 7), (15, 12), (16, 15), (22, 19)):  # extra false entries
        given[t, s] = False
    assert bool(given.diagonal().all())
    P("mask_given", "user mask with L == S = 23: causal band of width 5 with extra false entries",
      109, 1, 2, 23, 16, 16, mask=given, mask_kind="given")
    P("mask_longer", "mask longer than the sequence (L = 32 band, S = 20): its contents are "
      "ignored and the causal mask of size S is used", 110, 1, 2, 20, 16, 16,
      mask=band_mask(32, 5), mask_kind="longer")
    P("mask_causal_shorter", "causal mask of size L = 16 on S = 24: the causal mask of size S "
      "is used", 111, 1, 2, 24, 16, 16,
      mask=torch.ones(16, 16, dtype=torch.bool).tril(), mask_kind="causal_shorter")

    for eps, tag in ((1e-6, "1em6"), (1e-3, "1em3"), (0.5, "0p5")):
        P(f"small_norm_eps_{tag}",
          f"eps = {eps!r} with |row sum| about 1e-3 (q scaled by 1e-3, i shifted by +10 so "
          "exp(-m) stays below it): eps matters", 112, 1, 2, 32, 16, 16,
          eps=eps, qk_scale=1e-3, i_shift=10.0)
    P("lower_bound", "i uniform in [-12, -8]: the lower bound exp(-m) is the normalizer "
      "for most rows", 113, 1, 2, 32, 16, 16, i_range=(-12.0, -8.0))

    step_case("zero_state", "step from the zero state (c = 0, n = 0, m = 0)", 201, 2, 3, 16, 16,
              state="zero")
    step_case("random_state", "step from a random state (c, n normal, m uniform in [-5, 5])",
              202, 2, 3, 16, 16)
    step_case("wide_gates", "i, f uniform in [-40, 40] and m uniform in [-30, 30]", 203, 2, 3,
              16, 16, i_range=(-40.0, 40.0), f_range=(-40.0, 40.0), m_range=(-30.0, 30.0))
    step_case("dqk_ne_dv", "DQK = 16 != DV = 8 from a random state", 204, 2, 3, 16, 8)

    total = 0
    print(f"{'file':44s} {'bytes':>7s} {'f32 err':>8s} {'rec/par':>8s} {'bound':>9s}"
          "  cross-check")
    for stem, size, err32, rec, bound, check in SUMMARY:
        total += size
        print(f"{stem + '.safetensors':44s} {size:7d} {err32:>8s} {rec:>8s} {bound:>9s}"
              f"  {check}")
    print(f"total {total} bytes in {len(SUMMARY)} files")
    if BACKENDS is None:
        print(f"cross-check against the reference package: SKIPPED ({BACKENDS_HOW})")
    else:
        worst = max(CROSS_CHECK_WORST.values())
        print(f"cross-check against the reference package: PASSED on every case it runs "
              f"(float64, tolerance {CROSS_CHECK_TOL:g} relative; worst abs diff {worst:.3g}); "
              f"{BACKENDS_HOW}")


if __name__ == "__main__":
    main()
