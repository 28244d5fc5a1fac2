"""Fixed 2-D views of embeddings over training: one plane, chosen at the final checkpoint, for all.

A view fitted to each checkpoint (PCA or t-SNE per checkpoint) makes points jump from one
checkpoint to the next; projecting every checkpoint on one plane makes them move. The plane is
where the final embedding X (n elements x d) varies most along a structure A on the elements: A is
a symmetric projector on functions of the elements, e.g. onto {cos(w_k c), sin(w_k c)} for a key
frequency k (the output vectors of frequency k lie on a circle in that plane: Nanda et al. 2023)
or the averaging matrix of a coset partition (Power et al. 2022, Fig. 3).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from .fourier import fourier_basis


def frequency_projector(p: int, k: int) -> Float[Tensor, "p p"]:
    """Projector onto the functions cos(2 pi k c / p), sin(2 pi k c / p) of c = 0..p-1."""
    B = fourier_basis(p)[[2 * k - 1, 2 * k]]
    return B.T @ B


def structured_plane(X: Float[Tensor, "n d"], A: Float[Tensor, "n n"]) -> Float[Tensor, "d 2"]:
    """Orthonormal basis of the plane in R^d where A Xc varies most (Xc: X centred over its rows):
    the top two eigenvectors of Xc^T A Xc."""
    Xc = X.double() - X.double().mean(0, keepdim=True)
    _, vecs = torch.linalg.eigh(Xc.T @ A.double() @ Xc)
    return vecs[:, [-1, -2]]


def project(X: Float[Tensor, "S n d"], plane: Float[Tensor, "d 2"]) -> Float[Tensor, "S n 2"]:
    """Every checkpoint's rows, centred, in the coordinates of one fixed plane."""
    X = X.double()
    return (X - X.mean(-2, keepdim=True)) @ plane.double()
