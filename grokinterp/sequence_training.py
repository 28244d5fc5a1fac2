"""Training on the sequence tasks (5-digit addition, repeated subsequences) with per-token losses.

A plain TransformerLens loop (every position is predicted, so the fast path does not apply):
AdamW, float64 losses, per-group train and test losses logged every ``log_every`` steps to
``metrics.csv`` (columns ``train_<group>``, ``test_<group>``), checkpoints every
``checkpoint_every`` steps in the usual run-directory layout. ``config.json`` says
``"kind": "sequence"``. Infinite-data runs draw a fresh batch from (seed, step) each step;
finite-data runs draw minibatches from a fixed set of ``n_train`` sequences.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .config import ConfigError
from .models import build_model
from .sequences import SEQUENCE_TASKS, Repeat, induction_offset_profile, per_token_losses
from .store import atomic_write_json, atomic_write_tensors, checkpoint_path, default_runs_dir, read_json, write_metrics


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
    description: str = ""

    def __post_init__(self):
        if self.task not in SEQUENCE_TASKS:
            raise ConfigError(f"unknown sequence task {self.task!r}; choose {', '.join(SEQUENCE_TASKS)}")
        if self.n_train is not None and self.n_train < 1:
            raise ConfigError("n_train must be positive (or None for infinite data)")
        if self.batch_size is None and self.n_train is None:
            raise ConfigError("full-batch training needs a finite training set (n_train)")

    def make_task(self):
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


def train_sequence(cfg: SequenceConfig, runs_dir=None, progress: bool = True, command: str = "") -> Path:
    """Train one sequence run; returns its run directory."""
    from tqdm.auto import tqdm

    if torch.cuda.is_available():
        dev = torch.device("cuda")
    else:
        dev = torch.device("cpu")
        torch.set_flush_denormal(True)
    task = cfg.make_task()
    run_dir = default_runs_dir(runs_dir) / cfg.name
    if (run_dir / "config.json").exists():
        raise ConfigError(f"run {cfg.name!r} already exists in {run_dir.parent}; choose another --name")
    model = build_model(cfg.model, task.d_vocab, task.d_vocab, task.n_ctx, seed=cfg.seed).to(dev, print_details=False)  # CPU init: same on any device
    for p in model.parameters():
        p.requires_grad_(True)  # sequence models train their biases
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.wd, betas=(0.9, 0.98))
    train_set = task.sample(np.random.default_rng([cfg.seed, 1]), cfg.n_train).to(dev) if cfg.n_train else None
    test = task.sample(np.random.default_rng([cfg.seed, 2]), cfg.test_size).to(dev)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "config.json", {"kind": "sequence", "config": dataclasses.asdict(cfg), "command": command,
                                                "grokinterp_version": __version__, "created": time.strftime("%Y-%m-%d %H:%M:%S")})
    names = task.loss_names
    fields = ["step"] + [f"train_{n}" for n in names] + [f"test_{n}" for n in names]
    if isinstance(task, Repeat):
        fields += [f"induction_{kind}{h}" for kind in ("head", "best", "offset") for h in range(model.cfg.n_heads)]
    rows = []
    for step in tqdm(range(cfg.steps + 1), desc=cfg.name, unit="step", disable=not progress):
        rng = np.random.default_rng([cfg.seed, 3, step])
        if train_set is None:
            batch = task.sample(rng, cfg.batch_size).to(dev)
        elif cfg.batch_size is None:
            batch = train_set
        else:
            batch = train_set[torch.from_numpy(rng.integers(0, cfg.n_train, cfg.batch_size)).to(dev)]
        if step % cfg.log_every == 0 or step == cfg.steps:
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
        if step == cfg.steps:
            break
        loss = _loss(task, model, batch).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return run_dir


def load_sequence_model(run_dir: Path, step: int | None = None):
    """(config, task, HookedTransformer) of a sequence run at ``step`` (default: the last checkpoint)."""
    from .store import RunError, checkpoint_steps_on_disk, read_tensors

    cfg = SequenceConfig(**read_json(run_dir / "config.json")["config"])
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
