"""Turn RunConfigs into run directories: the only writer of runs.

``train([cfg])`` trains one model; ``train([cfg1, cfg2, ...])`` trains an ensemble in one process
(stacked parameters, one batched forward, per-model optimiser state, metrics and run directory).
Members may differ in seed, split seed, data fraction, learning rate, weight decay, optimiser
settings and attention rate; they share the task, model, step budget and checkpoint schedule. A member trained in an
ensemble equals the same run trained alone, to float tolerance.

Resuming: at every checkpoint the weights and optimiser state go to ``state.safetensors``
(atomically, after the checkpoint and metrics), and minibatches are a pure function of
(seed, step), so a run killed at any moment resumes to the same weights as an uninterrupted one.
On CUDA, checkpoint, metrics and state files are written in that order by a background thread
(``_Writer``), from CPU copies, while training goes on.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import queue
import shlex
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .config import ConfigError, RunConfig
from .engine import AdamW, forward, per_example_loss
from .models import init_params, is_trainable, model_spec, parameter_shapes
from .noise import Noise
from .store import (
    RunError,
    atomic_write_json,
    atomic_write_tensors,
    checkpoint_path,
    checkpoint_steps_on_disk,
    is_shipped,
    read_json,
    read_metrics,
    read_tensors,
    refuse_restart_over_progress,
    remove_outputs,
    run_dir_to_write,
    run_lock,
    write_metrics,
)

SHARED_FIELDS = ("task", "p", "group", "model", "steps", "checkpoint_every", "log_checkpoints", "batch_size", "loss", "betas", "warmup")


def pick_device(device: str | None) -> torch.device:
    """``None``/"auto" (CUDA when visible), "cpu", "cuda" or "cuda:N"; anything else is a ConfigError."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda") or (dev.type == "cpu" and dev.index):
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} was asked for but no CUDA GPU is visible; use --device cpu")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA GPU(s) are visible (cuda:0 ...)")
    return dev


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
    epoch, j = divmod(step, n // batch_size)
    return train_idx[_epoch_permutation(n, seed, epoch)[j * batch_size : (j + 1) * batch_size]]


@functools.lru_cache(maxsize=1024)
def _epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def _stack(dicts: list[dict], device) -> dict:
    return {k: torch.stack([d[k] for d in dicts]).to(device).float() for k in dicts[0]}


def train(
    configs: list[RunConfig],
    runs_dir: str | Path | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    command: str | None = None,
    capture: bool | None = None,
    state_every_s: float = 30.0,
    compile: bool = False,
    background_writes: bool | None = None,
    from_weights: bool = False,
) -> list[Path]:
    """Train runs (an ensemble when several) and return their run directories.

    ``capture``: record the training step as a CUDA graph (default: on CUDA). ``compile``: compile
    the step with ``torch.compile`` (inside the CUDA graph when capturing). ``background_writes``:
    write checkpoints, metrics and resume state on a background thread (``_Writer``) instead of
    between steps (default: on CUDA only; on the 2-core CPU some runs took
    30x longer with it); the files are the same either way. The resume state is
    written at the first checkpoint, then at most every ``state_every_s`` seconds, and at the end.
    Each run directory is locked while it is trained (``store.run_lock``). ``resume`` continues
    from the resume state, or starts again from step 0 when a run has none (it was killed before
    its first state write); a run without one whose checkpoints go past step 0 is refused, unless
    ``from_weights``: then it continues from its last checkpoint's weights with AdamW's moments
    restarted at zero (a packed or copied run, which has no state; not the trajectory of an
    uninterrupted run, and config.json records it). A run whose training loss stops being finite
    raises RunError.
    """
    _check_compatible(configs)
    dev = pick_device(device)
    if dev.type == "cpu":
        torch.set_flush_denormal(True)  # decayed weights go denormal; x86 then runs several times slower
    run_dirs = [_run_dir(cfg.name, runs_dir, resume) for cfg in configs]  # refuse before anything is written
    command = command or " ".join(["grokinterp"] + [shlex.quote(a) for a in sys.argv[1:]])
    threads = torch.get_num_threads()
    with contextlib.ExitStack() as locks:
        for run_dir in run_dirs:
            locks.enter_context(run_lock(run_dir, resume))
        if dev.type == "cpu" and "OMP_NUM_THREADS" not in os.environ and step_work(configs) < SMALL_CPU_STEP:
            torch.set_num_threads(1)
            locks.callback(torch.set_num_threads, threads)
        return _train_locked(configs, run_dirs, resume, dev, progress, command, capture, state_every_s, compile, background_writes,
                             from_weights)


def _run_dir(name: str, runs_dir, resume: bool) -> Path:
    """``store.run_dir_to_write``, except that an existing run resumed in ``runs_dir`` keeps its folder
    name as it is: a name that was not chosen here (a run opened by path, e.g. a folder with a space)
    is not checked as a new name. New names stay strict."""
    if resume and runs_dir is not None and name not in ("", ".", "..") and Path(name).name == name:
        run_dir = Path(runs_dir) / name
        if (run_dir / "config.json").is_file() and not is_shipped(run_dir):
            return run_dir
    return run_dir_to_write(name, runs_dir, resume)


SMALL_CPU_STEP = 3e7  # step_work below which the CPU trainer uses one torch thread


def step_work(configs: list[RunConfig]) -> float:
    """Examples per step x d_model x d_mlp x layers, summed over an ensemble: the size of a step's
    matrix products. Below ``SMALL_CPU_STEP`` a second CPU thread mostly waits on the first, and on a
    busy machine its spinning costs far more: tiny23 (6e6) trained in 12.8 s with 2 threads and 14.9 s
    with 1 on the idle 2-core machine, and in 99 s against 15 s at load 4. ``train`` then uses one
    thread unless OMP_NUM_THREADS is set (which always decides)."""
    n_pairs = len(configs[0].make_task())
    return sum(cfg.effective_batch_size(int(cfg.frac * n_pairs)) * (spec := model_spec(cfg.model)).d_model
               * max(spec.d_mlp, spec.d_model) * spec.n_layers for cfg in configs)


def machine(dev: torch.device) -> dict:
    """What bit-identity depends on: the device and, on CPU, torch's thread count."""
    return {"device": dev.type, **({"torch_threads": torch.get_num_threads()} if dev.type == "cpu" else {})}


def warn_if_machine_differs(name: str, record: dict, dev: torch.device) -> None:
    """Warn when a run is resumed on another device or CPU thread count than it was trained with."""
    now = machine(dev)
    then = {k: record[k] for k in ("device", "torch_threads") if k in record}
    if then and then != now:
        said = lambda m: m["device"] + (f" with {m['torch_threads']} thread{'s' * (m['torch_threads'] != 1)}" if "torch_threads" in m else "")  # noqa: E731
        hint = f" (run with OMP_NUM_THREADS={then['torch_threads']}, or torch.set_num_threads)" if "torch_threads" in then else ""
        warnings.warn(f"run {name} was trained on {said(then)} and is resumed on {said(now)}: the weights will not be "
                      f"bit-identical to an uninterrupted run{hint}", RuntimeWarning, stacklevel=3)


@dataclass
class _Saved:
    """What a run directory holds to resume from."""

    step: int
    params: dict
    opt_state: dict | None  # None: continued from weights alone (moments restart at zero)
    metrics: list
    budget_update: dict | None  # the new config.json record when --steps changed


def _read_saved(cfg: RunConfig, run_dir: Path, task, dev, command: str, from_weights: bool = False) -> _Saved | None:
    """The resume state of a run (None when it has none), after checking it was made with ``cfg``;
    with ``from_weights``, a run without one continues from its last checkpoint's weights."""
    if not (run_dir / "config.json").is_file():
        return None  # killed before its config was written
    record = read_json(run_dir / "config.json")
    if isinstance(record, dict) and record.get("kind", "table") != "table":
        raise RunError(f"run {cfg.name} in {run_dir.parent} is a {record['kind']} run; resume it with `grokinterp train --run {cfg.name} --resume`")
    try:
        saved = RunConfig.from_dict(record["config"])
    except (KeyError, TypeError, ConfigError) as e:
        raise RunError(f"{run_dir / 'config.json'} is corrupt ({e}); restore it or train the run under another --name") from None
    if saved.replace(steps=cfg.steps, name=cfg.name, description=cfg.description) != cfg:  # the description is not a setting
        raise ConfigError(f"run {cfg.name} was made with a different config; resume it with the same flags (only --steps may change)")
    names = parameter_shapes(cfg.model, task.d_vocab, task.n, task.n_ctx)  # named_parameters() order: noise is drawn in it
    if (run_dir / "state.safetensors").is_file():
        warn_if_machine_differs(cfg.name, record, dev)
        tensors, meta = read_tensors(run_dir / "state.safetensors")
        step = int(meta["step"])
        params = {n: tensors[f"param.{n}"] for n in names}
        opt_state = {k[4:]: v for k, v in tensors.items() if k.startswith("opt.")}
        if from_weights:
            warnings.warn(f"{cfg.name} has a resume state: resuming from it (step {step}); --from-weights is not needed",
                          RuntimeWarning, stacklevel=4)
    elif from_weights and (step := max(checkpoint_steps_on_disk(run_dir), default=0)) > 0:  # from step 0, a restart is the same run
        tensors, _ = read_tensors(checkpoint_path(run_dir, step))
        if missing := [n for n in names if n not in tensors]:
            raise RunError(f"{checkpoint_path(run_dir, step)} lacks {', '.join(missing)}; it cannot be continued from")
        params, opt_state = {n: tensors[n] for n in names}, None
        stored = ", ".join(sorted({str(tensors[n].dtype).removeprefix("torch.") for n in names}))
    else:
        refuse_restart_over_progress(run_dir, cfg.name, "To continue from its last weights with the optimiser restarted, add "
                                     "--from-weights; to start over, train under another --name.")
        return None
    if cfg.steps < step:
        raise ConfigError(f"run {cfg.name} is already at step {step}; --steps must be at least that")
    if opt_state is None and cfg.steps > step:
        warnings.warn(f"{cfg.name}: no resume state; continuing from the weights of step {step} (stored as {stored}; trained in "
                      f"float32, new checkpoints written as {cfg.checkpoint_dtype}, the run's checkpoint dtype) with AdamW's "
                      "moments restarted at zero: not the trajectory of an uninterrupted run", RuntimeWarning, stacklevel=4)
    metrics = [r for r in read_metrics(run_dir / "metrics.csv") if r["step"] <= step]
    update = None
    if saved.steps != cfg.steps or (opt_state is None and cfg.steps > step):  # record it, once everything has been read
        update = record
        update["config"]["steps"] = cfg.steps
        update.setdefault("resumed", []).append({"command": command, "from_step": step, "steps": cfg.steps,
                                                 **({"from_weights": "optimiser moments restarted at zero"} if opt_state is None else {})})
    return _Saved(step, params, opt_state, metrics, update)


def _train_locked(configs, run_dirs, resume, dev, progress, command, capture, state_every_s, compile, background_writes,
                  from_weights) -> list[Path]:
    first = configs[0]
    task = first.make_task()
    spec = model_spec(first.model)
    saved = [_read_saved(cfg, d, task, dev, command, from_weights) if resume else None for cfg, d in zip(configs, run_dirs)]
    if any(s is None for s in saved) and any(s is not None for s in saved):
        raise RunError("some ensemble members have no resume state and some do; resume them one by one")
    if len({s.step for s in saved if s is not None}) > 1:
        raise RunError("ensemble members were saved at different steps; resume them one by one")
    if resume and saved[0] is None:
        warnings.warn(f"{', '.join(d.name for d in run_dirs)}: no resume state (stopped before the first state write); "
                      "training from step 0", RuntimeWarning, stacklevel=3)
    start_step = 0 if saved[0] is None else saved[0].step
    members, params = [], []
    for cfg, run_dir, s in zip(configs, run_dirs, saved):
        train_idx, _ = task.split(cfg.frac, cfg.split_seed)
        members.append(_Member(cfg, run_dir, train_idx, cfg.effective_batch_size(len(train_idx)), [] if s is None else s.metrics))
        if s is not None:
            params.append(s.params)
            continue
        params.append(init_params(cfg.model, task.d_vocab, task.n, task.n_ctx, seed=cfg.seed))
        remove_outputs(run_dir)  # what an earlier, killed start of this run left
        atomic_write_json(run_dir / "split.json", {"n_pairs": len(task), "train": train_idx.tolist()})
        atomic_write_json(
            run_dir / "config.json",
            {"config": cfg.to_dict(), "command": command, "grokinterp_version": __version__, "torch_version": torch.__version__,
             **machine(dev), "created": time.strftime("%Y-%m-%d %H:%M:%S")},
        )
    for run_dir, s in zip(run_dirs, saved):
        if s is not None and s.budget_update is not None:
            atomic_write_json(run_dir / "config.json", s.budget_update)

    stacked = _stack(params, dev)
    trainable = {n: p.requires_grad_(True) for n, p in stacked.items() if is_trainable(n, spec)}
    opt = _optimizer(members, trainable, task, dev)
    if start_step:
        for key in opt.state:
            for e, s in enumerate(saved):
                if s.opt_state is not None:  # continued from weights alone: the moments stay at zero
                    opt.state[key][e].copy_(s.opt_state[key])
        opt.t.fill_(start_step)

    inputs = task.all_inputs().to(dev)
    labels = task.all_labels().to(dev)
    E = len(members)
    train_mask = torch.zeros(E, len(task), dtype=torch.bool, device=dev)
    for e, m in enumerate(members):
        train_mask[e, torch.from_numpy(m.train_idx).to(dev)] = True
    full_batch = all(m.batch_size >= len(m.train_idx) for m in members)
    batch = lambda step: _padded_batch([batch_indices(m.train_idx, m.batch_size, m.cfg.seed, step) for m in members], dev)  # noqa: E731
    noisy = any(m.cfg.noisy for m in members)
    noise = Noise([m.cfg for m in members], [m.batch_size for m in members], dev) if noisy else None
    rate = attention_rates([m.cfg for m in members], dev)
    step_fn = TrainStep(stacked, trainable, opt, spec, inputs, labels, first.loss, *batch(start_step), noise=noise, attention_rate=rate,
                        capture=(dev.type == "cuda" and not noisy) if capture is None else capture, compile=compile)

    ckpt_steps = set(first.checkpoint_steps())
    saver = _StateSaver(state_every_s)
    writer = _Writer(dev.type == "cuda" if background_writes is None else background_writes)
    checkpoint = functools.partial(_checkpoint, members, stacked, opt, inputs=inputs, labels=labels, train_mask=train_mask, spec=spec,
                                   loss=first.loss, saver=saver, writer=writer, attention_rate=rate)
    bar = None
    try:
        if not start_step:
            checkpoint(0)
        bar = _progress(first.steps, start_step, E, progress)
        for step in range(start_step, first.steps):
            step_fn(None if full_batch else batch(step), step=step)
            if step + 1 in ckpt_steps:
                row = checkpoint(step + 1, final=step + 1 == first.steps)
                if bar is not None:
                    bar.set_postfix(train_acc=f"{row['train_acc']:.3f}", test_acc=f"{row['test_acc']:.3f}", refresh=False)
            if bar is not None:
                bar.update(1)
    except BaseException:
        writer.close(check=False)  # what was queued is written; the error in flight is the one to report
        raise
    finally:
        if bar is not None:
            bar.close()
    writer.close()
    return [m.run_dir for m in members]


def attention_rates(configs: list[RunConfig], dev=None) -> torch.Tensor | None:
    """Each member's attention rate alpha, shape (E,), or None when all are 1 (the plain transformer, computed as is)."""
    if all(c.attention_rate == 1 for c in configs):
        return None
    return torch.tensor([c.attention_rate for c in configs], dtype=torch.float32, device=dev)


def _optimizer(members: list[_Member], trainable: dict, task, dev) -> AdamW:
    """AdamW with each member's lr, weight decay, warm-up and optimiser variant."""
    cfgs = [m.cfg for m in members]
    per = lambda attr: torch.tensor([getattr(c, attr) for c in cfgs], device=dev)  # noqa: E731
    flag = lambda name: torch.tensor([c.optimizer == name for c in cfgs], device=dev)  # noqa: E731
    uses = lambda name: any(c.optimizer == name for c in cfgs)  # noqa: E731
    decay_to = None
    if uses("adamw-to-init"):  # the initial weights, recomputed from the seeds
        inits = [init_params(c.model, task.d_vocab, task.n, task.n_ctx, seed=c.seed) for c in cfgs]
        decay_to = {n: torch.stack([i[n] for i in inits]).to(dev) for n in trainable}
    return AdamW(trainable, per("lr").float(), per("wd").float(), betas=cfgs[0].betas, warmup=cfgs[0].warmup,
                 grokfast=(per("grokfast_alpha"), per("grokfast_lambda") * flag("grokfast")) if uses("grokfast") else None,
                 perpendicular=flag("perpendicular") if uses("perpendicular") else None,
                 decay_to=decay_to, decay_to_on=flag("adamw-to-init") if decay_to is not None else None)

class TrainStep:
    """One optimisation step of every member on its batch: forward, float64 loss, backward, AdamW.

    Batches go into fixed buffers (E, B) of indices and weights (1 for real examples, 0 for the
    padding of members with smaller batches). With ``capture`` (CUDA only) the whole step is
    recorded once as a CUDA graph and replayed. With ``compile`` the forward and loss (with their
    backward) and the AdamW update are compiled by ``torch.compile`` (TorchInductor: fused
    kernels; inside the CUDA graph when capturing). The warm-up iterations that capture and
    compilation need are undone, so the run's weights are the same as eager (to float tolerance).
    With ``noise`` (dropout, weight or update noise) the step runs eagerly: its generators are
    seeded per step.
    """

    def __init__(self, params, trainable, opt: AdamW, spec, inputs, labels, loss: str, idx, weight, capture: bool = False,
                 noise: Noise | None = None, attention_rate: torch.Tensor | None = None, compile: bool = False):
        self.params, self.trainable, self.opt, self.spec = params, trainable, opt, spec
        self.attention_rate = attention_rate
        self.inputs, self.labels, self.loss, self.noise = inputs, labels, loss, noise
        self.idx, self.weight = idx.clone(), weight.clone()
        if capture and noise is not None:
            raise ConfigError("dropout and noise are drawn afresh each step, which a CUDA graph cannot replay; train without capture")
        if compile and noise is not None:
            raise ConfigError("dropout and noise are drawn from per-step generators, which --compile does not support; train without it")
        if capture and idx.device.type != "cuda":
            raise ConfigError("CUDA-graph capture needs a CUDA device")
        self.loss_fn, self.update = (torch.compile(self._loss), torch.compile(opt.step)) if compile else (self._loss, opt.step)
        self.graph = self._warm_up(capture, compile) if capture or compile else None

    def _loss(self) -> torch.Tensor:
        noise = self.noise
        params = self.params if noise is None else noise.noisy_weights(self.params, self.trainable)
        logits = forward(params, self.inputs[self.idx], self.spec, dropout=noise.dropout if noise is not None and noise.dropout_on else None,
                         attention_rate=self.attention_rate)
        nll = per_example_loss(logits, self.labels[self.idx], self.loss)
        return ((nll * self.weight).sum(1) / self.weight.sum(1)).sum()

    def _step(self) -> None:
        loss = self.loss_fn()
        for p in self.trainable.values():
            p.grad = None
        loss.backward()
        self.update()
        if self.noise is not None:
            self.noise.perturb(self.trainable)

    def _warm_up(self, capture: bool, compile: bool):
        """Run the step (compiling it; for capture 3 times, off the capture stream, for the allocator,
        cuBLAS workspaces and autograd), undo those steps, and return the captured graph (or None)."""
        with torch.no_grad():
            saved = [(t, t.clone()) for t in [*self.params.values(), *self.opt.state.values(), self.opt.t]]
        side = torch.cuda.Stream() if capture else None
        if capture:
            side.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(side) if capture else contextlib.nullcontext():
                for _ in range(3 if capture else 1):
                    self._step()
        except Exception as e:
            if not compile:
                raise
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ConfigError(f"torch.compile failed on this machine ({type(e).__name__}: {reason}); train without --compile") from None
        if capture:
            torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for t, copy in saved:
                t.copy_(copy)
        if not capture:
            return None
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._step()
        except RuntimeError as e:  # a run should not die for want of a graph
            warnings.warn(f"CUDA-graph capture failed ({e}); training without it", RuntimeWarning, stacklevel=2)
            return None
        return graph

    def __call__(self, batch: tuple[torch.Tensor, torch.Tensor] | None = None, step: int = 0) -> None:
        """Train step ``step`` (0-based; it seeds the noise) on ``batch`` (indices, weights), or on the last batch when None."""
        if batch is not None:
            self.idx.copy_(batch[0])
            self.weight.copy_(batch[1])
        if self.noise is not None:
            self.noise.start(step)
        if self.graph is not None:
            self.graph.replay()
        else:
            self._step()


class _Writer:
    """Runs write jobs (a ``store`` writer and its arguments) in the order they are given: on a
    background thread when ``background``, else at once.

    The arguments must not change after ``put`` (tensors are CPU copies). At most ``max_pending``
    jobs wait; ``put`` blocks beyond that, so memory stays bounded. A job that fails stops every
    later one (nothing written after it could claim what it did not write) and is raised in the
    caller's thread, as one-line RunError, by the next ``put`` or by ``close``, which waits for
    the queued jobs to finish.
    """

    def __init__(self, background: bool = True, max_pending: int = 32):
        self.failed: tuple[Path, Exception] | None = None
        self.background = background
        self.jobs = queue.Queue(max_pending) if background else None
        self.thread = threading.Thread(target=self._drain, name="grokinterp-writer", daemon=True) if background else None
        if self.thread is not None:
            self.thread.start()

    def put(self, write, path: Path, *args, **kwargs) -> None:
        self._check()
        if self.jobs is None:
            self._run(write, path, args, kwargs)
            self._check()
        else:
            self.jobs.put((write, path, args, kwargs))

    def close(self, check: bool = True) -> None:
        if self.thread is not None and self.thread.is_alive():
            self.jobs.put(None)
            self.thread.join()
        if check:
            self._check()

    def _drain(self) -> None:
        while (job := self.jobs.get()) is not None:
            self._run(*job)

    def _run(self, write, path, args, kwargs) -> None:
        if self.failed is None:
            try:
                write(path, *args, **kwargs)
            except Exception as e:  # reported in the training thread
                self.failed = (path, e)

    def _check(self) -> None:
        if self.failed is not None:
            path, e = self.failed
            raise RunError(f"could not write {path} ({e}); training stopped: resume it with --resume once the problem is fixed")


class _StateSaver:
    """Decides when the resume state is written: at the first checkpoint, then at the first
    checkpoint at least ``every_s`` seconds after the last write, and at the end."""

    def __init__(self, every_s: float):
        self.every_s, self.last = every_s, None

    def due(self, final: bool) -> bool:
        now = time.monotonic()
        if final or self.last is None or now - self.last >= self.every_s:
            self.last = now
            return True
        return False


def _padded_batch(index_lists: list[np.ndarray], dev) -> tuple[torch.Tensor, torch.Tensor]:
    """(E, B_max) indices padded with 0 and weights 1 for real entries, 0 for padding."""
    B = max(len(i) for i in index_lists)
    idx = np.zeros((len(index_lists), B), dtype=np.int64)
    w = np.zeros((len(index_lists), B), dtype=np.float64)
    for e, i in enumerate(index_lists):
        idx[e, : len(i)], w[e, : len(i)] = i, 1.0
    return torch.from_numpy(idx).to(dev), torch.from_numpy(w).to(dev)


@torch.no_grad()
def evaluate(stacked: dict, inputs, labels, train_mask, spec, loss: str = "ce", chunk: int = 16384,
             attention_rate: torch.Tensor | None = None) -> list[dict]:
    """Train/test loss (float64) and accuracy of every ensemble member on every pair."""
    E = train_mask.shape[0]
    nll, correct = [], []
    for s in range(0, len(labels), chunk):
        x = inputs[s : s + chunk].expand(E, -1, -1)
        logits = forward(stacked, x, spec, attention_rate=attention_rate)
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


def _checkpoint(members, stacked, opt, step, inputs, labels, train_mask, spec, loss, saver: _StateSaver, writer: _Writer,
                final: bool = False, attention_rate: torch.Tensor | None = None) -> dict:
    """Evaluate, then queue (on ``writer``) checkpoint, metrics and, last when the saver says so, the resume
    state of every member, as CPU copies that later steps do not change."""
    save_state = saver.due(final)
    rows = evaluate(stacked, inputs, labels, train_mask, spec, loss, attention_rate=attention_rate)
    diverged = [f"{m.cfg.name} ({row['train_loss']})" for m, row in zip(members, rows) if not math.isfinite(row["train_loss"])]
    if diverged:
        last = members[0].metrics[-1]["step"] if members[0].metrics else None
        since = "" if last is None else f"; it was finite at step {last}, and the run keeps what it wrote up to that step"
        raise RunError(f"training stopped at step {step}: the training loss is not finite in run {', '.join(diverged)}{since}; "
                       "try a lower --lr")
    copy = lambda t, dtype=None: t.detach().to("cpu", dtype, copy=writer.background)  # noqa: E731  (queued: later steps must not change it)
    for e, (m, row) in enumerate(zip(members, rows)):
        if m.cfg.keeps_weights(step):
            dtype = getattr(torch, m.cfg.checkpoint_dtype)
            writer.put(atomic_write_tensors, checkpoint_path(m.run_dir, step), {k: copy(v[e], dtype) for k, v in stacked.items()},
                       metadata={"step": str(step)})
        m.metrics = [r for r in m.metrics if r["step"] < step] + [{"step": step, **row}]  # a new list: the queued one stays as is
        writer.put(write_metrics, m.run_dir / "metrics.csv", m.metrics)
        if not save_state:
            continue
        state = {f"param.{k}": copy(v[e]) for k, v in stacked.items()}
        state.update({f"opt.{k}": copy(v[e]) for k, v in opt.state.items()})
        writer.put(atomic_write_tensors, m.run_dir / "state.safetensors", state, metadata={"step": str(step)})
    return rows[0]


def _progress(total: int, initial: int, n_models: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    unit = "step" if n_models == 1 else f"step (x{n_models} models)"
    return tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True, desc="training")
