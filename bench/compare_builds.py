#!/usr/bin/env python3
"""Two builds of one benchmark program, alternated, for a before/after figure.

    python3 bench/compare_builds.py --threads 2 --rounds 6 \\
        --filter 'BM_Chunkwise/D:128/S:(4096|8192)/L:64/|BM_LibraryGemm/N:512' \\
        /tmp/before/bench_kernels build-bench/bench/bench_kernels

Each round runs both programs (MLSTM_NUM_THREADS=<threads>, --benchmark_filter=<filter>), the
before build first in odd rounds and second in even ones, so that a drift of the host's speed
within the series weighs on both alike. Prints, per benchmark, the fastest and the median wall
time of each build and their ratios after / before. A benchmark whose code is the same in both
builds (a matrix product beside a kernel change) shows the spread of the host.
"""

import argparse
import statistics
import sys

from peer_common import benchmark_seconds, run_benchmark


def wall_times(binary, threads, benchmark_filter, min_seconds):
    """Wall times (ms) by benchmark name from one run of `binary`; a benchmark that reported an
    error (SkipWithError) is left out."""
    results, _ = run_benchmark(binary, threads, min_seconds,
                               extra_args=[f"--benchmark_filter={benchmark_filter}"])
    return {name: 1e3 * benchmark_seconds(entry)
            for name, entry in results.items()
            if entry.get("run_type", "iteration") == "iteration" and not entry.get("error_occurred")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--filter", required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--min-seconds", type=float, default=0.5,
                        help="Google Benchmark's minimum time per benchmark and run")
    args = parser.parse_args()
    if args.rounds < 1:
        sys.exit("--rounds must be at least 1")

    series = {"before": {}, "after": {}}
    for round_index in range(args.rounds):
        order = ["before", "after"] if round_index % 2 == 0 else ["after", "before"]
        for build in order:
            times = wall_times(getattr(args, build), args.threads, args.filter, args.min_seconds)
            for name, ms in times.items():
                series[build].setdefault(name, []).append(ms)

    if not series["before"] and not series["after"]:
        sys.exit(f"no benchmark of --filter={args.filter} ran without an error")
    for build, other in (("before", "after"), ("after", "before")):
        for name in series[build].keys() - series[other].keys():
            print(f"warning: {name} ran in the {build} build only", file=sys.stderr)
    print(f"{args.threads} thread(s), {args.rounds} rounds; wall time in ms; ratio after / before")
    print("| benchmark | before fastest | after fastest | ratio | before median | after median "
          "| ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, before in series["before"].items():
        after = series["after"].get(name)
        if not after:
            continue
        fastest = (min(before), min(after))
        median = (statistics.median(before), statistics.median(after))
        print(f"| `{name}` | {fastest[0]:.3f} | {fastest[1]:.3f} | {fastest[1] / fastest[0]:.3f} "
              f"| {median[0]:.3f} | {median[1]:.3f} | {median[1] / median[0]:.3f} |")


if __name__ == "__main__":
    main()
