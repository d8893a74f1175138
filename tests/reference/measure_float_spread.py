"""How far apart equally valid float32 evaluations of the parallel form land on a golden case.

The golden tests hold a float result within a multiple of the reference's own float32 loss
(tests/support/tolerance.hpp). On rows where the normalizer's sum nearly cancels, that loss is
one draw among many: this script reruns the reference's float32 parallel form with the features
of q and k permuted together (q k^T is mathematically unchanged; only the order of its sums
moves) and prints each run's loss against the float64 output, for h and for the gradients the
case holds (autograd of the sum of h * dh), as a multiple of the committed float32 reference's
loss.

    python3 tests/reference/measure_float_spread.py [case ...]   # default: parallel_s256
"""
import os
import sys

import torch

import mlstm_reference as ref
from golden_io import read_safetensors

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
NAMES = ("q", "k", "v", "igate_preact", "fgate_preact")
GRADIENTS = tuple("d" + name for name in NAMES)


def spread(case, orders=200, seed=0):
    """Per output (h and, where the case has them, the gradients): the committed float32
    reference's loss and the sorted losses of the permuted runs as multiples of it."""
    tensors, metadata = read_safetensors(os.path.join(DATA_DIR, case + ".safetensors"))
    t = {name: torch.from_numpy(value) for name, value in tensors.items()}
    outputs = ["h"] + [g for g in GRADIENTS if g in t]
    reference_loss = {name: (t[name + "_f32ref"].double() - t[name]).abs().max().item()
                      for name in outputs}
    eps = float(metadata.get("eps", "1e-6"))
    generator = torch.Generator().manual_seed(seed)
    ratios = {name: [] for name in outputs}
    for _ in range(orders):
        order = torch.randperm(t["q"].shape[-1], generator=generator)
        leaves = {name: t[name].float().requires_grad_(len(outputs) > 1) for name in NAMES}
        h = ref.parallel_stabilized(leaves["q"][..., order], leaves["k"][..., order], leaves["v"],
                                    leaves["igate_preact"], leaves["fgate_preact"],
                                    mask=t.get("mask"), eps=eps)
        results = {"h": h.detach()}
        if len(outputs) > 1:
            (h * t["dh"].float()).sum().backward()
            results.update({"d" + name: leaves[name].grad for name in NAMES})
        for name in outputs:
            loss = (results[name].double() - t[name]).abs().max().item()
            ratios[name].append(loss / reference_loss[name])
    return {name: (reference_loss[name], sorted(ratios[name])) for name in outputs}


def main():
    torch.set_num_threads(1)
    for case in sys.argv[1:] or ["parallel_s256"]:
        for name, (loss, ratios) in spread(case).items():
            median, tenth_largest = ratios[len(ratios) // 2], ratios[-len(ratios) // 10]
            print(f"{case} {name}: float32 reference loss {loss:.3g}; {len(ratios)} permuted "
                  f"orders lose {ratios[0]:.2f} to {ratios[-1]:.2f} times that (median "
                  f"{median:.2f}, 90th percentile {tenth_largest:.2f})")


if __name__ == "__main__":
    main()
