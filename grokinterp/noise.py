"""Random regularisers of Power et al. 2022 (Fig. 2 left), per ensemble member.

- residual dropout: each attention / MLP output is dropped elementwise with probability ``dropout``
  (and the rest scaled by 1 / (1 - dropout)) before it joins the residual stream;
- weight noise: each forward pass sees W + N(0, weight_noise^2) (the gradient goes to W);
- update noise: after each update, W <- W + N(0, update_noise^2).

Every member draws from its own generator, seeded afresh each step from (seed, step), and only for
its own rows of the batch, so a member's numbers do not depend on the rest of the ensemble or on
where a run was resumed: a noisy run trained in an ensemble, or resumed, equals the run trained
alone in one go.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .config import RunConfig


class Noise:
    """Draws one step's noise for E members; ``rows[e]`` is member e's real batch size."""

    def __init__(self, configs: list[RunConfig], rows: list[int], device: torch.device):
        self.cfgs, self.rows, self.device = configs, rows, device
        self.gens: list[torch.Generator | None] = [None] * len(configs)

    @property
    def dropout_on(self) -> bool:
        return any(c.dropout > 0 for c in self.cfgs)

    def start(self, step: int) -> None:
        """Seed each noisy member's generator from (seed, step)."""
        for e, c in enumerate(self.cfgs):
            if c.noisy:
                seed = int(np.random.SeedSequence([c.seed, step, 0x6E6F]).generate_state(1)[0])
                self.gens[e] = torch.Generator(self.device).manual_seed(seed)

    def _normal(self, like: Tensor, std: list[float]) -> Tensor:
        """(E, *like.shape[1:]): N(0, std[e]^2) for members with std > 0, zeros for the rest."""
        return torch.stack([torch.randn(like.shape[1:], generator=g, device=self.device) * s if s > 0
                            else torch.zeros(like.shape[1:], device=self.device) for g, s in zip(self.gens, std)])

    def noisy_weights(self, params: dict[str, Tensor], trainable: dict[str, Tensor]) -> dict[str, Tensor]:
        """The parameters one forward pass sees: trainable weights plus weight noise."""
        std = [c.weight_noise for c in self.cfgs]
        if not any(std):
            return params
        return {n: p + self._normal(p, std) if n in trainable else p for n, p in params.items()}

    def dropout(self, x: Tensor) -> Tensor:
        """Residual dropout of x (E, batch, pos, d_model), drawn for each member's own rows."""
        keep = torch.ones_like(x)
        for e, (g, c) in enumerate(zip(self.gens, self.cfgs)):
            if c.dropout > 0:
                shape = (self.rows[e], *x.shape[2:])
                keep[e, : self.rows[e]] = (torch.rand(shape, generator=g, device=self.device) >= c.dropout) / (1 - c.dropout)
        return x * keep

    @torch.no_grad()
    def perturb(self, trainable: dict[str, Tensor]) -> None:
        """Update noise, in place."""
        std = [c.update_noise for c in self.cfgs]
        if any(std):
            for p in trainable.values():
                p.add_(self._normal(p, std))
