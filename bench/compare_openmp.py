#!/usr/bin/env python3
"""bench_kernels built without and with -fopenmp, run in turns in one session: the ratio of their
times shows whether a program built with -fopenmp pays for it (it should not: mlstm keeps Eigen's
products single-threaded inside its own threads).

    python3 bench/compare_openmp.py [--build build-bench] [--threads 2] [--rounds 3]

Needs the targets bench_kernels and bench_kernels_openmp (the latter is built when CMake finds
OpenMP). Prints, per benchmark, the best wall time of each build over the rounds and the ratio
OpenMP / plain.
"""

import argparse
import json
import os
import subprocess

from peer_common import benchmark_seconds

FILTER = "BM_(Parallel/D:128/S:(2048|4096)|Chunkwise/D:128/S:(4096|8192)/L:64|RecurrentStep/D:128)/"


def run(binary, threads):
    env = dict(os.environ, MLSTM_NUM_THREADS=str(threads))
    out = subprocess.run([binary, "--benchmark_format=json", f"--benchmark_filter={FILTER}",
                          "--benchmark_min_time=0.3"],
                         env=env, check=True, capture_output=True, text=True).stdout
    return {b["name"]: benchmark_seconds(b) for b in json.loads(out)["benchmarks"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build-bench")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binaries = {name: os.path.join(args.build, "bench", name)
                for name in ("bench_kernels", "bench_kernels_openmp")}
    best = {name: {} for name in binaries}
    for _ in range(args.rounds):
        for name, binary in binaries.items():
            for bench, seconds in run(binary, args.threads).items():
                best[name][bench] = min(seconds, best[name].get(bench, float("inf")))
    print(f"threads {args.threads}, best of {args.rounds} rounds (wall time)")
    print(f"{'benchmark':58} {'plain':>10} {'-fopenmp':>10} {'ratio':>6}")
    for bench, plain in best["bench_kernels"].items():
        openmp = best["bench_kernels_openmp"][bench]
        print(f"{bench:58} {plain * 1e3:8.3f}ms {openmp * 1e3:8.3f}ms {openmp / plain:6.2f}")


if __name__ == "__main__":
    main()
