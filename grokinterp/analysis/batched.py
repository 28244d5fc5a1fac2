"""Run every checkpoint at once: weights stacked along a leading checkpoint axis S.

Analyses take ``weights``: {TransformerLens parameter name: tensor (S, ...)} (from
``Run.stacked_weights()``), or a single ``HookedTransformer`` (S = 1). The forward is the training
engine's, so S checkpoints cost one batched pass instead of S ``run_with_cache`` calls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from typing import Iterator

import torch
from torch import Tensor

from ..engine import forward
from ..models import ModelSpec
from ..tasks import Task


def as_stacked(model_or_weights) -> dict[str, Tensor]:
    """{name: (S, ...)} from stacked weights (returned as is) or from one HookedTransformer (S = 1)."""
    if isinstance(model_or_weights, dict):
        return model_or_weights
    return {n: p.detach()[None].float().cpu() for n, p in model_or_weights.named_parameters()}


def n_checkpoints(weights: dict[str, Tensor]) -> int:
    return next(iter(weights.values())).shape[0]


def chunks(weights: dict[str, Tensor], size: int) -> Iterator[dict[str, Tensor]]:
    """Slices of at most ``size`` checkpoints."""
    S = n_checkpoints(weights)
    for s in range(0, S, size):
        yield {k: v[s : s + size] for k, v in weights.items()}


def chunk_size(task: Task, d_mlp: int, budget_bytes: float = 2e8) -> int:
    """How many checkpoints fit a memory budget when running every pair of the task."""
    per_ckpt = len(task) * (task.n * 8 + d_mlp * 4 * 3)
    return max(1, int(budget_bytes // per_ckpt))


@functools.cache
def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Ask glibc's malloc to reuse freed blocks of up to ``limit_bytes`` instead of handing them back
    to the OS (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD). A batched forward allocates tens of MB per
    checkpoint; returned to the OS, each allocation is page-faulted in afresh, which cost a third of
    the CPU time of an analysis over 259 checkpoints (benchmarks/bench_analysis.py). The process keeps
    its peak memory instead. Once per process; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, limit_bytes)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * limit_bytes))


@torch.no_grad()
def logits_and_neurons(weights: dict[str, Tensor], task: Task, spec: ModelSpec, inputs: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Final-position logits (S, N, n) and last-layer MLP activations (S, N, d_mlp; None for attention-only
    models) on every pair. ``spec``: the run's, ``RunConfig.spec``, which carries its attention rate."""
    keep_freed_memory()
    inputs = task.all_inputs() if inputs is None else inputs
    S = n_checkpoints(weights)
    cache: dict = {}
    logits = forward(weights, inputs.expand(S, -1, -1), spec, cache, fused=True)
    return logits, cache.get("mlp_post")
