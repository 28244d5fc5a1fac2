"""Copy a run into a smaller one for shipping: fewer checkpoints, half-precision storage.

The copy keeps config, split and metrics (every logged step), the early log-spaced checkpoints,
every ``every``-th step and the last one, stored as ``dtype``; chosen steps are also kept in
float32 under ``full_precision/`` so tests can check that analyses survive the rounding.
The source run is only read.
"""

from __future__ import annotations

import numbers
import shutil
from pathlib import Path

from .config import ConfigError
from .runs import Run
from .store import RunError, atomic_write_json, atomic_write_tensors, checkpoint_path, read_json, read_tensors


def export_run(run: Run, out: Path, every: int, dtype: str = "float16", full_precision_steps: tuple[int, ...] = (),
               thin_after: int | None = None, thin_every: int | None = None) -> Path:
    """Write the thinned copy of ``run`` to ``out`` (a new run directory) and return it.

    Keeps every ``every``-th step, or every ``thin_every``-th after step ``thin_after`` (both or neither);
    ``every`` and ``thin_every`` at least 1, else ConfigError (a ValueError) before anything is read."""
    import torch

    for name, value in (("every", every), ("thin_every", thin_every)):
        if (value is not None or name == "every") and not (isinstance(value, numbers.Integral) and value >= 1):
            raise ConfigError(f"{name} keeps every N-th step: N must be at least 1, got {value}")
    if (thin_after is None) != (thin_every is None):
        raise ConfigError(f"thin_after and thin_every go together (after step thin_after keep every thin_every-th step), "
                          f"got thin_after {thin_after} and thin_every {thin_every}")
    out = Path(out)
    if out.resolve() == run.path.resolve():
        raise RunError("export needs a different output folder than the run itself")
    if (out / "config.json").exists():
        raise RunError(f"{out} already holds a run; remove it first or choose another --out")
    steps = run.steps
    first_regular = run.config.checkpoint_every
    stride = lambda s: thin_every if thin_after is not None and s > thin_after else every  # noqa: E731
    keep = [s for s in steps if s < first_regular or s % stride(s) == 0 or s == steps[-1]]
    for s in full_precision_steps:
        run.resolve_step(s)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("split.json", "metrics.csv"):
        shutil.copyfile(run.path / name, out / name)
    record = read_json(run.path / "config.json")
    record["export"] = {"from": str(run.path.name), "every": every, "thin_after": thin_after, "thin_every": thin_every,
                        "dtype": dtype, "full_precision_steps": list(full_precision_steps)}
    for s in keep:
        tensors, _ = read_tensors(checkpoint_path(run.path, s))
        atomic_write_tensors(checkpoint_path(out, s), {k: v.to(getattr(torch, dtype)) for k, v in tensors.items()}, {"step": str(s)})
    for s in full_precision_steps:
        tensors, _ = read_tensors(checkpoint_path(run.path, s))
        atomic_write_tensors(out / "full_precision" / f"step_{s:08d}.safetensors", {k: v.float() for k, v in tensors.items()}, {"step": str(s)})
    atomic_write_json(out / "config.json", record)  # last: the copy is a run only once complete
    return out


def full_precision_weights(run: Run, step: int) -> dict:
    """The float32 copy of a checkpoint kept by ``export_run``."""
    tensors, _ = read_tensors(run.path / "full_precision" / f"step_{step:08d}.safetensors")
    return {k: v.float() for k, v in tensors.items()}
