"""Phase boundaries of grokking, detected from the progress measures (Nanda et al. 2023, Sec. 5.2).

Nanda et al. read three phases off their curves: memorisation (0-1.4k epochs), circuit formation
(1.4k-9.4k) and cleanup (9.4k-14k). The rules here make those readings reproducible:

- memorisation ends at the peak of the total sum of squared weights after the training accuracy
  first reaches 99% (the weights grow while memorising and shrink once the circuit forms); while
  the test accuracy has not passed 50%, a peak at the last checkpoint is none yet (not ended); where
  the test accuracy passes 50% at or before the checkpoint where the training accuracy reaches 99%,
  the run generalised while it fit and there is no memorisation phase (None);
- cleanup starts when the test accuracy first passes 50% (the sharp fall of the test loss);
- cleanup ends when the sum of squared weights stops falling fast: the first checkpoint after the
  test accuracy passes 99% whose per-step decrease is below 10% of the fastest decrease of cleanup;
- the grokking step is where the test accuracy first reaches 99% (Power et al.'s "steps until
  generalisation").

A boundary that the run has not reached yet is None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Phases:
    memorisation_end: int | None
    cleanup_start: int | None
    cleanup_end: int | None
    grokked_step: int | None  # first step with test accuracy >= 99%
    memorised_step: int | None  # first step with train accuracy >= 99%

    def as_dict(self) -> dict:
        return asdict(self)

    def bands(self, start: int = 0) -> list[tuple[str, int, int]]:
        """(name, first step, last step) of each phase whose two boundaries were found; none without a
        memorisation end (not reached, or the run generalised while it fit: no sequence of phases)."""
        if self.memorisation_end is None:
            return []
        b = [start, self.memorisation_end, self.cleanup_start, self.cleanup_end]
        return [(name, x0, x1) for name, x0, x1 in zip(("memorisation", "circuit formation", "cleanup"), b[:-1], b[1:])
                if x0 is not None and x1 is not None and x1 > x0]


def first_step(steps: np.ndarray, condition: np.ndarray) -> int | None:
    hit = np.flatnonzero(condition)
    return int(steps[hit[0]]) if len(hit) else None


def relapses(steps, test_acc, after: int | None) -> tuple[int, int, int | None]:
    """After the grokking step ``after``: (logged steps with test accuracy below 50%, logged steps after
    it, the last such step or None). A run whose test accuracy keeps collapsing has not settled."""
    steps, test_acc = np.asarray(steps), np.asarray(test_acc)
    if after is None:
        return 0, 0, None
    later = steps > after
    low = np.flatnonzero(later & (test_acc < 0.5))
    return len(low), int(later.sum()), (int(steps[low[-1]]) if len(low) else None)


def detect_phases(steps, train_acc, test_acc, sum_squared_weights) -> Phases:
    """Phase boundaries from per-checkpoint arrays (all of shape (S,), steps ascending)."""
    steps, train_acc, test_acc, norm = (np.asarray(a, dtype=float) for a in (steps, train_acc, test_acc, sum_squared_weights))
    steps = steps.astype(int)
    memorised = first_step(steps, train_acc >= 0.99)
    grokked = first_step(steps, test_acc >= 0.99)
    cleanup_start = first_step(steps, test_acc >= 0.5)
    mem_end = None
    # test accuracy past 50% at or before the checkpoint where train accuracy reaches 99%: the run generalised while
    # it fit, and there is no memorisation phase to end (a peak at that one checkpoint would be a phase of no length)
    if memorised is not None and not (cleanup_start is not None and cleanup_start <= memorised):
        after = steps >= memorised
        until = steps <= (cleanup_start if cleanup_start is not None else steps[-1])
        window = np.flatnonzero(after & until)
        peak = window[np.argmax(norm[window])] if len(window) else None
        # a peak at the last checkpoint before any generalisation is no peak yet: the weights still grow
        if peak is not None and not (cleanup_start is None and peak == len(steps) - 1):
            mem_end = int(steps[peak])
    cleanup_end = None
    if cleanup_start is not None and grokked is not None:
        idx = np.flatnonzero(steps >= cleanup_start)
        if len(idx) > 2:
            rate = -np.diff(norm[idx]) / np.diff(steps[idx])  # decrease per step
            fastest = rate.max()
            late = np.flatnonzero((steps[idx][1:] > grokked) & (rate < 0.1 * fastest))
            if fastest > 0 and len(late):
                cleanup_end = int(steps[idx][1:][late[0]])
    return Phases(mem_end, cleanup_start, cleanup_end, grokked, memorised)
