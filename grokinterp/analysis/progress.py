"""Progress measures over training (Nanda et al. 2023, Section 5).

- restricted loss: logits kept only along the key frequencies' cos(w(a+b)), sin(w(a+b))
  directions (plus each answer's mean), evaluated on all pairs;
- excluded loss: those directions removed, evaluated on the training pairs;
- Gini coefficient (Hurley and Rickard) of the Fourier-component norms of W_E and of W_L: over
  the p component norms (const, cos k, sin k), and per frequency over the (p-1)/2 norms
  sqrt(|cos k|^2 + |sin k|^2) (constant left out);
- total sum of squared weights.

Without key frequencies (no neuron clusters) the restricted and excluded losses are undefined: NaN.

For other modular tasks the directions are cos/sin(w z) with z = x op y (for x-y: cos(w(a-b))).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..engine import per_example_loss
from ..models import ModelSpec, is_trainable
from ..tasks import Task
from .batched import chunk_size, chunks, logits_and_neurons
from .fourier import answer_direction_table, embedding_spectrum, frequency_energy, logit_map_spectrum


def gini(c: Float[Tensor, "... n"]) -> Float[Tensor, "..."]:
    """G = sum_i (2i - n - 1) c_(i) / (n sum_i c_i), c sorted ascending, i = 1..n (c >= 0)."""
    c = torch.sort(c.double(), dim=-1).values
    n = c.shape[-1]
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return ((2 * i - n - 1) * c).sum(-1) / (n * c.sum(-1).clamp_min(1e-30))


def fourier_ginis(weights: dict, p: int) -> dict[str, np.ndarray]:
    """(S,) Gini of W_E's and W_L's Fourier norms: over the p component norms (const, cos k, sin k)
    and per frequency over the (p-1)/2 norms sqrt(|cos k|^2 + |sin k|^2)."""
    emb, wl = embedding_spectrum(weights, p), logit_map_spectrum(weights)
    return {"gini_embedding": gini(emb).numpy(), "gini_logit_map": gini(wl).numpy(),
            "gini_embedding_per_frequency": gini(frequency_energy(emb).sqrt()).numpy(),
            "gini_logit_map_per_frequency": gini(frequency_energy(wl).sqrt()).numpy()}


def sum_squared_weights(weights: dict, spec: ModelSpec | None = None) -> Float[Tensor, "S"]:
    """Total sum of squared trainable parameters per checkpoint."""
    return sum(v.double().pow(2).flatten(1).sum(1) for k, v in weights.items() if is_trainable(k, spec))


def restricted_and_excluded_loss(logits: Float[Tensor, "S N n"], labels: Tensor, freqs: list[int],
                                 train: Tensor) -> tuple[Tensor, Tensor]:
    """(restricted loss on all pairs, excluded loss on the train pairs), each of shape (S,).

    The directions are ``answer_directions(labels, n, freqs)``: cos(w_k z), sin(w_k z) of each pair's
    answer z. restricted logits = each answer's mean over inputs + the part along the directions;
    excluded logits = logits - the part along the directions.

    The directions depend on a pair only through its answer, so the part along them is computed once
    per answer (n rows, not N) and so are the restricted logits: those of a pair are those of its answer.
    """
    if isinstance(freqs, Tensor) or not all(isinstance(k, (int, np.integer)) for k in freqs):
        raise TypeError("restricted_and_excluded_loss takes the key frequencies (a list of ints), not direction vectors")
    logits = logits.double()
    S, N, n = logits.shape
    table = answer_direction_table(labels.numpy(), n, freqs)  # (D, n)
    counts = torch.bincount(labels, minlength=n).double()
    mean = logits.mean(1, keepdim=True)  # (S, 1, n)
    sums = logits.new_zeros(S, n, n).index_add_(1, labels, logits)  # (S, answer, n): summed logits per answer
    # per checkpoint: a batched product could round differently with the number of checkpoints batched
    coef = torch.stack([table @ sums[s] for s in range(S)]) - (table @ counts)[None, :, None] * mean  # directions @ (logits - mean)
    along = torch.stack([table.T @ coef[s] for s in range(S)])  # (S, answer, n): the part along the directions of a pair with that answer
    restricted = (per_example_loss(along + mean, torch.arange(n).expand(S, -1)) * counts).sum(1) / N
    excluded = per_example_loss(logits[:, train] - along[:, labels[train]], labels[train].expand(S, -1)).mean(1)
    return restricted, excluded


@dataclass
class ProgressMeasures:
    """One value per checkpoint for every measure (arrays of shape (S,))."""

    steps: np.ndarray
    key_frequencies: list[int]
    train_loss: np.ndarray
    test_loss: np.ndarray
    restricted_loss: np.ndarray
    excluded_loss: np.ndarray
    gini_embedding: np.ndarray  # over the p component norms (const, cos k, sin k)
    gini_logit_map: np.ndarray
    gini_embedding_per_frequency: np.ndarray  # over the (p-1)/2 frequency norms, constant left out
    gini_logit_map_per_frequency: np.ndarray
    sum_squared_weights: np.ndarray
    train_acc: np.ndarray
    test_acc: np.ndarray

    def as_dict(self) -> dict:
        """Lists for JSON; NaN (undefined) becomes None."""
        return {k: (_none_for_nan(v.tolist()) if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}

    def at(self, i: int) -> dict:
        return {k: (_none_for_nan(v[i].item()) if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}


def _none_for_nan(v):
    if isinstance(v, list):
        return [_none_for_nan(x) for x in v]
    return None if isinstance(v, float) and np.isnan(v) else v


@torch.no_grad()
def progress_measures(weights: dict, steps, task: Task, spec: ModelSpec, train_mask: np.ndarray, key_freqs: list[int],
                      progress=None) -> ProgressMeasures:
    """All measures for stacked checkpoints, in batched forward passes (``progress``: a tqdm-like callback).
    ``spec``: the run's (``RunConfig.spec``, with its attention rate). With ``key_freqs`` empty the
    restricted and excluded losses are NaN (undefined)."""
    train = torch.from_numpy(train_mask)
    labels = task.all_labels()
    cols: dict[str, list] = {k: [] for k in ("train_loss", "test_loss", "restricted_loss", "excluded_loss", "train_acc", "test_acc")}
    for part in chunks(weights, chunk_size(task, spec.d_mlp)):
        logits, _ = logits_and_neurons(part, task, spec)
        logits = logits.double()
        S = logits.shape[0]
        y = labels.expand(S, -1)
        nll = per_example_loss(logits, y)
        correct = (logits.argmax(-1) == y).double()
        if key_freqs:
            restricted, excluded = restricted_and_excluded_loss(logits, labels, key_freqs, train)
        else:
            restricted = excluded = torch.full((S,), float("nan"), dtype=torch.float64)
        cols["train_loss"].append(nll[:, train].mean(1))
        cols["test_loss"].append(nll[:, ~train].mean(1))
        cols["train_acc"].append(correct[:, train].mean(1))
        cols["test_acc"].append(correct[:, ~train].mean(1))
        cols["restricted_loss"].append(restricted)
        cols["excluded_loss"].append(excluded)
        if progress is not None:
            progress(S)
    out = {k: torch.cat(v).numpy() for k, v in cols.items()}
    return ProgressMeasures(
        steps=np.asarray(steps),
        key_frequencies=list(key_freqs),
        **fourier_ginis(weights, task.p),
        sum_squared_weights=sum_squared_weights(weights, spec).numpy(),
        **out,
    )
