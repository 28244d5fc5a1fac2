"""Other people's checkpoints as ordinary runs: ``grokinterp import`` and ``from_models``.

Sources ``read_checkpoints`` understands:

- a folder with one checkpoint per file: ``.safetensors``, or ``.pt`` / ``.pth`` holding a state dict
  (or a dict with it under ``model`` / ``state_dict`` and ``epoch`` / ``step``, ``train_loss``,
  ``test_loss``, as Nanda's training code saves each epoch); the step comes from the file (safetensors
  metadata ``step``, the ``step`` / ``epoch`` entry) or else from the number in the file name;
- one file holding a list of state dicts, or a dict with the list under ``state_dicts`` or
  ``checkpoints`` and, where present, ``checkpoint_epochs``, ``train_losses``, ``test_losses``,
  ``train_indices``, ``test_indices`` and ``config``: Nanda's published progress-measures run as ARENA
  1.5.2 loads it, and TransformerLens' grokking demo.

State dicts are in TransformerLens layout, or in the older layout of Nanda's own model class
(``progress-measures-paper/transformers.py``), recognised by its 2-D ``W_O``: ``W_E`` (d_model,
d_vocab), ``W_Q/K/V`` (heads, d_head, d_model), ``W_O`` (d_model, heads * d_head) head-major,
``W_in`` (d_mlp, d_model), ``W_out`` (d_model, d_mlp); ``W_U`` and ``W_pos`` as in TransformerLens;
only the MLP has biases (the others are zero, as ARENA's ``load_in_state_dict`` sets them). An output
column for ``=`` (Nanda's ``d_vocab_out = p + 1``) is left out: the run's logits cover the answers.

Loading never runs code from a file: ``torch.load(weights_only=True)`` with an allow-list
(TransformerLens' config class and the numpy scalars and arrays such files hold), safetensors
otherwise. A file that needs anything else is refused and nothing is written.
"""

from __future__ import annotations

import json
import numbers
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import __version__
from .config import ConfigError, RunConfig
from .models import MODELS, parameter_shapes
from .runs import InMemoryRun
from .store import (
    RunError,
    atomic_write_json,
    atomic_write_tensors,
    checkpoint_path,
    default_runs_dir,
    read_tensors,
    validate_run_name,
    write_metrics,
)

BUFFERS = ("mask", "IGNORE")  # attention buffers some state dicts carry; not parameters
NANDA_TASKS = {"add": "add", "subtract": "sub", "x2xyy2": "quad"}  # fn_name in Nanda's Config -> our task
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")


@dataclass
class Checkpoints:
    """What a source file or folder holds, before conversion. Losses are as recorded: per epoch (index =
    step) or per checkpoint."""

    states: list[dict[str, Tensor]]
    steps: list[int] | None = None
    train_losses: list[float] | None = None
    test_losses: list[float] | None = None
    train_indices: np.ndarray | None = None
    test_indices: np.ndarray | None = None
    config: dict = field(default_factory=dict)


# ---- safe loading ----------------------------------------------------------------------------------


def _allowed_globals() -> list:
    """Classes and functions a checkpoint file may name: TransformerLens' config, numpy scalars and arrays."""
    try:
        from numpy._core import multiarray  # numpy 2
    except ImportError:
        from numpy.core import multiarray
    allowed = [np.dtype, np.ndarray]
    for fn in (multiarray.scalar, multiarray._reconstruct):  # files name them under numpy 1's or 2's module
        allowed += [(fn, f"numpy.core.multiarray.{fn.__name__}"), (fn, f"numpy._core.multiarray.{fn.__name__}")]
    allowed += [type(np.dtype(t)) for t in ("f2", "f4", "f8", "i4", "i8", "u1", "b1")]
    try:
        from transformer_lens import HookedTransformerConfig

        allowed += [HookedTransformerConfig, (HookedTransformerConfig, "transformer_lens.HookedTransformerConfig.HookedTransformerConfig")]
    except ImportError:  # without TransformerLens a file holding its config is refused like any other class
        pass
    return allowed


def _named_globals(path: Path) -> list[str]:
    """Classes and functions a pickle names (``module.name``), read by disassembling it (pickletools),
    never by running it; for naming what a refused file holds."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):  # torch.save's format: the pickle is data.pkl inside
            with zipfile.ZipFile(path) as z:
                data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
        else:
            data = path.read_bytes()
        found, strings = [], []
        for op, arg, _ in pickletools.genops(data):
            if isinstance(arg, str) and "UNICODE" in op.name:
                strings.append(arg)
            elif op.name == "GLOBAL":
                found.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
        return found
    except Exception:  # noqa: BLE001 - a file that cannot be disassembled names nothing
        return []


def safe_load(path: Path):
    """``torch.load(path, weights_only=True)`` with the allow-list; one-line RunError when refused."""
    with torch.serialization.safe_globals(_allowed_globals()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. torch's note on pickle protocols: the refusal below says it all
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a file that does not load safely is refused or reported corrupt
            message, kind = str(e), type(e).__name__
    named = re.findall(r"GLOBAL ([\w.]+)", message) or [
        g for g in _named_globals(path) if not g.startswith(("torch.", "collections.", "numpy.", "transformer_lens."))]
    if named:
        raise RunError(f"{path}: refused: it holds {', '.join(sorted(set(named))[:3])}, which may run code when loaded; only "
                       "tensors, numbers, strings, lists, dicts and TransformerLens configs are read")
    if "Weights only load failed" in message:  # torch's weights_only unpickler met something it will not run
        detail = _first_sentence(message.split("WeightsUnpickler error:", 1)[-1])
        raise RunError(f"{path}: refused: not a checkpoint that loads without running code ({detail})")
    detail = _first_sentence(message) if kind == "RuntimeError" else f"{kind}: {_first_sentence(message)}"
    raise RunError(f"{path}: cannot be read: not a PyTorch checkpoint, or a corrupt or truncated one ({detail}); "
                   "copy or save the file again")


def _first_sentence(message: str) -> str:
    """The first sentence of an error message's first non-empty line, whole (torch's run on for lines)."""
    line = next((line.strip() for line in message.splitlines() if line.strip()), "unreadable")
    return line.split(". ", 1)[0].rstrip(".")


def _to_json(x):
    """A JSON-safe copy of a config (dict, dataclass or object): tensors and other objects become strings."""
    if isinstance(x, dict):
        return {str(k): _to_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_json(v) for v in x]
    if isinstance(x, (bool, int, float, str)) or x is None:
        return x
    if isinstance(x, (np.generic,)):
        return x.item()
    if hasattr(x, "__dict__") and not isinstance(x, (Tensor, np.ndarray, type)):
        return _to_json(vars(x))
    return str(x)


def _indices(x, what: str, path: Path) -> np.ndarray:
    try:
        a = np.asarray(x.cpu().numpy() if isinstance(x, Tensor) else x)
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise ValueError
    except (ValueError, TypeError):
        raise RunError(f"{path}: {what} is not a list of integers") from None
    return a.astype(np.int64)


def _losses(x, what: str, path: Path) -> list[float] | None:
    if x is None:
        return None
    try:
        return [float(v) for v in (x.tolist() if isinstance(x, (Tensor, np.ndarray)) else x)]
    except (TypeError, ValueError):
        raise RunError(f"{path}: {what} is not a list of numbers") from None


def _state_dict(x, path: Path) -> dict[str, Tensor]:
    if not isinstance(x, dict) or not x or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in x.items()):
        raise RunError(f"{path}: expected a state dict (parameter names -> tensors), found {type(x).__name__}")
    return dict(x)


def _step_from_name(path: Path) -> int | None:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


def _one_checkpoint(obj, path: Path) -> tuple[dict, int | None, dict]:
    """A loaded checkpoint: a state dict, or a dict holding one under ``model`` / ``state_dict`` (Nanda's
    per-epoch files) -> (state dict, step or None, {train_loss, test_loss} where recorded)."""
    if isinstance(obj, dict) and isinstance(obj.get("model", obj.get("state_dict")), dict):
        step = obj.get("step", obj.get("epoch"))
        losses = {k: float(obj[k]) for k in ("train_loss", "test_loss") if isinstance(obj.get(k), (int, float, Tensor))}
        return _state_dict(obj.get("model", obj.get("state_dict")), path), None if step is None else int(step), losses
    return _state_dict(obj, path), None, {}


def _read_one(path: Path) -> tuple[dict, int | None, dict]:
    """One checkpoint file, as ``_one_checkpoint``; safetensors give their step in the metadata."""
    if path.suffix == ".safetensors":
        tensors, meta = read_tensors(path)
        step = meta.get("step")
        return tensors, int(step) if step is not None and step.isdigit() else None, {}
    return _one_checkpoint(safe_load(path), path)


def read_checkpoints(source: str | Path) -> Checkpoints:
    """Read a checkpoint folder or file (see the module docstring), safely; nothing is converted yet."""
    source = Path(source)
    if source.is_dir():
        files = sorted(f for f in source.iterdir() if f.suffix in CHECKPOINT_SUFFIXES and f.is_file())
        if not files:
            raise RunError(f"{source} has no .safetensors, .pt or .pth files")
        states, steps, recorded = [], [], []
        for f in files:
            state, step, losses = _read_one(f)
            step = step if step is not None else _step_from_name(f)
            if step is None:
                raise RunError(f"cannot tell the step of {f}: store 'step' in it or put the step in its name (e.g. step_100.pt)")
            states.append(state)
            steps.append(step)
            recorded.append(losses)
        if len(set(steps)) != len(steps):
            raise RunError(f"{source} has two checkpoints for one step; keep one file per step")
        order = np.argsort(steps)
        ck = Checkpoints([states[i] for i in order], [steps[i] for i in order])
        if all("train_loss" in r and "test_loss" in r for r in recorded):
            ck.train_losses = [recorded[i]["train_loss"] for i in order]
            ck.test_losses = [recorded[i]["test_loss"] for i in order]
        return ck
    if not source.is_file():
        raise RunError(f"{source} does not exist")
    if source.suffix == ".safetensors":
        state, step, _ = _read_one(source)
        return Checkpoints([state], [step or 0])
    obj = safe_load(source)
    if isinstance(obj, (list, tuple)):
        return Checkpoints([_state_dict(s, source) for s in obj])
    if isinstance(obj, dict):
        listed = obj.get("state_dicts", obj.get("checkpoints"))
        if isinstance(listed, (list, tuple)):
            ck = Checkpoints([_state_dict(s, source) for s in listed])
            if obj.get("checkpoint_epochs") is not None:
                ck.steps = _indices(obj["checkpoint_epochs"], "checkpoint_epochs", source).tolist()
                if len(ck.steps) != len(ck.states):
                    raise RunError(f"{source}: {len(ck.steps)} checkpoint_epochs for {len(ck.states)} checkpoints")
            ck.train_losses = _losses(obj.get("train_losses"), "train_losses", source)
            ck.test_losses = _losses(obj.get("test_losses"), "test_losses", source)
            for key in ("train_indices", "test_indices"):
                if obj.get(key) is not None:
                    setattr(ck, key, _indices(obj[key], key, source))
            ck.config = _to_json(obj.get("config")) if obj.get("config") is not None else {}
            if not isinstance(ck.config, dict):
                ck.config = {"value": ck.config}
            return ck
        state, step, _ = _one_checkpoint(obj, source)
        return Checkpoints([state], [step or 0])
    raise RunError(f"{source} holds a {type(obj).__name__}, not state dicts; see `grokinterp import --help` for the layouts read")


# ---- conversion --------------------------------------------------------------------------------------


def is_nanda_layout(state: dict[str, Tensor]) -> bool:
    """Nanda's own model class stores W_O as (d_model, n_heads * d_head): 2-D instead of 3-D."""
    return any(k.endswith("attn.W_O") and v.dim() == 2 for k, v in state.items())


def to_transformer_lens(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """TransformerLens names and shapes from either layout, as float32 copies; attention buffers dropped.

    Nanda's layout: W_E^T; W_Q, W_K, W_V (heads, d_head, d_model) -> (heads, d_model, d_head);
    W_O (d_model, heads * d_head) -> (heads, d_head, d_model); W_in^T, W_out^T; W_U and W_pos kept;
    only the MLP's biases kept (the rest are zero, filled in by ``fit_to_task``).
    """
    # copies: a live model's parameters (or its state_dict()) must not change the run afterwards
    out = {k: v.detach().float().cpu().clone() for k, v in state.items() if k.rsplit(".", 1)[-1] not in BUFFERS}
    if not is_nanda_layout(out):
        return out
    converted = {}
    for k, v in out.items():
        leaf = k.rsplit(".", 1)[-1]
        if leaf in ("W_E", "W_in", "W_out"):
            converted[k] = v.T.contiguous()
        elif leaf in ("W_Q", "W_K", "W_V"):
            converted[k] = v.transpose(-1, -2).contiguous()
        elif leaf == "W_O":
            heads = out[k[: -len("W_O")] + "W_Q"].shape[0]
            converted[k] = v.reshape(v.shape[0], heads, -1).permute(1, 2, 0).contiguous()
        elif leaf in ("W_U", "W_pos") or (leaf.startswith("b_") and ".mlp." in k):
            converted[k] = v
        elif not leaf.startswith("b_"):
            converted[k] = v  # an unknown name: fit_to_task reports it
    return converted


class MisfitError(RunError):
    """Weights whose shapes fit no model on the task asked for."""


def fit_to_task(weights: dict[str, Tensor], cfg: RunConfig) -> tuple[dict[str, Tensor], bool]:
    """The weights completed for ``cfg.model`` on ``cfg``'s task: missing biases as zeros, an output
    column for ``=`` left out. Returns (weights, whether a column was left out); RunError on a misfit."""
    w, dropped, bad = _completed(weights, cfg)
    if bad:
        raise MisfitError(f"the weights do not fit {cfg.model} on {cfg.make_task().formula}: {', '.join(bad[:3])}")
    return w, dropped


def _completed(weights: dict[str, Tensor], cfg: RunConfig) -> tuple[dict[str, Tensor], bool, list[str]]:
    """(the weights completed as in ``fit_to_task``, whether a column was left out, their misfits:
    'name (got) (expected ...)' for each tensor missing, extra or of another shape)."""
    task = cfg.make_task()
    expected = parameter_shapes(cfg.model, task.d_vocab, task.n, task.n_ctx)
    w = dict(weights)
    dropped = False
    if "unembed.W_U" in w and w["unembed.W_U"].dim() == 2 and w["unembed.W_U"].shape[1] == task.n + 1:
        w["unembed.W_U"], dropped = w["unembed.W_U"][:, : task.n], True
        if "unembed.b_U" in w:
            w["unembed.b_U"] = w["unembed.b_U"][: task.n]
    for name, shape in expected.items():
        if name not in w and name.rsplit(".", 1)[-1].startswith("b_"):
            w[name] = torch.zeros(shape)
    got = {k: tuple(v.shape) for k, v in w.items()}
    bad = sorted(set(got) ^ set(expected)) or [k for k in expected if got[k] != expected[k]]
    return {k: w[k] for k in expected if k in w}, dropped, [f"{k} {got.get(k, 'missing')} (expected {expected.get(k, 'none')})" for k in bad]


def infer_model(weights: dict[str, Tensor], task: str, p: int) -> str:
    """The named model whose parameters the weights fit on the task (``model`` names in models.MODELS);
    RunError naming the tensors that differ from the closest model (fewest misfits) otherwise."""
    misfit = {}
    for name in MODELS:
        if not (bad := _completed(weights, RunConfig(name="probe", task=task, p=p, model=name))[2]):
            return name
        misfit[name] = bad
    closest = min(misfit, key=lambda m: len(misfit[m]))
    t = RunConfig(name="probe", task=task, p=p, model=closest).make_task()
    what = f"task {task} (p = {p})" if t.is_modular else f"task {task} ({t.formula}, {t.n} elements)"
    bad = misfit[closest]
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    raise MisfitError(f"the weights fit no known model on {what}; closest is {closest}, where {', '.join(bad[:3])}{more}; "
                   f"known models: {', '.join(MODELS)}")


# ---- a run from weights ------------------------------------------------------------------------------


def checkpoint_metrics(weights: dict[int, dict[str, Tensor]], cfg: RunConfig, train_idx: np.ndarray,
                       progress: bool = False, chunk: int = 16) -> list[dict]:
    """metrics.csv rows (step, train/test loss and accuracy) of every checkpoint, as training logs them."""
    from tqdm.auto import tqdm

    from .training import evaluate

    task, spec = cfg.make_task(), cfg.spec
    inputs, labels = task.all_inputs(), task.all_labels()
    steps = sorted(weights)
    rows = []
    with tqdm(total=len(steps), unit="checkpoint", desc="evaluating", disable=not progress) as bar:
        for s in range(0, len(steps), chunk):
            part = steps[s : s + chunk]
            stacked = {k: torch.stack([weights[t][k] for t in part]) for k in weights[part[0]]}
            mask = torch.zeros(len(part), len(task), dtype=torch.bool)
            mask[:, torch.from_numpy(train_idx)] = True
            rows += [{"step": t, **r} for t, r in zip(part, evaluate(stacked, inputs, labels, mask, spec, cfg.loss))]
            bar.update(len(part))
    return rows


PYTHON_SPLIT = ("train_idx", "frac", "split_seed")  # how from_models and import_run name the split in messages
CLI_SPLIT = ("--train-indices FILE", "--frac", "--split-seed")


def _split(task, train_idx, frac, split_seed, names=PYTHON_SPLIT) -> tuple[np.ndarray, str]:
    """Train indices into ``task.pairs``, and how they were chosen; ``names``: the arguments, for messages."""
    idx_name, frac_name, seed_name = names
    if train_idx is not None:
        if frac is not None or split_seed is not None:
            raise ConfigError(f"give the split once: {idx_name}, or {frac_name} and {seed_name}")
        idx = np.unique(np.asarray(train_idx, dtype=np.int64))
        if not len(idx) or idx.min() < 0 or idx.max() >= len(task) or len(idx) == len(task):
            raise RunError(f"train indices must be pair indices in 0..{len(task) - 1} of {task.formula}, leaving a test set")
        return idx, "train indices given (split_seed in the config unused)"
    if frac is None or split_seed is None:
        raise ConfigError(f"say which pairs were trained on: {frac_name} F and {seed_name} S (got {frac_name} {frac}, "
                          f"{seed_name} {split_seed}), or {idx_name}")
    return task.split(frac, split_seed)[0], f"frac {frac}, split seed {split_seed}"


def from_models(models_or_state_dicts, steps: list[int], task: str, p: int = 0, train_idx=None, frac: float | None = None,
                split_seed: int | None = None, model: str | None = None, name: str = "in-memory",
                progress: bool = False, _split_names: tuple[str, str, str] = PYTHON_SPLIT) -> InMemoryRun:
    """A run in memory from models (any ``nn.Module`` with TransformerLens parameter names, e.g. a
    HookedTransformer) or state dicts (either layout) at ``steps``, on ``task`` (``p`` for modular
    tasks); the split as ``train_idx`` (indices into the task's pairs) or ``frac`` + ``split_seed``
    (``Task.split``). ``model`` (a name in models.MODELS) is found from the shapes when left out.
    Every analysis accepts the result; its metrics are computed here, as training logs them.
    """
    states = [m if isinstance(m, dict) else dict(m.named_parameters()) for m in models_or_state_dicts]
    if len(states) != len(steps) or not states:
        raise ConfigError(f"give one step per model: {len(states)} models, {len(steps)} steps")
    if bad := [s for s in steps if not isinstance(s, numbers.Integral) or isinstance(s, bool) or s < 0]:
        raise ConfigError(f"steps are training steps, integers 0 or more; got {', '.join(map(repr, bad))}")
    if len(set(steps)) != len(steps):
        raise ConfigError("steps must be distinct")
    converted = [to_transformer_lens(s) for s in states]
    model = model or infer_model(converted[0], task, p)
    probe = RunConfig(name=validate_run_name(name), task=task, p=p, model=model)
    t = probe.make_task()
    idx, split_note = _split(t, train_idx, frac, split_seed, _split_names)
    steps = [int(s) for s in steps]
    cfg = probe.replace(frac=len(idx) / len(t), split_seed=split_seed if split_seed is not None else 0,
                        steps=max(max(steps), 1), checkpoint_every=int(max(1, min(np.diff(sorted(steps)), default=1))),
                        log_checkpoints=False, description=f"made in memory ({split_note})")
    weights, dropped = {}, False
    for step, w in zip(steps, converted):
        weights[step], d = fit_to_task(w, cfg)
        dropped |= d
    metrics = checkpoint_metrics(weights, cfg, idx, progress)
    return InMemoryRun(cfg, weights, idx, metrics, {"split": split_note, "dropped_equals_output": dropped})


# ---- grokinterp import -------------------------------------------------------------------------------


def read_train_indices(path: str | Path) -> np.ndarray:
    """Integers from a text file: a JSON list, or separated by commas, spaces or new lines."""
    path = Path(path)
    try:
        text = path.read_text().strip()
        values = json.loads(text) if text.startswith("[") else [int(v) for v in re.split(r"[,\s]+", text) if v]
        return _indices(values, "the file", path)
    except FileNotFoundError:
        raise RunError(f"{path} does not exist") from None
    except (ValueError, UnicodeDecodeError):
        raise RunError(f"{path} is not a list of integers (JSON, or separated by commas or spaces)") from None


def _recorded_at(losses: list[float] | None, step: int, index: int, n_checkpoints: int) -> float | None:
    """A recorded loss for the checkpoint: per epoch (index = step) or per checkpoint."""
    if losses is None:
        return None
    if len(losses) > step:
        return losses[step]
    return losses[index] if len(losses) == n_checkpoints else None


def import_run(source: str | Path, name: str | None = None, runs_dir: str | Path | None = None, task: str | None = None,
               p: int | None = None, frac: float | None = None, split_seed: int | None = None,
               train_indices: str | Path | None = None, model: str | None = None, checkpoint_every: int | None = None,
               progress: bool = True, command: str | None = None) -> tuple[Path, dict]:
    """Read ``source`` safely, convert it, check it against the task, and write a run directory.

    Returns (run directory, summary). The summary's ``loss_check`` compares the last checkpoint's
    train/test loss, recomputed with every output the file's model has, with the losses the file
    recorded there (when it recorded any). Nothing is written unless every check passes.
    """
    source = Path(source)
    name = validate_run_name(name or source.stem)
    root = default_runs_dir(runs_dir)
    if (root / name).exists():
        raise ConfigError(f"run {name!r} already exists in {root}; choose another --name")
    ck = read_checkpoints(source)
    if ck.steps is None:
        ck.steps = [i * (checkpoint_every or 1) for i in range(len(ck.states))]
        steps_note = f"every {checkpoint_every} steps (--checkpoint-every)" if checkpoint_every else \
            "numbered 0, 1, 2, ... (the file gives no steps; --checkpoint-every N sets them)"
    elif checkpoint_every is not None:
        raise ConfigError(f"{source} gives its checkpoints' steps; leave out --checkpoint-every")
    else:
        steps_note = "from the source"
    task = task or NANDA_TASKS.get(ck.config.get("fn_name"))
    if task is None:
        raise ConfigError(f"say which task {source} was trained on: --task (e.g. add)")
    p = p if p is not None else ck.config.get("p", 0)
    if train_indices is not None and ck.train_indices is not None:
        raise ConfigError(f"{source} holds its own train indices; leave out --train-indices")
    given = read_train_indices(train_indices) if train_indices is not None else ck.train_indices
    if ck.train_indices is not None and (frac is not None or split_seed is not None):
        raise ConfigError(f"{source} holds its own train indices; leave out --frac and --split-seed")
    try:
        run = from_models(ck.states, ck.steps, task, p, given, frac, split_seed, model, name, progress, CLI_SPLIT)
    except MisfitError as e:
        if ck.config.get("p") not in (None, p):
            raise RunError(f"{e}; the file's config says p = {ck.config['p']}: leave out --p to use it") from None
        raise
    t = run.task
    if ck.test_indices is not None and not np.array_equal(np.sort(ck.test_indices), run.test_idx):
        raise RunError(f"{source}: train_indices and test_indices do not split the {len(t)} pairs of {t.formula} between them")

    last, full = run.steps[-1], to_transformer_lens(ck.states[-1])  # with every output the file's model has
    check = {}
    recorded = {k: _recorded_at(losses, last, len(ck.states) - 1, len(ck.states))
                for k, losses in (("train_loss", ck.train_losses), ("test_loss", ck.test_losses))}
    if any(v is not None for v in recorded.values()):
        from .training import evaluate

        w = dict(run.weights(last))
        if run.record["dropped_equals_output"]:
            w["unembed.W_U"] = full["unembed.W_U"]
            w["unembed.b_U"] = full.get("unembed.b_U", torch.zeros(t.n + 1))
        mask = torch.from_numpy(run.train_mask)[None]
        again = evaluate({k: v[None] for k, v in w.items()}, t.all_inputs(), t.all_labels(), mask, run.config.spec)[0]
        check = {k: {"recorded": v, "recomputed": again[k], "difference": again[k] - v} for k, v in recorded.items() if v is not None}

    split = "the source's train_indices" if ck.train_indices is not None else run.record["split"]
    cfg = run.config.replace(description=f"imported from {source.name} by grokinterp import")
    record = {"config": cfg.to_dict(), "command": command or " ".join(["grokinterp"] + sys.argv[1:]),
              "grokinterp_version": __version__, "torch_version": torch.__version__, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
              "import": {"source": str(source.resolve()), "layout": "nanda" if is_nanda_layout(ck.states[-1]) else "transformer_lens",
                         "steps": steps_note, "split": split, "dropped_equals_output": run.record["dropped_equals_output"],
                         "loss_check": check, "source_config": ck.config}}
    run_dir = _write(root, name, run, record)
    summary = {"run": name, "path": str(run_dir), "model": cfg.model, "task": t.formula, "checkpoints": len(run.steps),
               "first_step": run.steps[0], "last_step": last, "n_train": len(run.train_idx), "n_test": len(run.test_idx),
               **record["import"]}
    return run_dir, summary


def _write(root: Path, name: str, run: InMemoryRun, record: dict) -> Path:
    """Write the run into a hidden folder beside its place and rename it there: all or nothing."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.importing-"))
    try:
        for step in run.steps:
            atomic_write_tensors(checkpoint_path(tmp, step), run.weights(step), metadata={"step": str(step)})
        atomic_write_json(tmp / "split.json", {"n_pairs": len(run.task), "train": run.train_idx.tolist()})
        write_metrics(tmp / "metrics.csv", run.metric_rows)
        atomic_write_json(tmp / "config.json", record)
        os.rename(tmp, root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root / name
