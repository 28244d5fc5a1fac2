"""Coset structure of embeddings of a group (Power et al. 2022, Fig. 3; Chughtai et al. 2023).

For points X (one row per group element: W_U columns, W_E rows, neuron weights), a partition into
k blocks of size m explains the share 1 - W of the variance, where
W = sum_blocks sum_i |x_i - mean_block|^2 / sum_i |x_i - mean|^2. For a random partition
E[W] = (n - k) / (n - 1), so the score 1 - W / E[W] is about 0 for chance and 1 when every block
collapses to a point. Every subgroup (but 1 and G) is scored with its left cosets gH and its right
cosets Hg, for every checkpoint at once: W = 1 - <A, Xc Xc^T> / tr(Xc Xc^T), with A the averaging
(projection) matrix of the partition.

The cosets of a subgroup K of H refine those of H and score as well as H's, so partitions are
ranked by the variance ratio (Calinski-Harabasz) F = [(1 - W) / (k - 1)] / [W / (n - k)], which is
about 1 for a random partition and rewards explaining the variance with fewer blocks.

Two yardsticks for a score: random partitions with the same block sizes (their mean is 0; their
spread gives a z-score), and the irreps: averaging over the cosets gH keeps, of a function in the
chi-isotypic part, the fraction f_chi(H) / d_chi when it uses every column of rho alike (f_chi(H):
the dimensions H fixes), so a matrix with irrep shares s_chi scores 1 - W = sum_chi s_chi f / d.
A matrix that lies in one irrep therefore clusters into the cosets of that irrep's stabilisers
with no further structure; one that uses fewer columns scores above this prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..groups import FiniteGroup
from .representations import fixed_dimensions

SIDES = ("left", "right")


@dataclass(frozen=True, eq=False)  # compared by identity: labels is an array
class Partition:
    subgroup: int  # index into group.subgroups
    side: str
    labels: np.ndarray  # (n,) coset of each element


def coset_partitions(group: FiniteGroup) -> list[Partition]:
    """Left and right coset partitions of every proper nontrivial subgroup."""
    out = []
    for i, h in enumerate(group.subgroups):
        if 1 < h.order < group.n:
            for side in SIDES:
                out.append(Partition(i, side, group.coset_labels(h.elements, side)))
    return out


def averaging_matrices(partitions: list[Partition], n: int) -> Float[Tensor, "P n n"]:
    """A[p, i, j] = 1/|block| if i, j share a block of partition p, else 0."""
    out = torch.zeros(len(partitions), n, n, dtype=torch.float64)
    for p, part in enumerate(partitions):
        lab = torch.as_tensor(part.labels)
        same = (lab[:, None] == lab[None, :]).double()
        out[p] = same / same.sum(1, keepdim=True)
    return out


def within_share(X: Float[Tensor, "S n d"], A: Float[Tensor, "P n n"]) -> Float[Tensor, "S P"]:
    """Within-block share of variance W for every checkpoint and partition."""
    Xc = X.double() - X.double().mean(-2, keepdim=True)
    gram = Xc @ Xc.transpose(-1, -2)  # (S, n, n)
    total = gram.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(1e-30)
    between = gram.flatten(1) @ A.flatten(1).T  # (S, P)
    return 1 - between / total[:, None]


def coset_within_share(X: Float[Tensor, "S n d"], group: FiniteGroup, partitions: list[Partition]) -> Float[Tensor, "S P"]:
    """``within_share`` of coset partitions without an n x n matrix per partition: a and b share a
    left coset gH iff b = a h with h in H, so <A, Xc Xc^T> = (1/|H|) sum_{h in H} c(h) with
    c(h) = sum_a <x_a, x_{a h}> (right cosets Hg: x_{h a}). Memory O(n^2 + P n), as S6 needs."""
    Xc = X.double() - X.double().mean(-2, keepdim=True)
    total = Xc.pow(2).sum((-2, -1)).clamp_min(1e-30)
    table = torch.as_tensor(group.table)
    partner = {"left": table, "right": table.T.contiguous()}  # partner[side][a, h] = a h or h a
    mean_over_h = torch.zeros(len(partitions), group.n, dtype=torch.float64)
    for p, part in enumerate(partitions):
        h = list(group.subgroups[part.subgroup].elements)
        mean_over_h[p, h] = 1 / len(h)
    between = torch.zeros(X.shape[0], len(partitions), dtype=torch.float64)
    for s in range(X.shape[0]):
        gram = Xc[s] @ Xc[s].T
        for side in SIDES:
            sel = [p for p, part in enumerate(partitions) if part.side == side]
            between[s, sel] = mean_over_h[sel] @ gram.gather(1, partner[side]).sum(0)
    return 1 - between / total[:, None]


def random_expectation(labels: np.ndarray) -> float:
    n, k = len(labels), len(np.unique(labels))
    return (n - k) / (n - 1)


@dataclass
class CosetScores:
    """For every checkpoint and partition (S, P): the score 1 - W / E[W] and the ranking ratio F."""

    scores: np.ndarray
    ratios: np.ndarray
    partitions: list[Partition]

    def best_index(self, s: int = -1) -> int:
        return int(np.argmax(self.ratios[s]))

    def best(self, s: int = -1) -> Partition:
        return self.partitions[self.best_index(s)]

    def best_per_class(self, group: FiniteGroup, s: int = -1) -> dict[tuple[int, str], tuple[float, Partition]]:
        """{(subgroup class, side): (score, partition)} for the best-ranked partition of each class."""
        out: dict[tuple[int, str], tuple[float, float, Partition]] = {}
        for score, ratio, part in zip(self.scores[s], self.ratios[s], self.partitions):
            key = (group.subgroups[part.subgroup].class_id, part.side)
            if key not in out or ratio > out[key][1]:
                out[key] = (float(score), float(ratio), part)
        return {k: (v[0], v[2]) for k, v in out.items()}


def coset_scores(X: Float[Tensor, "S n d"], group: FiniteGroup, partitions: list[Partition] | None = None) -> CosetScores:
    """Score (1 - W / E_random[W]) and rank (variance ratio F) every coset partition at every checkpoint."""
    partitions = coset_partitions(group) if partitions is None else partitions
    expected = torch.tensor([random_expectation(p.labels) for p in partitions], dtype=torch.float64)
    k = torch.tensor([len(np.unique(p.labels)) for p in partitions], dtype=torch.float64)
    W = coset_within_share(X, group, partitions)
    ratio = ((1 - W) / (k - 1)) / (W.clamp_min(1e-12) / (group.n - k))
    return CosetScores((1 - W / expected).numpy(), ratio.numpy(), partitions)


def random_partition_scores(X: Float[Tensor, "S n d"], labels: np.ndarray, draws: int = 200, seed: int = 0) -> np.ndarray:
    """(S, draws) scores of random partitions with the block sizes of ``labels``: the null for one partition."""
    rng = np.random.default_rng(seed)
    parts = [Partition(-1, "random", rng.permutation(labels)) for _ in range(draws)]
    chunks = [parts[i : i + 16] for i in range(0, draws, 16)]  # 16 n x n matrices at a time (S6: 66 MB)
    W = torch.cat([within_share(X, averaging_matrices(c, len(labels))) for c in chunks], 1)
    return (1 - W / random_expectation(labels)).numpy()


def irrep_predicted_scores(shares: Float[Tensor, "S k"], group: FiniteGroup, partitions: list[Partition] | None = None) -> np.ndarray:
    """(S, P) score of every partition predicted from irrep shares alone (every irrep part using all
    columns of rho alike): 1 - W = sum_chi share_chi f_chi(H) / d_chi."""
    partitions = coset_partitions(group) if partitions is None else partitions
    dims = group.character_table[:, 0].real
    kept = np.stack([fixed_dimensions(group, group.subgroups[p.subgroup].elements) / dims for p in partitions], 1)  # (k, P)
    expected = np.array([random_expectation(p.labels) for p in partitions])
    return 1 - (1 - np.asarray(shares, dtype=float) @ kept) / expected


def cluster_cosets(X: Float[Tensor, "n d"], group: FiniteGroup, k: int, method: str = "kmeans", seed: int = 0) -> dict:
    """Cluster X into k groups directly and test each cluster for being a left / right coset.

    A cluster C is a left coset iff c0^-1 C is a subgroup, a right coset iff C c0^-1 is.
    """
    from sklearn.cluster import AgglomerativeClustering, KMeans

    Xn = X.double().numpy()
    if method == "kmeans":
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(Xn)
    elif method == "agglomerative":
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(Xn)
    else:
        raise ValueError(f"unknown clustering method {method!r}; choose kmeans or agglomerative")
    sides = [group.coset_side(np.flatnonzero(labels == c)) for c in range(k)]
    return {"labels": labels, "sides": sides, "coset_fraction": float(np.mean([s is not None for s in sides]))}
