"""Sweeps: tasks x fractions x seeds x weight decays x optimisers x batch sizes x attention rates, trained as ensembles.

A sweep lives in ``<runs dir>/<sweep name>/``: ``sweep.json`` (the grid), one run directory per
member, and ``results.csv``. Members that share the task, model and budget train together as one
ensemble (up to ``max_ensemble`` at a time). Running the same sweep again skips finished members
and resumes interrupted ones. ``backend="ray"`` sends each ensemble to a Ray cluster
(``ray.init(address=...)``; a local instance when none is given).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .config import ConfigError, RunConfig
from .store import RunError, atomic_write_bytes, atomic_write_json, default_runs_dir, read_json, validate_run_name
from .tasks import TASKS

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
    attention_rates: list[float] = field(default_factory=lambda: [1.0])  # Zhong et al.'s alpha (RunConfig.attention_rate)
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
        grid = itertools.product(self.tasks, self.fracs, self.seeds, self.wds, self.optimizers, self.batch_sizes, self.attention_rates,
                                 self.variants or [{}])
        for task, frac, seed, wd, opt, bs, rate, variant in grid:
            unknown = set(variant) - set(VARIANT_FIELDS)
            if unknown:
                raise ConfigError(f"a sweep variant can set {', '.join(VARIANT_FIELDS)}; not {', '.join(sorted(unknown))}")
            cfg = RunConfig(name="member", task=task, p=self.p, frac=frac, split_seed=seed, seed=seed, model=self.model, lr=self.lr,
                            wd=wd, optimizer=opt, batch_size=bs, attention_rate=rate, steps=self.steps, checkpoint_every=self.checkpoint_every,
                            weights_every=self.weights_every, checkpoint_dtype=self.checkpoint_dtype, log_checkpoints=False,
                            description=f"sweep {self.name}").replace(**variant)
            out.append(cfg.replace(name=member_name(cfg, self.lr)))
        names = [c.name for c in out]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ConfigError(f"the grid gives run {dup} twice (variants that repeat the grid's own settings?)")
        return out


VARIANT_FIELDS = ("wd", "optimizer", "batch_size", "lr", "dropout", "update_noise", "weight_noise", "grokfast_alpha", "grokfast_lambda",
                  "attention_rate")


def _extras(cfg: RunConfig, sweep_lr: float) -> list[str]:
    return ([f"lr{cfg.lr:g}"] if cfg.lr != sweep_lr else []) + [
        f"{k}{getattr(cfg, k):g}" for k in ("dropout", "update_noise", "weight_noise") if getattr(cfg, k)] + (
        [f"attention_rate{cfg.attention_rate:g}"] if cfg.attention_rate != 1 else [])


def member_name(cfg: RunConfig, sweep_lr: float) -> str:
    """e.g. add_f0.3_s0_wd1_adamw_b512, add_f0.5_s1_wd0_adamw_dropout0.1, add_f0.8_s2_wd2_adamw_attention_rate0.25
    (full batch: no _b part; attention rate 1: no attention_rate part)."""
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


def _jobs(configs: list[RunConfig], max_ensemble: int, workers: int = 1) -> list[list[RunConfig]]:
    """Ensembles to train: members that share task, model, batch size and budget, at most
    ``max_ensemble`` together, and split so that ``workers`` processes all get one."""
    by_key: dict[tuple, list[RunConfig]] = {}
    for c in configs:
        by_key.setdefault((c.task, c.p, c.model, c.batch_size, c.steps, c.noisy), []).append(c)
    size = max(1, min(max_ensemble, -(-len(configs) // max(1, workers))))
    return [g[i : i + size] for g in by_key.values() for i in range(0, len(g), size)]


def _status(root: Path, cfg: RunConfig) -> str:
    """'done', 'resume' (has a resume state) or 'new'."""
    d = root / cfg.name
    if not (d / "config.json").exists():
        return "new"
    if _steps_done(d) >= cfg.steps:
        return "done"
    return "resume" if (d / "state.safetensors").exists() else "new"


def _steps_done(run_dir: Path) -> int:
    """The last step in a run's metrics.csv (0 when there is none): read from the file's tail, so a
    progress bar can poll many runs cheaply."""
    try:
        with open(run_dir / "metrics.csv", "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 512))
            return int(f.read().rstrip().rsplit(b"\n", 1)[-1].split(b",", 1)[0])
    except (OSError, ValueError):
        return 0


def _train_job(configs: list[RunConfig], root: str, device: str | None, threads: int | None = None) -> tuple[list[str], str]:
    """Train the unfinished members of one job, deciding new / resume when the job starts (so a job
    that Ray retries after a node died resumes what the dead node left). Returns (members, node)."""
    import torch

    from .training import train

    if threads:
        torch.set_num_threads(threads)
    root_path = Path(root)
    for status in ("new", "resume"):
        members = [c for c in configs if _status(root_path, c) == status]
        if status == "new":
            for c in members:  # a member killed before its first checkpoint starts afresh
                _clear(root_path / c.name)
        if members:
            train(members, runs_dir=root, resume=status == "resume", device=device, progress=False, command="grokinterp sweep")
    return [c.name for c in configs], _node_id()


def _node_id() -> str:
    """The Ray node id inside a Ray worker, else the host name."""
    import socket
    import sys

    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    return socket.gethostname()


def _watch(root: Path, configs: list[RunConfig], bar, stop, every_s: float = 1.0) -> None:
    """Keep ``bar`` at the member-steps done (from each member's metrics.csv) until ``stop`` is set."""
    done = {c.name: min(_steps_done(root / c.name), c.steps) for c in configs}
    pending = {c.name: c.steps for c in configs if done[c.name] < c.steps}
    while not stop.wait(every_s):
        for name, steps in list(pending.items()):
            done[name] = min(_steps_done(root / name), steps)
            if done[name] >= steps:
                del pending[name]
        bar.n = sum(done.values())
        bar.refresh()


def default_workers(device: str | None = None) -> int:
    """Processes for a local sweep: one per CPU core on a CPU, where parallel processes beat one
    multi-threaded ensemble (docs/benchmarks.md); one on a GPU, where one ensemble fills the card."""
    import os

    from .training import pick_device

    return 1 if pick_device(device).type != "cpu" else max(1, len(os.sched_getaffinity(0)))


def run_sweep(spec: SweepSpec, runs_dir=None, max_ensemble: int = 32, backend: str = "local", device: str | None = None,
              ray_address: str | None = None, progress: bool = True, workers: int | None = None) -> Path:
    """Train every member not yet finished; write results.csv and nodes.json (where each member last
    trained); return the sweep folder. ``workers``: local processes (default: ``default_workers``);
    the progress bar counts member-steps over the whole grid, updated at each member's checkpoints."""
    import threading

    from tqdm.auto import tqdm

    validate_run_name(spec.name, "sweep")
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; choose local or ray")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    configs = spec.configs()
    root = default_runs_dir(runs_dir) / spec.name
    if (root / "sweep.json").exists():
        saved = read_json(root / "sweep.json")
        if {**asdict(spec), **saved} != asdict(spec):  # a sweep.json older than a field lacks it
            raise ConfigError(f"sweep {spec.name!r} exists with another grid; use the same flags to resume it, or another --name")
    workers = (default_workers(device) if workers is None else workers) if backend == "local" else 1
    todo = [c for c in configs if _status(root, c) != "done"]
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / "sweep.json", asdict(spec))
    jobs = _jobs(todo, max_ensemble, workers)
    bar = tqdm(total=sum(c.steps for c in configs), initial=sum(min(_steps_done(root / c.name), c.steps) for c in configs),
               unit="member-step", dynamic_ncols=True, desc=f"sweep {spec.name} ({len(todo)} of {len(configs)} to train)",
               disable=not progress or not todo)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(root, configs, bar, stop), daemon=True)
    watcher.start()
    try:
        nodes = _run_jobs(jobs, root, backend, device, ray_address, workers)
    finally:
        stop.set()
        watcher.join()
        bar.n = sum(min(_steps_done(root / c.name), c.steps) for c in configs)
        bar.close()
    saved_nodes = read_json(root / "nodes.json") if (root / "nodes.json").exists() else {}
    atomic_write_json(root / "nodes.json", {**saved_nodes, **nodes})
    write_results(root, spec)
    return root


def _run_jobs(jobs: list[list[RunConfig]], root: Path, backend: str, device: str | None, ray_address: str | None,
              workers: int) -> dict[str, str]:
    """Train the jobs: in this process, in ``workers`` processes, or as Ray tasks spread over the
    cluster's nodes. Returns {member: node it trained on}."""
    nodes: dict[str, str] = {}
    if backend == "ray":
        try:
            import ray
        except ImportError:
            raise ConfigError("--backend ray needs Ray: pip install 'grokinterp[ray]'") from None
        if not ray.is_initialized():
            ray.init(address=ray_address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(_train_job).options(scheduling_strategy="SPREAD")
        results = ray.get([remote.remote(j, str(root), device) for j in jobs])
    elif workers > 1 and len(jobs) > 1:
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        workers = min(workers, len(jobs))
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with_parent,
                                   initargs=(os.getpid(),))
        try:
            with _sigterm_as_interrupt():
                futures = [pool.submit(_train_job, j, str(root), device, threads) for j in jobs]
                # CPython's pool (3.11.7 here; 3.14's submit has the same order) wakes its manager thread before it spawns
                # the worker a submit needs (spawn start method), so the manager can go on waiting without the last worker's
                # sentinel: that worker's death (kill -9, out of memory) was noticed only when another worker finished its
                # whole job. One more submit, once every worker is spawned (there are at least as many jobs as workers),
                # wakes it again to watch them all.
                pool.submit(int)
                results = [f.result() for f in futures]
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop the workers now (their run locks go with them)
            for proc in list((pool._processes or {}).values()):  # Python < 3.14 has no public ProcessPoolExecutor.terminate_workers
                proc.kill()
                proc.join()
            raise
        except BrokenProcessPool:
            raise RunError("a worker process of the sweep died (killed, or out of memory); "
                           "run the same command again to resume") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        results = [_train_job(j, str(root), device) for j in jobs]
    for members, node in results:
        nodes.update(dict.fromkeys(members, node))
    return nodes


def _die_with_parent(parent: int) -> None:
    """Initialiser of a sweep's worker processes: the worker dies when the sweep process that started
    it dies, ``kill -9`` included, so no orphan goes on training and holding its members' run locks.
    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere a daemon thread that polls ``os.getppid()``."""
    import os
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        import ctypes

        if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # 1: PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While the sweep waits on its workers, SIGTERM raises KeyboardInterrupt (as SIGINT does), so
    ``kill PID`` stops the workers and ends the sweep like Ctrl-C; only in the main thread."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


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


REGULARISER_FIELDS = ("optimizer", "wd", "batch")  # all named by the variant column, where there is one


def varied_settings(rows: list[dict]) -> list[str]:
    """The result columns besides fraction and seed that take more than one value in ``rows``: the
    task and the regulariser ('variant', which names wd, optimiser, batch and the rest; results
    tables older than that column give wd, optimizer and batch instead)."""
    fields = ("task", "variant") if rows and "variant" in rows[0] else ("task", *REGULARISER_FIELDS)
    return [f for f in fields if len({str(r[f]) for r in rows}) > 1]


def _operation(task: str) -> str:
    """A task's operation as written in the papers: 'x^2+y^2'; S5 tasks 'x*y in S5'."""
    return TASKS.get(task, task) + (" in S5" if task.startswith("s5_") else " in the group" if task.startswith("group_") else "")


def _setting_label(row: dict, fields: list[str]) -> str:
    shown = {"wd": lambda v: f"wd={float(v):g}", "batch": lambda v: "full batch" if v in ("full", None, "") else f"batch {v}",
             "task": _operation}
    return ", ".join(shown.get(f, str)(row[f]) for f in fields) or _operation(str(row["task"]))


@dataclass
class FractionCurve:
    """One setting of a sweep across training fractions (all lists of length F, fractions ascending).

    ``values``: the statistic per fraction, None where it is not reached; ``reached``: runs that got
    to 99% validation accuracy within the budget; ``runs``: runs (seeds) at that fraction;
    ``budget``: the most steps any of these runs trained."""

    fracs: list[float]
    values: list[float | None]
    reached: list[int]
    runs: list[int]
    budget: int


def _curves(rows: list[dict], statistic) -> dict[str, FractionCurve]:
    fields = varied_settings(rows)
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(_setting_label(r, fields), []).append(r)
    out = {}
    for label in sorted(groups):
        sel = groups[label]
        fracs = sorted({float(r["frac"]) for r in sel})
        at = [[r for r in sel if float(r["frac"]) == f] for f in fracs]
        out[label] = FractionCurve(fracs, [statistic(a) for a in at], [sum(_grokked(r) is not None for r in a) for a in at],
                                   [len(a) for a in at], max(int(r["steps"]) for r in sel))
    return out


def _grokked(row: dict) -> int | None:
    g = row["grokked_step"]
    return None if g in (None, "") else int(g)


def _median_steps(rows: list[dict]) -> float | None:
    steps = np.median([np.inf if _grokked(r) is None else _grokked(r) for r in rows])
    return float(steps) if np.isfinite(steps) else None


def median_steps_to_generalise(rows: list[dict]) -> dict[str, FractionCurve]:
    """Power et al. Fig. 1 (centre): per setting (every varied column: task, regulariser) and
    training fraction, the median over seeds of the steps until 99% validation accuracy, a run
    that never got there counting as infinite. The median is None ("not reached") where half
    the seeds or more did not get there within the budget."""
    return _curves(rows, _median_steps)


def best_accuracy(rows: list[dict]) -> dict[str, FractionCurve]:
    """Power et al. Fig. 2: per setting (every varied column) and fraction, the mean over seeds of
    the best validation accuracy within the budget."""
    return _curves(rows, lambda a: float(np.mean([float(r["best_test_acc"]) for r in a])))


def read_results(path: Path) -> list[dict]:
    """The rows of a sweep's results.csv (as strings; the functions above accept them)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"task", "frac", "steps", "grokked_step", "best_test_acc"} - set(reader.fieldnames or [])
        if missing:
            raise ConfigError(f"{path} is not a sweep's results.csv (no {', '.join(sorted(missing))} column)")
        return list(reader)
