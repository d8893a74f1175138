#!/usr/bin/env python3
"""Prefill and generation speed of the mlstm C++ language model against the reference PyTorch
model (the xlstm package's xLSTMLMModel, mLSTM blocks only), in one run on this machine.

Runs bench/bench_model (Google Benchmark, JSON output), then the reference model of the same
configuration in float32 on the same number of threads, and prints tokens per second of each
and the ratio mlstm / PyTorch:

    /tmp/torch-peer/bin/python bench/compare_model_pytorch.py --threads=2
    /tmp/torch-peer/bin/python bench/compare_model_pytorch.py --threads=1 --small   # a quick look

PyTorch from PyPI (2.x, MKL and oneDNN inside) and the reference packages, in a venv:
    python3 -m venv /tmp/torch-peer
    /tmp/torch-peer/bin/pip install torch xlstm==2.0.6 mlstm_kernels==2.0.6
(PyPI's torch is the CUDA build; it imports on a machine without a GPU once the CUDA libraries
it links are present: the machine's CUDA toolkit, or the nvidia-* wheels pip installs with it.)

Both sides do the same work:
  prefill      a prompt of S tokens from no state; the logits of its last position only. The
               reference has one way to take in a whole prompt, its forward (parallel form, S up
               to context_length); it is run as forward is, with the head applied to the last
               position only. mlstm: LanguageModel::prefill(..., Logits::last), chunkwise kernel.
  generation   one token per call of the reference's model.step / LanguageModel::step, from a
               state (batch 1), logits of the token. The reference's step state is reached by
               stepping through a short prompt first.
The models are initialized from seeds (their values do not change the amount of work).

The script prints which BLAS library torch loaded.
"""

import argparse
import os
import platform
import sys

import torch

from peer_common import blas_library, default_binary, run_benchmark, timed

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


def run_reference(small, min_seconds):
    model = reference_model(small)
    vocab = model.config.vocab_size
    results = {}
    with torch.no_grad():
        for length in PREFILL_LENGTHS:
            tokens = prompt_tokens(length, vocab)
            seconds, repeats = timed(lambda: reference_prefill(model, tokens), min_seconds)
            results[f"prefill/{length}"] = (length / seconds, repeats)
        state = None
        for token in prompt_tokens(8, vocab)[0]:
            _, state = model.step(token.view(1, 1), state)
        token = torch.tensor([[1]])

        def step():
            nonlocal state
            _, state = model.step(token, state)

        seconds, repeats = timed(step, min_seconds, min_repeats=10)
        results[f"generate/{GENERATE_PROMPT}"] = (1.0 / seconds, repeats)
    return results, sum(p.numel() for p in model.parameters())


def run_mlstm(binary, threads, small, min_seconds):
    env = {"MLSTM_BENCH_MODEL": "small" if small else None}
    benchmarks, context = run_benchmark(binary, threads, min_seconds, env)
    results = {name: (bench["items_per_second"], bench["iterations"])
               for name, bench in benchmarks.items()}
    return results, context


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--small", action="store_true", help="a small model instead of 125M")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--binary", default=default_binary("bench_model"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    mlstm_results, context = run_mlstm(args.binary, args.threads, args.small, args.min_seconds)
    reference_results, parameters = run_reference(args.small, args.min_seconds)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"threads: mlstm {context.get('mlstm_threads')}, torch {torch.get_num_threads()} "
          f"(torch {torch.__version__}, BLAS {blas_library()})")
    print(f"model: {'small' if args.small else '125M size'}, {parameters / 1e6:.1f}M parameters, "
          "float32, batch 1")
    print(f"{'benchmark':16s} {'mlstm tokens/s':>15s} {'PyTorch tokens/s':>17s} "
          f"{'mlstm / PyTorch':>16s}")
    for name, (reference_rate, _) in reference_results.items():
        rate = mlstm_results[name][0]
        print(f"{name:16s} {rate:15.1f} {reference_rate:17.1f} {rate / reference_rate:16.2f}")


if __name__ == "__main__":
    main()
