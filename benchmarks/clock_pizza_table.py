"""Clock or pizza over many runs: one CSV row per run (and step), as docs/data/cpu_clock_pizza_add59.csv.

    python benchmarks/clock_pizza_table.py RUN[@STEP] ... [--runs-dir DIR] [--triples 2000] --out FILE.csv

Each row: the run, its model and attention rate (ours, and the paper's for the three keys the `=`
position sees), train and test accuracy at the step (from metrics.csv), the key frequencies, the
whole model's gradient symmetricity, share of cosines above 0.99 and distance irrelevance, each key
frequency's verdict with (symmetricity / distance irrelevance, share of the key-frequency logit
variance; "minor" below ``MIN_CIRCLE_SHARE``) and the verdict of `grokinterp algorithm`.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

import grokinterp as gi
from grokinterp.algorithm_report import algorithm_report
from grokinterp.analysis.algorithm import MIN_CIRCLE_SHARE


def paper_rate(alpha: float, n_keys: int = 3) -> float:
    """Zhong et al.'s attention rate for ours where a query sees n keys (docs/analyses.md)."""
    return n_keys * alpha / (1 + (n_keys - 1) * alpha)


def row(label: str, run, step: int | None, triples: int) -> dict:
    rep = algorithm_report(run, step, n_triples=triples).payload
    m = run.metrics
    i = int(np.searchsorted(m["step"], rep["step"]))
    per = " ".join(f"{k}:{v['verdict']}({v['gradient_symmetricity']:.2f}/{v['distance_irrelevance']:.2f}, "
                   f"{v['logit_share']:.1%}{', minor' if v['logit_share'] < MIN_CIRCLE_SHARE else ''})"
                   for k, v in rep["per_frequency"].items())
    o = rep["overall"]
    return {"run": label, "p": run.task.p, "model": run.config.model, "attention_rate": rep["attention_rate"],
            "attention_rate_paper_equiv": round(paper_rate(rep["attention_rate"]), 2), "step": rep["step"],
            "train_acc": round(float(m["train_acc"][i]), 4), "test_acc": round(float(m["test_acc"][i]), 4),
            "key_frequencies": " ".join(map(str, rep["key_frequencies"])),
            "gradient_symmetricity": round(o["gradient_symmetricity"], 3), "share_above_0_99": round(o["symmetric_share"], 3),
            "distance_irrelevance": round(o["distance_irrelevance"], 3), "per_frequency": per, "verdict": rep["verdict"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run name or folder, optionally @STEP (default: the last checkpoint)")
    ap.add_argument("--runs-dir", default=None)
    ap.add_argument("--triples", type=int, default=2000)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = []
    for spec in args.runs:
        name, _, step = spec.partition("@")
        run = gi.load_run(name, args.runs_dir)
        rows.append(row(name, run, int(step) if step else None, args.triples))
        print(f"{spec}: {rows[-1]['verdict']}  {rows[-1]['per_frequency']}", flush=True)
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} rows -> {args.out}")


if __name__ == "__main__":
    main()
