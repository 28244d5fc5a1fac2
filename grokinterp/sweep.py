"""Sweeps: tasks x fractions x seeds x weight decays x optimisers, trained as ensembles.

A sweep lives in ``<runs dir>/<sweep name>/``: ``sweep.json`` (the grid), one run directory per
member, and ``results.csv``. Members that share the task, model and budget train together as one
ensemble (up to ``max_ensemble`` at a time). Running the same sweep again skips finished members
and resumes interrupted ones. ``backend="ray"`` sends each ensemble to a Ray cluster
(``ray.init(address=...)``; a local instance when none is given).
"""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .config import ConfigError, RunConfig
from .store import atomic_write_bytes, atomic_write_json, default_runs_dir, read_json

RESULT_FIELDS = ["run", "task", "frac", "seed", "wd", "optimizer", "batch", "variant", "steps", "memorised_step", "grokked_step", "best_test_acc", "final_test_acc"]


@dataclass
class SweepSpec:
    name: str
    tasks: list[str]
    fracs: list[float]
    seeds: list[int] = field(default_factory=lambda: [0])
    wds: list[float] = field(default_factory=lambda: [1.0])
    optimizers: list[str] = field(default_factory=lambda: ["adamw"])
    batch_sizes: list[int | None] = field(default_factory=lambda: [None])
    p: int = 97
    model: str = "tiny-1l"
    lr: float = 1e-3
    steps: int = 1000
    checkpoint_every: int = 100
    weights_every: int | None = None  # keep weights only every this many steps (metrics at every checkpoint)
    checkpoint_dtype: str = "float32"
    variants: list[dict] = field(default_factory=list)  # named regularisers: RunConfig overrides, crossed with the grid

    def configs(self) -> list[RunConfig]:
        out = []
        grid = itertools.product(self.tasks, self.fracs, self.seeds, self.wds, self.optimizers, self.batch_sizes, self.variants or [{}])
        for task, frac, seed, wd, opt, bs, variant in grid:
            unknown = set(variant) - set(VARIANT_FIELDS)
            if unknown:
                raise ConfigError(f"a sweep variant can set {', '.join(VARIANT_FIELDS)}; not {', '.join(sorted(unknown))}")
            cfg = RunConfig(name="member", task=task, p=self.p, frac=frac, split_seed=seed, seed=seed, model=self.model, lr=self.lr,
                            wd=wd, optimizer=opt, batch_size=bs, steps=self.steps, checkpoint_every=self.checkpoint_every,
                            weights_every=self.weights_every, checkpoint_dtype=self.checkpoint_dtype, log_checkpoints=False,
                            description=f"sweep {self.name}").replace(**variant)
            out.append(cfg.replace(name=member_name(cfg, self.lr)))
        names = [c.name for c in out]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ConfigError(f"the grid gives run {dup} twice (variants that repeat the grid's own settings?)")
        return out


VARIANT_FIELDS = ("wd", "optimizer", "batch_size", "lr", "dropout", "update_noise", "weight_noise", "grokfast_alpha", "grokfast_lambda")


def _extras(cfg: RunConfig, sweep_lr: float) -> list[str]:
    return ([f"lr{cfg.lr:g}"] if cfg.lr != sweep_lr else []) + [
        f"{k}{getattr(cfg, k):g}" for k in ("dropout", "update_noise", "weight_noise") if getattr(cfg, k)]


def member_name(cfg: RunConfig, sweep_lr: float) -> str:
    """e.g. add_f0.3_s0_wd1_adamw_b512, add_f0.5_s1_wd0_adamw_dropout0.1 (full batch: no _b part)."""
    return "_".join([f"{cfg.task}_f{cfg.frac:g}_s{cfg.seed}_wd{cfg.wd:g}_{cfg.optimizer}"]
                    + ([f"b{cfg.batch_size}"] if cfg.batch_size else []) + _extras(cfg, sweep_lr))


def variant_label(cfg: RunConfig, sweep_lr: float) -> str:
    """The regulariser of a config, e.g. 'adamw wd=1 batch 512' or 'adamw wd=0 full batch update_noise0.01'
    (the learning rate only where it differs from the sweep's)."""
    batch = f"batch {cfg.batch_size}" if cfg.batch_size else "full batch"
    return " ".join([f"{cfg.optimizer} wd={cfg.wd:g}", batch] + _extras(cfg, sweep_lr))


def parse_variants(text: str) -> list[dict]:
    """'wd=1; wd=0,batch_size=full; wd=0,dropout=0.1' -> [{'wd': 1.0}, {'wd': 0.0, 'batch_size': None}, ...]."""
    out = []
    for chunk in filter(None, (c.strip() for c in text.split(";"))):
        v = {}
        for item in chunk.split(","):
            key, sep, value = (x.strip() for x in item.partition("="))
            if not sep or key not in VARIANT_FIELDS:
                raise ConfigError(f"bad variant item {item!r}: write key=value with key one of {', '.join(VARIANT_FIELDS)}")
            try:
                v[key] = value if key == "optimizer" else (None if value == "full" else int(value)) if key == "batch_size" else float(value)
            except ValueError:
                raise ConfigError(f"bad value in variant item {item!r}") from None
        out.append(v)
    return out


def _groups(configs: list[RunConfig], max_ensemble: int) -> list[list[RunConfig]]:
    by_key: dict[tuple, list[RunConfig]] = {}
    for c in configs:
        by_key.setdefault((c.task, c.p, c.model, c.batch_size, c.steps, c.noisy), []).append(c)
    return [g[i : i + max_ensemble] for g in by_key.values() for i in range(0, len(g), max_ensemble)]


def _status(root: Path, cfg: RunConfig) -> str:
    """'done', 'resume' (has a resume state) or 'new'."""
    d = root / cfg.name
    if not (d / "config.json").exists():
        return "new"
    from .runs import Run
    from .store import RunError

    try:
        if Run(d).metrics["step"][-1] >= cfg.steps:
            return "done"
    except (RunError, IndexError):
        pass
    return "resume" if (d / "state.safetensors").exists() else "new"


def _train_group(configs: list[RunConfig], root: str, resume: bool, device: str | None) -> list[str]:
    from .training import train

    return [str(p) for p in train(configs, runs_dir=root, resume=resume, device=device, progress=False,
                                  command="grokinterp sweep")]


def run_sweep(spec: SweepSpec, runs_dir=None, max_ensemble: int = 32, backend: str = "local", device: str | None = None,
              ray_address: str | None = None, progress: bool = True) -> Path:
    """Train every member not yet finished; write results.csv; return the sweep folder."""
    root = default_runs_dir(runs_dir) / spec.name
    if (root / "sweep.json").exists():
        saved = read_json(root / "sweep.json")
        if {**asdict(spec), **saved} != asdict(spec):  # a sweep.json older than a field lacks it
            raise ConfigError(f"sweep {spec.name!r} exists with another grid; use the same flags to resume it, or another --name")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / "sweep.json", asdict(spec))
    jobs = []
    for group in _groups(spec.configs(), max_ensemble):
        for status in ("new", "resume"):
            members = [c for c in group if _status(root, c) == status]
            if status == "new":
                for c in members:  # a member killed before its first checkpoint starts afresh
                    _clear(root / c.name)
            if members:
                jobs.append((members, status == "resume"))
    if backend == "ray":
        try:
            import ray
        except ImportError:
            raise ConfigError("--backend ray needs Ray: pip install 'grokinterp[ray]'") from None
        if not ray.is_initialized():
            ray.init(address=ray_address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(_train_group)
        ray.get([remote.remote(m, str(root), r, device) for m, r in jobs])
    elif backend == "local":
        from tqdm.auto import tqdm

        for members, resume in tqdm(jobs, desc=f"sweep {spec.name}", unit="ensemble", disable=not progress):
            _train_group(members, str(root), resume, device)
    else:
        raise ConfigError(f"unknown backend {backend!r}; choose local or ray")
    write_results(root, spec)
    return root


def _clear(run_dir: Path) -> None:
    import shutil

    if run_dir.exists():
        shutil.rmtree(run_dir)


def results(root: Path, spec: SweepSpec) -> list[dict]:
    """One row per member: steps to 99% train and test accuracy (None if never), best test accuracy."""
    from .analysis.phases import first_step
    from .runs import Run

    rows = []
    for c in spec.configs():
        m = Run(root / c.name).metrics
        rows.append({"run": c.name, "task": c.task, "frac": c.frac, "seed": c.seed, "wd": c.wd, "optimizer": c.optimizer,
                     "batch": c.batch_size or "full", "variant": variant_label(c, spec.lr), "steps": int(m["step"][-1]),
                     "memorised_step": first_step(m["step"], m["train_acc"] >= 0.99),
                     "grokked_step": first_step(m["step"], m["test_acc"] >= 0.99),
                     "best_test_acc": float(m["test_acc"].max()), "final_test_acc": float(m["test_acc"][-1])})
    return rows


def write_results(root: Path, spec: SweepSpec) -> list[dict]:
    rows = results(root, spec)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RESULT_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows({k: ("" if r[k] is None else r[k]) for k in RESULT_FIELDS} for r in rows)
    atomic_write_bytes(root / "results.csv", buf.getvalue().encode())
    return rows


def median_steps_to_generalise(rows: list[dict], by: str = "task") -> dict[str, tuple[list[float], list[float]]]:
    """{group: (fractions, median steps until 99% test accuracy)}; a fraction whose median run never
    got there is left out (Power et al. Fig. 1 centre)."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for key in sorted({r[by] for r in rows}):
        fr, med = [], []
        for f in sorted({r["frac"] for r in rows}):
            sel = [r for r in rows if r["frac"] == f and r[by] == key]
            steps = np.array([np.inf if r["grokked_step"] is None else r["grokked_step"] for r in sel], dtype=float)
            if len(steps) and np.isfinite(np.median(steps)):
                fr.append(f)
                med.append(float(np.median(steps)))
        out[key] = (fr, med)
    return out


def best_accuracy(rows: list[dict], by: str = "task") -> dict[str, tuple[list[float], list[float]]]:
    """{group: (fractions, mean over seeds of the best test accuracy within the budget)}."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for key in sorted({r[by] for r in rows}):
        fracs = sorted({r["frac"] for r in rows if r[by] == key})
        out[key] = (fracs, [float(np.mean([r["best_test_acc"] for r in rows if r[by] == key and r["frac"] == f])) for f in fracs])
    return out
