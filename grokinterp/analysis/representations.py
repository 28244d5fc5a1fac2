"""Irreducible representations in a group model (Chughtai et al. 2023).

Functions on G (one row per element) split into isotypic parts with the projectors
P_chi = (d_chi / |G|) [chi(x y^-1)]_{x, y}; they are orthogonal and sum to the identity. The share
of a matrix E explained by chi is |P_chi E|^2 / |E|^2. Logit attribution: the cosine of the
centred logits L(a, b, c) with tr rho(a b c^-1) = chi(a b c^-1), whose square is the share of
logit variance in that irrep (the characters' vectors are orthogonal over (a, b, c)).
A subgroup H fixes (1/|H|) sum_{h in H} chi(h) dimensions of the irrep chi.

Complex characters (C_n, A4, ...): every function works per complex irrep, with complex projectors.
For a real matrix the parts in chi and in its conjugate (named with '*') are conjugate, so the two
shares are equal; their sum is the share of the real irrep that pairs them (a rotation by 2 pi k / n
in C_n: the cos and sin of frequency k).
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..groups import FiniteGroup


def isotypic_projectors(group: FiniteGroup) -> Float[Tensor, "k n n"]:
    """P[chi, x, y] = (d_chi / |G|) conj(chi(x y^-1)): float64, complex128 where a character is complex."""
    chars = group.characters()  # (k, n)
    xy_inv = group.table[:, group.inverse]  # [x, y] -> x y^-1
    dims = group.character_table[:, 0].real
    P = (dims[:, None, None] / group.n) * chars[:, xy_inv].conj()
    return torch.tensor(P.real if np.allclose(P.imag, 0) else P)


def irrep_shares(E: Float[Tensor, "S n d"], group: FiniteGroup, centre: bool = True) -> Float[Tensor, "S k"]:
    """Share of |E|^2 in each irrep's isotypic component (rows of E indexed by group elements)."""
    E = E.double()
    if centre:
        E = E - E.mean(-2, keepdim=True)
    P = isotypic_projectors(group)
    Ec = E.to(P.dtype)
    parts = torch.stack([(p @ Ec).abs().pow(2).sum((-2, -1)) for p in P], -1)  # one irrep at a time: (S, k)
    return parts / E.pow(2).sum((-2, -1)).clamp_min(1e-30)[:, None]


def logit_irrep_cosines(logits: Float[Tensor, "S N n"], pairs: np.ndarray, group: FiniteGroup) -> Float[Tensor, "S k"]:
    """Cosine of the centred logits with chi(a b c^-1) for every irrep (pairs: (N, 2) of (a, b));
    for a complex chi its modulus |<L, chi>| / (|L| |chi|) (chi and its conjugate are orthogonal,
    so the squares still add up to shares of the logit variance).

    chi(a b c^-1) depends on (a b, c) alone, so the logits are first summed over the pairs with the
    same product g = a b: M[s, g, c], shape (S, n, n), read in chunks (S6: 518,400 pairs).
    """
    S, N, n = logits.shape
    g = torch.as_tensor(group.table[pairs[:, 0], pairs[:, 1]])  # (N,) a b
    M = torch.zeros(S, n, n, dtype=torch.float64)
    total, square = torch.zeros(S, dtype=torch.float64), torch.zeros(S, dtype=torch.float64)
    for start in range(0, N, 4096):
        chunk = logits[:, start : start + 4096].double()
        M.index_add_(1, g[start : start + 4096], chunk)
        total += chunk.sum((1, 2))
        square += chunk.pow(2).sum((1, 2))
    L_norm = (square - total**2 / (N * n)).clamp_min(0).sqrt()  # |L - mean L|
    count = torch.bincount(g, minlength=n).double()  # pairs per product
    chars = group.characters()  # (k, n)
    chars = torch.tensor(chars.real if np.allclose(chars.imag, 0) else chars)
    gc = torch.as_tensor(group.table[:, group.inverse])  # [g, c] -> g c^-1
    out = []
    for chi in chars:
        X = chi[gc]  # (n, n): chi(g c^-1)
        v_sum = (count[:, None] * X).sum()
        v_norm = ((count[:, None] * X.abs() ** 2).sum() - v_sum.abs() ** 2 / (N * n)).clamp_min(0).sqrt()  # |v - mean v|
        if v_norm < 1e-9:  # the trivial character is constant: nothing left after centring
            out.append(torch.zeros(S, dtype=torch.float64))
            continue
        dot = (M * X.conj()).sum((1, 2)) - total * v_sum.conj() / (N * n)  # <L, v - mean v>
        out.append((dot.abs() if dot.is_complex() else dot) / (L_norm * v_norm).clamp_min(1e-30))
    return torch.stack(out, -1)


def fixed_dimensions(group: FiniteGroup, subgroup_elements) -> np.ndarray:
    """(1/|H|) sum_{h in H} chi(h) for every irrep: the dimension H fixes in it."""
    chars = group.characters().real
    return np.round(chars[:, list(subgroup_elements)].mean(1), 6) + 0.0  # + 0.0 turns -0.0 into 0.0


def stabilising_subgroups(group: FiniteGroup, irrep: int | str) -> list[tuple[int, str, int, int]]:
    """Proper nontrivial subgroup classes that are the exact stabiliser of a vector of irrep ``irrep``
    (an index or a name in ``group.irrep_names``): (class_id, name, order, dims fixed), largest first.

    H is the stabiliser of some vector iff it fixes a vector and every larger subgroup fixes fewer
    dimensions (then a generic vector of Fix(H) lies outside the smaller Fix(K)). The orbit of a
    vector with stabiliser H is in bijection with the left cosets gH, so an embedding built from
    one such vector is constant on exactly those cosets.
    """
    if isinstance(irrep, str):
        if irrep not in group.irrep_names:
            raise ValueError(f"unknown irrep {irrep!r}; {group.name} has {', '.join(group.irrep_names)}")
        irrep = group.irrep_names.index(irrep)
    elif not 0 <= irrep < len(group.irrep_names):
        raise ValueError(f"irrep index {irrep} out of range; {group.name} has {len(group.irrep_names)} irreps")
    fixed = {h.elements: int(round(fixed_dimensions(group, h.elements)[irrep])) for h in group.subgroups}
    out = []
    for cls in group.subgroup_classes():
        h = cls[0]
        d, members = fixed[h.elements], set(h.elements)
        if d == 0 or h.order in (1, group.n):
            continue
        larger = (k for k in group.subgroups if k.order > h.order and members.issubset(k.elements))
        if all(fixed[k.elements] < d for k in larger):
            out.append((h.class_id, h.name, h.order, d))
    return sorted(out, key=lambda t: (-t[2], -t[3], t[0]))


def irrep_column_ranks(E: Float[Tensor, "S n d"], group: FiniteGroup) -> Float[Tensor, "S k"]:
    """How many columns of rho(g) each irrep's part of E uses: the participation-ratio rank of
    P_chi E divided by d_chi (0 where the part vanishes).

    Rows of the chi-part are E_g = sum_ij rho(g)_ij M_ij; using c of the d_chi columns (M_ij = 0
    outside them; rows, for right cosets) gives rank c * d_chi. A generic embedding uses all d_chi;
    one that is constant on the cosets of H uses at most the dims H fixes in chi (Frobenius
    reciprocity), so cosets that collapse to points need fewer than d_chi (with all d_chi the cosets
    can still separate, each keeping 1 - f/d of the variance: ``cosets.irrep_predicted_scores``).
    """
    scale = E.double().pow(2).sum((-2, -1))  # before centring: a constant E centres to rounding noise
    E = E.double() - E.double().mean(-2, keepdim=True)
    P = isotypic_projectors(group)
    dims = torch.tensor(group.character_table[:, 0].real)
    sv2 = torch.linalg.svdvals(torch.einsum("kxy,syd->skxd", P, E.to(P.dtype))).pow(2)  # (S, k, min(n, d))
    pr = sv2.sum(-1).pow(2) / sv2.pow(2).sum(-1).clamp_min(1e-300)
    pr = torch.where(sv2.sum(-1) > 1e-20 * scale[:, None], pr, torch.zeros_like(pr))
    return pr / dims
