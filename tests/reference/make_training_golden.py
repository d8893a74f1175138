#!/usr/bin/env python3
"""Golden data of the training tests (tests/test_training.cpp): the reference language model's
loss and gradients, and ten AdamW steps, computed by PyTorch autograd.

Runs the reference package's `xlstm.xLSTMLMModel` (mLSTM blocks only) as make_model_golden.py
does (same model construction and parameter perturbation, imported from it); any torch with the
package installed works, for example

    /tmp/torch-peer/bin/python tests/reference/make_training_golden.py

(a venv with torch and `pip install xlstm==2.0.6 mlstm_kernels==2.0.6`), or Debian's torch as in
make_model_golden.py. The file is rewritten byte for byte the same on every run on one machine
and torch build (fixed seeds, one thread); on another processor the sums' order in torch's
kernels moves the last bits (the committed file is from an AVX2 processor).

data/training_small.safetensors:
  param.<name>        F64   every parameter (named_parameters(): a tied weight once), the start
  tokens              I64 (STEPS, B, S)   the input tokens of each step
  targets             I64 (STEPS, B, S)   the next tokens; IGNORE_INDEX at a few positions
  grad.<name>         F64   d loss / d param at step 0, the model in float64
  grad_f32.<name>     F32   the same with the model in float32 (the start rounded to float32)
  losses              F64 (STEPS)   the loss before each AdamW step, float64 run
  losses_f32          F64 (STEPS)   the same, float32 run
  grad_norms          F64 (STEPS)   the global gradient norm before clipping, float64 run
  grad_norms_f32      F64 (STEPS)   the same, float32 run
Metadata: `config` (JSON, the C++ configuration's fields), `optimizer` (JSON: lr, betas, eps,
weight_decay, clip), `ignore_index`, `decay_names` / `no_decay_names` (JSON lists: the
reference's weight-decay groups), and the measured float32 losses: `f32_loss_rel_error` (max
over steps of |loss_f32 - loss| / |loss|), `f32_grad_rel_error` (max over parameters of
max |grad_f32 - grad| / max |grad|).

Each step: zero the gradients, loss = cross_entropy(model(tokens), targets, ignore_index),
backward, clip_grad_norm_(parameters, CLIP), torch.optim.AdamW over the reference's groups
([decay, weight_decay], [no_decay, 0]).
"""

import copy
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from golden_io import write_safetensors  # noqa: E402
from make_model_golden import DATA_DIR, config_json, dumps, make_model  # noqa: E402

torch.set_num_threads(1)

MODEL_FIELDS = dict(vocab_size=24, embedding_dim=8, num_blocks=2, context_length=8, bias=False,
                    tie_weights=False, add_post_blocks_norm=True)
LAYER_FIELDS = dict(num_heads=2, proj_factor=2.0, conv1d_kernel_size=3, qkv_proj_blocksize=4,
                    round_proj_up_to_multiple_of=8)
SEED = 2024
BATCH = 2
STEPS = 10
IGNORE_INDEX = -1
OPTIMIZER = dict(lr=3e-2, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.1, clip=0.5)


def batches(vocab_size, seq_len):
    generator = torch.Generator().manual_seed(SEED + 3)
    sequences = torch.randint(0, vocab_size, (STEPS, BATCH, seq_len + 1), generator=generator)
    tokens = sequences[:, :, :-1].clone()
    targets = sequences[:, :, 1:].clone()
    targets[:, 0, 2] = IGNORE_INDEX
    targets[:, 1, -1] = IGNORE_INDEX
    return tokens, targets


def loss_of(model, tokens, targets):
    logits = model(tokens)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def train(model, tokens, targets):
    """STEPS optimizer steps: the losses, the norms, and the gradients at step 0."""
    decay, no_decay = model._create_weight_decay_optim_groups()
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": OPTIMIZER["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=OPTIMIZER["lr"], betas=tuple(OPTIMIZER["betas"]), eps=OPTIMIZER["eps"])
    losses, norms, first_grads = [], [], None
    model.train()
    for step in range(STEPS):
        optimizer.zero_grad()
        loss = loss_of(model, tokens[step], targets[step])
        loss.backward()
        if step == 0:
            first_grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), OPTIMIZER["clip"])
        losses.append(loss.item())
        norms.append(float(norm))
        optimizer.step()
    return losses, norms, first_grads, decay, no_decay


def names_of(model, group):
    ids = {id(p) for p in group}
    return [name for name, p in model.named_parameters() if id(p) in ids]


def main():
    model32, config = make_model(MODEL_FIELDS, LAYER_FIELDS, SEED)
    model64 = copy.deepcopy(model32).double()
    start = {name: p.detach().clone() for name, p in model64.named_parameters()}
    tokens, targets = batches(config.vocab_size, config.context_length)

    losses, norms, grads, decay, no_decay = train(model64, tokens, targets)
    losses32, norms32, grads32, _, _ = train(model32, tokens, targets)

    outputs = {"tokens": tokens, "targets": targets,
               "losses": torch.tensor(losses, dtype=torch.float64),
               "losses_f32": torch.tensor(losses32, dtype=torch.float64),
               "grad_norms": torch.tensor(norms, dtype=torch.float64),
               "grad_norms_f32": torch.tensor(norms32, dtype=torch.float64)}
    for name, value in start.items():
        outputs[f"param.{name}"] = value
        outputs[f"grad.{name}"] = grads[name]
        outputs[f"grad_f32.{name}"] = grads32[name]
    loss_error = max(abs(a - b) / abs(b) for a, b in zip(losses32, losses))
    grad_error = max(float((grads32[n].double() - grads[n]).abs().max() / grads[n].abs().max())
                     for n in grads if grads[n].abs().max() > 0)
    metadata = {
        "config": dumps(config_json(config)),
        "optimizer": dumps(OPTIMIZER),
        "ignore_index": str(IGNORE_INDEX),
        "decay_names": dumps(names_of(model64, decay)),
        "no_decay_names": dumps(names_of(model64, no_decay)),
        "f32_loss_rel_error": repr(loss_error),
        "f32_grad_rel_error": repr(grad_error),
        "torch": torch.__version__,
    }
    os.makedirs(DATA_DIR, exist_ok=True)
    path = os.path.join(DATA_DIR, "training_small.safetensors")
    write_safetensors(path, outputs, metadata)
    print(f"{os.path.relpath(path, HERE)} {os.path.getsize(path)} bytes")
    print("losses", ", ".join(f"{x:.6f}" for x in losses))
    print("grad norms", ", ".join(f"{x:.4f}" for x in norms))
    for key in ("f32_loss_rel_error", "f32_grad_rel_error"):
        print(f"    {key} {metadata[key]}")


if __name__ == "__main__":
    main()
