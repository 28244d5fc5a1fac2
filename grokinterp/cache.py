"""Per-checkpoint analysis results kept between commands, so `progress` then `figures` runs each
checkpoint's forward pass once.

What a result is keyed by (any change makes it a miss, so a result is never stale):
- the checkpoint file's content: SHA-256 of its bytes (not its name, size or time);
- the run's config.json and split.json bytes, the analysis and its parameters (e.g. the key
  frequencies; the attention rate the forward used) and ``VERSION`` (raised when an analysis changes
  its numbers): these name the file.

Where: ``$GROKINTERP_CACHE/<run hash>/`` when that variable is set; else ``<run>/.cache/``; for
the shipped reference runs (never written to) ``~/.cache/grokinterp/<run hash>/`` (or under
``$XDG_CACHE_HOME``), the run hash being that of the run folder's resolved path. A cache file that
cannot be read or has an unexpected form is ignored and rewritten; one that cannot be written
(a read-only run folder) leaves the results uncached.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .store import atomic_write_bytes, checkpoint_path, is_shipped

VERSION = 2  # 2: the one-layer analysis forward reads per-token tables, the restricted loss per answer (~1e-6 relative)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_dir(run_dir: Path) -> Path:
    """Folder holding a run's cached results (see the module docstring)."""
    run_dir = Path(run_dir)
    tag = _sha256(str(run_dir.resolve()).encode())[:16]
    if os.environ.get("GROKINTERP_CACHE"):
        return Path(os.environ["GROKINTERP_CACHE"]) / tag
    if is_shipped(run_dir):
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return base / "grokinterp" / tag
    return run_dir / ".cache"


def checkpoint_hash(run_dir: Path, step: int) -> str:
    """SHA-256 of the checkpoint file's bytes."""
    return _sha256(checkpoint_path(Path(run_dir), step).read_bytes())


class ResultCache:
    """{checkpoint hash: {measure: float}} for one analysis with fixed parameters on one run."""

    def __init__(self, run, analysis: str, params: dict):
        run_dir = Path(run.path)
        setup = b"".join((run_dir / f).read_bytes() for f in ("config.json", "split.json"))
        tag = _sha256(setup + json.dumps({"analysis": analysis, "params": params, "version": VERSION}, sort_keys=True).encode())
        self.run_dir = run_dir
        self.file = cache_dir(run_dir) / f"{analysis}-{tag[:20]}.json"

    def load(self) -> dict[str, dict[str, float]]:
        """Cached rows; {} when the file is missing, unreadable or not of the expected form."""
        try:
            rows = json.loads(self.file.read_text())["rows"]
            ok = isinstance(rows, dict) and all(
                isinstance(r, dict) and all(isinstance(v, float) for v in r.values()) for r in rows.values())
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return rows if ok else {}

    def save(self, rows: dict[str, dict[str, float]]) -> None:
        try:
            atomic_write_bytes(self.file, json.dumps({"version": VERSION, "rows": rows}).encode())
        except OSError:
            pass  # a read-only run folder: results stay uncached


def progress_measures(run, key_freqs: list[int], steps: list[int] | None = None, progress=None):
    """``analysis.progress.progress_measures`` over a run's checkpoints (all by default), computing
    only the checkpoints not in the cache (``progress``: a tqdm-like callback, called per checkpoint)."""
    from dataclasses import fields

    from .analysis.progress import ProgressMeasures
    from .analysis.progress import progress_measures as compute
    from .runs import InMemoryRun

    steps = run.steps if steps is None else [run.resolve_step(s) for s in steps]
    spec = run.config.spec  # with the run's attention rate
    args = (run.task, spec, run.train_mask, key_freqs)
    if isinstance(run, InMemoryRun):  # nothing on disk to key by
        return compute(run.stacked_weights(steps), steps, *args, progress=progress)
    names = [f.name for f in fields(ProgressMeasures) if f.name not in ("steps", "key_frequencies")]
    cache = ResultCache(run, "progress", {"key_frequencies": [int(k) for k in key_freqs], "attention_rate": spec.attention_rate})
    hashes = [checkpoint_hash(run.path, s) for s in steps]
    rows = cache.load()
    missing = [i for i, h in enumerate(hashes) if not (h in rows and set(rows[h]) == set(names))]
    if progress is not None and len(steps) > len(missing):
        progress(len(steps) - len(missing))
    if missing:
        new = compute(run.stacked_weights([steps[i] for i in missing]), [steps[i] for i in missing], *args, progress=progress)
        for j, i in enumerate(missing):
            rows[hashes[i]] = {n: float(getattr(new, n)[j]) for n in names}
        cache.save(rows)
    return ProgressMeasures(steps=np.asarray(steps), key_frequencies=list(key_freqs),
                            **{n: np.array([rows[h][n] for h in hashes]) for n in names})


def key_frequencies(run, step: int, weights: dict, acts, threshold: float = 0.85):
    """``analysis.fourier.key_frequencies`` of one checkpoint of a run (``weights``: its S = 1 stack;
    ``acts``: its (p, p, d_mlp) neurons), with the relabelling null kept per checkpoint hash: the null
    costs ~1 s at p = 113 (the rest ~0.1 s), and `fourier`, `progress`, `algorithm`, `explore` and
    `figures` all ask for the last checkpoint's."""
    from .analysis import fourier as fa
    from .runs import InMemoryRun

    p = run.task.p
    null = None
    if not isinstance(run, InMemoryRun):
        cache = ResultCache(run, "neuron-null", {"draws": fa.RELABELLINGS, "first": fa.FIRST_RELABELLINGS, "seed": 0,
                                                 "settle_below": threshold / 2})
        h, rows = checkpoint_hash(run.path, step), cache.load()
        if set(rows.get(h, {})) == {"share", "draws"}:
            null = rows[h]["share"], int(rows[h]["draws"])
        else:
            null = fa.relabelled_top_share(acts, settle_below=threshold / 2)
            rows[h] = {"share": null[0], "draws": float(null[1])}
            cache.save(rows)
    return fa.key_frequencies(weights, acts, p, threshold, null=null)
