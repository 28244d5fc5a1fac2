"""Sweep on the CPU: one ensemble in one process against the grid split over parallel processes.

Trains the same grid (x+y mod p, tiny-1l, full batch) three ways, each in a fresh folder, in
rotating order: ``run_sweep(..., workers=1)`` (every member in one ensemble, torch's default
threads), the same with one torch thread, and ``workers=N`` (N processes, one ensemble each,
cores/N threads each). Prints the wall-clock times and the ratios. Process start-up (spawn,
imports) counts: a user pays it too.

    python benchmarks/bench_sweep.py                       # 8 members, 600 steps, 3 repeats
    python benchmarks/bench_sweep.py --members 4 --steps 200 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    import os

    import torch

    from grokinterp.sweep import SweepSpec, run_sweep

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=8, help="grid size (seeds x 2 fractions)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--p", type=int, default=31)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="processes to compare with one ensemble (default: one per core)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-threaded", action="store_true", help="leave out the multi-threaded ensemble (slowest on a busy CPU)")
    args = ap.parse_args()
    spec = SweepSpec(name="bench", tasks=["add"], p=args.p, fracs=[0.4, 0.6], seeds=list(range(-(-args.members // 2))),
                     model="tiny-1l", lr=1e-2, steps=args.steps, checkpoint_every=100, weights_every=args.steps)
    n = len(spec.configs())
    print(f"{n} members x {args.steps} steps (x+y mod {args.p}, tiny-1l, full batch), {len(os.sched_getaffinity(0))} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    threads = torch.get_num_threads()
    ways = {f"one ensemble, {threads} threads": (1, threads), "one ensemble, 1 thread": (1, 1),
            f"{args.workers} processes": (args.workers, threads)}
    if args.skip_threaded:
        del ways[f"one ensemble, {threads} threads"]
    times: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(args.repeats):
        order = list(ways)[r % len(ways):] + list(ways)[: r % len(ways)]
        for way in order:
            workers, torch_threads = ways[way]
            torch.set_num_threads(torch_threads)
            with tempfile.TemporaryDirectory() as d:
                t = time.perf_counter()
                run_sweep(spec, d, workers=workers, progress=False)
                times[way].append(time.perf_counter() - t)
            print(f"  repeat {r}: {way}: {times[way][-1]:.1f} s ({n * args.steps / times[way][-1]:.0f} member-steps/s)", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    many = med[f"{args.workers} processes"]
    print("median: " + "; ".join(f"{k} {v:.1f} s" for k, v in med.items()))
    print("ratio, processes faster by: " + "; ".join(f"{v / many:.2f}x vs {k}" for k, v in med.items() if k != f"{args.workers} processes")
          + f" (load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
