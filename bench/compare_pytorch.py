#!/usr/bin/env python3
"""Side-by-side timing of the mlstm C++ kernels and their PyTorch equivalents, in one run.

Runs bench_kernels (Google Benchmark, JSON output) and then PyTorch at the same shapes
(B = 1, NH = 4, DQK = DV = D), dtype (float32) and thread count, and prints a table: the time
of each, the ratio PyTorch / mlstm, the useful GFLOP/s of mlstm (FLOP counts defined in
bench_kernels.cpp) and that rate as a fraction of the matrix-product rate measured by the same
bench binary in the same run (the practical ceiling of the machine: the faster of Eigen's product
and the library's own, BM_EigenGemm and BM_LibraryGemm). Writes a plot of time
against S for each kernel and for PyTorch.

    /tmp/torch-peer/bin/python bench/compare_pytorch.py --quick --threads 1,2   # minutes
    /tmp/torch-peer/bin/python bench/compare_pytorch.py --full    # the whole grid, tens of minutes

--threads takes a list: each thread count is one C++ run and one PyTorch run, and one table.
The chunkwise form is compared at chunk sizes 64 and 128 (D = 128; the useful FLOP count
depends on the chunk size, so each has its own rate).

PyTorch side: the fastest of its CPU options per row, and the table says which won:
- the reference package xlstm 2.0.6 (parallel_stabilized_simple, chunkwise_simple,
  recurrent_step_stabilized_simple);
- mlstm_kernels 2.0.6's native torch kernels (parallel native and native_stablef, chunkwise
  native, recurrent step native);
- torch.compile of the step and parallel functions above, and of the native chunkwise kernel's
  parallel part (its inter-chunk part is a Python loop over chunks, left eager); --no-compile
  leaves these out.
Without either package, this project's torch implementations written from the same equations
(tests/reference/mlstm_reference.py for parallel and step, chunkwise below). The output also
names the BLAS library torch loaded.

PyTorch from PyPI (2.x, MKL and oneDNN inside) and the reference packages, in a venv:
    python3 -m venv /tmp/torch-peer
    /tmp/torch-peer/bin/pip install torch xlstm==2.0.6 mlstm_kernels==2.0.6
(PyPI's torch is the CUDA build; it imports on a machine without a GPU once the CUDA libraries
it links are present: the machine's CUDA toolkit, or the nvidia-* wheels pip installs with it.)
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mlstm_reference  # noqa: E402  (the project's torch reference, and the package loader)
from peer_common import benchmark_seconds  # noqa: E402

B, NH, CHUNK = 1, 4, 64
CHUNK_SIZES_D128 = (64, 128)  # the chunk sizes of bench_kernels' BM_Chunkwise at D = 128


# ---------------------------------------------------------------------------------------------
# PyTorch kernels


def chunkwise_from_equations(q, k, v, igate, fgate, chunk_size=CHUNK, eps=1e-6):
    """Chunkwise mLSTM from docs/design.md: states carried between chunks, chunks in parallel
    form. Used only when the reference package is absent. S must be a multiple of chunk_size."""
    b, nh, s, dqk = q.shape
    nc, L = s // chunk_size, chunk_size
    qc = q.view(b, nh, nc, L, dqk)
    kc = k.view(b, nh, nc, L, dqk) / math.sqrt(dqk)
    vc = v.view(b, nh, nc, L, -1)
    lf = F.logsigmoid(fgate).view(b, nh, nc, L)
    ig = igate.view(b, nh, nc, L)
    cum = lf.cumsum(-1)                                  # within each chunk, inclusive
    total = cum[..., -1:]                                # (b, nh, nc, 1)
    to_end = total - cum + ig                            # log weight in the chunk-end state
    to_end_max = to_end.max(-1, keepdim=True).values
    w = (to_end - to_end_max).exp().unsqueeze(-1)
    kv = (kc * w).transpose(-1, -2) @ vc                 # (b, nh, nc, dqk, dv)
    ksum = (kc * w).sum(-2)                              # (b, nh, nc, dqk)
    c = torch.zeros(b, nh, dqk, v.shape[-1], dtype=q.dtype)
    n = torch.zeros(b, nh, dqk, dtype=q.dtype)
    m = torch.zeros(b, nh, 1, dtype=q.dtype)
    c_starts, n_starts, m_starts = [], [], []
    for j in range(nc):
        c_starts.append(c)
        n_starts.append(n)
        m_starts.append(m)
        m_new = torch.maximum(total[:, :, j] + m, to_end_max[:, :, j])
        carry = (total[:, :, j] + m - m_new).exp()
        add = (to_end_max[:, :, j] - m_new).exp()
        c = carry.unsqueeze(-1) * c + add.unsqueeze(-1) * kv[:, :, j]
        n = carry * n + add * ksum[:, :, j]
        m = m_new
    c_s = torch.stack(c_starts, 2)                       # (b, nh, nc, dqk, dv)
    n_s = torch.stack(n_starts, 2)                       # (b, nh, nc, dqk)
    m_s = torch.stack(m_starts, 2)                       # (b, nh, nc, 1)
    log_d = cum.unsqueeze(-1) - cum.unsqueeze(-2) + ig.unsqueeze(-2)
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    log_d = log_d.masked_fill(~causal, -float("inf"))
    m_row = torch.maximum(log_d.max(-1).values, cum + m_s)  # the recurrent form's m_t
    weights = (qc @ kc.transpose(-1, -2)) * (log_d - m_row.unsqueeze(-1)).exp()
    state_w = (cum + m_s - m_row).exp().unsqueeze(-1)
    num = weights @ vc + (qc * state_w) @ c_s
    den = weights.sum(-1) + ((qc * state_w) @ n_s.unsqueeze(-1)).squeeze(-1)
    h = num / (torch.maximum(den.abs(), (-m_row).exp()) + eps).unsqueeze(-1)
    return h.reshape(b, nh, s, -1)


def load_native_kernels():
    """mlstm_kernels' native torch kernels: (parallel, parallel_stablef, chunkwise module, step),
    or None when the package is absent."""
    try:
        from mlstm_kernels.torch.chunkwise.native import fw as chunkwise_native
        from mlstm_kernels.torch.parallel import (mlstm_parallel__native_autograd,
                                                  mlstm_parallel__native_stablef_autograd)
        from mlstm_kernels.torch.recurrent import mlstm_recurrent_step__native
    except Exception:  # missing package or missing optional dependencies
        return None
    return (mlstm_parallel__native_autograd, mlstm_parallel__native_stablef_autograd,
            chunkwise_native, mlstm_recurrent_step__native)


def compiled(fn):
    """torch.compile of fn, compiled at its first call (one compilation per shape)."""
    return torch.compile(fn, dynamic=False)


def torch_candidates(use_compile):
    """{kernel: [(label, fn), ...]} for kernel in parallel, chunkwise, step, and a description.
    Sequence kernels: fn(q, k, v, i, f, chunk_size) with i, f (B, NH, S, 1); the step:
    fn(c, n, m, q, k, v, i, f) with c (B, NH, D, D), n (B, NH, D, 1), m (B, NH, 1, 1),
    q, k, v (B, NH, 1, D), i, f (B, NH, 1, 1). Every candidate computes the same h."""
    candidates = {"parallel": [], "chunkwise": [], "step": []}
    found = []
    module, how = mlstm_reference.load_reference_backends()
    if module is not None:
        found.append(f"xlstm ({how.split(' (')[0]})")

        def step(c, n, m, q, k, v, i, f):
            # The reference squeezes q, k, v in place: hand it fresh views.
            return module.recurrent_step_stabilized_simple(
                c, n, m, q.view(q.shape), k.view(k.shape), v.view(v.shape), i, f)

        def parallel(q, k, v, i, f, chunk_size=None):
            return module.parallel_stabilized_simple(q, k, v, i, f)

        candidates["parallel"].append(("xlstm parallel_stabilized_simple", parallel))
        candidates["chunkwise"].append((
            "xlstm chunkwise_simple",
            lambda q, k, v, i, f, chunk_size: module.chunkwise_simple(q, k, v, i, f,
                                                                      chunk_size=chunk_size)))
        candidates["step"].append(("xlstm recurrent_step_stabilized_simple", step))
        if use_compile:
            candidates["parallel"].append(("torch.compile(xlstm parallel_stabilized_simple)",
                                           compiled(parallel)))
            candidates["step"].append(("torch.compile(xlstm recurrent_step_stabilized_simple)",
                                       compiled(step)))
    native = load_native_kernels()
    if native is not None:
        found.append("mlstm_kernels native")
        native_parallel, native_stablef, chunkwise_module, native_step = native

        def sequence(kernel):
            # mlstm_kernels takes the gates as (B, NH, S).
            return lambda q, k, v, i, f, chunk_size=None: kernel(q, k, v, i[..., 0], f[..., 0])

        def chunkwise_native(parallel_part=None):
            def run(q, k, v, i, f, chunk_size):
                # The native forward looks its parallel part up at each call: swap in the
                # compiled one for this call only.
                original = chunkwise_module.mlstm_chunkwise__parallel_fw_H
                if parallel_part is not None:
                    chunkwise_module.mlstm_chunkwise__parallel_fw_H = parallel_part
                try:
                    return chunkwise_module.mlstm_chunkwise(q, k, v, i[..., 0], f[..., 0],
                                                            chunk_size=chunk_size)
                finally:
                    chunkwise_module.mlstm_chunkwise__parallel_fw_H = original
            return run

        def step(c, n, m, q, k, v, i, f):
            h, _ = native_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], i[:, :, 0], f[:, :, 0],
                               c, n[..., 0], m[..., 0])
            return h

        candidates["parallel"] += [("mlstm_kernels parallel native", sequence(native_parallel)),
                                   ("mlstm_kernels parallel native_stablef",
                                    sequence(native_stablef))]
        candidates["chunkwise"].append(("mlstm_kernels chunkwise native", chunkwise_native()))
        candidates["step"].append(("mlstm_kernels recurrent step native", step))
        if use_compile:
            candidates["chunkwise"].append((
                "mlstm_kernels chunkwise native, torch.compile of its parallel part",
                chunkwise_native(compiled(chunkwise_module.mlstm_chunkwise__parallel_fw_H))))
            candidates["step"].append(("torch.compile(mlstm_kernels recurrent step native)",
                                       compiled(step)))
    if not found:
        return ({"parallel": [("project parallel_stabilized",
                               lambda q, k, v, i, f, chunk_size=None:
                               mlstm_reference.parallel_stabilized(q, k, v, i, f))],
                 "chunkwise": [("project chunkwise (bench/compare_pytorch.py)",
                                chunkwise_from_equations)],
                 "step": [("project recurrent_step_stabilized",
                           mlstm_reference.recurrent_step_stabilized)]},
                "this project's torch implementations (tests/reference/mlstm_reference.py; "
                "chunkwise in bench/compare_pytorch.py); reference packages not found")
    return candidates, "fastest of " + " and ".join(found) + (
        ", with torch.compile" if use_compile else "")


def fastest(candidates, call, budget):
    """(best seconds, label) over the candidates; call(fn) runs one. A candidate that fails
    (a compiler missing, say) is reported and left out."""
    best = (math.inf, None)
    for label, fn in candidates:
        try:
            seconds = time_call(lambda: call(fn), budget)
        except Exception as exc:  # noqa: BLE001  (any failure only drops this candidate)
            print(f"  {label}: failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})",
                  flush=True)
            continue
        print(f"  {label}: {fmt_time(seconds)}", flush=True)
        best = min(best, (seconds, label), key=lambda x: x[0])
    return best


def inputs(S, D, seed=0):
    """q, k, v, i uniform in [-1, 1), f in [2.5, 4.5): the distributions of bench_kernels.cpp."""
    g = torch.Generator().manual_seed(seed)
    q, k, v, i = (torch.rand(B, NH, S, width, generator=g) * 2.0 - 1.0
                  for width in (D, D, D, 1))
    f = torch.rand(B, NH, S, 1, generator=g) * 2.0 + 2.5
    return q, k, v, i, f


def time_call(fn, budget_s, min_runs=2, max_runs=50):
    """Best wall time of fn() in seconds (the statistic taken on the C++ side too): one warm-up,
    then runs until the budget is spent."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def parallel_bytes(S):
    # The reference holds several (B, NH, S+1, S+1) float32 matrices at once; six is a safe bound.
    return 6 * B * NH * (S + 1) ** 2 * 4


# ---------------------------------------------------------------------------------------------
# FLOP counts: the same definitions as bench_kernels.cpp


def flops(kernel, S, D, L=CHUNK):
    if kernel == "parallel":
        return B * NH * 2.0 * (S * (S + 1) / 2) * 2 * D
    if kernel == "chunkwise":
        total = 0.0
        for begin in range(0, S, L):
            length = min(L, S - begin)
            total += 2.0 * (length * (length + 1) / 2) * 2 * D + 4.0 * length * D * D
        return B * NH * total
    if kernel == "step":
        return B * NH * 4.0 * D * D
    raise ValueError(kernel)


# ---------------------------------------------------------------------------------------------


def run_cpp(binary, threads, pattern, min_time, repetitions):
    """Runs the bench binary; repetitions of all benchmarks are interleaved at random, so that
    a passing load on the machine does not land on one benchmark alone."""
    env = dict(os.environ, MLSTM_NUM_THREADS=str(threads))
    cmd = [binary, "--benchmark_format=json", f"--benchmark_filter={pattern}",
           f"--benchmark_min_time={min_time}", f"--benchmark_repetitions={repetitions}",
           "--benchmark_enable_random_interleaving=true"]
    print("running:", f"MLSTM_NUM_THREADS={threads}", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def parse_cpp(report, threads):
    """Best over the repetitions: {(kernel, D, S, L): wall seconds}, {same: CPU seconds of all
    threads}, and the matrix-product ceiling (the faster of BM_EigenGemm and BM_LibraryGemm) in
    FLOP per wall second and per CPU second. L is the
    chunk size (0 for the other kernels)."""
    times, cpu_times, gemm, gemm_cpu = {}, {}, 0.0, 0.0
    names = {"BM_Parallel": "parallel", "BM_Chunkwise": "chunkwise",
             "BM_RecurrentSequence": "recurrent", "BM_RecurrentStep": "step"}
    for bench in report["benchmarks"]:
        if bench.get("run_type") == "aggregate":
            continue
        parts = bench["run_name"].split("/")
        args = dict(p.split(":") for p in parts[1:] if ":" in p)
        if parts[0] in ("BM_EigenGemm", "BM_LibraryGemm"):
            gemm = max(gemm, bench["useful_flops"])
            gemm_cpu = max(gemm_cpu, 2.0 * int(args["N"]) ** 3 * threads /
                           benchmark_seconds(bench, "cpu_time"))
            continue
        key = (names[parts[0]], int(args["D"]), int(args.get("S", 1)), int(args.get("L", 0)))
        times[key] = min(times.get(key, math.inf), benchmark_seconds(bench))
        cpu_times[key] = min(cpu_times.get(key, math.inf), benchmark_seconds(bench, "cpu_time"))
    return times, cpu_times, gemm, gemm_cpu


def chunk_sizes(D):
    return CHUNK_SIZES_D128 if D == 128 else (CHUNK,)


def time_torch(candidates, dims, seqs, budget, args):
    """{(kernel, D, S, L): (seconds or why it was skipped, the fastest candidate's label)}."""
    theirs = {}
    with torch.no_grad():
        for D in dims:
            q1, k1, v1, i1, f1 = inputs(1, D)
            c0 = torch.zeros(B, NH, D, D)
            n0 = torch.zeros(B, NH, D, 1)
            m0 = torch.zeros(B, NH, 1, 1)
            print(f"torch step D={D}:", flush=True)
            theirs[("step", D, 1, 0)] = fastest(
                candidates["step"], lambda fn: fn(c0, n0, m0, q1, k1, v1, i1, f1), budget)
            last = {}
            for S in seqs:
                q, k, v, i, f = inputs(S, D)
                points = [("parallel", 0)] + [("chunkwise", L) for L in chunk_sizes(D)]
                for kernel, L in points:
                    key = (kernel, D, S, L)
                    # Predict from the previous S (parallel ~ S^2, chunkwise ~ S) and skip what
                    # would not fit the time or memory limits.
                    prev = last.get((kernel, L))
                    if prev is not None:
                        growth = (S / prev[0]) ** (2 if kernel == "parallel" else 1)
                        if prev[1] * growth > args.max_torch_seconds:
                            theirs[key] = (f"skipped (~{prev[1] * growth:.0f} s)", None)
                            continue
                    if kernel == "parallel" and parallel_bytes(S) > args.max_torch_gib * 2**30:
                        theirs[key] = (f"skipped (~{parallel_bytes(S) / 2**30:.0f} GiB)", None)
                        continue
                    print(f"torch {kernel} D={D} S={S}" + (f" L={L}:" if L else ":"), flush=True)
                    theirs[key] = fastest(candidates[kernel],
                                          lambda fn: fn(q, k, v, i, f, chunk_size=L or CHUNK),
                                          budget)
                    if theirs[key][1] is not None:
                        last[(kernel, L)] = (S, theirs[key][0])
    return theirs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="target shapes only (default)")
    mode.add_argument("--full", action="store_true", help="the whole grid")
    parser.add_argument("--threads", default="2",
                        help="thread counts, comma-separated (e.g. 1,2): one run and table each")
    parser.add_argument("--binary", default=os.path.join(ROOT, "build-bench", "bench", "bench_kernels"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "bench_kernels.png"))
    parser.add_argument("--json", default=None, help="also write all measurements here")
    parser.add_argument("--no-compile", action="store_true",
                        help="leave torch.compile out of PyTorch's candidates")
    parser.add_argument("--torch-budget", type=float, default=None,
                        help="seconds of repeated runs per PyTorch point (default 3 quick, 5 full)")
    parser.add_argument("--max-torch-seconds", type=float, default=60.0,
                        help="skip a PyTorch point whose single run is predicted to take longer")
    parser.add_argument("--max-torch-gib", type=float, default=12.0,
                        help="skip a PyTorch parallel point predicted to need more memory")
    args = parser.parse_args()
    full = args.full
    budget = args.torch_budget or (5.0 if full else 3.0)
    thread_counts = [int(t) for t in args.threads.split(",")]

    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: build it with\n"
                 "  cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DMLSTM_BUILD_TESTS=OFF\n"
                 "  cmake --build build-bench -j2 --target bench_kernels")

    dims = [64, 128, 256] if full else [128]
    seqs = [256, 512, 1024, 2048, 4096, 8192, 16384] if full else [2048, 4096, 8192]
    d_alt = "|".join(map(str, dims))
    s_alt = "|".join(map(str, seqs))
    pattern = (f"BM_(Parallel|Chunkwise)/D:({d_alt})/S:({s_alt})/|"
               f"BM_RecurrentSequence/D:({d_alt})/S:({s_alt})/|"
               f"BM_RecurrentStep/D:({d_alt})/|BM_EigenGemm|BM_LibraryGemm")
    candidates, torch_how = torch_candidates(not args.no_compile)
    results = []
    for threads in thread_counts:
        report = run_cpp(args.binary, threads, pattern, 0.5, 3)
        ours, ours_cpu, gemm_rate, gemm_cpu_rate = parse_cpp(report, threads)
        torch.set_num_threads(threads)
        theirs = time_torch(candidates, dims, seqs, budget, args)
        rows = print_table(report, threads, torch_how, ours, ours_cpu, theirs, gemm_rate,
                           gemm_cpu_rate, dims, seqs)
        results.append(dict(threads=threads, rows=rows, gemm_flops=gemm_rate,
                            gemm_cpu_flops=gemm_cpu_rate, torch=torch_how,
                            recurrent_sequence={f"{k[1]}/{k[2]}": v for k, v in ours.items()
                                                if k[0] == "recurrent"}))
        if threads == thread_counts[-1]:
            plot(ours, theirs, dims, seqs, args.plot, threads)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)


def print_table(report, threads, torch_how, ours, ours_cpu, theirs, gemm_rate, gemm_cpu_rate,
                dims, seqs):
    """Prints one thread count's table and target lines; returns its rows."""
    ctx = report["context"]
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {ctx.get('num_cpus')} CPUs, "
          f"load average {ctx.get('load_avg')}; {threads} threads on both sides; float32; "
          f"B={B} NH={NH} DQK=DV=D")
    print(f"PyTorch {torch.__version__} ({torch_how}); BLAS: {blas_info()}")
    print(f"matrix-product ceiling (best of BM_EigenGemm and BM_LibraryGemm, {threads} threads): "
          f"{gemm_rate / 1e9:.1f} GFLOP/s; per CPU-second of all threads: "
          f"{gemm_cpu_rate / 1e9:.1f} GFLOP")
    print("'of GEMM': our useful rate over that ceiling, by wall time and by CPU time (the")
    print("second is what a run on a shared machine still tells: work per CPU-second, waits and")
    print("time-slicing by other processes left out); L: the chunk size, on both sides")
    print()
    print("| kernel | D | S | L | mlstm | PyTorch | PyTorch / mlstm | mlstm GFLOP/s | "
          "of GEMM (wall) | (CPU) | fastest PyTorch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    rows = []
    for kernel in ("parallel", "chunkwise", "step"):
        for D in dims:
            for S in (seqs if kernel != "step" else [1]):
                for L in (chunk_sizes(D) if kernel == "chunkwise" else (0,)):
                    key = (kernel, D, S, L)
                    if key not in ours:
                        continue
                    mine = ours[key]
                    other, which = theirs.get(key, (None, None))
                    useful = flops(kernel, S, D, L or CHUNK)
                    rate = useful / mine
                    cpu_fraction = useful / ours_cpu[key] / gemm_cpu_rate
                    timed = isinstance(other, float) and which is not None
                    ratio = f"{other / mine:.1f}x" if timed else "-"
                    other_text = fmt_time(other) if timed else (other or "-")
                    rows.append(dict(kernel=kernel, D=D, S=S, L=L, mlstm_s=mine,
                                     torch_s=other if timed else None, torch_kernel=which,
                                     gflops=rate / 1e9, of_gemm=rate / gemm_rate,
                                     of_gemm_cpu=cpu_fraction))
                    print(f"| {kernel} | {D} | {S if kernel != 'step' else '1 step'} | "
                          f"{L or '-'} | {fmt_time(mine)} | {other_text} | {ratio} | "
                          f"{rate / 1e9:.1f} | {rate / gemm_rate:.2f} | {cpu_fraction:.2f} | "
                          f"{which or '-'} |")
    print()
    report_targets(ours, ours_cpu, gemm_rate, gemm_cpu_rate)
    return rows


def fmt_time(seconds):
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def blas_info():
    """The matrix-product libraries torch uses on the CPU (PyPI's torch has MKL and oneDNN built
    in; Debian's links the generic libblas.so.3, the reference BLAS unless an optimized one is
    installed), and torch's float32 1024^3 matmul rate."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    runs, start = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - start < 1.0:
        a @ b
        runs += 1
    rate = runs * 2 * 1024**3 / (time.perf_counter() - start)
    built_in = [name for name, there in (("MKL", torch.backends.mkl.is_available()),
                                         ("oneDNN", torch.backends.mkldnn.is_available())) if there]
    libraries = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "libblas" in os.path.basename(path).lower():
                libraries.add(os.path.realpath(path))
    found = ", ".join(built_in + sorted(libraries)) or "none found"
    return f"{found}; torch matmul {rate / 1e9:.1f} GFLOP/s"


def report_targets(ours, ours_cpu, gemm_rate, gemm_cpu_rate):
    """The chunkwise forward at S >= 4096 at 75% of the GEMM ceiling or more, in useful FLOPs,
    by wall and by CPU time."""
    print("Target: the chunkwise forward at S >= 4096 reaches >= 0.75 of the GEMM ceiling "
          "(D=128, NH=4, B=1, float32)")
    for key in sorted(k for k in ours if k[0] == "chunkwise" and k[1] == 128 and k[2] >= 4096):
        _, D, S, L = key
        useful = flops("chunkwise", S, D, L)
        wall, cpu = useful / ours[key] / gemm_rate, useful / ours_cpu[key] / gemm_cpu_rate
        verdict = "met" if wall >= 0.75 else ("met by CPU time" if cpu >= 0.75 else "MISSED")
        print(f"  S={S} L={L}: {wall:.2f} (wall), {cpu:.2f} (CPU) {verdict}")


def plot(ours, theirs, dims, seqs, path, threads):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not available: no plot (apt-get install python3-matplotlib)")
        return
    fig, axes = plt.subplots(1, len(dims), figsize=(6 * len(dims), 4.5), squeeze=False)
    styles = {"parallel": "tab:blue", "chunkwise": "tab:green", "recurrent": "tab:red"}
    for axis, D in zip(axes[0], dims):
        for kernel, color in styles.items():
            L = CHUNK if kernel == "chunkwise" else 0
            xs = [S for S in seqs if (kernel, D, S, L) in ours]
            axis.loglog(xs, [ours[(kernel, D, S, L)] for S in xs], "o-", color=color,
                        label=f"mlstm {kernel}")
            if kernel == "recurrent":
                step = theirs.get(("step", D, 1, 0), (None,))[0]
                if isinstance(step, float):
                    axis.loglog(seqs, [S * step for S in seqs], "--", color=color,
                                label="PyTorch step x S")
                continue
            xs = [S for S in seqs if isinstance(theirs.get((kernel, D, S, L), (None,))[0], float)]
            if xs:
                axis.loglog(xs, [theirs[(kernel, D, S, L)][0] for S in xs], "s--", color=color,
                            label=f"PyTorch {kernel} (fastest)")
        axis.set_title(f"D = {D}, B = 1, NH = 4, float32, {threads} threads")
        axis.set_xlabel("sequence length S")
        axis.set_ylabel("time per call (s)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


if __name__ == "__main__":
    main()
