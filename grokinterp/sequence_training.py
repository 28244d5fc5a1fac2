"""Training on the sequence tasks (5-digit addition, repeated subsequences) with per-token losses.

A plain TransformerLens loop (every position is predicted, so the fast path does not apply):
AdamW, float64 losses, per-group train and test losses logged every ``log_every`` steps to
``metrics.csv`` (columns ``train_<group>``, ``test_<group>``), checkpoints every
``checkpoint_every`` steps in the usual run-directory layout. ``config.json`` says
``"kind": "sequence"``. Infinite-data runs draw a fresh batch from (seed, step) each step;
finite-data runs draw minibatches from a fixed set of ``n_train`` sequences.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from numbers import Integral
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .config import ConfigError
from .models import build_model
from .sequences import SEQUENCE_TASKS, Repeat, induction_offset_profile, per_token_losses
from .store import (
    RunError,
    atomic_write_json,
    atomic_write_tensors,
    checkpoint_path,
    read_json,
    read_metrics,
    read_tensors,
    refuse_restart_over_progress,
    remove_outputs,
    run_dir_to_write,
    run_lock,
    write_metrics,
)
from .training import machine, warn_if_machine_differs


@dataclass(frozen=True)
class SequenceConfig:
    name: str
    task: str = "add5"
    model: str = "add5-1l"
    n_train: int | None = None  # None: infinite data
    batch_size: int | None = 256  # None: the whole training set each step (finite data only)
    lr: float = 1e-3
    wd: float = 0.1
    steps: int = 3000
    log_every: int = 25
    checkpoint_every: int = 250
    seed: int = 0
    test_size: int = 1024
    repeat_length: int = 85  # repeat task: sequence length and length of the repeated part
    repeat_sub_len: int = 16
    description: str = ""

    def __post_init__(self):
        if self.task not in SEQUENCE_TASKS:
            raise ConfigError(f"unknown sequence task {self.task!r}; choose {', '.join(SEQUENCE_TASKS)}")
        for f in ("n_train", "batch_size", "steps", "log_every", "checkpoint_every", "test_size", "seed", "repeat_length", "repeat_sub_len"):
            value = getattr(self, f)
            if not (value is None and f in ("n_train", "batch_size")) and (not isinstance(value, Integral) or isinstance(value, bool)):
                raise ConfigError(f"{f} must be an integer, got {value!r}")  # before anything is written: 2.5 steps is no run
        checks = [
            (self.n_train is None or self.n_train >= 1, "n_train must be positive (or None for infinite data)"),
            (self.batch_size is not None or self.n_train is not None, "full-batch training needs a finite training set (n_train)"),
            (self.batch_size is None or self.batch_size >= 1, f"batch size must be positive, got {self.batch_size}"),
            (math.isfinite(self.lr) and self.lr > 0, f"learning rate must be a positive finite number, got {self.lr}"),
            (math.isfinite(self.wd) and self.wd >= 0, f"weight decay must be a non-negative finite number, got {self.wd}"),
            (self.steps >= 1, f"steps must be positive, got {self.steps}"),
            (self.log_every >= 1, f"log_every must be positive, got {self.log_every}"),
            (self.checkpoint_every >= 1, f"checkpoint_every must be positive, got {self.checkpoint_every}"),
            (self.test_size >= 1, f"test_size must be positive, got {self.test_size}"),
            (0 <= self.seed < 2**63, f"seed must be an integer in [0, 2**63), got {self.seed}"),
            (2 <= self.repeat_sub_len and 2 * self.repeat_sub_len <= self.repeat_length,
             f"repeat_sub_len must be at least 2 and at most half of repeat_length, got {self.repeat_sub_len} and {self.repeat_length}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    def make_task(self):
        if self.task == "repeat":
            return Repeat(length=self.repeat_length, sub_len=self.repeat_sub_len)
        return SEQUENCE_TASKS[self.task]()


SEQUENCE_PRESETS = {
    "add5": SequenceConfig("add5", description="5-digit addition, infinite data, 1 layer (per-digit phase changes)"),
    "add5-finite": SequenceConfig("add5-finite", n_train=400, batch_size=64, wd=1.0, steps=50000, log_every=50, checkpoint_every=1000,
                                  description="5-digit addition on 400 fixed examples, batch 64, wd 1 (groks at 29k-49k steps)"),
    "repeat-2l": SequenceConfig("repeat-2l", task="repeat", model="attn-2l", batch_size=128, lr=3e-3, steps=1500, wd=0.1, log_every=50,
                                description="repeated subsequence, 2-layer attention-only, infinite data (phase change)"),
    "repeat-1l": SequenceConfig("repeat-1l", task="repeat", model="attn-1l", batch_size=128, lr=3e-3, steps=1500, wd=0.1, log_every=50,
                                description="repeated subsequence, 1-layer attention-only (cannot form induction heads)"),
    "repeat-2l-finite": SequenceConfig("repeat-2l-finite", task="repeat", model="attn-2l", n_train=512, batch_size=128, lr=3e-3,
                                       steps=6000, wd=1.0, log_every=50, description="repeated subsequence on 512 fixed sequences, wd 1"),
}


def _loss(task, model, batch) -> torch.Tensor:
    tokens = batch[:, : task.n_ctx]
    return per_token_losses(task, model(tokens), batch)


def induction_profile(task, model, batch) -> np.ndarray:
    """(heads, offsets 1..sub_len) induction scores of the last layer on a fixed batch (repeat task only)."""
    _, cache = model.run_with_cache(batch[:, : task.n_ctx], names_filter=lambda n: n.endswith("hook_pattern"))
    last = model.cfg.n_layers - 1
    return induction_offset_profile(cache[f"blocks.{last}.attn.hook_pattern"], batch, task).cpu().numpy()


def _induction_row(profile: np.ndarray) -> dict:
    """Per head: the textbook (offset 1) score, the best score over offsets, and that offset."""
    row = {}
    for h, p in enumerate(profile):
        row.update({f"induction_head{h}": float(p[0]), f"induction_best{h}": float(p.max()), f"induction_offset{h}": int(p.argmax()) + 1})
    return row


def train_sequence(cfg: SequenceConfig, runs_dir=None, progress: bool = True, command: str = "", resume: bool = False) -> Path:
    """Train one sequence run; returns its run directory.

    The run directory is locked while it is trained (``store.run_lock``). The resume state (weights,
    AdamW state, step) is written after every checkpoint; batches are a pure function of (seed,
    step), so ``resume`` continues a killed run to the weights of an uninterrupted one (from step
    0 when it has no state yet). A training loss that is not finite stops the run (RunError).
    """
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    run_dir = run_dir_to_write(cfg.name, runs_dir, resume)
    with run_lock(run_dir, resume), _deterministic_on_cpu(dev):
        _train_locked(cfg, run_dir, dev, resume, progress, command)
    return run_dir


@contextlib.contextmanager
def _deterministic_on_cpu(dev: torch.device):
    """On CPU, torch's deterministic kernels while training: with several threads the embedding
    gradient (an indexed accumulate) is otherwise summed with atomic adds in a varying order, and two
    identical runs differ (by 2e-6 after 10 add5 steps). GPU runs are not bit-reproducible anyway."""
    if dev.type != "cpu":
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _train_locked(cfg: SequenceConfig, run_dir: Path, dev: torch.device, resume: bool, progress: bool, command: str) -> None:
    from tqdm.auto import tqdm

    if dev.type == "cpu":
        torch.set_flush_denormal(True)
    task = cfg.make_task()
    model = build_model(cfg.model, task.d_vocab, task.d_vocab, task.n_ctx, seed=cfg.seed).to(dev, print_details=False)  # CPU init: same on any device
    for p in model.parameters():
        p.requires_grad_(True)  # sequence models train their biases
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.wd, betas=(0.9, 0.98))
    train_set = task.sample(np.random.default_rng([cfg.seed, 1]), cfg.n_train).to(dev) if cfg.n_train else None
    test = task.sample(np.random.default_rng([cfg.seed, 2]), cfg.test_size).to(dev)
    resumed = _load_state(cfg, run_dir, model, opt, dev, command) if resume else None
    start, rows = resumed or (0, [])
    if resumed is None:
        if resume:
            refuse_restart_over_progress(run_dir, cfg.name, "Train it again under another --name.")
            warnings.warn(f"{cfg.name}: no resume state (stopped before the first state write); training from step 0",
                          RuntimeWarning, stacklevel=3)
        remove_outputs(run_dir)  # what an earlier, killed start of this run left
        atomic_write_json(run_dir / "config.json", {"kind": "sequence", "config": dataclasses.asdict(cfg), "command": command,
                                                    "grokinterp_version": __version__, **machine(dev),
                                                    "created": time.strftime("%Y-%m-%d %H:%M:%S")})
    names = task.loss_names
    fields = ["step"] + [f"train_{n}" for n in names] + [f"test_{n}" for n in names]
    if isinstance(task, Repeat):
        fields += [f"induction_{kind}{h}" for kind in ("head", "best", "offset") for h in range(model.cfg.n_heads)]
    bar = tqdm(initial=start, total=cfg.steps, desc=cfg.name, unit="step", disable=not progress)  # counts updates: ends at steps/steps
    for step in range(start, cfg.steps + 1):
        rng = np.random.default_rng([cfg.seed, 3, step])
        if train_set is None:
            batch = task.sample(rng, cfg.batch_size).to(dev)
        elif cfg.batch_size is None:
            batch = train_set
        else:
            batch = train_set[torch.from_numpy(rng.integers(0, cfg.n_train, cfg.batch_size)).to(dev)]
        loss = _loss(task, model, batch).mean()
        if not torch.isfinite(loss):
            raise RunError(f"training stopped at step {step}: the training loss is not finite in run {cfg.name} ({loss.item()}); "
                           "the run keeps what it wrote before that step; try a lower --lr")
        if (step % cfg.log_every == 0 or step == cfg.steps) and not (rows and rows[-1]["step"] == step):  # resumed at a logged step
            with torch.no_grad():
                row = {"step": step}
                tr = _loss(task, model, train_set[: cfg.test_size] if train_set is not None else batch)
                te = _loss(task, model, test)
                row.update({f"train_{n}": float(v) for n, v in zip(names, tr)})
                row.update({f"test_{n}": float(v) for n, v in zip(names, te)})
                if isinstance(task, Repeat):
                    row.update(_induction_row(induction_profile(task, model, test[:256])))
            rows.append(row)
            write_metrics(run_dir / "metrics.csv", rows, fields)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            atomic_write_tensors(checkpoint_path(run_dir, step), dict(model.named_parameters()), {"step": str(step)})
            _save_state(run_dir, model, opt, step)
        if step == cfg.steps:
            bar.close()
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update(1)


def _save_state(run_dir: Path, model, opt, step: int) -> None:
    """Weights and AdamW state (per parameter: step, exp_avg, exp_avg_sq) after ``step`` updates, atomically."""
    names = [n for n, _ in model.named_parameters()]
    state = {f"param.{n}": p for n, p in model.named_parameters()}
    for i, s in opt.state_dict()["state"].items():
        state.update({f"opt.{names[i]}.{k}": v for k, v in s.items()})
    atomic_write_tensors(run_dir / "state.safetensors", state, metadata={"step": str(step)})


def _load_state(cfg: SequenceConfig, run_dir: Path, model, opt, dev, command: str) -> tuple[int, list] | None:
    """Load a run's resume state into ``model`` and ``opt``: (step, metric rows before it), or None
    when the run has none. The run must have been made with ``cfg`` (only ``steps`` may differ)."""
    if not (run_dir / "config.json").is_file():
        return None  # killed before its config was written
    record = read_json(run_dir / "config.json")
    if not isinstance(record, dict) or record.get("kind") != "sequence":
        raise RunError(f"run {cfg.name} in {run_dir.parent} is not a sequence run; resume it with its own --run")
    saved = read_sequence_config(run_dir, record)
    differ = [f"{f.name} {getattr(saved, f.name)}, not {getattr(cfg, f.name)}" for f in dataclasses.fields(cfg)  # the description
              if f.name not in ("steps", "name", "description") and getattr(saved, f.name) != getattr(cfg, f.name)]  # is not a setting
    if differ:
        raise ConfigError(f"run {cfg.name} was made with a different config ({'; '.join(differ)}); resume it with the same flags "
                          "(only --steps may change)")
    if not (run_dir / "state.safetensors").is_file():
        return None
    warn_if_machine_differs(cfg.name, record, dev)
    tensors, meta = read_tensors(run_dir / "state.safetensors")
    step = int(meta["step"])
    if cfg.steps < step:
        raise ConfigError(f"run {cfg.name} is already at step {step}; --steps must be at least that")
    names = [n for n, _ in model.named_parameters()]
    try:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(tensors[f"param.{n}"])
        sd = opt.state_dict()
        sd["state"] = {i: {k: tensors[f"opt.{n}.{k}"] for k in ("step", "exp_avg", "exp_avg_sq")}
                       for i, n in enumerate(names) if f"opt.{n}.step" in tensors}
    except (KeyError, RuntimeError) as e:
        raise RunError(f"{run_dir / 'state.safetensors'} does not fit the model ({e}); resume is not possible, train under another --name") from None
    opt.load_state_dict(sd)
    rows = [r for r in read_metrics(run_dir / "metrics.csv", fields=None) if r["step"] <= step]  # a row at ``step``: of these weights
    if saved.steps != cfg.steps:
        record["config"]["steps"] = cfg.steps
        record.setdefault("resumed", []).append({"command": command, "from_step": step, "steps": cfg.steps})
        atomic_write_json(run_dir / "config.json", record)
    return step, rows


def read_sequence_config(run_dir: Path, record: dict | None = None) -> SequenceConfig:
    """The SequenceConfig of a run directory (``record``: its config.json, when already read)."""
    record = read_json(run_dir / "config.json") if record is None else record
    try:
        return SequenceConfig(**record["config"])
    except (KeyError, TypeError, ConfigError) as e:
        raise RunError(f"{run_dir / 'config.json'} is corrupt ({e}); restore it or train the run under another --name") from None


def load_sequence_model(run_dir: Path, step: int | None = None):
    """(config, task, HookedTransformer) of a sequence run at ``step`` (default: the last checkpoint)."""
    from .store import checkpoint_steps_on_disk

    cfg = read_sequence_config(run_dir)
    task = cfg.make_task()
    steps = checkpoint_steps_on_disk(run_dir)
    if not steps:
        raise RunError(f"run {run_dir.name} has no checkpoints yet")
    tensors, _ = read_tensors(checkpoint_path(run_dir, steps[-1] if step is None else step))
    model = build_model(cfg.model, task.d_vocab, task.d_vocab, task.n_ctx, seed=cfg.seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(tensors[name])
    return cfg, task, model.eval()
