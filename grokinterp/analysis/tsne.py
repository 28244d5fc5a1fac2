"""t-SNE of the output-layer weights (Power et al. 2022, Fig. 3).

One point per answer element: the rows of W_U^T (shape (n, d_model)). Seeded, so the same
weights and seed always give the same picture.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor


def output_vectors(weights: dict, s: int = -1) -> Float[Tensor, "n d_model"]:
    """Rows of W_U^T at checkpoint index s: the output embedding of each answer."""
    return weights["unembed.W_U"][s].T.double()


def tsne(X: Float[Tensor, "n d"], seed: int = 0, perplexity: float | None = None) -> np.ndarray:
    """2-D t-SNE embedding (n, 2) with scikit-learn (Barnes-Hut), PCA-initialised and seeded.

    Runs on one OpenMP thread: the same result, and on a busy machine many times faster in wall time
    (threads wait on each other at every gradient step of a few hundred points)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    X = X.double().numpy() if isinstance(X, torch.Tensor) else np.asarray(X, dtype=float)
    perplexity = perplexity or min(30.0, (len(X) - 1) / 3)
    with threadpool_limits(1, user_api="openmp"):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=1000).fit_transform(X)


def modular_lines(p: int, k: int = 8) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Colours x mod k and the segments x -> x + k (mod p) of Power et al.'s modular panel."""
    return np.arange(p) % k, [(x, (x + k) % p) for x in range(p)]
