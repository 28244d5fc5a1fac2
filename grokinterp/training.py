"""Turn RunConfigs into run directories: the only writer of runs.

``train([cfg])`` trains one model; ``train([cfg1, cfg2, ...])`` trains an ensemble in one process
(stacked parameters, one batched forward, per-model optimiser state, metrics and run directory).
Members may differ in seed, split seed, data fraction, learning rate, weight decay and optimiser
settings; they share the task, model, step budget and checkpoint schedule. A member trained in an
ensemble equals the same run trained alone, to float tolerance.

Resuming: at every checkpoint the weights and optimiser state go to ``state.safetensors``
(atomically, after the checkpoint and metrics), and minibatches are a pure function of
(seed, step), so a run killed at any moment resumes to the same weights as an uninterrupted one.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .config import ConfigError, RunConfig
from .engine import AdamW, forward, per_example_loss
from .models import build_model, is_trainable, model_spec
from .store import (
    RunError,
    atomic_write_json,
    atomic_write_tensors,
    checkpoint_path,
    default_runs_dir,
    read_json,
    read_metrics,
    read_tensors,
    write_metrics,
)

SHARED_FIELDS = ("task", "p", "model", "steps", "checkpoint_every", "log_checkpoints", "batch_size", "loss", "betas", "warmup")


def pick_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(device)


@dataclass
class _Member:
    cfg: RunConfig
    run_dir: Path
    train_idx: np.ndarray
    batch_size: int
    metrics: list


def _check_compatible(configs: list[RunConfig]) -> None:
    first = configs[0]
    for c in configs[1:]:
        for f in SHARED_FIELDS:
            if getattr(c, f) != getattr(first, f):
                raise ConfigError(f"ensemble members must share {f}: {first.name} has {getattr(first, f)!r}, {c.name} has {getattr(c, f)!r}")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError("ensemble members need distinct run names")


def batch_indices(train_idx: np.ndarray, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The minibatch of a step: epoch e is a permutation drawn from (seed, e); the last partial batch is dropped."""
    n = len(train_idx)
    if batch_size >= n:
        return train_idx
    per_epoch = n // batch_size
    epoch, j = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return train_idx[perm[j * batch_size : (j + 1) * batch_size]]


def _stack(dicts: list[dict], device) -> dict:
    return {k: torch.stack([d[k] for d in dicts]).to(device).float() for k in dicts[0]}


def train(
    configs: list[RunConfig],
    runs_dir: str | Path | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    command: str | None = None,
) -> list[Path]:
    """Train runs (an ensemble when several) and return their run directories."""
    _check_compatible(configs)
    dev = pick_device(device)
    if dev.type == "cpu":
        torch.set_flush_denormal(True)  # decayed weights go denormal; x86 then runs several times slower
    root = default_runs_dir(runs_dir)
    first = configs[0]
    task = first.make_task()
    spec = model_spec(first.model)
    command = command or " ".join(["grokinterp"] + [shlex.quote(a) for a in sys.argv[1:]])

    if not resume:  # refuse before anything is written
        for cfg in configs:
            if (root / cfg.name / "config.json").exists():
                raise ConfigError(f"run {cfg.name!r} already exists in {root}; add --resume to continue it, or choose another --name")
    members, start_step, params, opt_state, budget_updates = [], 0, [], [], []
    for cfg in configs:
        run_dir = root / cfg.name
        train_idx, _ = task.split(cfg.frac, cfg.split_seed)
        m = _Member(cfg, run_dir, train_idx, cfg.effective_batch_size(len(train_idx)), [])
        members.append(m)
        if resume:
            saved = RunConfig.from_dict(read_json(run_dir / "config.json")["config"])
            if saved.replace(steps=cfg.steps, name=cfg.name) != cfg:
                raise ConfigError(f"run {cfg.name} was made with a different config; resume it with the same flags (only --steps may change)")
            if not (run_dir / "state.safetensors").is_file():
                raise RunError(f"run {cfg.name} has no state.safetensors to resume from (it stopped before its first "
                               f"checkpoint); delete {run_dir} and train it afresh")
            tensors, meta = read_tensors(run_dir / "state.safetensors")
            step = int(meta["step"])
            if members.index(m) and step != start_step:
                raise RunError("ensemble members were saved at different steps; resume them one by one")
            start_step = step
            if cfg.steps < step:
                raise ConfigError(f"run {cfg.name} is already at step {step}; --steps must be at least that")
            params.append({k[6:]: v for k, v in tensors.items() if k.startswith("param.")})
            opt_state.append({k[4:]: v for k, v in tensors.items() if k.startswith("opt.")})
            m.metrics = [r for r in read_metrics(run_dir / "metrics.csv") if r["step"] <= step]
            if saved.steps != cfg.steps:  # record the new budget, once everything has been read
                record = read_json(run_dir / "config.json")
                record["config"]["steps"] = cfg.steps
                record.setdefault("resumed", []).append({"command": command, "from_step": step, "steps": cfg.steps})
                budget_updates.append((run_dir / "config.json", record))
        else:
            ht = build_model(cfg.model, task.d_vocab, task.n, task.n_ctx, seed=cfg.seed)
            params.append({n: p.detach().clone() for n, p in ht.named_parameters()})
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(run_dir / "split.json", {"n_pairs": len(task), "train": train_idx.tolist()})
            atomic_write_json(
                run_dir / "config.json",
                {"config": cfg.to_dict(), "command": command, "grokinterp_version": __version__, "torch_version": torch.__version__,
                 "created": time.strftime("%Y-%m-%d %H:%M:%S")},
            )

    for path, record in budget_updates:
        atomic_write_json(path, record)
    stacked = _stack(params, dev)
    trainable = {n: p.requires_grad_(True) for n, p in stacked.items() if is_trainable(n)}
    E = len(members)
    per = lambda attr: torch.tensor([getattr(m.cfg, attr) for m in members], device=dev)  # noqa: E731
    grokfast = (per("grokfast_alpha"), per("grokfast_lambda") * torch.tensor([m.cfg.optimizer == "grokfast" for m in members], device=dev))
    any_grokfast = any(m.cfg.optimizer == "grokfast" for m in members)
    perp = torch.tensor([m.cfg.optimizer == "perpendicular" for m in members], device=dev)
    opt = AdamW(trainable, per("lr").float(), per("wd").float(), betas=first.betas,
                grokfast=grokfast if any_grokfast else None, perpendicular=perp if perp.any() else None)
    if resume:
        for key in opt.state:
            opt.state[key].copy_(torch.stack([s[key] for s in opt_state]).to(dev))
        opt.t = start_step

    inputs = task.all_inputs().to(dev)
    labels = task.all_labels().to(dev)
    train_mask = torch.zeros(E, len(task), dtype=torch.bool, device=dev)
    for e, m in enumerate(members):
        train_mask[e, torch.from_numpy(m.train_idx).to(dev)] = True
    full_batch = all(m.batch_size >= len(m.train_idx) for m in members)
    if full_batch:
        fixed = _padded_batch([m.train_idx for m in members], dev)

    ckpt_steps = set(first.checkpoint_steps())
    if not resume:
        _checkpoint(members, stacked, opt, 0, inputs, labels, train_mask, spec, first.loss)

    bar = _progress(first.steps, start_step, E, progress)
    for step in range(start_step, first.steps):
        idx, weight = fixed if full_batch else _padded_batch(
            [batch_indices(m.train_idx, m.batch_size, m.cfg.seed, step) for m in members], dev)
        logits = forward(stacked, inputs[idx], spec)
        nll = per_example_loss(logits, labels[idx], first.loss)
        loss = ((nll * weight).sum(1) / weight.sum(1)).sum()
        for p in trainable.values():
            p.grad = None
        loss.backward()
        opt.step(lr_scale=min((step + 1) / first.warmup, 1.0) if first.warmup else 1.0)
        if step + 1 in ckpt_steps:
            row = _checkpoint(members, stacked, opt, step + 1, inputs, labels, train_mask, spec, first.loss)
            if bar is not None:
                bar.set_postfix(train_acc=f"{row['train_acc']:.3f}", test_acc=f"{row['test_acc']:.3f}", refresh=False)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return [m.run_dir for m in members]


def _padded_batch(index_lists: list[np.ndarray], dev) -> tuple[torch.Tensor, torch.Tensor]:
    """(E, B_max) indices padded with 0 and weights 1 for real entries, 0 for padding."""
    B = max(len(i) for i in index_lists)
    idx = np.zeros((len(index_lists), B), dtype=np.int64)
    w = np.zeros((len(index_lists), B), dtype=np.float64)
    for e, i in enumerate(index_lists):
        idx[e, : len(i)], w[e, : len(i)] = i, 1.0
    return torch.from_numpy(idx).to(dev), torch.from_numpy(w).to(dev)


@torch.no_grad()
def evaluate(stacked: dict, inputs, labels, train_mask, spec, loss: str = "ce", chunk: int = 16384) -> list[dict]:
    """Train/test loss (float64) and accuracy of every ensemble member on every pair."""
    E = train_mask.shape[0]
    nll, correct = [], []
    for s in range(0, len(labels), chunk):
        x = inputs[s : s + chunk].expand(E, -1, -1)
        logits = forward(stacked, x, spec)
        y = labels[s : s + chunk].expand(E, -1)
        nll.append(per_example_loss(logits, y, loss))
        correct.append((logits.argmax(-1) == y).double())
    nll, correct = torch.cat(nll, 1), torch.cat(correct, 1)
    out = []
    for e in range(E):
        tr, te = train_mask[e], ~train_mask[e]
        out.append({"train_loss": nll[e, tr].mean().item(), "train_acc": correct[e, tr].mean().item(),
                    "test_loss": nll[e, te].mean().item(), "test_acc": correct[e, te].mean().item()})
    return out


def _checkpoint(members, stacked, opt, step, inputs, labels, train_mask, spec, loss) -> dict:
    """Evaluate, then write checkpoint, metrics and (last) the resume state of every member."""
    rows = evaluate(stacked, inputs, labels, train_mask, spec, loss)
    for e, (m, row) in enumerate(zip(members, rows)):
        dtype = getattr(torch, m.cfg.checkpoint_dtype)
        atomic_write_tensors(checkpoint_path(m.run_dir, step), {k: v[e].detach().to(dtype) for k, v in stacked.items()},
                             metadata={"step": str(step)})
        m.metrics = [r for r in m.metrics if r["step"] < step] + [{"step": step, **row}]
        write_metrics(m.run_dir / "metrics.csv", m.metrics)
        state = {f"param.{k}": v[e] for k, v in stacked.items()}
        state.update({f"opt.{k}": v[e] for k, v in opt.state.items()})
        atomic_write_tensors(m.run_dir / "state.safetensors", state, metadata={"step": str(step)})
    return rows[0]


def _progress(total: int, initial: int, n_models: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    unit = "step" if n_models == 1 else f"step (x{n_models} models)"
    return tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True, desc="training")
