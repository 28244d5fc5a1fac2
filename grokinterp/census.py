"""A census of group runs: per seed, the irrep its output weights settle in, the coset class that
irrep predicts, and the class the weights show (``analysis.census.census_row``), as a table,
a summary and a figure. ``grokinterp census --sweep NAME`` runs it on a sweep of group runs.

A member is ``{"run": name, "seed", "frac", "steps": [saved steps], "X": (S, n, d) W_U^T at those
steps, "metrics": {"step", "train_acc", "test_acc"} arrays}``, so a census can also be taken of
output weights that travelled without the rest of their checkpoints.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .analysis.census import census_row
from .analysis.phases import first_step
from .groups import FiniteGroup
from .report import Report
from .store import RunError

CSV_FIELDS = ["run", "seed", "frac", "steps", "memorised_step", "grokked_step", "final_test_acc", "best_test_acc", "irrep",
              "irrep_partition", "irrep_share", "irrep_share_shuffled", "irrep_dominant", "predicted_classes", "best_class", "best_order",
              "n_cosets", "score", "z_vs_random", "variance_ratio", "shuffled_best_variance_ratio", "stands_out", "irrep_predicted_score", "kmeans_coset_fraction", "clusters_into_cosets", "agrees",
              "largest_stabiliser", "cosets_first_recovered_at"]


def members_of_sweep(root: Path) -> tuple[list[dict], FiniteGroup, list[str]]:
    """The members of a sweep folder whose task is a group, with W_U at every saved step, and notes
    (one per member) on those left out (not a group task, never trained past step 0) or unfinished
    (counted as they stand)."""
    from .runs import Run

    members, group, notes = [], None, []
    for d in sorted(p for p in Path(root).iterdir() if (p / "config.json").is_file()):
        run = Run(d)
        if run.task.group is None:
            notes.append(f"{d.name}: left out, not a group task ({run.task.formula})")
            continue
        if run.steps[-1:] in ([], [0]):
            notes.append(f"{d.name}: left out, never trained (no checkpoint after step 0)")
            continue
        group = group or run.task.group
        metrics = run.metrics
        if int(metrics["step"][-1]) < run.config.steps:
            notes.append(f"{d.name}: unfinished, counted as it stands (last logged step {int(metrics['step'][-1]):,} of "
                         f"{run.config.steps:,}; resume the sweep to finish it)")
        members.append({"run": d.name, "seed": run.config.seed, "frac": run.config.frac, "steps": run.steps,
                        "X": run.output_vectors(), "metrics": metrics})
    if not members:
        raise RunError(f"{root} holds no group runs trained past step 0; a census needs a sweep of group tasks (e.g. --tasks s5_mul)"
                       + "".join(f"\n  {n}" for n in notes))
    return members, group, notes


def census_table(members: list[dict], group: FiniteGroup, progress=None) -> list[dict]:
    """One row per member (``CSV_FIELDS``): training milestones and ``census_row``'s verdict."""
    rows = []
    for m in members:
        met = m["metrics"]
        rows.append({"run": m["run"], "seed": m["seed"], "frac": m["frac"], "steps": int(met["step"][-1]),
                     "memorised_step": first_step(met["step"], met["train_acc"] >= 0.99),
                     "grokked_step": first_step(met["step"], met["test_acc"] >= 0.99),
                     "final_test_acc": float(met["test_acc"][-1]), "best_test_acc": float(met["test_acc"].max()),
                     **census_row(m["X"], group, m["steps"])})
        if progress is not None:
            progress(1)
    return rows


def census_report(rows: list[dict], title: str, notes: list[str] = ()) -> Report:
    """Counts per irrep and per coset class, agreement of prediction and measurement, and the figure;
    ``notes``: members left out or unfinished (``members_of_sweep``), printed after the counts."""
    from . import figures as F

    n = len(rows)
    grokked = [r for r in rows if r["grokked_step"] is not None]
    dominant = Counter(f"{r['irrep']} {r['irrep_partition']}".strip() if r["irrep_dominant"] else "no dominant irrep" for r in grokked)
    clustered = [r for r in grokked if r["clusters_into_cosets"]]
    standing = [r for r in grokked if r["stands_out"]]
    classes = Counter(r["best_class"] for r in clustered)
    agree = [r for r in grokked if r["irrep_dominant"]]
    fmt = lambda c: ", ".join(f"{k} {v}" for k, v in c.most_common()) or "none"  # noqa: E731
    lines = [f"{title}: {n} seeds, {len(grokked)} reached 99% test accuracy",
             f"  W_U's dominant irrep (share > 50% and above its vectors shuffled over the elements) among those: {fmt(dominant)}",
             f"  the best partition stands out of W_U's vectors shuffled over the elements in {len(standing)}: "
             f"{fmt(Counter(r['best_class'] for r in standing))}",
             f"  k-means recovers the cosets of the best class in {len(clustered)}: {fmt(classes)}"]
    if agree:
        lines += [f"  best class is a stabiliser of the dominant irrep in {sum(r['agrees'] for r in agree)} of {len(agree)} "
                  f"(the largest one in {sum(r['largest_stabiliser'] for r in agree)})",
                  f"  per best class, among the {len(agree)} with a dominant irrep:"]
    for cls in sorted({r["best_class"] for r in agree}):
        seeds = [r for r in agree if r["best_class"] == cls]
        lines.append(f"    {cls}: seeds {', '.join(str(r['seed']) for r in seeds)} "
                     f"(k-means recovers its cosets in {sum(r['clusters_into_cosets'] for r in seeds)})")
    lines += [f"  {note}" for note in notes]
    payload = {"title": title, "seeds": n, "grokked": len(grokked), "dominant_irrep": dict(dominant),
               "clustered_best_class": dict(classes), "notes": list(notes), "rows": rows}
    figures = {"census": F.census_bars(rows, title)} if grokked else {}  # no empty figure: the lines say why
    return Report(payload, lines, figures)


def write_csv(rows: list[dict], path: Path) -> None:
    import csv
    import io

    from .store import atomic_write_bytes

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows({k: ("" if r[k] is None else round(r[k], 4) if isinstance(r[k], float) else r[k]) for k in CSV_FIELDS} for r in rows)
    atomic_write_bytes(path, buf.getvalue().encode())

