"""Phase changes in loss curves (Nanda's grokking analysis: 5-digit addition, induction heads).

A loss curve has its phase change at the first logged step where the loss falls below
``frac`` (default 10%) of its initial value; several groups (answer digits) changing at clearly
different steps are separate phase changes. An induction head has formed once its induction
score (attention from a repeated token to the token after its previous occurrence) passes 0.5.
"""

from __future__ import annotations

import numpy as np


def phase_change_step(steps, loss, frac: float = 0.1) -> int | None:
    steps, loss = np.asarray(steps), np.asarray(loss, dtype=float)
    hit = np.flatnonzero(loss < frac * loss[0])
    return int(steps[hit[0]]) if len(hit) else None


def phase_changes(metrics: dict[str, np.ndarray], prefix: str = "test_", frac: float = 0.1) -> dict[str, int | None]:
    """{group: phase-change step} for every column ``<prefix><group>``."""
    return {k[len(prefix):]: phase_change_step(metrics["step"], v, frac) for k, v in metrics.items() if k.startswith(prefix)}


def distinct_steps(steps: list[int | None], min_gap_frac: float = 0.1) -> int:
    """How many clearly separate steps: sorted steps more than min_gap_frac x the later one apart."""
    s = sorted(x for x in steps if x is not None)
    return sum(1 for i, x in enumerate(s) if i == 0 or x - s[i - 1] > min_gap_frac * x)


def induction_formation_step(metrics: dict[str, np.ndarray], threshold: float = 0.5, prefix: str = "induction_head") -> int | None:
    """First logged step where some head's score (columns ``prefix{h}``) exceeds ``threshold``.

    ``induction_head{h}``: the textbook score (offset 1); ``induction_best{h}``: the best over offsets.
    """
    cols = [v for k, v in metrics.items() if k.startswith(prefix)]
    if not cols:
        return None
    best = np.max(np.stack(cols), axis=0)
    hit = np.flatnonzero(best > threshold)
    return int(metrics["step"][hit[0]]) if len(hit) else None
