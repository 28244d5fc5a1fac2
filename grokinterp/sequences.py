"""Sequence tasks with phase changes (Nanda's grokking analysis, Alignment Forum 2022).

- ``add5``: 5-digit addition ``a + b = c``: tokens ``a4..a0 + b4..b0 = c5..c0`` (digits 0-9,
  ``+`` = 10, ``=`` = 11), the 6 answer digits predicted token by token; one loss per answer digit.
- ``repeat``: random tokens (vocab 128) of length 85 in which a 16-token subsequence appears twice;
  the loss is on predicting the second occurrence (positions after its first token).

Each has an infinite-data mode (a fresh batch from (seed, step) every step) and a finite mode
(a fixed training set of ``n_train`` sequences from the seed); test batches are always fresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Add5:
    n_digits: int = 5
    name: str = "add5"

    @property
    def d_vocab(self) -> int:
        return 12

    @property
    def n_ctx(self) -> int:
        return 3 * self.n_digits + 3

    @property
    def loss_positions(self) -> np.ndarray:
        """Positions whose next-token prediction is an answer digit (the '=' and c5..c1)."""
        start = 2 * self.n_digits + 1
        return np.arange(start, start + self.n_digits + 1)

    @property
    def loss_names(self) -> list[str]:
        """One loss per answer digit, most significant first (c5 is the final carry)."""
        return [f"digit{self.n_digits - i}" for i in range(self.n_digits + 1)]

    @property
    def loss_labels(self) -> dict[str, str]:
        """Figure names of the losses: digit5 -> 'c5 (carry)', ..., digit0 -> 'c0 (units)'."""
        n = self.n_digits
        return {f"digit{k}": f"c{k}" + (" (carry)" if k == n else " (units)" if k == 0 else "") for k in range(n + 1)}

    def sample(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        a = rng.integers(0, 10**self.n_digits, n)
        b = rng.integers(0, 10**self.n_digits, n)
        digits = lambda x, k: np.stack([(x // 10**i) % 10 for i in reversed(range(k))], 1)  # noqa: E731
        seq = np.concatenate([digits(a, self.n_digits), np.full((n, 1), 10), digits(b, self.n_digits), np.full((n, 1), 11),
                              digits(a + b, self.n_digits + 1)], 1)
        return torch.from_numpy(seq)


@dataclass(frozen=True)
class Repeat:
    vocab: int = 128
    length: int = 85
    sub_len: int = 16
    name: str = "repeat"

    @property
    def d_vocab(self) -> int:
        return self.vocab

    @property
    def n_ctx(self) -> int:
        return self.length

    @property
    def loss_names(self) -> list[str]:
        return ["repeated"]

    @property
    def loss_labels(self) -> dict[str, str]:
        return {"repeated": "repeated part"}

    def sample(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        """Random sequences; columns ``-1`` hold (first start, second start) after the tokens."""
        seq = rng.integers(0, self.vocab, (n, self.length))
        first = rng.integers(0, self.length - 2 * self.sub_len + 1, n)
        second = first + self.sub_len + rng.integers(0, self.length - 2 * self.sub_len - first + 1)
        for i in range(n):
            seq[i, second[i] : second[i] + self.sub_len] = seq[i, first[i] : first[i] + self.sub_len]
        return torch.from_numpy(np.concatenate([seq, first[:, None], second[:, None]], 1))


SEQUENCE_TASKS = {"add5": Add5, "repeat": Repeat}


def per_token_losses(task, logits: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Losses (float64) of shape (len(task.loss_names),): mean next-token loss per group of positions."""
    logp = logits.double().log_softmax(-1)
    if isinstance(task, Add5):
        tokens = batch
        pos = torch.as_tensor(task.loss_positions)
        nll = -logp[:, pos].gather(-1, tokens[:, pos + 1, None])[..., 0]  # (B, 6)
        return nll.mean(0)
    tokens, second = batch[:, : task.length], batch[:, -1]
    offs = torch.arange(task.sub_len - 1, device=batch.device)
    pos = second[:, None] + offs  # predict second+1 .. second+sub_len-1 from the position before
    nll = -logp.gather(1, pos[..., None].expand(-1, -1, logp.shape[-1])).gather(-1, tokens.gather(1, pos + 1)[..., None])[..., 0]
    return nll.mean()[None]


def induction_scores(patterns: torch.Tensor, batch: torch.Tensor, task: Repeat, offset: int = 1) -> torch.Tensor:
    """Mean attention from each token of the second occurrence to ``offset`` tokens after its first occurrence.

    patterns: (B, heads, query, key) of one layer -> (heads,). With offset 1 this is the textbook
    induction score (attend to the token after the previous occurrence); an induction head scores near 1.
    """
    first, second = batch[:, -2], batch[:, -1]
    offs = torch.arange(1, task.sub_len, device=batch.device)
    q = second[:, None] + offs  # queries inside the repeat (not its first token)
    k = (first[:, None] + offs + offset).clamp(max=task.length - 1)
    b = torch.arange(len(batch), device=batch.device)[:, None]
    return patterns[b, :, q, k].mean((0, 1))


def induction_offset_profile(patterns: torch.Tensor, batch: torch.Tensor, task: Repeat) -> torch.Tensor:
    """(heads, sub_len) induction scores for offsets 1..sub_len.

    A head that peaks at offset d attends from a repeated token to d tokens after its earlier copy:
    induction through K-composition with a layer-0 head that looks d tokens back (d = 1 is the
    textbook previous-token head).
    """
    return torch.stack([induction_scores(patterns, batch, task, d) for d in range(1, task.sub_len + 1)], -1)
