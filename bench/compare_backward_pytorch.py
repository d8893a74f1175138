#!/usr/bin/env python3
"""Forward plus backward of the mLSTM cell: this library against PyTorch autograd, same run.

    /tmp/torch-peer/bin/python bench/compare_backward_pytorch.py \
        --bench build-bench/bench/bench_backward [--threads 1,2] [--seq 512 1024 2048 4096 8192] \
        [--repeats 5] [--memory]

For each thread count and shape (B = 1, NH = 4, DQK = DV = 128 unless told otherwise, float32)
it times, on the same machine and in the same run:

- PyTorch: forward, then torch.autograd.grad of sum(h * dh) for q, k, v and both gates, through
  the fastest of: the parallel form of tests/reference/mlstm_reference.py (the project's torch
  port of the reference) and, when installed, mlstm_kernels 2.0.6's native parallel kernel;
  the chunkwise form written below from the equations of include/mlstm/kernels/chunkwise.hpp
  and mlstm_kernels' native chunkwise kernel, with chunks of 64. The table names the fastest.
  (mlstm_kernels' custom-backward variants, native_custbw, are left out: run here, their q, k
  and gate gradients differ from autograd's of the same forward by the gradients' own size);
- this library: the matching Google Benchmark of bench_backward (run as a subprocess with
  --benchmark_format=json), forward with cache plus backward;

and prints the median times and the ratio PyTorch / mlstm. torch and the benchmark use the
same thread count. With --memory it also measures PyTorch's peak resident memory growth for
one forward plus backward in a fresh process per shape (the library's peak heap growth is the
benchmark's counter).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import math

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import mlstm_reference as ref  # noqa: E402
from peer_common import benchmark_seconds  # noqa: E402

GATE_NAMES = ("q", "k", "v", "igate_preact", "fgate_preact")


def make_inputs(heads, seq_len, dim, dtype, seed=0):
    """q, k, v, dh uniform in [-1, 1), i in [-3, 3), f in [1, 5): the distributions of
    bench_backward.cpp's Problem (the values differ, the distributions do not)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (1, heads, seq_len)
    q, k, v, dh = (torch.rand(*shape, dim, generator=gen, dtype=dtype) * 2 - 1 for _ in range(4))
    i = (torch.rand(*shape, 1, generator=gen, dtype=dtype) * 2 - 1) * 3
    f = (torch.rand(*shape, 1, generator=gen, dtype=dtype) * 2 - 1) * 2 + 3
    return [q, k, v, i, f], dh


def chunkwise(q, k, v, igate_preact, fgate_preact, chunk_size=64, eps=1e-6):
    """The chunkwise form from the zero state (include/mlstm/kernels/chunkwise.hpp's equations): per
    chunk, g_s = i_s - cum_s, M_t = max(m, max_{s<=t} g_s), m_t = cum_t + M_t; returns h."""
    batch, heads, seq_len, dqk = q.shape
    scale = dqk ** -0.5
    c = q.new_zeros(batch, heads, dqk, v.shape[-1])
    n = q.new_zeros(batch, heads, dqk, 1)
    m = q.new_zeros(batch, heads, 1)
    outputs = []
    for start in range(0, seq_len, chunk_size):
        part = slice(start, min(seq_len, start + chunk_size))
        qc, kc, vc = q[:, :, part], k[:, :, part] * scale, v[:, :, part]
        cum = torch.cumsum(F.logsigmoid(fgate_preact[:, :, part, 0]), dim=-1)   # (B, NH, L)
        g = igate_preact[:, :, part, 0] - cum
        big_m = torch.maximum(m, torch.cummax(g, dim=-1).values)              # (B, NH, L)
        length = g.shape[-1]
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        log_decay = torch.where(causal, g[:, :, None, :] - big_m[:, :, :, None],
                                torch.tensor(-math.inf, dtype=q.dtype))
        weights = (qc @ kc.transpose(-2, -1)) * torch.exp(log_decay)
        carried = torch.exp(m - big_m)[..., None]                              # (B, NH, L, 1)
        acc = weights @ vc + carried * (qc @ c)
        den = weights.sum(-1, keepdim=True) + carried * (qc @ n)
        norm = torch.maximum(den.abs(), torch.exp(-(cum + big_m))[..., None])
        outputs.append(acc / (norm + eps))
        end = big_m[:, :, -1:]                                                 # (B, NH, 1)
        beta = torch.exp(g - end)[..., None]                                   # (B, NH, L, 1)
        gamma = torch.exp(m - end)[..., None]                                  # (B, NH, 1, 1)
        c = gamma * c + (kc * beta).transpose(-2, -1) @ vc
        n = gamma * n + (kc * beta).sum(-2)[..., None]
        m = cum[:, :, -1:] + end
    return torch.cat(outputs, dim=-2)


def torch_forms():
    """{form: [(label, fn(q, k, v, i, f) -> h), ...]}: the candidates timed for each form."""
    forms = {"parallel": [("project parallel_stabilized",
                           lambda q, k, v, i, f: ref.parallel_stabilized(q, k, v, i, f))],
             "chunkwise": [("project chunkwise", chunkwise)]}
    try:
        from mlstm_kernels.torch.chunkwise import mlstm_chunkwise__native_autograd
        from mlstm_kernels.torch.parallel import mlstm_parallel__native_autograd
    except Exception:  # missing package or missing optional dependencies
        return forms

    def native(kernel, **options):
        # mlstm_kernels takes the gates as (B, NH, S).
        return lambda q, k, v, i, f: kernel(q, k, v, i[..., 0], f[..., 0], **options)

    forms["parallel"].append(("mlstm_kernels parallel native_autograd",
                              native(mlstm_parallel__native_autograd)))
    forms["chunkwise"].append(("mlstm_kernels chunkwise native_autograd",
                               native(mlstm_chunkwise__native_autograd, chunk_size=64)))
    return forms


def torch_step(form, inputs, dh):
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    h = form(*leaves)
    return torch.autograd.grad((h * dh).sum(), leaves)


def time_torch(form, inputs, dh, repeats):
    torch_step(form, inputs, dh)  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch_step(form, inputs, dh)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_peak_memory_mb(form_name, label, heads, seq_len, dim, threads):
    """Peak RSS growth of one PyTorch forward plus backward by candidate `label` of `form_name`,
    in a fresh process."""
    # VmHWM (peak resident set of this process image) rather than ru_maxrss, which Linux
    # carries over from the parent across exec.
    code = f"""
import sys, torch
sys.path.insert(0, {HERE!r})
import compare_backward_pytorch as c
def peak_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
torch.set_num_threads({threads})
inputs, dh = c.make_inputs({heads}, {seq_len}, {dim}, torch.float32)
before = peak_kb()
c.torch_step(dict(c.torch_forms()[{form_name!r}])[{label!r}], inputs, dh)
print((peak_kb() - before) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def run_library(bench, forms, threads, seqs, dim, heads, repeats):
    pattern = "|".join(f"BM_{form.capitalize()}ForwardBackward/S:{s}/D:{dim}/NH:{heads}/"
                       f"threads:{threads}/" for form in forms for s in seqs)
    out = subprocess.run([bench, f"--benchmark_filter=^({pattern})",
                          f"--benchmark_repetitions={repeats}",
                          "--benchmark_report_aggregates_only=true",
                          "--benchmark_format=json"], check=True, capture_output=True, text=True)
    results = {}
    for entry in json.loads(out.stdout)["benchmarks"]:
        if repeats > 1 and entry.get("aggregate_name") != "median":
            continue
        form = entry["run_name"].split("ForwardBackward")[0].replace("BM_", "").lower()
        seq = int(entry["run_name"].split("/S:")[1].split("/")[0])
        results[(form, seq)] = (benchmark_seconds(entry), entry.get("peak_heap_MB"),
                                entry.get("useful_flops"))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", required=True, help="path to the bench_backward binary")
    parser.add_argument("--threads", default="2",
                        help="thread counts, comma-separated (e.g. 1,2): one table each")
    parser.add_argument("--seq", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory", action="store_true")
    args = parser.parse_args()

    forms = torch_forms()
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        library = run_library(args.bench, forms, threads, args.seq, args.dim, args.heads,
                              args.repeats)
        print(f"torch {torch.__version__}, {threads} thread(s), float32, B = 1, "
              f"NH = {args.heads}, DQK = DV = {args.dim}; median of {args.repeats}; "
              "mlstm GFLOP/s: useful FLOPs of forward and backward (bench_backward.cpp)")
        print(f"{'form':10s} {'S':>6s} {'torch ms':>10s} {'mlstm ms':>10s} {'ratio':>7s} "
              f"{'GFLOP/s':>8s}" + (f" {'torch MB':>9s} {'mlstm MB':>9s}" if args.memory else "")
              + "  fastest PyTorch")
        for name, candidates in forms.items():
            for seq in args.seq:
                if (name, seq) not in library:
                    print(f"{name:10s} {seq:6d}  (no library benchmark)")
                    continue
                inputs, dh = make_inputs(args.heads, seq, args.dim, torch.float32)
                theirs, label = min((time_torch(form, inputs, dh, args.repeats), label)
                                    for label, form in candidates)
                ours, heap, rate = library[(name, seq)]
                line = (f"{name:10s} {seq:6d} {theirs * 1e3:10.1f} {ours * 1e3:10.2f} "
                        f"{theirs / ours:7.1f} {rate / 1e9 if rate else float('nan'):8.1f}")
                if args.memory:
                    torch_mb = torch_peak_memory_mb(name, label, args.heads, seq, args.dim,
                                                    threads)
                    line += f" {torch_mb:9.1f} {heap if heap is not None else float('nan'):9.1f}"
                print(line + f"  {label}", flush=True)


if __name__ == "__main__":
    main()
