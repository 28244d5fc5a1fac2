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
about 1 for a random partition and rewards explaining the variance with fewer blocks. That one
ranking picks the best partition, orders the classes and chooses what figures show; a finer class
can score higher and still rank lower.

Conjugate and side: every left coset gH is the right coset (gHg^-1)g, so one cluster has no side.
What can differ is the partition: the left cosets of H, the right cosets of H and those of each
conjugate of H are different partitions of G (for a normal H, one). ``identify_best`` names a
conjugate and side only when the best partition stands out of shuffled rows and beats the runner-up
of its class by more than ``MARGIN_SIGMAS`` spreads of random partitions' scores; otherwise the data
give the subgroup up to conjugacy and side (or, not standing out, nothing at all).

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
from .representations import fixed_dimensions, isotypic_projectors
from .shuffles import seeded_permutations

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


def _gram_batch(n: int) -> int:
    """How many (n, n) float64 Gram matrices make up 64 MB (at least one)."""
    return max(1, 2**23 // n**2)


def coset_within_share(X: Float[Tensor, "S n d"], group: FiniteGroup, partitions: list[Partition]) -> Float[Tensor, "S P"]:
    """``within_share`` of coset partitions without an n x n matrix per partition: a and b share a
    left coset gH iff b = a h with h in H, so <A, Xc Xc^T> = (1/|H|) sum_{h in H} c(h) with
    c(h) = sum_a <x_a, x_{a h}> (right cosets Hg: x_{h a}). Memory O(n^2 + P n) per checkpoint, as S6
    needs; the Gram matrices of checkpoints are taken in batches of up to 64 MB."""
    Xc = X.double() - X.double().mean(-2, keepdim=True)
    total = Xc.pow(2).sum((-2, -1)).clamp_min(1e-30)
    table = torch.as_tensor(group.table)
    partner = {"left": table, "right": table.T.contiguous()}  # partner[side][a, h] = a h or h a
    mean_over_h = torch.zeros(len(partitions), group.n, dtype=torch.float64)
    for p, part in enumerate(partitions):
        h = list(group.subgroups[part.subgroup].elements)
        mean_over_h[p, h] = 1 / len(h)
    between = torch.zeros(X.shape[0], len(partitions), dtype=torch.float64)
    batch = _gram_batch(group.n)
    for s in range(0, X.shape[0], batch):
        gram = Xc[s : s + batch] @ Xc[s : s + batch].transpose(-1, -2)  # (B, n, n)
        for side in SIDES:
            sel = [p for p, part in enumerate(partitions) if part.side == side]
            c = gram.gather(2, partner[side].expand(gram.shape[0], -1, -1)).sum(1)  # (B, n): c(h)
            between[s : s + batch, sel] = c @ mean_over_h[sel].T
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

    def class_maxima(self, group: FiniteGroup, values: np.ndarray | None = None) -> dict[int, np.ndarray]:
        """{subgroup class: (S,) the largest of ``values`` (default: ratios) over that class's partitions}."""
        values = self.ratios if values is None else values
        classes = np.array([group.subgroups[p.subgroup].class_id for p in self.partitions])
        return {int(c): values[:, classes == c].max(1) for c in np.unique(classes)}

    def ranked_classes(self, group: FiniteGroup, s: int = -1) -> list[int]:
        """Partition indices, one per subgroup class (its best-ranked partition), by ratio, best first."""
        best: dict[int, int] = {}
        for i, part in enumerate(self.partitions):
            c = group.subgroups[part.subgroup].class_id
            if c not in best or self.ratios[s, i] > self.ratios[s, best[c]]:
                best[c] = i
        return sorted(best.values(), key=lambda i: -self.ratios[s, i])


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labelings split the elements into the same blocks (labels may differ)."""
    pairs = set(zip(np.asarray(a).tolist(), np.asarray(b).tolist()))
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


@dataclass
class Identification:
    """How far the data single out the best partition within its subgroup class.

    ``candidates``: indices of the distinct partitions of the class (conjugates x sides; one for a
    normal subgroup), best first; ``scores`` theirs. ``identified`` only when the best partition
    ``stands_out`` (of shuffled rows: otherwise there is nothing to identify) and there is one
    candidate or the best leads the runner-up by more than ``MARGIN_SIGMAS`` x ``noise`` (the
    random-partition spread).
    """

    class_id: int
    candidates: list[int]
    scores: np.ndarray
    margin: float | None  # best minus runner-up score; None with one candidate
    noise: float
    stands_out: bool
    identified: bool


MARGIN_SIGMAS = 3.0
"""How many random-partition spreads the best must lead the runner-up of its class by. The gap
between the top two of 10 near-equal noisy scores exceeds one spread often: on 200 random Gaussian
W_U (S5, 120 x 128, float64, seeds 0-199; the snippet in docs/analyses.md), 163 had a non-normal best
class; its margin exceeded 1 spread in 45 (28%), 2 in 5 (3%), 3 in none (largest 2.25), so 3 spreads
names a conjugate and side from noise in under 1 in 163 (``tests/test_group_analysis.py`` rechecks 20 of them)."""


def identify_best(cs: CosetScores, group: FiniteGroup, noise: float, stands_out: bool, s: int = -1) -> Identification:
    """Compare the best partition with the other conjugates and sides of its class at checkpoint s;
    ``stands_out``: whether the best partition's F is above the shuffled-rows null (``shuffled_best_ratios``)."""
    b = cs.best_index(s)
    cid = group.subgroups[cs.partitions[b].subgroup].class_id
    same_class = [i for i, p in enumerate(cs.partitions) if group.subgroups[p.subgroup].class_id == cid]
    distinct: list[int] = []
    for i in sorted(same_class, key=lambda i: -cs.scores[s, i]):
        if not any(same_partition(cs.partitions[i].labels, cs.partitions[j].labels) for j in distinct):
            distinct.append(i)
    scores = cs.scores[s, distinct]
    margin = float(scores[0] - scores[1]) if len(distinct) > 1 else None
    clear = margin is None or margin > MARGIN_SIGMAS * noise
    return Identification(cid, distinct, scores, margin, float(noise), bool(stands_out), bool(stands_out) and clear)


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


@dataclass
class ShuffledNull:
    """What one matrix's rows give once shuffled over the group elements: the ``quantile`` over the
    shuffles of the best partition's variance ratio F, and, for each irrep, the quantile of its share
    that holds for all k irreps at once (Bonferroni: 1 - (1 - quantile) / k)."""

    best_ratio: float
    irrep_shares: np.ndarray  # (k,): a random share is d_chi^2 / (n - 1) on average
    draws: int  # shuffles for the best F
    irrep_draws: int  # shuffles for the irrep shares (enough for the Bonferroni quantile)
    quantile: float

    def irreps_above(self, shares) -> np.ndarray:
        """(k,) bool: which irrep shares exceed the shuffles' (beyond float rounding: the trivial irrep's are ~0)."""
        return np.asarray(shares) > self.irrep_shares + 1e-9


SHUFFLES = 200  # shuffles of a matrix's vectors for the null of its best partition's F


def shuffled_best_ratios(X: Float[Tensor, "S n d"], group: FiniteGroup, draws: int = SHUFFLES, seed: int = 0,
                         quantile: float = 0.99) -> np.ndarray:
    """(S,) for every checkpoint, the ``quantile`` of the best partition's F over ``draws`` shuffles of its rows
    (``shuffled_rows_null``)."""
    perms, partitions = seeded_permutations(group.n, draws, seed), coset_partitions(group)
    return np.array([np.quantile(coset_scores(x.double()[perms], group, partitions).ratios.max(1), quantile) for x in X])


def shuffled_irrep_shares(X: Float[Tensor, "n d"], group: FiniteGroup, draws: int = 2000, seed: int = 0,
                          quantile: float = 0.99) -> np.ndarray:
    """(k,) each irrep's share of X with its rows shuffled over the elements, at the quantile that holds
    for all k irreps at once (1 - (1 - quantile) / k), read off the shuffled Gram matrices:
    |P_chi Xc|^2 = tr(P_chi Xc Xc^T)."""
    perms = seeded_permutations(group.n, draws, seed)
    Xc = X.double() - X.double().mean(0)
    gram = Xc @ Xc.T
    P = isotypic_projectors(group)
    batch = _gram_batch(group.n)
    shares = torch.cat([torch.einsum("kxy,byx->bk", P, gram[q[:, :, None], q[:, None, :]].to(P.dtype)).real
                        for q in perms.split(batch)]) / gram.trace().clamp_min(1e-30)
    return np.quantile(shares.numpy(), 1 - (1 - quantile) / len(group.irrep_names), axis=0)


def shuffled_rows_null(X: Float[Tensor, "n d"], group: FiniteGroup, draws: int = SHUFFLES, irrep_draws: int = 2000,
                       seed: int = 0, quantile: float = 0.99) -> ShuffledNull:
    """The null for structure in X that ties its rows to the group. A shuffle of the rows keeps the
    vectors (their norms, the columns' variances and correlations) and breaks any tie to the elements.
    The best partition is the largest F over every partition, so its null is the largest F of each
    shuffle, not one random partition's (a matrix with a few large directions reaches F ~ 2 by chance)."""
    return ShuffledNull(float(shuffled_best_ratios(X[None], group, draws, seed, quantile)[0]),
                        shuffled_irrep_shares(X, group, irrep_draws, seed, quantile), draws, irrep_draws, quantile)


def irrep_predicted_scores(shares: Float[Tensor, "S k"], group: FiniteGroup, partitions: list[Partition] | None = None) -> np.ndarray:
    """(S, P) score of every partition predicted from irrep shares alone (every irrep part using all
    columns of rho alike): 1 - W = sum_chi share_chi f_chi(H) / d_chi."""
    partitions = coset_partitions(group) if partitions is None else partitions
    dims = group.character_table[:, 0].real
    kept = np.stack([fixed_dimensions(group, group.subgroups[p.subgroup].elements) / dims for p in partitions], 1)  # (k, P)
    expected = np.array([random_expectation(p.labels) for p in partitions])
    return 1 - (1 - np.asarray(shares, dtype=float) @ kept) / expected


def cluster_cosets(X: Float[Tensor, "n d"], group: FiniteGroup, k: int, method: str = "kmeans", seed: int = 0) -> dict:
    """Cluster X into k groups directly and test each cluster for being a coset.

    A cluster C is a coset iff c0^-1 C is a subgroup (then C is a left coset of it and a right coset
    of its conjugate by c0). Returns the labels, each cluster's subgroup class (None: not a coset)
    and the share of clusters that are cosets.
    """
    from sklearn.cluster import AgglomerativeClustering, KMeans

    Xn = X.double().numpy()
    if method == "kmeans":
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(Xn)
    elif method == "agglomerative":
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(Xn)
    else:
        raise ValueError(f"unknown clustering method {method!r}; choose kmeans or agglomerative")
    class_of = {h.elements: h.class_id for h in group.subgroups}
    subs = [group.coset_of(np.flatnonzero(labels == c)) for c in range(k)]
    classes = [None if h is None else class_of[h] for h in subs]
    return {"labels": labels, "classes": classes, "coset_fraction": float(np.mean([c is not None for c in classes]))}


def class_fraction(clustering: dict, class_id: int) -> float:
    """Share of the clusters of ``cluster_cosets`` that are cosets of a subgroup in class ``class_id``."""
    return float(np.mean([c == class_id for c in clustering["classes"]]))
