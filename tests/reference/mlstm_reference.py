#!/usr/bin/env -S /usr/bin/python3
"""PyTorch reference of the mLSTM kernels, written from the equations in docs/design.md.

Run with Debian's python (it has torch): /usr/bin/python3.

The functions mirror the reference API (`parallel_stabilized_simple`,
`recurrent_step_stabilized_simple` of the `xlstm` package) in names, shapes and
semantics, and work in whatever floating dtype their inputs have:

    parallel_stabilized(q, k, v, igate_preact, fgate_preact, mask=None,
                        stabilize_rowwise=True, eps=1e-6) -> h
    recurrent_step_stabilized(c, n, m, q, k, v, igate_preact, fgate_preact,
                              eps=1e-6) -> h, (c_new, n_new, m_new)
    recurrent_sequence(q, k, v, igate_preact, fgate_preact, eps=1e-6,
                       state=None) -> h, (c, n, m)

Shapes (B batch, NH heads, S sequence, DQK query/key size, DV value size):
    q, k (B, NH, S, DQK); v (B, NH, S, DV); gates (B, NH, S, 1); h (B, NH, S, DV)
    c (B, NH, DQK, DV); n (B, NH, DQK, 1); m (B, NH, 1, 1)

`load_reference_backends()` returns the reference package's backend module when the
`xlstm` package is installed (None otherwise); make_golden.py uses it to cross-check.
"""

import importlib
import importlib.util
import math
import os

import torch
import torch.nn.functional as F

__all__ = [
    "MaskError",
    "resolve_mask",
    "parallel_stabilized",
    "parallel_stabilized_parts",
    "recurrent_step_stabilized",
    "recurrent_sequence",
    "zero_state",
    "load_reference_backends",
]


class MaskError(ValueError):
    """A given mask that the parallel form cannot use."""


def _causal(size, device=None):
    return torch.ones((size, size), dtype=torch.bool, device=device).tril()


def resolve_mask(mask, seq_len, device=None):
    """The (S, S) boolean mask the parallel form applies, from the user's mask of size (L, L).

    - None, or L > S: the causal mask of size S (a longer mask's contents are ignored,
      as the reference does);
    - L == S: the mask as given;
    - L < S: the causal mask of size S if the given mask is the causal mask of size L,
      otherwise MaskError (the reference itself fails on any mask shorter than S).
    """
    if mask is None:
        return _causal(seq_len, device)
    if mask.dtype != torch.bool:
        raise MaskError(f"mask must be of dtype bool, got {mask.dtype}")
    if mask.dim() != 2 or mask.size(0) != mask.size(1):
        raise MaskError(f"mask must be square (L, L), got {tuple(mask.shape)}")
    size = mask.size(-1)
    if seq_len < size:
        return _causal(seq_len, mask.device)
    if seq_len == size:
        return mask
    if torch.equal(mask, _causal(size, mask.device)):
        return _causal(seq_len, mask.device)
    raise MaskError(
        f"mask of size ({size}, {size}) is shorter than the sequence (S = {seq_len}) "
        "and is not the causal mask"
    )


def parallel_stabilized(q, k, v, igate_preact, fgate_preact, mask=None,
                        stabilize_rowwise=True, eps=1e-6):
    """Parallel (quadratic) form of the mLSTM cell, stabilized. Returns h (B, NH, S, DV)."""
    return parallel_stabilized_parts(q, k, v, igate_preact, fgate_preact, mask,
                                     stabilize_rowwise, eps)["h"]


def parallel_stabilized_parts(q, k, v, igate_preact, fgate_preact, mask=None,
                              stabilize_rowwise=True, eps=1e-6):
    """parallel_stabilized, also returning its intermediates: a dict with h, the
    stabilizer m ((B, NH, S, 1) rowwise, else (B, NH, 1, 1)), row_sum = sum_s Ct[t, s] and
    the normalizer max(|row_sum|, exp(-m)), both (B, NH, S, 1)."""
    batch, heads, seq_len, dqk = q.shape
    keep = resolve_mask(mask, seq_len, q.device)

    # log forget gates and their running sums: cum[t] = sum_{r<=t} lf_r
    log_f = F.logsigmoid(fgate_preact)                      # (B, NH, S, 1)
    cum = torch.cumsum(log_f, dim=-2)                       # (B, NH, S, 1)
    # F[t, s] = sum_{r=s+1..t} lf_r = cum[t] - cum[s]. (With a leading zero prepended to
    # cum this is cs[t+1] - cs[s+1]; the zero itself never enters the S x S block.)
    log_fmat = cum - cum.transpose(-2, -1)                  # (B, NH, S, S)
    neg_inf = torch.tensor(-math.inf, dtype=q.dtype, device=q.device)
    log_fmat = torch.where(keep, log_fmat, neg_inf)

    # log decay: input gate of the source step s added along the columns
    log_d = log_fmat + igate_preact.transpose(-2, -1)      # (B, NH, S, S)
    if stabilize_rowwise:
        m = log_d.max(dim=-1, keepdim=True).values         # (B, NH, S, 1)
    else:
        m = log_d.reshape(batch, heads, seq_len * seq_len).max(dim=-1).values
        m = m.reshape(batch, heads, 1, 1)                  # (B, NH, 1, 1)
    decay = torch.exp(log_d - m)

    scores = q @ (k / math.sqrt(dqk)).transpose(-2, -1)     # (B, NH, S, S)
    ct = scores * decay
    row_sum = ct.sum(dim=-1, keepdim=True)
    norm = torch.maximum(row_sum.abs(), torch.exp(-m))
    h = (ct / (norm + eps)) @ v
    return {"h": h, "m": m, "row_sum": row_sum, "normalizer": norm}


def recurrent_step_stabilized(c, n, m, q, k, v, igate_preact, fgate_preact, eps=1e-6):
    """One step of the recurrent form. Inputs are not modified.

    Returns h (B, NH, 1, DV) and the new state (c_new, n_new, m_new).
    """
    dqk = q.shape[-1]
    log_f = F.logsigmoid(fgate_preact)                      # (B, NH, 1, 1)
    m_new = torch.maximum(log_f + m, igate_preact)
    f_act = torch.exp(log_f + m - m_new)
    i_act = torch.exp(igate_preact - m_new)

    k_col = (k / math.sqrt(dqk)).transpose(-2, -1)          # (B, NH, DQK, 1)
    c_new = f_act * c + i_act * (k_col @ v)                 # (B, NH, DQK, DV)
    n_new = f_act * n + i_act * k_col                       # (B, NH, DQK, 1)

    numerator = q @ c_new                                   # (B, NH, 1, DV)
    qn = q @ n_new                                          # (B, NH, 1, 1)
    h = numerator / (torch.maximum(qn.abs(), torch.exp(-m_new)) + eps)
    return h, (c_new, n_new, m_new)


def zero_state(batch, heads, dqk, dv, dtype=torch.float64, device=None):
    """The zero state (c = 0, n = 0, m = 0) the recurrent form starts from."""
    return (
        torch.zeros((batch, heads, dqk, dv), dtype=dtype, device=device),
        torch.zeros((batch, heads, dqk, 1), dtype=dtype, device=device),
        torch.zeros((batch, heads, 1, 1), dtype=dtype, device=device),
    )


def recurrent_sequence(q, k, v, igate_preact, fgate_preact, eps=1e-6, state=None):
    """Run the recurrent step over the whole sequence from `state` (zero state if None).

    Returns h (B, NH, S, DV) and the final state (c, n, m).
    """
    batch, heads, seq_len, dqk = q.shape
    if state is None:
        state = zero_state(batch, heads, dqk, v.shape[-1], q.dtype, q.device)
    c, n, m = state
    outputs = []
    for t in range(seq_len):
        step = slice(t, t + 1)
        h, (c, n, m) = recurrent_step_stabilized(
            c, n, m, q[:, :, step], k[:, :, step], v[:, :, step],
            igate_preact[:, :, step], fgate_preact[:, :, step], eps=eps)
        outputs.append(h)
    return torch.cat(outputs, dim=-2), (c, n, m)


def load_reference_backends():
    """The reference package's mLSTM backend module, or None if the package is absent.

    Importing the module the usual way imports the whole package, which needs many
    optional dependencies; if that fails the module file is loaded on its own by path
    (it only needs torch). Returns (module, how) or (None, reason).
    """
    name = "xlstm.blocks.mlstm.backends"
    try:
        return importlib.import_module(name), f"import {name}"
    except Exception as exc:  # missing package or missing optional dependencies
        first_error = f"{type(exc).__name__}: {exc}"
    try:
        spec = importlib.util.find_spec("xlstm")  # locates the package without running it
    except Exception:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None, f"package not importable ({first_error})"
    path = os.path.join(list(spec.submodule_search_locations)[0],
                        "blocks", "mlstm", "backends.py")
    if not os.path.isfile(path):
        return None, f"package found but {path} is missing"
    file_spec = importlib.util.spec_from_file_location("_reference_mlstm_backends", path)
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module, f"loaded {path} by path (package import failed: {first_error})"


if __name__ == "__main__":
    # Small self-check: the parallel and recurrent forms agree on a random case.
    gen = torch.Generator().manual_seed(0)
    shape = (2, 3, 11)
    q = torch.randn(*shape, 8, generator=gen, dtype=torch.float64)
    k = torch.randn(*shape, 8, generator=gen, dtype=torch.float64)
    v = torch.randn(*shape, 5, generator=gen, dtype=torch.float64)
    i = 3 * torch.randn(*shape, 1, generator=gen, dtype=torch.float64)
    f = torch.randn(*shape, 1, generator=gen, dtype=torch.float64) + 3
    # The forms differ only through eps: rescaled to the parallel form's stabilizer, the
    # recurrent normalizer is max(|row sum|, exp(-m_parallel)) + eps * exp(m_recurrent -
    # m_parallel), so the lower bound agrees and eps is weighted differently. With eps = 0
    # the forms agree to rounding.
    for eps in (1e-6, 0.0):
        hp = parallel_stabilized(q, k, v, i, f, eps=eps)
        hr, _ = recurrent_sequence(q, k, v, i, f, eps=eps)
        print(f"eps = {eps!r}: max |parallel - recurrent| = {(hp - hr).abs().max().item():.3g}")
