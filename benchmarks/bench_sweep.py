"""Sweep on the CPU: one ensemble in one process against the grid split over parallel processes.

Trains the same grid (x+y mod p, tiny-1l, full batch) with ``run_sweep(..., workers=1)`` (every
member in one ensemble, torch's default threads) and ``workers=N`` (N processes, one ensemble each,
cores/N threads each), alternating the order, each in a fresh folder, and prints the wall-clock
times and their ratio. Process start-up (spawn, imports) counts: a user pays it too.

    python benchmarks/bench_sweep.py                       # 8 members, 600 steps, workers 1 vs 2, 3 repeats
    python benchmarks/bench_sweep.py --members 4 --steps 200 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    import os

    from grokinterp.sweep import SweepSpec, run_sweep

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=8, help="grid size (seeds x 2 fractions)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--p", type=int, default=31)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="processes to compare with one ensemble")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    spec = SweepSpec(name="bench", tasks=["add"], p=args.p, fracs=[0.4, 0.6], seeds=list(range(-(-args.members // 2))),
                     model="tiny-1l", lr=1e-2, steps=args.steps, checkpoint_every=100, weights_every=args.steps)
    n = len(spec.configs())
    print(f"{n} members x {args.steps} steps (x+y mod {args.p}, tiny-1l, full batch), {len(os.sched_getaffinity(0))} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    times: dict[int, list[float]] = {1: [], args.workers: []}
    for r in range(args.repeats):
        for w in ([1, args.workers] if r % 2 == 0 else [args.workers, 1]):
            with tempfile.TemporaryDirectory() as d:
                t = time.perf_counter()
                run_sweep(spec, d, workers=w, progress=False)
                times[w].append(time.perf_counter() - t)
            print(f"  repeat {r}: workers={w}: {times[w][-1]:.1f} s ({n * args.steps / times[w][-1]:.0f} member-steps/s)", flush=True)
    one, many = statistics.median(times[1]), statistics.median(times[args.workers])
    print(f"median: one ensemble {one:.1f} s, {args.workers} processes {many:.1f} s; "
          f"ratio (one ensemble / processes) {one / many:.2f}x; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
