"""Fourier analysis over Z_p (Nanda et al. 2023, Sections 4-5).

Basis: orthonormal rows [1/sqrt(p), cos(2 pi k x / p) / sqrt(p/2), sin(2 pi k x / p) / sqrt(p/2)],
k = 1..(p-1)/2, in that order (component 2k-1 is "cos k", 2k is "sin k"). Every function takes
leading batch axes (checkpoints) and works on one checkpoint or on all of them at once.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from .shuffles import seeded_permutations

RELABELLINGS = 50  # draws of the neuron-share null (relabelled_top_share; ~0.1 s each at p = 113, d_mlp = 512)
FIRST_RELABELLINGS = 10  # drawn first; the rest only where one of these comes within half of the threshold


def n_frequencies(p: int) -> int:
    return (p - 1) // 2


def fourier_basis(p: int, dtype=torch.float64) -> Float[Tensor, "p p"]:
    """Rows are the orthonormal basis vectors over x = 0..p-1 (p odd). A new tensor each call."""
    return _basis(p).to(dtype, copy=True)


@functools.lru_cache(maxsize=8)
def _basis(p: int) -> Tensor:
    if p % 2 == 0 or p < 3:
        raise ValueError(f"the Fourier basis here needs an odd p >= 3, got {p}")
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.full((p,), 1 / np.sqrt(p), dtype=torch.float64)]
    for k in range(1, n_frequencies(p) + 1):
        w = 2 * np.pi * k / p
        rows += [torch.cos(w * x) / np.sqrt(p / 2), torch.sin(w * x) / np.sqrt(p / 2)]
    return torch.stack(rows)


def basis_names(p: int) -> list[str]:
    """['const', 'cos 1', 'sin 1', 'cos 2', ...]."""
    return ["const"] + [f"{t} {k}" for k in range(1, n_frequencies(p) + 1) for t in ("cos", "sin")]


def transform(x: Tensor, dim: int = -1) -> Tensor:
    """1-D transform along ``dim`` (of length p): coefficients in the basis, in float64.

    ``fourier_basis(p) @ x`` along that axis, as one matrix product over a (before, p, after) view
    (no copy of a contiguous float64 ``x``). Equal to the real-FFT form (const = X_0 / sqrt(p),
    cos k = Re X_k / sqrt(p/2), sin k = -Im X_k / sqrt(p/2)) to float64 rounding, and for p ~ 100
    about 3x faster on a CPU than FFTs of the strided vectors (docs/benchmarks.md)."""
    x = x.double()
    dim = dim % x.dim()
    p = x.shape[dim]
    B = fourier_basis(p)  # checks that p is odd
    before, after = math.prod(x.shape[:dim]), math.prod(x.shape[dim + 1 :])
    if after == 1:
        return (x.reshape(before, p) @ B.T).reshape(x.shape)
    return torch.matmul(B, x.reshape(before, p, after)).reshape(x.shape)


def transform_2d(x: Tensor, dims: tuple[int, int] = (-2, -1)) -> Tensor:
    """2-D transform over the (a, b) axes ``dims`` (each of length p)."""
    return transform(transform(x, dims[0]), dims[1])


def component_norms(W: Float[Tensor, "... p d"]) -> Float[Tensor, "... p"]:
    """Norm over the last axis of each Fourier component along the second-to-last (length p) axis."""
    return transform(W, -2).norm(dim=-1)


def frequency_energy(norms: Float[Tensor, "... p"]) -> Float[Tensor, "... K"]:
    """cos^2 + sin^2 per frequency k = 1..K from component norms (the constant is left out)."""
    sq = norms[..., 1:] ** 2
    return sq[..., 0::2] + sq[..., 1::2]


def frequency_shares(W: Float[Tensor, "... p d"]) -> Float[Tensor, "... K"]:
    """Each frequency's share of the non-constant energy of W's Fourier components along the p axis."""
    energy = frequency_energy(component_norms(W))
    return energy / energy.sum(-1, keepdim=True)


def shuffled_largest_share(W: Float[Tensor, "p d"], draws: int = 200, seed: int = 0, quantile: float = 0.99) -> float:
    """The ``quantile`` of the largest frequency share of W with its rows shuffled over x (``draws``
    seeded shuffles): how far a frequency must stand out of W's spectrum before it is more than chance.
    A shuffle keeps the rows (and a few large directions, which let one frequency take more by chance
    than in a Gaussian matrix of W's shape) and breaks any tie to x."""
    return float(torch.quantile(frequency_shares(W.double()[seeded_permutations(W.shape[0], draws, seed)]).max(-1).values, quantile))


def embedding_spectrum(weights: dict, p: int) -> Float[Tensor, "S p"]:
    """Fourier-component norms of W_E[:p] (norm over d_model): Nanda et al. Fig. 2 (left)."""
    return component_norms(weights["embed.W_E"][:, :p].double())


def neuron_logit_map(weights: dict) -> Float[Tensor, "S d_mlp n"]:
    """W_L = W_out W_U of the last layer: how each neuron writes to each answer's logit."""
    last = max(int(k.split(".")[1]) for k in weights if k.startswith("blocks."))
    return weights[f"blocks.{last}.mlp.W_out"].double() @ weights["unembed.W_U"].double()


def logit_map_spectrum(weights: dict) -> Float[Tensor, "S p"]:
    """Fourier-component norms of W_L along the answer axis (norm over neurons)."""
    return component_norms(neuron_logit_map(weights).transpose(-1, -2))


def neuron_frequency_shares(acts: Float[Tensor, "... p p d_mlp"]) -> Float[Tensor, "... d_mlp K"]:
    """Each neuron's share of variance in each frequency's 2-D block (reference-code rule).

    Centre the activations over the p^2 inputs, take the 2-D transform, and for frequency k sum
    the squared coefficients of {const, cos k, sin k} x {const, cos k, sin k}; divide by the total
    (by Parseval, the centred activations' sum of squares). Only those blocks are computed: the
    transform over a, then over b only the components each a-component meets in a block.
    """
    centred = acts.double() - acts.double().mean(dim=(-3, -2), keepdim=True)
    return (_block_energies(centred, fourier_basis(acts.shape[-2])) / _total(centred)).transpose(-1, -2)


def _total(centred: Float[Tensor, "... p p d"]) -> Float[Tensor, "... 1 d"]:
    """Each neuron's sum of squares (Parseval: its energy over all 2-D components)."""
    return centred.pow(2).sum(dim=(-3, -2)).clamp_min(1e-30)[..., None, :]


def _block_energies(centred: Float[Tensor, "... p p d"], B: Float[Tensor, "... p p"]) -> Float[Tensor, "... K d"]:
    """Energy of centred activations in each frequency's block in the basis B (rows: const, cos 1,
    sin 1, ..., over the token; B[:, perm]: the activations with both operands relabelled; a stack of
    bases (G, p, p) gives a stack)."""
    p = centred.shape[-2]
    K = n_frequencies(p)
    over_a = torch.matmul(B, centred.flatten(-2)).unflatten(-1, centred.shape[-2:])  # (..., p_a, p_b, d)
    const_a = torch.matmul(B, over_a[..., 0, :, :])  # (..., p_b, d): a const, every b component
    ks = torch.arange(1, K + 1)
    b_rows = B[..., torch.stack([torch.zeros(K, dtype=torch.long), 2 * ks - 1, 2 * ks], 1), :]  # (..., K, 3, p): const, cos k, sin k
    # a in frequency k (cos k, sin k) against b in (const, cos k, sin k): (..., K, 2, 3, d)
    sq = torch.matmul(b_rows[..., None, :, :], over_a[..., 1:, :, :].unflatten(-3, (K, 2))).pow(2)
    energy = (const_a[..., :1, :].pow(2)  # const x const
              + const_a[..., 1:, :].pow(2).unflatten(-2, (K, 2)).sum(-2)  # const x frequency k
              + sq[..., 0, :].sum(-2)  # frequency k x const
              + sq[..., 1:, :].sum((-3, -2)))  # frequency k x frequency k: (..., K, d)
    return energy


def relabelled_top_share(acts: Float[Tensor, "p p d_mlp"], draws: int = RELABELLINGS, seed: int = 0,
                         quantile: float = 0.99, settle_below: float = 0.0) -> tuple[float, int]:
    """The ``quantile`` over seeded relabellings of the operand tokens (the same permutation of a and
    of b, as a model with W_E's rows shuffled computes) of the largest share any neuron has in one
    frequency (``neuron_frequency_shares``): how large a neuron's top share is by chance, the maximum
    over all neurons and frequencies, as the cluster rule looks at every neuron. Returns (that
    quantile, the number of relabellings drawn).

    Sequential: the first ``FIRST_RELABELLINGS`` draws; the rest of ``draws`` only where one of them
    reaches ``settle_below`` (callers pass half the threshold: below that, chance is far from
    deciding a cluster, and p = 113's 10 draws cost ~1 s instead of 5 s).

    A relabelling keeps each neuron's values and how it mixes a and b (an untrained neuron is about
    ReLU(f(a) + f(b))) and breaks any tie of its tokens to Z_p's frequencies: with few frequencies
    (p = 23: 11) one of them takes 60-70% of an untrained neuron's variance this way. In float32,
    relabellings batched: about p^3 d_mlp multiply-adds each."""
    p = acts.shape[-2]
    centred = (acts.double() - acts.double().mean(dim=(-3, -2), keepdim=True)).float()
    total = _total(centred)  # a relabelling keeps it
    bases = fourier_basis(p, torch.float32)[:, seeded_permutations(p, draws, seed)].transpose(0, 1)  # (draws, p, p)
    batch = max(1, 2**22 // centred.numel())

    def top_shares(stack: Tensor) -> Tensor:  # (n, p, p) bases -> (n,) largest shares
        return torch.cat([(_block_energies(centred, stack[i : i + batch]) / total).amax((-2, -1)) for i in range(0, len(stack), batch)])

    tops = top_shares(bases[:FIRST_RELABELLINGS])
    if tops.max() >= settle_below and draws > FIRST_RELABELLINGS:
        tops = torch.cat([tops, top_shares(bases[FIRST_RELABELLINGS:])])
    return float(torch.quantile(tops.double(), quantile)), len(tops)


def gap_key_frequencies(energy: Float[Tensor, "K"], max_keys: int | None = None) -> list[int]:
    """Frequencies above the largest ratio gap of the sorted energies (at most K/2 of them)."""
    e = energy.double().cpu().numpy()
    order = np.argsort(-e)
    K = len(e)
    max_keys = max_keys or K // 2
    ratios = e[order[:max_keys]] / np.maximum(e[order[1 : max_keys + 1]], 1e-30)
    m = int(np.argmax(ratios)) + 1
    return sorted(int(k) + 1 for k in order[:m])


@dataclass
class KeyFrequencies:
    """Key frequencies of one checkpoint by the three rules, with the evidence.

    The neuron rule is the one that can say "none": the gap rules always return some frequencies,
    so without neuron clusters there are no key frequencies (``keys`` is empty) and ``why_none``
    says why; the gap rules' picks are then only the largest gaps of a spectrum. A neuron joins a
    cluster at a share of at least ``cut``: ``threshold``, or the largest share the neurons reach with
    the operand tokens relabelled (``chance_share``, ``relabelled_top_share``) where that is larger.
    """

    from_neurons: list[int]
    from_embedding: list[int]
    from_logit_map: list[int]
    clusters: dict[int, list[int]]  # frequency -> neurons whose share >= threshold
    unassigned: int
    neuron_variance_explained: float  # share of centred MLP variance in the key-frequency blocks
    embedding_energy_explained: float  # share of W_E's non-constant energy in the key frequencies
    logit_map_energy_explained: float
    top_neuron_share: float  # the largest share any neuron has in one frequency
    neuron_shares: Tensor = field(repr=False, compare=False)  # (d_mlp, K): each neuron's share per frequency (neuron_frequency_shares)
    threshold: float = 0.85
    chance_share: float = 0.0  # 99% quantile of the largest neuron share with the operands relabelled
    relabellings: int = RELABELLINGS  # draws behind chance_share

    @property
    def cut(self) -> float:
        """The share from which a neuron joins a cluster: the threshold, or chance where that is larger."""
        return max(self.threshold, self.chance_share)

    @property
    def keys(self) -> list[int]:
        """The key frequencies: the neuron clusters' (empty when there are none)."""
        return self.from_neurons

    @property
    def agree(self) -> bool:
        return self.from_neurons == self.from_embedding == self.from_logit_map

    @property
    def why_none(self) -> str | None:
        """Why there are no key frequencies (None when there are)."""
        if self.keys:
            return None
        if self.top_neuron_share < self.cut:
            return (f"no neuron cluster: no neuron has {self.cut:.0%} of its variance in one frequency "
                    f"(the largest share is {self.top_neuron_share:.0%}; {self.chance_text})")
        return f"no neuron cluster: the neurons with a share >= {self.cut:.0%} do not form clusters of 2 or more"

    @property
    def chance_text(self) -> str:
        """The chance level beside the threshold, in words."""
        return (f"with the operand tokens relabelled the largest share reaches {self.chance_share:.0%}, "
                f"99% quantile of {self.relabellings} relabellings")


def neuron_clusters(shares: Float[Tensor, "d_mlp K"], threshold: float = 0.85, min_neurons: int = 2) -> tuple[dict[int, list[int]], int]:
    """Assign each neuron to its argmax frequency if that share >= threshold; drop tiny clusters."""
    best_share, best = shares.max(-1)
    clusters: dict[int, list[int]] = {}
    for n in torch.nonzero(best_share >= threshold).flatten().tolist():
        clusters.setdefault(int(best[n]) + 1, []).append(n)
    clusters = {k: v for k, v in sorted(clusters.items()) if len(v) >= min_neurons}
    assigned = sum(len(v) for v in clusters.values())
    return clusters, shares.shape[0] - assigned


def key_frequencies(weights: dict, acts: Float[Tensor, "p p d_mlp"], p: int, threshold: float = 0.85, seed: int = 0,
                    relabellings: int = RELABELLINGS, null: tuple[float, int] | None = None) -> KeyFrequencies:
    """Key frequencies of ONE checkpoint (weights with S = 1; acts on the p x p grid of inputs): neuron
    clusters at a share of at least ``threshold`` and above chance (``relabelled_top_share`` with up to
    ``relabellings`` draws from ``seed``; ``null``: its (share, draws), when already computed)."""
    shares = neuron_frequency_shares(acts)
    chance, drawn = null if null is not None else relabelled_top_share(acts, relabellings, seed, settle_below=threshold / 2)
    clusters, unassigned = neuron_clusters(shares, max(threshold, chance))
    keys = sorted(clusters)
    # variance explained by key blocks, over all neurons
    centred = acts.double() - acts.double().mean(dim=(0, 1), keepdim=True)
    per_neuron_var = centred.pow(2).sum(dim=(0, 1))
    explained = (shares[:, [k - 1 for k in keys]].sum(-1) * per_neuron_var).sum() / per_neuron_var.sum().clamp_min(1e-30)
    e_emb = frequency_energy(embedding_spectrum(weights, p))[0]
    e_wl = frequency_energy(logit_map_spectrum(weights))[0]
    from_emb, from_wl = gap_key_frequencies(e_emb), gap_key_frequencies(e_wl)
    share = lambda e, ks: float(e[[k - 1 for k in ks]].sum() / e.sum()) if ks else 0.0  # noqa: E731
    return KeyFrequencies(
        from_neurons=keys,
        from_embedding=from_emb,
        from_logit_map=from_wl,
        clusters=clusters,
        unassigned=unassigned,
        neuron_variance_explained=float(explained),
        embedding_energy_explained=share(e_emb, keys),
        logit_map_energy_explained=share(e_wl, keys),
        top_neuron_share=float(shares.max()) if shares.numel() else 0.0,
        neuron_shares=shares,
        threshold=threshold,
        chance_share=chance,
        relabellings=drawn,
    )


# ---- logits in the Fourier basis --------------------------------------------------------------


def answer_direction_table(z: np.ndarray, p: int, freqs: list[int]) -> Float[Tensor, "2F p"]:
    """``answer_directions`` by answer: row d, column v is direction d's entry at every pair whose answer is v."""
    z = torch.as_tensor(z, dtype=torch.float64)
    v = torch.arange(p, dtype=torch.float64)
    rows = []
    for k in freqs:
        w = 2 * np.pi * k / p
        for f in (torch.cos, torch.sin):
            rows.append(f(w * v) / f(w * z).norm())
    return torch.stack(rows) if rows else torch.zeros(0, p, dtype=torch.float64)


def answer_directions(z: np.ndarray, p: int, freqs: list[int]) -> Float[Tensor, "2F N"]:
    """Unit vectors cos(w_k z), sin(w_k z) over the N pairs, z = the answer of each pair.

    For x+y over all p^2 pairs these are Nanda et al.'s 2-D directions
    (F_cos (x) F_cos - F_sin (x) F_sin)/sqrt 2 and (F_sin (x) F_cos + F_cos (x) F_sin)/sqrt 2.
    """
    return answer_direction_table(z, p, freqs)[:, torch.as_tensor(z, dtype=torch.long)]


def logit_projection(logits: Float[Tensor, "S N n"], directions: Float[Tensor, "D N"]) -> Float[Tensor, "S N n"]:
    """The part of the logits (per answer c) along the given input-space directions."""
    coef = torch.matmul(directions, logits.double())  # (S, D, n); matmul, not einsum: no copy of the logits
    return torch.matmul(directions.T, coef)


def logit_variance_explained(logits: Float[Tensor, "S N n"], directions: Float[Tensor, "D N"]) -> Float[Tensor, "S"]:
    """Share of the logits' variance (centred per answer over inputs) along the directions."""
    centred = logits.double() - logits.double().mean(1, keepdim=True)
    proj = logit_projection(centred, directions)
    return proj.pow(2).sum((1, 2)) / centred.pow(2).sum((1, 2)).clamp_min(1e-30)


def logit_fourier_norms_2d(logits: Float[Tensor, "p p n"]) -> Float[Tensor, "p p"]:
    """Norm over answers of the 2-D Fourier coefficients of the logits over (a, b): Nanda Fig. 3."""
    centred = logits.double() - logits.double().mean((0, 1), keepdim=True)
    return transform_2d(centred, (0, 1)).norm(dim=-1)


def ideal_logit_cosine(logits: Float[Tensor, "p p n"], freqs: list[int]) -> dict[int, float]:
    """Cosine of the centred logits with cos(w_k (a + b - c)) for each frequency (the algorithm's form)."""
    p = logits.shape[0]
    a, b, c = torch.meshgrid(torch.arange(p), torch.arange(p), torch.arange(logits.shape[-1]), indexing="ij")
    centred = logits.double() - logits.double().mean()
    out = {}
    for k in freqs:
        v = torch.cos(2 * np.pi * k / p * (a + b - c).double())
        out[k] = float((centred * v).sum() / (centred.norm() * v.norm()))
    return out
