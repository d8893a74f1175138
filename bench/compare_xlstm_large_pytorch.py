#!/usr/bin/env python3
"""Prefill and generation speed of mlstm's xLSTM-Large (the xLSTM 7B architecture) against the
reference PyTorch model (the xlstm package's xLSTMLarge), in one run on this machine, on a slice
of the 7B model: embedding 4096, 8 heads, vocab 50304, 2 blocks, batch 1.

Runs bench/bench_xlstm_large (Google Benchmark, JSON output) with float32 and with bfloat16
weights, then the reference model in float32 and in bfloat16 on the same number of threads, and
prints tokens per second of each, the ratios, our bfloat16 generation's rate of weights read as a
fraction of the machine's read bandwidth, and whether each target is met. The host's memory rate
drifts over seconds, so the bandwidth is measured two ways: a plain read of as many bytes as a
step reads, after each step of BM_Generate (its read_fraction counter,
bench/token_model_loops.hpp; the target's measure), and the fastest pass of BM_read_bandwidth in
the same program run:

    /tmp/torch-peer/bin/python bench/compare_xlstm_large_pytorch.py              # 2 threads
    /tmp/torch-peer/bin/python bench/compare_xlstm_large_pytorch.py --compile=off --min-seconds=2

Both sides do the same work:
  prefill     a prompt of 128 tokens from no state; the logits of its last position only.
              Reference: embedding, backbone (mode "inference": its chunkwise kernel, then its
              sequence kernel for a remainder), lm_head and soft cap on the last position.
              mlstm: XLSTMLarge::prefill(..., Logits::last).
  generation  one token per call of the reference's forward on (1, 1) tokens with a state, which
              runs its step kernel / XLSTMLarge::step; the logits of the token.
mlstm's bfloat16 prefill is also timed with InputRounding::bfloat16 (BM_PrefillRoundedInputs: the
activations rounded to bfloat16 before each product, as PyTorch's bfloat16 model rounds them; on
AMX-BF16 tiles where the processor has them) and set against PyTorch's float32 prefill, since the
reference's bfloat16 prefill fails.
On a CPU the reference needs its native kernels: chunkwise--native_autograd,
native_sequence__native and native. Its bfloat16 prefill fails in that chunkwise kernel (a dtype
mismatch); the script reports the failure. The models' weights are random (values do not change
the amount of work).

torch.compile (--compile=auto, the default) is tried on each PyTorch call next to eager mode; the
faster of the two that runs is reported, and which one it was. The host's memory rate drifts
over seconds to minutes and moves the memory-bound steps of both sides with it, so the two sides
are measured in turns, --rounds times (3 by default), and each figure is the best of its rounds;
each round's generation rates are printed as it ends.

PyTorch from PyPI and the reference packages in a venv: see bench/compare_model_pytorch.py.
"""

import argparse
import os
import platform
import sys

import torch

from peer_common import (blas_library, default_binary, keep_fastest, read_bandwidth_ceiling,
                         run_benchmark, timed)

try:
    from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig
    from xlstm.xlstm_large.components import soft_cap
except ImportError as error:  # pragma: no cover
    sys.exit(f"compare_xlstm_large_pytorch.py needs the reference package xlstm 2.0.6 ({error}); "
             "see bench/compare_model_pytorch.py for the install lines")

PREFILL_LENGTH = 128  # bench_xlstm_large's BM_Prefill/128
SLICE = dict(embedding_dim=4096, num_heads=8, num_blocks=2, vocab_size=50304)
NATIVE_KERNELS = dict(chunkwise_kernel="chunkwise--native_autograd",
                      sequence_kernel="native_sequence__native", step_kernel="native",
                      mode="inference", return_last_states=True)
GIB = 1024.0 ** 3


def reference_model(dtype):
    torch.manual_seed(0)
    model = xLSTMLarge(xLSTMLargeConfig(**SLICE, **NATIVE_KERNELS))
    return model.to(dtype).eval()


def prompt_tokens(length, vocab):
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, vocab, (1, length), generator=generator)


def compiled_variants(function, compile_mode):
    """(label, callable) pairs to try: eager, and torch.compile'd when asked."""
    variants = [("eager", function)]
    if compile_mode == "auto":
        variants.append(("torch.compile", torch.compile(function)))
    return variants


class Reference:
    """The reference model in one dtype with its prefill and step in each form, built once and
    timed once per round (torch.compile compiles at the first timing). A form that fails is
    dropped, its failure kept as the result's reason."""

    def __init__(self, dtype, compile_mode):
        model = reference_model(dtype)
        self.parameters = sum(p.numel() for p in model.parameters())
        vocab, cap = model.config.vocab_size, model.config.output_logit_soft_cap
        tokens = prompt_tokens(PREFILL_LENGTH, vocab)

        @torch.no_grad()
        def prefill():
            x, _ = model.backbone(model.embedding(tokens), None)
            return soft_cap(model.lm_head(x[:, -1:]), cap)

        with torch.no_grad():  # a state to step from, reached by steps (the prefill fails in bfloat16)
            state = None
            for token in prompt_tokens(8, vocab)[0]:
                _, state = model(token.view(1, 1), state)
        token = torch.tensor([[1]])

        @torch.no_grad()
        def step():
            logits, _ = model(token, state)  # updates the state in place
            return logits

        self.kinds = {"prefill": (compiled_variants(prefill, compile_mode), PREFILL_LENGTH, 2),
                      "generate": (compiled_variants(step, compile_mode), 1, 10)}
        self.failures = {kind: [] for kind in self.kinds}

    def time(self, min_seconds):
        """{"prefill": (tokens/s or None, how), "generate": (...)}: the fastest form this round."""
        results = {}
        for kind, (variants, tokens_per_call, min_repeats) in self.kinds.items():
            best = None
            for label, variant in list(variants):
                try:
                    seconds, _ = timed(variant, min_seconds, min_repeats)
                except Exception as error:  # noqa: BLE001  (the reference's failure is the result)
                    self.failures[kind].append(
                        f"{label}: {type(error).__name__}: {str(error).splitlines()[0]}")
                    variants.remove((label, variant))
                    continue
                if best is None or seconds < best[0]:
                    best = (seconds, label)
            results[kind] = ((tokens_per_call / best[0], best[1]) if best is not None
                             else (None, "; ".join(self.failures[kind])))
        return results


def benchmark_rate(entry):
    """What makes one round's benchmark entry better than another's: tokens per second, or the
    fastest pass of BM_read_bandwidth."""
    return entry.get("items_per_second", entry.get("best_bytes_per_second", 0.0))


def run_mlstm(binary, threads, weights, min_seconds):
    env = {"MLSTM_BENCH_WEIGHTS": weights, "MLSTM_BENCH_BLOCKS": str(SLICE["num_blocks"])}
    return run_benchmark(binary, threads, min_seconds, env)


def rate_text(rate):
    return f"{rate:10.2f}" if rate else f"{'failed':>10s}"


def ratio_text(ours, theirs):
    return f"{ours / theirs:8.2f}" if ours and theirs else f"{'-':>8s}"


def verdict(met):
    return "met" if met else "MISSED"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="both sides measured in turns this many times; the best of each")
    parser.add_argument("--compile", choices=["auto", "off"], default="auto",
                        help="also try torch.compile on the PyTorch side (auto) or not (off)")
    parser.add_argument("--binary", default=default_binary("bench_xlstm_large"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    references = {name: Reference(dtype, args.compile)
                  for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    parameters = references["float32"].parameters
    # The host's memory rate (and so both sides' steps) drifts over seconds to minutes: the two
    # sides are measured in turns, and each figure is the best of the rounds.
    ours, theirs, rounded_inputs_product = {}, {}, None
    for round_index in range(args.rounds):
        this_round = {}
        for weights, dtype_name in (("float", "float32"), ("bfloat16", "bfloat16")):
            results, context = run_mlstm(args.binary, args.threads, weights, args.min_seconds)
            rounded_inputs_product = context.get("mlstm_bfloat16_inputs_product")
            this_round[("mlstm", dtype_name)] = results["generate"]["items_per_second"]
            keep_fastest(ours.setdefault(dtype_name, {}), results, benchmark_rate)
        for dtype_name, reference in references.items():
            results = reference.time(args.min_seconds)
            this_round[("PyTorch", dtype_name)] = results["generate"][0]
            keep_fastest(theirs.setdefault(dtype_name, {}), results,
                         lambda rate_and_how: rate_and_how[0])
        print(f"round {round_index + 1} of {args.rounds}, generation tokens/s: " +
              ", ".join(f"{side} {dtype_name} {rate_text(rate).strip()}"
                        for (side, dtype_name), rate in this_round.items()), flush=True)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"threads: mlstm {ours['bfloat16']['read_bandwidth']['threads']:.0f}, torch "
          f"{torch.get_num_threads()} (torch {torch.__version__}, BLAS {blas_library()})")
    print(f"model: xLSTM-Large slice {SLICE}, {parameters / 1e6:.1f}M parameters, batch 1; "
          f"prefill of {PREFILL_LENGTH} tokens")
    print(f"best of {args.rounds} rounds:")
    print(f"{'benchmark':22s} {'mlstm tok/s':>11s} {'PyTorch tok/s':>13s} {'ratio':>8s}  PyTorch ran")
    rows = {}
    for dtype_name in ("float32", "bfloat16"):
        for kind, key in (("prefill", f"prefill/{PREFILL_LENGTH}"), ("generate", "generate")):
            rate = ours[dtype_name][key]["items_per_second"]
            reference_rate, how = theirs[dtype_name][kind]
            rows[(kind, dtype_name)] = (rate, reference_rate)
            print(f"{kind + ' ' + dtype_name:22s} {rate:11.2f} {rate_text(reference_rate):>13s} "
                  f"{ratio_text(rate, reference_rate)}  {how}")

    rounded_key = f"prefillroundedinputs/{PREFILL_LENGTH}"
    rounded_rate = ours["bfloat16"].get(rounded_key, {}).get("items_per_second")
    f32_reference = rows[("prefill", "float32")][1]
    print(f"{'prefill bf16, bf16 in':22s} {rate_text(rounded_rate):>11s} "
          f"{rate_text(f32_reference):>13s} {ratio_text(rounded_rate, f32_reference)}  "
          f"against PyTorch's float32 prefill; mlstm's products: {rounded_inputs_product}")

    generate = ours["bfloat16"]["generate"]
    bandwidth = read_bandwidth_ceiling(ours["bfloat16"]["read_bandwidth"])
    read_rate = generate["step_read_bytes"] * generate["items_per_second"]
    fraction = generate["read_fraction"]
    print(f"mlstm bfloat16 step reads {generate['step_read_bytes'] / 1e9:.2f} GB (every matrix, "
          f"one embedding row, the state) at {read_rate / 1e9:.1f} GB/s: {fraction:.0%} of a "
          f"plain read at the same moments ({generate['read_bytes_per_second'] / 1e9:.1f} GB/s), "
          f"{read_rate / bandwidth:.0%} of BM_read_bandwidth's fastest pass of the run "
          f"({bandwidth / 1e9:.1f} GB/s)")
    for dtype_name in ("float32", "bfloat16"):
        entry = ours[dtype_name]["generate"]
        rss = entry["peak_rss_bytes"] - entry["read_pass_bytes"]
        weight_bytes = entry["weight_bytes"]
        print(f"mlstm {dtype_name}: weights {weight_bytes / GIB:.2f} GiB, peak RSS "
              f"{rss / GIB:.2f} GiB (weights + {(rss - weight_bytes) / GIB:.2f} GiB; the "
              f"benchmark's read array of {entry['read_pass_bytes'] / GIB:.2f} GiB left out)")

    f32_prefill = rows[("prefill", "float32")][1]
    bf16_step = rows[("generate", "bfloat16")][1]
    print("targets:")
    print(f"  bfloat16 generation >= 90% of read bandwidth (a plain read at the same moments): "
          f"{fraction:.0%} {verdict(fraction >= 0.9)}")
    if bf16_step:
        ours_step = rows[("generate", "bfloat16")][0]
        print(f"  bfloat16 generation >= PyTorch bfloat16 step: {ours_step / bf16_step:.2f}x "
              f"{verdict(ours_step >= bf16_step)}")
    if f32_prefill:
        for dtype_name in ("bfloat16", "float32"):
            ours_prefill = rows[("prefill", dtype_name)][0]
            print(f"  prefill {dtype_name} >= 2x PyTorch float32 prefill: "
                  f"{ours_prefill / f32_prefill:.2f}x {verdict(ours_prefill >= 2 * f32_prefill)}")
        if rounded_rate:
            print(f"  prefill bfloat16 with bfloat16 inputs >= 2x PyTorch float32 prefill: "
                  f"{rounded_rate / f32_prefill:.2f}x {verdict(rounded_rate >= 2 * f32_prefill)}")


if __name__ == "__main__":
    main()
