#!/usr/bin/env python3
"""Training-step speed of the mlstm C++ language model against the reference PyTorch model (the
xlstm package's xLSTMLMModel, mLSTM blocks only), in one run on this machine.

Runs bench/bench_train's BM_TrainStep (Google Benchmark, JSON output) for each model, then the
reference model of the same configuration in float32 on the same number of threads doing the
same step, and prints tokens per second of each and the ratio mlstm / PyTorch:

    /tmp/torch-peer/bin/python bench/compare_train_pytorch.py --threads=2
    /tmp/torch-peer/bin/python bench/compare_train_pytorch.py --models=small --variants=eager-fused

(The venv: see bench/compare_model_pytorch.py.) The models (bench_train.cpp says more):
  small   vocab 256, embedding 256, 4 blocks of 4 heads, 1.8M parameters, batch 8 x 256
  125M    vocab 50304, embedding 768, 12 blocks of 4 heads, 120.6M parameters, batch 1 x 512

One step on both sides: zero the gradients; the logits of the batch; the mean cross-entropy
against the next tokens; its backward; clipping by the global gradient norm (max norm 1,
torch.nn.utils.clip_grad_norm_; mlstm clips within AdamW's update, clip_coefficient, to the same
values); AdamW (lr 1e-3, betas 0.9, 0.95, eps 1e-8) with weight decay
0.1 on the reference's decay group and 0 on the rest (_create_weight_decay_optim_groups). The
reference's cell runs its CPU kernel, parallel_stabilized_simple (set explicitly below), as
mlstm's training forward runs the parallel form. PyTorch is tried in each of these ways and the
fastest is compared (all are printed):
  eager-foreach    the model as it is, torch.optim.AdamW(foreach=True)
  eager-fused      the same with AdamW(fused=True) (one fused kernel per parameter group)
  compiled-fused   torch.compile(model) (inductor, C++ on the CPU) and AdamW(fused=True)
A way that fails (torch.compile without a working compiler, say) is reported and skipped.

--retain-freed-memory runs both sides with glibc's malloc told to keep freed memory for reuse
(GLIBC_TUNABLES mmap_threshold and trim_threshold at their largest, the script restarts itself with
them): a step frees and allocates its activations again, and by default glibc returns the large
blocks to the system and takes them back page by page, which costs both sides page faults.

Rates are tokens per wall-clock second; on a machine shared with other work the rates per
CPU-second (all threads of the process) are printed too. Peak memory: mlstm's peak RSS of a
process that ran the step alone, beside the bytes the step must hold (bench_train's counters);
PyTorch's is the peak RSS of this process so far (its models and every way tried).
"""

import argparse
import os
import platform
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_model_pytorch import prompt_tokens  # noqa: E402
from peer_common import blas_library, default_binary, run_benchmark, timed  # noqa: E402

from xlstm import mLSTMBlockConfig, mLSTMLayerConfig, xLSTMLMModel, xLSTMLMModelConfig  # noqa: E402
from xlstm.blocks.mlstm.backends import parallel_stabilized_simple  # noqa: E402

MODELS = {
    "small": dict(fields=dict(vocab_size=256, embedding_dim=256, num_blocks=4), batch=8,
                  seq_len=256),
    "125M": dict(fields=dict(vocab_size=50304, embedding_dim=768, num_blocks=12), batch=1,
                 seq_len=512),
}
VARIANTS = ["eager-foreach", "eager-fused", "compiled-fused"]
ADAMW = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
WEIGHT_DECAY = 0.1
CLIP = 1.0
# glibc's malloc keeping freed blocks for reuse (the largest mmap threshold it takes, 32 MiB,
# and no trimming of the heap's top).
RETAIN_FREED_MEMORY = ("glibc.malloc.mmap_threshold=33554432:"
                       f"glibc.malloc.trim_threshold={2**62}")


def reference_model(name):
    spec = MODELS[name]
    torch.manual_seed(0)
    config = xLSTMLMModelConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(num_heads=4)), slstm_block=None,
        context_length=spec["seq_len"], **spec["fields"])
    model = xLSTMLMModel(config)
    model.reset_parameters()
    for module in model.modules():  # the CPU kernel, chosen explicitly
        if hasattr(module, "backend_fn"):
            module.backend_fn = parallel_stabilized_simple
    return model.train()


def training_step(name, variant):
    """A function running one training step of a fresh reference model, done in `variant`."""
    spec = MODELS[name]
    model = reference_model(name)
    decay, no_decay = model._create_weight_decay_optim_groups()
    fused = variant.endswith("fused")
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY},
         {"params": no_decay, "weight_decay": 0.0}],
        foreach=not fused, fused=fused, **ADAMW)
    forward = torch.compile(model) if variant.startswith("compiled") else model
    vocab = spec["fields"]["vocab_size"]
    text = prompt_tokens(spec["batch"] * spec["seq_len"] + 1, vocab)[0]
    tokens = text[:-1].view(spec["batch"], spec["seq_len"])
    targets = text[1:].reshape(spec["batch"], spec["seq_len"])

    def step():
        optimizer.zero_grad()
        logits = forward(tokens)
        loss = F.cross_entropy(logits.view(-1, vocab), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()

    return step, sum(p.numel() for p in model.parameters())


def run_reference(name, variants, min_seconds):
    """{variant: (tokens/s, tokens per CPU-second, repeats) or the error}, parameters."""
    spec = MODELS[name]
    tokens = spec["batch"] * spec["seq_len"]
    results, parameters = {}, 0
    for variant in variants:
        try:
            step, parameters = training_step(name, variant)
            step()  # compiles, for the compiled way; allocates the optimizer state
            cpu_start = time.process_time()
            seconds, repeats = timed(step, min_seconds)
            cpu_seconds = (time.process_time() - cpu_start) / (repeats + 1)  # timed warms up once
            results[variant] = (tokens / seconds, tokens / cpu_seconds, repeats)
        except Exception as error:  # noqa: BLE001: a way that does not run here is skipped
            results[variant] = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
    return results, parameters


def run_mlstm(binary, name, threads, min_seconds):
    """bench_train's step of model `name` (its JSON entry), its tokens per CPU-second, context."""
    results, context = run_benchmark(binary, threads, min_seconds,
                                     extra_args=[f"--benchmark_filter=^BM_TrainStep/{name}/"])
    bench = next(iter(results.values()))
    cpu_rate = bench["items_per_second"] * bench["real_time"] / bench["cpu_time"]
    return bench, cpu_rate, context


def megabytes(value):
    return f"{value / 2**20:9.0f} MiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="small,125M", help="comma-separated: small, 125M")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="the ways PyTorch is tried, comma-separated: " + ", ".join(VARIANTS))
    parser.add_argument("--min-seconds", type=float, default=5.0)
    parser.add_argument("--binary", default=default_binary("bench_train"))
    parser.add_argument("--retain-freed-memory", action="store_true",
                        help="both sides with glibc's malloc keeping freed memory (see above)")
    args = parser.parse_args()
    if args.retain_freed_memory and os.environ.get("GLIBC_TUNABLES") != RETAIN_FREED_MEMORY:
        os.execve(sys.executable, [sys.executable] + sys.argv,
                  dict(os.environ, GLIBC_TUNABLES=RETAIN_FREED_MEMORY))
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS] + [
        m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        sys.exit(f"unknown model or variant: {', '.join(unknown)}")

    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"threads: {args.threads} (torch {torch.__version__}, BLAS {blas_library()}); "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')}")
    for name in args.models.split(","):
        bench, mlstm_cpu_rate, context = run_mlstm(args.binary, name, args.threads,
                                                   args.min_seconds)
        reference, parameters = run_reference(name, variants, args.min_seconds)
        spec = MODELS[name]
        print(f"\n{name}: {parameters / 1e6:.2f}M parameters "
              f"(mlstm {bench['parameters'] / 1e6:.2f}M), float32, "
              f"batch {spec['batch']} x {spec['seq_len']}, "
              f"mlstm threads {context.get('mlstm_threads')}")
        print(f"{'':22s} {'tokens/s':>10s} {'tokens/CPU-s':>13s} {'repeats':>8s}")
        print(f"{'mlstm':22s} {bench['items_per_second']:10.0f} {mlstm_cpu_rate:13.0f} "
              f"{bench['iterations']:8d}")
        ran = {v: r for v, r in reference.items() if not isinstance(r, str)}
        for variant, result in reference.items():
            if isinstance(result, str):
                print(f"{'PyTorch ' + variant:22s} failed: {result}")
            else:
                print(f"{'PyTorch ' + variant:22s} {result[0]:10.0f} {result[1]:13.0f} "
                      f"{result[2]:8d}")
        if ran:
            best = max(ran, key=lambda v: ran[v][0])
            wall_ratio = bench["items_per_second"] / ran[best][0]
            print(f"mlstm / PyTorch ({best}, the fastest): {wall_ratio:.2f}x per wall second, "
                  f"{mlstm_cpu_rate / ran[best][1]:.2f}x per CPU-second")
        print("memory: mlstm peak RSS " + megabytes(bench["peak_rss_bytes"]) + "; holds" +
              " weights " + megabytes(bench["weight_bytes"]) +
              ", gradients " + megabytes(bench["gradient_bytes"]) +
              ", AdamW moments " + megabytes(bench["adamw_state_bytes"]) +
              ", activations " + megabytes(bench["activation_bytes"]) +
              " = " + megabytes(bench["held_bytes"]) +
              "; heap growth of a step " + megabytes(bench["step_heap_bytes"]))
        print("        PyTorch peak RSS of this process so far " +
              megabytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


if __name__ == "__main__":
    main()
