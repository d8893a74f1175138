#!/usr/bin/env python3
"""Prefill and generation speed of the mlstm C++ language model against the reference PyTorch
model (the xlstm package's xLSTMLMModel, mLSTM blocks only), in one run on this machine.

Runs bench/bench_model (Google Benchmark, JSON output), then the reference model of the same
configuration in float32 on the same number of threads, for each thread count asked, and prints
tokens per second of each and the ratio mlstm / PyTorch against the targets:

    /tmp/torch-peer/bin/python bench/compare_model_pytorch.py --threads 1,2
    /tmp/torch-peer/bin/python bench/compare_model_pytorch.py --threads 1 --small   # a quick look

PyTorch from PyPI (2.x, MKL and oneDNN inside) and the reference packages, in a venv:
    python3 -m venv /tmp/torch-peer
    /tmp/torch-peer/bin/pip install torch xlstm==2.0.6 mlstm_kernels==2.0.6
(PyPI's torch is the CUDA build; it imports on a machine without a GPU once the CUDA libraries
it links are present: the machine's CUDA toolkit, or the nvidia-* wheels pip installs with it.
torch.compile on a CPU needs a C++ compiler on the PATH.)

Both sides do the same work:
  prefill      a prompt of S tokens from no state; the logits of its last position only. The
               reference has one way to take in a whole prompt, its forward (parallel form, S up
               to context_length); it is run as forward is, with the head applied to the last
               position only (it computes no state for later steps; mlstm's prefill does).
               mlstm: LanguageModel::prefill(..., Logits::last), into one state set to zero
               in place for each prompt (BM_Prefill); the row "prefill/128 new state" makes a
               new state for each prompt instead (BM_Prefill_fresh_state), against the same
               PyTorch figure.
  generation   one token per call of the reference's model.step / LanguageModel::step, from a
               state (batch 1), logits of the token. The reference's step state is reached by
               stepping through a short prompt first.
The models are initialized from seeds (their values do not change the amount of work).

The reference runs in each form PyTorch offers on a CPU: eager, and torch.compile (inductor) of
the prefill and of the step where it compiles; each figure is against the fastest form, which is
named. The host's rates drift over seconds to minutes, so for each thread count the two sides are
measured in turns, --rounds times (3 by default), and each figure is the best of its rounds. Targets printed: prefill >= 1.5x PyTorch at every length; generation reads its weights
and state at >= 90% of the machine's read bandwidth. The host's memory rate drifts over seconds,
so the bandwidth is measured two ways: a plain read of as many bytes as a step reads, after each
step of BM_Generate (its read_fraction counter, bench/token_model_loops.hpp; the target's
measure), and the fastest pass of BM_read_bandwidth (bench/bench_linear, on the same thread
count, run just before). The script prints which BLAS library torch loaded and which
matrix product the mlstm build uses (MLSTM_GEMM).
"""

import argparse
import os
import platform
import sys

import torch

from peer_common import (blas_library, default_binary, keep_fastest, read_bandwidth_ceiling,
                         run_benchmark, timed)

try:
    from xlstm import mLSTMBlockConfig, mLSTMLayerConfig, xLSTMLMModel, xLSTMLMModelConfig
except ImportError as error:  # pragma: no cover
    sys.exit(f"compare_model_pytorch.py needs the reference package xlstm 2.0.6 ({error}); see the "
             "install lines at the top of this script")

PREFILL_LENGTHS = [128, 512, 2048]
GENERATE_PROMPT = 512


def config_fields(small):
    if small:
        return dict(vocab_size=1024, embedding_dim=128, num_blocks=2)
    return dict(vocab_size=50304, embedding_dim=768, num_blocks=12)


def reference_model(small):
    torch.manual_seed(0)
    config = xLSTMLMModelConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(num_heads=4)), slstm_block=None,
        context_length=2048, **config_fields(small))
    model = xLSTMLMModel(config)
    model.reset_parameters()
    return model.eval()


def prompt_tokens(length, vocab):
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, vocab, (1, length), generator=generator)


def reference_prefill(model, tokens):
    x = model.token_embedding(tokens)
    x = model.xlstm_block_stack(x)
    return model.lm_head(x[:, -1:])


def reference_forms(model, compile_reference):
    """(name, prefill(tokens), step(token, state)) for each form of the reference that runs."""
    forms = [("eager", lambda tokens: reference_prefill(model, tokens), model.step)]
    if compile_reference:
        forms.append(("torch.compile",
                      torch.compile(lambda tokens: reference_prefill(model, tokens), dynamic=False),
                      torch.compile(model.step, dynamic=False)))
    return forms


def run_reference(model, forms, min_seconds):
    """{benchmark: (tokens/s, form)}: the fastest form for each benchmark, and {form:
    {benchmark: tokens/s}}; a form that fails to compile or run is reported and skipped."""
    vocab = model.config.vocab_size
    best, every = {}, {}

    def record(name, rate, form):
        every.setdefault(form, {})[name] = rate
        if name not in best or rate > best[name][0]:
            best[name] = (rate, form)

    with torch.no_grad():
        for form, prefill, step_function in forms:
            try:
                for length in PREFILL_LENGTHS:
                    tokens = prompt_tokens(length, vocab)
                    seconds, _ = timed(lambda: prefill(tokens), min_seconds)
                    record(f"prefill/{length}", length / seconds, form)
                state = None
                for token in prompt_tokens(8, vocab)[0]:
                    _, state = step_function(token.view(1, 1), state)
                token = torch.tensor([[1]])

                def step():
                    nonlocal state
                    _, state = step_function(token, state)

                seconds, _ = timed(step, min_seconds, min_repeats=10)
                record(f"generate/{GENERATE_PROMPT}", 1.0 / seconds, form)
            except Exception as error:  # a form torch cannot compile or run here
                print(f"reference form {form} skipped: {type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''}")
    return best, every


def run_mlstm(binary, threads, small, min_seconds):
    env = {"MLSTM_BENCH_MODEL": "small" if small else None}
    benchmarks, context = run_benchmark(binary, threads, min_seconds, env)
    return benchmarks, context


def read_bandwidth(binary, threads):
    """Bytes per second BM_read_bandwidth streams from memory on `threads` threads."""
    benchmarks, _ = run_benchmark(binary, threads, 1,
                                  extra_args=["--benchmark_filter=^BM_read_bandwidth"])
    return read_bandwidth_ceiling(benchmarks["read_bandwidth"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="1",
                        help="thread counts, comma-separated (e.g. 1,2); each is one comparison")
    parser.add_argument("--small", action="store_true", help="a small model instead of 125M")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="both sides measured in turns this many times; the best of each")
    parser.add_argument("--no-compile", action="store_true",
                        help="the reference in eager mode only (torch.compile takes minutes)")
    parser.add_argument("--binary", default=default_binary("bench_model"))
    parser.add_argument("--bandwidth-binary", default=default_binary("bench_linear"),
                        help="the program with BM_read_bandwidth")
    args = parser.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]

    model = reference_model(args.small)
    forms = reference_forms(model, not args.no_compile)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"torch {torch.__version__}, BLAS {blas_library()}")
    print(f"model: {'small' if args.small else '125M size'}, {parameters / 1e6:.1f}M parameters, "
          "float32, batch 1")
    print("targets: prefill >= 1.5x PyTorch at every length; generation >= 90% of the read "
          "bandwidth")
    for threads in thread_counts:
        torch.set_num_threads(threads)
        bandwidth = read_bandwidth(args.bandwidth_binary, threads)
        # The host's rates drift over seconds to minutes: the two sides are measured in turns,
        # and each figure is the best of the rounds.
        mlstm_results, reference_results, by_form = {}, {}, {}
        for _ in range(args.rounds):
            results, context = run_mlstm(args.binary, threads, args.small, args.min_seconds)
            keep_fastest(mlstm_results, results, lambda entry: entry["items_per_second"])
            best, every = run_reference(model, forms, args.min_seconds)
            keep_fastest(reference_results, best, lambda rate_and_form: rate_and_form[0])
            for form, rates in every.items():
                keep_fastest(by_form.setdefault(form, {}), rates, lambda rate: rate)
        print(f"\nthreads: mlstm {context.get('mlstm_threads')}, torch {torch.get_num_threads()} "
              f"(best of {args.rounds} rounds); "
              f"mlstm matrix product: {context.get('mlstm_gemm', 'not reported')}, linear layers' "
              f"prefill: {context.get('mlstm_linear_product', 'not reported')}; "
              f"read bandwidth {bandwidth / 1e9:.1f} GB/s (fastest pass)")
        print(f"{'benchmark':16s} {'mlstm tokens/s':>15s} {'PyTorch tokens/s':>17s} "
              f"{'PyTorch form':>14s} {'mlstm / PyTorch':>16s}  target")
        for name, (reference_rate, form) in reference_results.items():
            rate = mlstm_results[name]["items_per_second"]
            ratio = rate / reference_rate
            if name.startswith("prefill"):
                verdict = f">= 1.5x: {'met' if ratio >= 1.5 else 'NOT met'}"
            else:
                generate = mlstm_results[name]
                fraction = generate["read_fraction"]
                of_fastest = rate * generate["step_read_bytes"] / bandwidth
                verdict = (f"reads {generate['step_read_bytes'] / 1e6:.0f} MB per step, "
                           f"{100 * fraction:.0f}% of a plain read at the same moments "
                           f"({mlstm_results[name]['read_bytes_per_second'] / 1e9:.1f} GB/s), "
                           f">= 90%: {'met' if fraction >= 0.9 else 'NOT met'}; "
                           f"{100 * of_fastest:.0f}% of the fastest pass")
            print(f"{name:16s} {rate:15.1f} {reference_rate:17.1f} {form:>14s} {ratio:16.2f}  "
                  f"{verdict}")
            fresh = mlstm_results.get(name.replace("prefill/", "prefill_fresh_state/"))
            if name.startswith("prefill") and fresh is not None:
                fresh_rate = fresh["items_per_second"]
                print(f"{name + ' new state':16s} {fresh_rate:15.1f} {reference_rate:17.1f} "
                      f"{form:>14s} {fresh_rate / reference_rate:16.2f}")
        for form, rates in by_form.items():
            print(f"PyTorch {form}: " +
                  ", ".join(f"{name} {rate:.1f}" for name, rate in rates.items()) + " tokens/s")


if __name__ == "__main__":
    main()
