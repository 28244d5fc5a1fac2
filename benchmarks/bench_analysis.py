"""Progress measures over all checkpoints: batched vs a per-checkpoint run_with_cache loop.

    python benchmarks/bench_analysis.py [--run modadd113] [--limit 40]

Both compute the restricted and excluded loss of every checkpoint with the same key frequencies;
the script checks they agree and prints the speed ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import grokinterp as gi
from grokinterp.analysis.fourier import answer_directions
from grokinterp.analysis.progress import progress_measures, restricted_and_excluded_loss
from grokinterp.models import model_spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="modadd113")
    ap.add_argument("--limit", type=int, default=40, help="checkpoints to use (0: all)")
    ap.add_argument("--freqs", default="14,35,41,42,52")
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    run = gi.load_run(args.run)
    steps = run.steps[-args.limit:] if args.limit else run.steps
    freqs = [int(k) for k in args.freqs.split(",")]
    spec, task = model_spec(run.config.model), run.task
    run.model(steps[0])  # import TransformerLens once, outside both timings

    t = time.perf_counter()
    batched = progress_measures(run.stacked_weights(steps), steps, task, spec, run.train_mask, freqs)
    t_batched = time.perf_counter() - t

    t = time.perf_counter()
    dirs, labels, train = answer_directions(task.labels, task.p, freqs), task.all_labels(), torch.from_numpy(run.train_mask)
    restricted = []
    with torch.no_grad():
        for s in steps:
            logits, cache = run.model(s).run_with_cache(task.all_inputs())
            r, _ = restricted_and_excluded_loss(logits[None, :, -1], labels, dirs, train)
            restricted.append(r.item())
    t_loop = time.perf_counter() - t
    np.testing.assert_allclose(restricted, batched.restricted_loss, rtol=1e-3)
    print(f"{len(steps)} checkpoints of {run.name}: batched (all measures) {t_batched:.1f} s, "
          f"per-checkpoint run_with_cache loop (restricted + excluded only) {t_loop:.1f} s -> {t_loop / t_batched:.1f}x")


if __name__ == "__main__":
    main()
