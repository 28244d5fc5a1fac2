"""Reading run directories: ``load_run(name)`` -> ``Run`` with config, task, split, metrics, models.

    run = load_run("modadd113")
    run.steps                        # checkpoint steps on disk
    run.metrics["test_acc"]          # numpy arrays, one entry per logged step
    model = run.model(step=10_000)   # a HookedTransformer (loaded lazily)
    W = run.stacked_weights()        # {name: (n_checkpoints, ...)} for batched analyses
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .config import ConfigError, RunConfig
from .store import (
    METRIC_FIELDS,
    RunError,
    checkpoint_path,
    checkpoint_steps_on_disk,
    find_run_dir,
    read_json,
    read_metrics,
    read_tensors,
    search_dirs,
    validate_run_name,
)
from .tasks import Task


@dataclass
class Run:
    """One run directory opened for reading. Nothing is loaded until asked for."""

    path: Path

    def __post_init__(self):
        self.path = Path(self.path)  # a str works too

    @cached_property
    def record(self) -> dict:
        """config.json: {"config": {...}, "command": ..., ...}."""
        record = read_json(self.path / "config.json")
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise RunError(f"{self.path / 'config.json'} is corrupt (not a run record with a \"config\" object); restore it or retrain the run")
        return record

    @cached_property
    def config(self) -> RunConfig:
        if self.kind != "table":
            raise RunError(f"run {self.name} is a {self.kind} run; use `grokinterp phases --run {self.name}`")
        try:
            return RunConfig.from_dict(self.record["config"])
        except (KeyError, TypeError, ConfigError) as e:
            raise RunError(f"{self.path / 'config.json'} is corrupt ({e}); restore it or retrain the run") from None

    @property
    def name(self) -> str:
        path = self.path.resolve() if self.path.name in ("", "..") else self.path  # `--run .` inside the run
        return path.name

    @property
    def command(self) -> str:
        return self.record.get("command", "")

    @cached_property
    def task(self) -> Task:
        return self.config.make_task()

    @cached_property
    def train_idx(self) -> np.ndarray:
        """Indices into ``task.pairs`` of the training pairs."""
        split = read_json(self.path / "split.json")
        try:
            idx = np.asarray(split["train"], dtype=np.int64)
            ok = split["n_pairs"] == len(self.task) and idx.ndim == 1 and len(idx) and idx.min() >= 0 and idx.max() < len(self.task)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise RunError(f"{self.path / 'split.json'} is corrupt or does not fit task {self.task.name}; restore it or retrain the run")
        return idx

    @cached_property
    def test_idx(self) -> np.ndarray:
        return np.setdiff1d(np.arange(len(self.task)), self.train_idx)

    @cached_property
    def train_mask(self) -> np.ndarray:
        """Shape (N,): True for training pairs."""
        m = np.zeros(len(self.task), bool)
        m[self.train_idx] = True
        return m

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        """Columns step, train_loss, train_acc, test_loss, test_acc as arrays (read afresh each time); a
        sequence run's are step and its per-group losses and scores (``grokinterp.sequence_training``)."""
        rows = read_metrics(self.path / "metrics.csv", METRIC_FIELDS if self.kind == "table" else None)
        keys = rows[0].keys() if rows else ["step", "train_loss", "train_acc", "test_loss", "test_acc"]
        return {k: np.array([r[k] for r in rows]) for k in keys}

    @property
    def steps(self) -> list[int]:
        """Checkpoint steps on disk (a run still training gains more)."""
        return checkpoint_steps_on_disk(self.path)

    def resolve_step(self, step: int | None, on_disk: list[int] | None = None) -> int:
        """The checkpoint step ``step`` names (None or -1: the last); ``on_disk``: the steps, when listed already."""
        if step is not None and (not isinstance(step, numbers.Integral) or isinstance(step, bool)):
            raise TypeError(f"step must be an integer (a checkpoint step, or None or -1 for the last), got {step!r}")
        steps = self.steps if on_disk is None else on_disk
        if not steps:
            raise RunError(f"run {self.name} has no checkpoints yet; train it first")
        if step is None or step == -1:
            return steps[-1]
        if step not in steps:
            near = min(steps, key=lambda s: abs(s - step))
            raise RunError(f"run {self.name} has no checkpoint at step {step}; the nearest is {near}")
        return int(step)

    def weights(self, step: int | None = None, names: list[str] | None = None) -> dict:
        """Parameters of one checkpoint (all, or only ``names``) as float32 tensors, checked against the
        config; a tensor that is not floating point or holds NaN/inf is refused by name."""
        return self._read_checkpoint(self.resolve_step(step), names)

    def _read_checkpoint(self, step: int, names: list[str] | None) -> dict:
        path = checkpoint_path(self.path, step)
        tensors, _ = read_tensors(path, names)
        self._check_shapes(tensors, step, partial=names is not None)
        for k, v in tensors.items():
            if not v.is_floating_point():
                raise RunError(f"{path}: tensor {k} is {str(v.dtype).removeprefix('torch.')}, not floating point; "
                               "the checkpoint is corrupt: restore it or retrain the run")
        weights = {k: v.float() for k, v in tensors.items()}
        for k, v in weights.items():
            if not np.isfinite(v.numpy()).all():  # numpy: single-threaded, many times faster than torch here on a busy CPU
                raise RunError(f"{path}: tensor {k} holds NaN or infinite values; the run diverged or the file is corrupt, "
                               "so this checkpoint cannot be analysed")
        return weights

    def stacked_weights(self, steps: list[int] | None = None, names: list[str] | None = None) -> dict:
        """{name: tensor (n_steps, ...)} over checkpoints (all by default) for batched analyses."""
        import torch

        on_disk = self.steps  # listed once: a glob of the checkpoint folder
        self.resolve_step(None, on_disk)  # RunError when there are no checkpoints yet
        steps = on_disk if steps is None else [self.resolve_step(s, on_disk) for s in steps]
        per_step = [self._read_checkpoint(s, names) for s in steps]
        return {k: torch.stack([w[k] for w in per_step]) for k in per_step[0]}

    def output_vectors(self):
        """(S, d_vocab_out, d_model): W_U^T at every checkpoint, one row per output token (group element)."""
        return self.stacked_weights(names=["unembed.W_U"])["unembed.W_U"].transpose(1, 2)

    @cached_property
    def _expected_shapes(self) -> dict:
        from .models import parameter_shapes

        t = self.task
        return parameter_shapes(self.config.model, t.d_vocab, t.n, t.n_ctx)

    def _check_shapes(self, tensors: dict, step: int, partial: bool = False) -> None:
        expected = self._expected_shapes
        got = {k: tuple(v.shape) for k, v in tensors.items()}
        if partial:
            expected = {k: expected.get(k) for k in got}
        if got != expected:
            bad = sorted(set(expected) ^ set(got)) or [k for k in expected if expected[k] != got[k]]
            raise RunError(
                f"checkpoint step {step} of run {self.name} does not match its config ({', '.join(bad[:3])}); "
                "it was written by another model: retrain the run or fix config.json"
            )

    def _empty_model(self, device: str = "cpu"):
        from .models import build_model

        t = self.task
        return build_model(self.config.model, t.d_vocab, t.n, t.n_ctx, seed=self.config.seed, device=device)

    def model(self, step: int | None = None, device: str = "cpu"):
        """The checkpoint at ``step`` (default: the last) as a TransformerLens HookedTransformer."""
        import torch

        if self.config.attention_rate != 1:
            raise RunError(f"run {self.name} mixes uniform attention in (attention rate {self.config.attention_rate:g}), which "
                           "HookedTransformer cannot express; use the weights and `grokinterp algorithm` instead")
        weights = self.weights(step)
        ht = self._empty_model(device)
        with torch.no_grad():
            for name, p in ht.named_parameters():
                p.copy_(weights[name])
        return ht.eval()

    @property
    def kind(self) -> str:
        """'table' (algorithmic tables, RunConfig) or 'sequence' (grokinterp.sequence_training)."""
        return self.record.get("kind", "table")

    def explore(self, height: int = 1200):
        """The training explorer (``grokinterp explore``) inline in Jupyter: a slider over the checkpoints."""
        from .explore import explorer_html, inline

        return inline(explorer_html(self), height)

    def summary(self) -> dict:
        if self.kind == "sequence":
            cfg = self.record["config"]
            rows = read_metrics(self.path / "metrics.csv", fields=None)
            test = [v for k, v in rows[-1].items() if k.startswith("test_")] if rows else []
            if not all(k in cfg for k in ("task", "model", "steps")):
                raise RunError(f"{self.path / 'config.json'} is corrupt (no task, model or steps); restore it or retrain the run")
            return {"name": self.name, "task": cfg["task"], "model": cfg["model"], "steps_done": rows[-1]["step"] if rows else 0,
                    "steps_planned": cfg["steps"], "checkpoints": len(self.steps), "test_loss": float(np.mean(test)) if test else None}
        m = self.metrics
        steps = self.steps
        out = {"name": self.name, "task": self.task.formula, "model": self.config.model, "frac": self.config.frac,
               "steps_done": int(m["step"][-1]) if len(m["step"]) else 0, "steps_planned": self.config.steps,
               "checkpoints": len(steps)}
        if len(m["step"]):
            out.update(train_acc=float(m["train_acc"][-1]), test_acc=float(m["test_acc"][-1]))
        return out


def load_run(name: str | Path, runs_dir: str | Path | None = None) -> Run:
    """Open a run by name (looked up in runs_dir / $GROKINTERP_RUNS, ./checkpoints, the repo's) or by
    path (a Path, '.', '..', or a string with a '/'; a plain name that is a run folder here also opens).
    A sweep member is named ``SWEEP/MEMBER`` (e.g. ``sw/add_f0.7_s0_wd1_adamw``), looked up in the same
    folders when no such path exists here."""
    if not isinstance(name, (str, Path)):
        raise TypeError(f"a run is named by a string or a path, got {name!r}")
    path = Path(name)
    if isinstance(name, Path) or "/" in name or os.sep in name or name in (".", ".."):
        if _is_run_dir(path):
            return Run(path)
        member = find_sweep_member(str(name), runs_dir)
        if member is not None:
            return Run(member)
        raise RunError(f"no run directory at {name} (a run directory holds a config.json; a sweep member is named "
                       "SWEEP/MEMBER); see `grokinterp runs` for what exists")
    validate_run_name(name)
    if (path / "config.json").is_file():
        return Run(path)
    found = find_run_dir(name, runs_dir)
    if found is None:
        from .config import PRESETS

        where = ", ".join(str(d) for d in search_dirs(runs_dir))
        if name in PRESETS:
            hint = f"train it with `grokinterp train --run {name}`"
        elif (sweep := find_sweep(name, runs_dir)) is not None:
            member = next((d.name for d in sorted(sweep.iterdir()) if _is_run_dir(d)), "MEMBER")
            hint = f"{name} is a sweep: open one of its runs as SWEEP/MEMBER, e.g. {name}/{member} (see `grokinterp runs`)"
        else:
            hint = "see `grokinterp runs` for what exists"
        raise RunError(f"no run named {name!r} in {where}; {hint}")
    return Run(found)


def _is_run_dir(path: Path) -> bool:
    try:
        return (path / "config.json").is_file()
    except OSError as e:  # a name too long for the file system, and the like
        raise RunError(f"cannot open run directory {path}: {e.strerror}") from None


def find_sweep_member(name: str, runs_dir: str | Path | None = None) -> Path | None:
    """The run directory of sweep member ``SWEEP/MEMBER`` in the first search folder that holds one,
    or None (also for a name that is not two plain folder names joined by '/')."""
    parts = name.split("/")
    if len(parts) != 2:
        return None
    try:
        for part in parts:
            validate_run_name(part)
    except ValueError:
        return None
    return next((sweep / parts[1] for sweep in _sweep_folders(parts[0], runs_dir) if _is_run_dir(sweep / parts[1])), None)


def _sweep_folders(name: str, runs_dir: str | Path | None = None) -> Iterator[Path]:
    """The folders called ``name`` that hold a sweep.json, one per search folder, in search order (the
    first is the sweep `grokinterp runs` lists under that name); looked into one at a time."""
    return (d / name for d in search_dirs(runs_dir) if (d / name / "sweep.json").is_file())


def find_sweep(name: str | Path, runs_dir: str | Path | None = None) -> Path | None:
    """The folder of sweep ``name``: ``name`` itself when it is a path to a sweep folder (one with a
    sweep.json), else the first search folder's ``name`` that is one; None when there is none."""
    path = Path(name)
    return path if (path / "sweep.json").is_file() else next(_sweep_folders(str(name), runs_dir), None)


def _readable_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a folder that cannot be looked into (permission denied): not listed as a sweep or member
        return False


def list_sweeps(runs_dir: str | Path | None = None) -> list[dict]:
    """Every sweep folder (one with a sweep.json) in the search folders, first folder winning for a
    repeated name: {"name", "path", "members": [member names that hold a config.json]}."""
    seen, out = set(), []
    for d in search_dirs(runs_dir):
        if not d.is_dir():
            continue
        for sub in sorted(d.iterdir()):
            if sub.name in seen or not _readable_file(sub / "sweep.json"):
                continue
            seen.add(sub.name)
            members = sorted(m.name for m in sub.iterdir() if _readable_file(m / "config.json"))
            out.append({"name": sub.name, "path": str(sub), "members": members})
    return out


def list_runs(runs_dir: str | Path | None = None) -> list[Run]:
    """Every run directory in the search folders (first folder wins for a repeated name); a folder
    that cannot be looked into is listed too, so that reading it says why."""
    seen, out = set(), []
    for d in search_dirs(runs_dir):
        if not d.is_dir():
            continue
        for sub in sorted(d.iterdir()):
            try:
                is_run = (sub / "config.json").is_file()
            except PermissionError:
                is_run = True
            if is_run and sub.name not in seen:
                seen.add(sub.name)
                out.append(Run(sub))
    return out


class InMemoryRun(Run):
    """A run held in memory (``grokinterp.from_models``): the ``Run`` surface, nothing on disk.

    ``weights``: {step: {parameter name: tensor}} in TransformerLens names and shapes; ``train_idx``:
    indices into ``config.make_task().pairs``; ``metrics``: rows like metrics.csv's. ``path`` is only
    the run's name (figures from the CLI need a run directory: write one with ``grokinterp import``).
    """

    def __init__(self, config: RunConfig, weights: dict[int, dict], train_idx: np.ndarray, metrics: list[dict],
                 record: dict | None = None):
        super().__init__(Path(config.name))
        self._weights = {int(s): w for s, w in sorted(weights.items())}
        self.metric_rows = metrics
        self.__dict__.update(config=config, train_idx=np.asarray(train_idx, dtype=np.int64),
                             record={"config": config.to_dict(), "command": "", **(record or {})})
        if not self._weights:
            raise RunError(f"run {self.name} has no checkpoints")
        for step, w in self._weights.items():
            self._check_shapes(w, step)

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        keys = self.metric_rows[0].keys() if self.metric_rows else ["step", "train_loss", "train_acc", "test_loss", "test_acc"]
        return {k: np.array([r[k] for r in self.metric_rows]) for k in keys}

    @property
    def steps(self) -> list[int]:
        return list(self._weights)

    def _read_checkpoint(self, step: int, names: list[str] | None) -> dict:
        w = self._weights[step]
        # in the order a run directory gives them (safetensors sorts names), so sums over parameters agree
        return {k: w[k].float() for k in (sorted(w) if names is None else names)}
