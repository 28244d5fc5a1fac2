"""One seed of a census of group runs: which irrep its output weights settle in, which subgroup's
cosets that irrep predicts, and which coset partition the weights actually show.

Power et al. (2022, Fig. 3 left) saw the output vectors of an S5 model cluster into the cosets of
D5; which subgroup appears depends on the irrep a seed's W_U settles in: a vector of an irrep is
constant on the cosets of its stabiliser, so the predicted classes are the exact stabilisers of
vectors of the dominant irrep (``representations.stabilising_subgroups``; the largest first: a
generic vector of its fixed space has it as stabiliser, and smaller ones need special vectors). The measured class
is the best coset partition by the variance ratio (``cosets.coset_scores``), with its score against
random partitions of the same block sizes and the irreps' own prediction of that score; k-means
into as many clusters as the class has cosets says whether the cosets are recovered directly.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..groups import FiniteGroup
from .cosets import class_fraction, cluster_cosets, coset_scores, irrep_predicted_scores, random_partition_scores, shuffled_rows_null
from .representations import irrep_shares, stabilising_subgroups

COSET_CLUSTERS = 0.8  # share of k-means clusters that must be cosets for "the cosets are recovered" (also `grokinterp cosets`)
DOMINANT = 0.5  # irrep share above which an irrep is "dominant", if also above shuffled rows' (a random matrix gives
# d^2 / (n - 1) on average: 0.30 for S5's 6-dim irrep, 0.80 for S3's 2-dim one)


def census_row(X: Float[Tensor, "S n d"], group: FiniteGroup, steps: list[int], seed: int = 0) -> dict:
    """Irrep, predicted and measured coset class of one seed from its output vectors at saved steps.

    X[s] holds one row per group element (W_U^T) at ``steps[s]``; the last step is the verdict's.
    Returns a flat dict (a table row): the largest irrep and its share, whether it is dominant (share
    above ``DOMINANT`` and above the rows shuffled over the elements), the predicted classes, the
    measured best class with score and z against 200 random partitions of its block sizes, its
    variance ratio F against the best F of the rows shuffled over the elements (``cosets.shuffled_rows_null``:
    the selection's own null; ``stands_out`` above its 99% quantile), the irreps' predicted score,
    the k-means share of clusters that are cosets of that class, whether the measured class is one of the
    predicted ones (``agrees``) and whether it is the largest (``largest_stabiliser``), and
    the first saved step at which k-means recovers the cosets of the final best class.
    """
    cs = coset_scores(X, group)
    shares = irrep_shares(X[-1:], group)[0].numpy()
    top = int(np.argmax(shares))
    shuffled = shuffled_rows_null(X[-1], group, seed=seed)
    stabilisers = stabilising_subgroups(group, top)
    b = cs.best_index()
    part = cs.partitions[b]
    h = group.subgroups[part.subgroup]
    k = group.n // h.order
    null = random_partition_scores(X[-1:], part.labels, seed=seed)[0]
    ratio = float(cs.ratios[-1, b])
    predicted = irrep_predicted_scores(shares[None], group, [part])[0, 0]
    fractions = [class_fraction(cluster_cosets(X[s], group, k, seed=seed), h.class_id) for s in range(len(steps))]
    recovered = [int(st) for st, f in zip(steps, fractions) if f >= COSET_CLUSTERS]
    predicted_ids = [c for c, *_ in stabilisers]
    return {
        "irrep": group.irrep_names[top],
        "irrep_partition": "" if group.irrep_partitions is None else "(" + ",".join(map(str, group.irrep_partitions[top])) + ")",
        "irrep_share": float(shares[top]), "irrep_share_shuffled": float(shuffled.irrep_shares[top]),
        "irrep_dominant": bool(shares[top] > max(DOMINANT, shuffled.irrep_shares[top])),
        "predicted_classes": " ".join(f"{name}[{c}]" for c, name, *_ in stabilisers),
        "best_class": h.name, "best_class_id": h.class_id, "best_order": h.order, "n_cosets": k,
        "score": float(cs.scores[-1, b]), "z_vs_random": float((cs.scores[-1, b] - null.mean()) / max(null.std(), 1e-12)),
        "variance_ratio": ratio, "shuffled_best_variance_ratio": shuffled.best_ratio, "stands_out": ratio > shuffled.best_ratio,
        "irrep_predicted_score": float(predicted),
        "kmeans_coset_fraction": float(fractions[-1]), "clusters_into_cosets": fractions[-1] >= COSET_CLUSTERS,
        "agrees": h.class_id in predicted_ids, "largest_stabiliser": predicted_ids[:1] == [h.class_id],
        "cosets_first_recovered_at": recovered[0] if recovered else None,
    }
