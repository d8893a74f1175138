"""What the scripts that compare mlstm's benchmarks with PyTorch share: running a Google Benchmark
program for its JSON report, timing a Python call the same way on every side, keeping the fastest
of several rounds, and naming the BLAS library torch loaded."""

import json
import os
import re
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def default_binary(name):
    """Where bench/README.md's build puts the benchmark program `name`."""
    return os.path.join(ROOT, "build-bench", "bench", name)


def run_benchmark(binary, threads, min_seconds, env=None, extra_args=()):
    """Runs a Google Benchmark program on `threads` library threads with the environment variables
    `env` added (a value None removes the variable). Returns ({name: the benchmark's JSON entry},
    the report's context), names lower-cased without "BM_", "/real_time" and "/manual_time"."""
    environment = dict(os.environ, MLSTM_NUM_THREADS=str(threads))
    for key, value in (env or {}).items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    try:
        output = subprocess.run(
            [binary, "--benchmark_format=json", f"--benchmark_min_time={min_seconds}",
             *extra_args], env=environment, check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as failure:
        raise SystemExit(f"{binary} failed (exit {failure.returncode}):\n{failure.stderr}")
    if not output.strip():
        raise SystemExit(f"{binary} printed no report (a --benchmark_filter that matched nothing?)")
    report = json.loads(output)
    results = {}
    for bench in report["benchmarks"]:
        name = bench["name"].replace("BM_", "").lower()
        name = name.replace("/real_time", "").replace("/manual_time", "")
        results[name] = bench
    return results, report["context"]


def benchmark_seconds(entry, field="real_time"):
    """A Google Benchmark JSON entry's `field` (real_time or cpu_time) in seconds, whatever its
    time_unit."""
    return entry[field] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[entry["time_unit"]]


def keep_fastest(kept, results, rate):
    """Keeps in `kept` each of this round's `results` ({name: value}) that is faster, by
    rate(value) (None: did not run), than the one kept under its name."""
    for name, value in results.items():
        if name not in kept or (rate(value) or 0.0) > (rate(kept[name]) or 0.0):
            kept[name] = value


def read_bandwidth_ceiling(entry):
    """Bytes per second of BM_read_bandwidth's JSON entry: its fastest pass of the run
    (best_bytes_per_second; bench/read_bandwidth.hpp), or the mean rate of a program built before
    that counter."""
    return entry.get("best_bytes_per_second", entry["bytes_per_second"])


def timed(function, min_seconds, min_repeats=2):
    """Median seconds of one call, over at least min_repeats calls and min_seconds in all."""
    function()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_seconds:
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return statistics.median(times), len(times)


def blas_library():
    """The BLAS torch's matrix products run on (its build's BLAS_INFO: MKL is linked into
    libtorch statically, so it is not a separate library in the process) and its CPU capability."""
    import torch

    config = torch.__config__.show()
    fields = dict(re.findall(r"\b(BLAS_INFO|USE_MKLDNN)=(\w+)", config))
    capability = next((line.split(":", 1)[1].strip() for line in config.splitlines()
                       if "CPU capability usage" in line), "unknown")
    return (f"{fields.get('BLAS_INFO', 'unknown')} (oneDNN {fields.get('USE_MKLDNN', '?')}), "
            f"CPU capability {capability}")
