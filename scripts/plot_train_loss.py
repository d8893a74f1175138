#!/usr/bin/env python3
"""Plots the loss curve of a train_lm run (examples/train_lm.cpp) from its output.

    build/examples/train_lm --steps=2000 --eval-every=100 > train.log
    python3 scripts/plot_train_loss.py train.log docs/train_lm_loss.png

Reads the `step N loss X` and `step N val_loss X` lines; needs matplotlib
(apt-get install python3-matplotlib).
"""

import re
import sys


def read_log(path):
    train, validation = [], []
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            match = re.match(r"step (\d+) (loss|val_loss) ([0-9.eE+-]+)", line)
            if match:
                point = (int(match.group(1)), float(match.group(3)))
                (train if match.group(2) == "loss" else validation).append(point)
    return train, validation


def moving_average(values, window):
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    train, validation = read_log(sys.argv[1])
    if not train:
        sys.exit(f"no 'step N loss X' lines in {sys.argv[1]}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = zip(*train)
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(steps, losses, color="0.8", linewidth=0.8, label="training loss (per step)")
    axes.plot(steps, moving_average(losses, 25), color="C0", label="training loss (mean of 25)")
    if validation:
        axes.plot(*zip(*validation), "o-", color="C1", markersize=3, label="validation loss")
    axes.set_xlabel("step")
    axes.set_ylabel("cross-entropy (nats per byte)")
    axes.set_title("train_lm: byte-level mLSTM language model")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(sys.argv[2], dpi=110)
    print(f"wrote {sys.argv[2]}: {len(train)} steps, final validation loss "
          f"{validation[-1][1] if validation else float('nan'):.4f}")


if __name__ == "__main__":
    main()
