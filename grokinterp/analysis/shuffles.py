"""Seeded shuffles of a matrix's rows: the null models that keep a matrix's vectors and break their
tie to the inputs (``fourier.shuffled_largest_share``, ``cosets.shuffled_rows_null``)."""

from __future__ import annotations

import torch
from torch import Tensor


def seeded_permutations(n: int, draws: int, seed: int) -> Tensor:
    """(draws, n) permutations of range(n) from one seeded generator; the first k are the same for any draws >= k."""
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n, generator=gen) for _ in range(draws)])
