"""CPU analysis speed: batched + cached analyses vs a per-checkpoint run_with_cache loop, and `figures`.

    python benchmarks/bench_analysis.py [--run modadd113] [--loop-limit 0] [--repeats 1] [--no-figures]

1. Builds a full-resolution copy of the run in a temporary folder: one float32 checkpoint at every
   step of its config's schedule (259 for modadd113), linearly interpolated between the shipped
   checkpoints, with the shipped metrics.csv and split.json. Timing does not depend on the values.
2. Times every progress measure + the Fourier analysis (key frequencies of the last checkpoint, the
   embedding spectrum of every checkpoint) batched with an empty cache (cold) and again (warm:
   cache hits), against the same measures from HookedTransformer.run_with_cache one checkpoint at a
   time (``--loop-limit N``: on N evenly spaced checkpoints, scaled to all), checks they agree and
   prints the ratio, with wall time and CPU time (user + sys) of each side.
3. Times `grokinterp figures --run <run>` (the shipped run) as a user runs it, with an empty cache
   and again with it warm, and in-process the figure writing with and without PNG export.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import grokinterp as gi
from grokinterp import cache
from grokinterp.analysis import fourier as fa
from grokinterp.analysis.batched import as_stacked, logits_and_neurons
from grokinterp.analysis.progress import fourier_ginis, restricted_and_excluded_loss, sum_squared_weights
from grokinterp.engine import per_example_loss
from grokinterp.store import atomic_write_json, atomic_write_tensors, checkpoint_path


class Timer:
    """Wall and CPU (user + sys of this process and its finished children) seconds of a block."""

    def __enter__(self):
        self.t, self.c = time.perf_counter(), os.times()
        return self

    def __exit__(self, *exc):
        c = os.times()
        self.wall = time.perf_counter() - self.t
        self.cpu = sum(getattr(c, k) - getattr(self.c, k) for k in ("user", "system", "children_user", "children_system"))

    def __str__(self):
        return f"{self.wall:.1f} s wall, {self.cpu:.1f} s CPU"


def full_resolution_copy(run, folder: Path) -> gi.runs.Run:
    """float32 checkpoints at every step of the run's schedule, interpolated between the shipped ones."""
    cfg = run.config
    dst = folder / run.name
    (dst / "checkpoints").mkdir(parents=True)
    for f in ("split.json", "metrics.csv"):
        shutil.copy(run.path / f, dst / f)
    record = {k: v for k, v in run.record.items() if k != "export"}
    record["config"] = {**record["config"], "checkpoint_dtype": "float32"}
    atomic_write_json(dst / "config.json", record)
    shipped = run.steps
    for s in cfg.checkpoint_steps():
        j = int(np.clip(np.searchsorted(shipped, s), 1, len(shipped) - 1))
        lo, hi = shipped[j - 1], shipped[j]
        t = min(max((s - lo) / (hi - lo), 0.0), 1.0)
        a, b = run.weights(lo), run.weights(hi)
        atomic_write_tensors(checkpoint_path(dst, s), {k: (1 - t) * a[k] + t * b[k] for k in a}, {"step": str(s)})
    return gi.load_run(dst)


def batched_analysis(run):
    """Progress measures (cached) + key frequencies at the last checkpoint + W_E spectrum over all."""
    spec, p = run.config.spec, run.task.p
    w_last = run.stacked_weights([run.steps[-1]])
    _, acts = logits_and_neurons(w_last, run.task, spec)
    kf = fa.key_frequencies(w_last, acts[0].reshape(p, p, -1), p)
    m = cache.progress_measures(run, kf.keys)
    spectrum = fa.frequency_energy(fa.embedding_spectrum(run.stacked_weights(names=["embed.W_E"]), p))
    return kf, m, spectrum


def loop_analysis(run, steps, keys):
    """The same measures, one HookedTransformer.run_with_cache per checkpoint."""
    task, p = run.task, run.task.p
    inputs, labels, train = task.all_inputs(), task.all_labels(), torch.from_numpy(run.train_mask)
    rows = []
    with torch.no_grad():
        for s in steps:
            model = run.model(s)
            logits, act_cache = model.run_with_cache(inputs)
            final = logits[None, :, -1].double()
            nll, correct = per_example_loss(final, labels[None]), (final.argmax(-1) == labels).double()
            r, e = restricted_and_excluded_loss(final, labels, keys, train)
            w = as_stacked(model)
            rows.append({"train_loss": nll[:, train].mean().item(), "test_loss": nll[:, ~train].mean().item(),
                         "train_acc": correct[:, train].mean().item(), "test_acc": correct[:, ~train].mean().item(),
                         "restricted_loss": r.item(), "excluded_loss": e.item(),
                         "sum_squared_weights": sum_squared_weights(w, run.config.spec).item(),
                         **{k: v.item() for k, v in fourier_ginis(w, p).items()},
                         "spectrum": fa.frequency_energy(fa.embedding_spectrum(w, p))[0]})
        acts = act_cache["blocks.0.mlp.hook_post"][:, -1].reshape(p, p, -1)
        kf = fa.key_frequencies(as_stacked(model), acts, p)
    return kf, rows


def bench_analysis(run, loop_limit: int) -> None:
    steps = run.steps
    loop_steps = steps if not loop_limit else [steps[i] for i in np.linspace(0, len(steps) - 1, loop_limit).round().astype(int)]
    run.model(steps[0])  # import TransformerLens once, outside every timing
    with Timer() as cold:
        kf, m, spectrum = batched_analysis(run)
    with Timer() as warm:
        batched_analysis(run)
    with Timer() as loop:
        kf_loop, rows = loop_analysis(run, loop_steps, kf.keys)
    scale = len(steps) / len(loop_steps)
    assert kf_loop.keys == kf.keys, (kf_loop.keys, kf.keys)
    idx = [steps.index(s) for s in loop_steps]
    for name in rows[0]:
        got = np.array([r[name].numpy() if name == "spectrum" else r[name] for r in rows])
        want = spectrum[idx].numpy() if name == "spectrum" else getattr(m, name)[idx]
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-6, err_msg=name)
    looped = f"{len(loop_steps)} checkpoints" + (f", scaled x{scale:.2f} to {len(steps)}" if scale != 1 else "")
    print(f"progress measures + Fourier over {len(steps)} float32 checkpoints of {run.name} (key frequencies {kf.keys}):")
    print(f"  batched, empty cache:            {cold}")
    print(f"  batched, cache warm:             {warm}")
    print(f"  run_with_cache loop ({looped}): {loop.wall * scale:.1f} s wall, {loop.cpu * scale:.1f} s CPU")
    print(f"  ratio loop / batched: {loop.wall * scale / cold.wall:.1f}x cold (CPU {loop.cpu * scale / cold.cpu:.1f}x), "
          f"{loop.wall * scale / warm.wall:.0f}x warm; the measures agree (rtol 2e-3)")


def bench_figures(name: str, tmp: Path) -> None:
    from grokinterp.figures import save_figures
    from grokinterp.report import all_reports

    env = {**os.environ, "GROKINTERP_CACHE": str(tmp / "figures-cache")}
    cmd = [sys.executable, "-m", "grokinterp.cli", "figures", "--run", name, "--out", str(tmp / "figs")]
    times = []
    for _ in ("cold", "warm"):
        with Timer() as t:
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(t)
    os.environ["GROKINTERP_CACHE"] = env["GROKINTERP_CACHE"]
    run = gi.load_run(name)
    with Timer() as reports_t:
        reports = all_reports(run)
    figs = {stem: fig for rep in reports.values() for stem, fig in rep.figures.items()}
    with Timer() as html_t:
        save_figures(figs, tmp / "figs-html", png=False)
    with Timer() as png_t:
        save_figures(figs, tmp / "figs-png", png=True)
    print(f"`grokinterp figures --run {name}` ({len(run.steps)} checkpoints, {len(figs)} figures, HTML + PNG):")
    print(f"  empty cache: {times[0]};  cache warm: {times[1]}  -> {times[0].wall / times[1].wall:.1f}x")
    print(f"  in process, cache warm: analyses {reports_t}; HTML only {html_t}; HTML + PNG {png_t}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="modadd113")
    ap.add_argument("--loop-limit", type=int, default=0, help="checkpoints for the run_with_cache loop, scaled to all (0: all)")
    ap.add_argument("--no-figures", action="store_true", help="skip timing `grokinterp figures`")
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["GROKINTERP_CACHE"] = str(tmp / "cache")  # an empty cache, away from the user's
        with Timer() as t:
            full = full_resolution_copy(gi.load_run(args.run), tmp / "runs")
        print(f"built a full-resolution copy: {len(full.steps)} float32 checkpoints in {t}")
        bench_analysis(full, args.loop_limit)
        if not args.no_figures:
            bench_figures(args.run, tmp)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
