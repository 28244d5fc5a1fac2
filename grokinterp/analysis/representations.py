"""Irreducible representations in a group model (Chughtai et al. 2023).

Functions on G (one row per element) split into isotypic parts with the projectors
P_chi = (d_chi / |G|) [chi(x y^-1)]_{x, y}; they are orthogonal and sum to the identity. The share
of a matrix E explained by chi is |P_chi E|^2 / |E|^2. Logit attribution: the cosine of the
centred logits L(a, b, c) with tr rho(a b c^-1) = chi(a b c^-1), whose square is the share of
logit variance in that irrep (the characters' vectors are orthogonal over (a, b, c)).
A subgroup H fixes (1/|H|) sum_{h in H} chi(h) dimensions of the irrep chi.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..groups import FiniteGroup


def isotypic_projectors(group: FiniteGroup) -> Float[Tensor, "k n n"]:
    """P[chi, x, y] = (d_chi / |G|) conj(chi(x y^-1)) (real part; S_n characters are real)."""
    chars = group.characters()  # (k, n)
    xy_inv = group.table[:, group.inverse]  # [x, y] -> x y^-1
    dims = group.character_table[:, 0].real
    return torch.tensor((dims[:, None, None] / group.n) * chars[:, xy_inv].conj().real)


def irrep_shares(E: Float[Tensor, "S n d"], group: FiniteGroup, centre: bool = True) -> Float[Tensor, "S k"]:
    """Share of |E|^2 in each irrep's isotypic component (rows of E indexed by group elements)."""
    E = E.double()
    if centre:
        E = E - E.mean(-2, keepdim=True)
    P = isotypic_projectors(group)
    parts = torch.einsum("kxy,syd->skxd", P, E)
    return parts.pow(2).sum((-2, -1)) / E.pow(2).sum((-2, -1)).clamp_min(1e-30)[:, None]


def logit_irrep_cosines(logits: Float[Tensor, "S N n"], pairs: np.ndarray, group: FiniteGroup) -> Float[Tensor, "S k"]:
    """Cosine of the centred logits with chi(a b c^-1) for every irrep (pairs: (N, 2) of (a, b))."""
    ab = group.table[pairs[:, 0], pairs[:, 1]]  # (N,)
    abc = group.table[ab[:, None], group.inverse[None, :]]  # (N, n): a b c^-1
    chars = torch.tensor(group.characters().real)  # (k, n)
    L = logits.double()
    L = L - L.mean((1, 2), keepdim=True)
    out = []
    for chi in chars:
        v = chi[torch.as_tensor(abc)]  # (N, n)
        v = v - v.mean()
        if v.norm() < 1e-9:  # the trivial character is constant: nothing left after centring
            out.append(torch.zeros(L.shape[0], dtype=torch.float64))
            continue
        out.append((L * v).sum((1, 2)) / (L.flatten(1).norm(dim=1) * v.norm()).clamp_min(1e-30))
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
    sv2 = torch.linalg.svdvals(torch.einsum("kxy,syd->skxd", P, E)).pow(2)  # (S, k, min(n, d))
    pr = sv2.sum(-1).pow(2) / sv2.pow(2).sum(-1).clamp_min(1e-300)
    pr = torch.where(sv2.sum(-1) > 1e-20 * scale[:, None], pr, torch.zeros_like(pr))
    return pr / dims
