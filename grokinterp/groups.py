"""Finite groups from Cayley tables: S_n, A_n, D_n, C_n, products, groups given by generators;
conjugacy classes, subgroups, cosets, characters.

Elements are indices ``0..n-1`` into ``group.elements``. A group built from permutations (every
named group, and every group given by generators) stores its elements as permutation tuples ``g``
with ``g[i]`` the image of ``i``, sorted lexicographically (so index 0 is the identity). Products
follow function composition: ``(a * b)(i) = a(b(i))``. Everything is computed from the Cayley
table, so subgroups are enumerated by program and never typed in by hand.

``group_from_spec`` names groups: ``S<n>`` (symmetric), ``A<n>`` (alternating), ``D<n>`` (dihedral
of order 2n: the symmetries of an n-gon, on its n vertices), ``C<n>`` (cyclic), direct products such
as ``C3xS3`` (the factors act on disjoint points), or generators in cycle notation such as
``"(0,1,2);(0,1)"`` (points ``0..max``, the degree inferred from the largest).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

MAX_ORDER = 1000  # largest group built from a name or generators (S6 has 720 elements, S7 5040)


class GroupError(ValueError):
    """A group that cannot be built as asked (unknown name, bad generators, too large, ...)."""


@dataclass(frozen=True)
class Subgroup:
    """A subgroup as a sorted tuple of element indices, with a few invariants."""

    elements: tuple[int, ...]
    generators: tuple[int, ...]
    name: str  # isomorphism type where recognised ("D5", "S4", "C6xC2", ...), else "order-n"
    class_id: int = -1  # index of its conjugacy class of subgroups in FiniteGroup.subgroups()

    @property
    def order(self) -> int:
        return len(self.elements)


class FiniteGroup:
    """A finite group given by its Cayley table ``table[a, b] = a * b`` (shape n x n)."""

    def __init__(self, table: np.ndarray, elements: list | None = None, name: str = "G"):
        table = np.asarray(table, dtype=np.int64)
        n = table.shape[0]
        if table.shape != (n, n) or np.any(np.sort(table, axis=1) != np.arange(n)):
            raise ValueError("a Cayley table must be an n x n Latin square of indices 0..n-1")
        self.table = table
        self.n = n
        self.name = name
        self.elements = list(elements) if elements is not None else list(range(n))
        ident = np.flatnonzero((table == np.arange(n)).all(axis=1))
        if len(ident) != 1:
            raise ValueError("the table has no identity element")
        self.identity = int(ident[0])
        self.inverse = np.argmax(table == self.identity, axis=1)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_permutations(cls, perms, name: str = "G") -> "FiniteGroup":
        """The group of the given permutation tuples (which must be closed under composition),
        elements sorted lexicographically. The table is built by hashing each product's image."""
        P = np.array(sorted(set(map(tuple, perms))), dtype=np.int64)  # (n, degree)
        n = len(P)
        w = np.random.default_rng(0).integers(1, 2**62, size=P.shape[1])
        codes = P @ w  # wraps around in int64: a hash of each permutation
        order = np.argsort(codes)
        sorted_codes = codes[order]
        if np.any(np.diff(sorted_codes) == 0):
            raise GroupError("two permutations hash alike; please report this group")
        table = np.empty((n, n), dtype=np.int64)
        rows = max(1, 2**22 // max(n * P.shape[1], 1))
        for start in range(0, n, rows):
            prod = np.take(P[start : start + rows], P, axis=1) @ w  # (rows, n): codes of a * b
            idx = np.minimum(np.searchsorted(sorted_codes, prod), n - 1)
            if np.any(sorted_codes[idx] != prod):
                raise GroupError(f"the permutations of {name} are not closed under composition")
            table[start : start + rows] = order[idx]
        return cls(table, [tuple(int(v) for v in p) for p in P], name=name)

    @classmethod
    def symmetric(cls, degree: int) -> "FiniteGroup":
        """S_degree with elements as permutation tuples in lexicographic order."""
        return cls.from_permutations(itertools.permutations(range(degree)), name=f"S{degree}")

    def index_of(self, element) -> int:
        """Index of an element given as stored (e.g. a permutation tuple) or as cycles."""
        if isinstance(element, (int, np.integer)):
            return int(element)
        element = tuple(element)
        if element and isinstance(element[0], tuple):  # cycle notation: ((0, 3), (1, 4))
            element = cycles_to_permutation(element, len(self.elements[0]))
        return self.elements.index(element)

    @property
    def degree(self) -> int | None:
        """Number of points a permutation group acts on (None for a group given by its table)."""
        return len(self.elements[0]) if isinstance(self.elements[0], tuple) else None

    @cached_property
    def is_symmetric(self) -> bool:
        """Whether this is the full symmetric group of its points (then irreps carry partitions)."""
        return self.degree is not None and self.n == math.factorial(self.degree)

    def element_names(self) -> list[str]:
        """Cycle notation for permutations ('(0,3)(1,4)', '()' for the identity), else indices."""
        if self.degree is None:
            return [str(i) for i in range(self.n)]
        return [permutation_to_cycles(g) for g in self.elements]

    # ---- basic structure ----------------------------------------------------------------------
    def element_order(self, g: int) -> int:
        k, x = 1, g
        while x != self.identity:
            x, k = self.table[x, g], k + 1
        return k

    @cached_property
    def orders(self) -> np.ndarray:
        return np.array([self.element_order(g) for g in range(self.n)])

    @cached_property
    def conjugacy_classes(self) -> list[np.ndarray]:
        """Classes as sorted index arrays, the identity's class first."""
        seen, classes = np.zeros(self.n, bool), []
        for g in [self.identity] + list(range(self.n)):
            if not seen[g]:
                cls_ = np.unique(self.table[self.table[:, g], self.inverse])  # x g x^-1
                seen[cls_] = True
                classes.append(cls_)
        return classes

    @cached_property
    def class_of(self) -> np.ndarray:
        out = np.empty(self.n, dtype=np.int64)
        for i, c in enumerate(self.conjugacy_classes):
            out[c] = i
        return out

    # ---- subgroups ----------------------------------------------------------------------------
    def _closure(self, mask: np.ndarray, generators) -> np.ndarray:
        """Boolean mask (n,) of <H, generators> for a subgroup H given as a mask.

        The set grows by whole left cosets yH (so it stays closed under multiplying by H on the
        right) and by products with the generators until nothing is new.
        """
        mask = mask.copy()
        h = np.flatnonzero(mask)
        gens = np.asarray(list(generators), dtype=np.int64)
        frontier = h
        while frontier.size and gens.size:
            new = np.zeros(self.n, bool)
            new[self.table[frontier[:, None], gens[None, :]].ravel()] = True
            new &= ~mask
            if h.size > 1 and new.any():
                new[self.table[np.flatnonzero(new)[:, None], h[None, :]].ravel()] = True
                new &= ~mask
            mask |= new
            frontier = np.flatnonzero(new)
        return mask

    def generate(self, generators) -> frozenset[int]:
        """The subgroup generated by ``generators`` (indices)."""
        start = np.zeros(self.n, bool)
        start[self.identity] = True
        return frozenset(np.flatnonzero(self._closure(start, [int(g) for g in generators])).tolist())

    def is_subgroup(self, members) -> bool:
        m = np.asarray(sorted(members))
        return bool(np.isin(self.table[np.ix_(m, m)], m).all()) and self.identity in set(m.tolist())

    @cached_property
    def _cyclic_subgroups(self) -> tuple[np.ndarray, np.ndarray]:
        """(cyclic_id (n,): which cyclic subgroup <g> each g generates, one generator per id)."""
        cyclic_id, gens = np.full(self.n, -1), []
        for g in [self.identity] + list(range(self.n)):
            if cyclic_id[g] < 0:
                powers, x = [g], self.table[g, g]
                while powers[-1] != self.identity:
                    powers.append(int(x))
                    x = self.table[x, g]
                m = len(powers)  # powers[k - 1] = g^k; g^k generates <g> iff gcd(k, m) = 1
                cyclic_id[[powers[k - 1] for k in range(1, m + 1) if math.gcd(k, m) == 1]] = len(gens)
                gens.append(g)
        return cyclic_id, np.array(gens)

    @cached_property
    def _subgroup_classes(self) -> list[tuple[np.ndarray, list[tuple[int, ...]]]]:
        """Every conjugacy class of subgroups as (its conjugates as sorted rows (c, order), their generators).

        Cyclic extension: every subgroup is a chain of joins <H, g> with cyclic subgroups, so joining
        one representative H of each class with one <g> per orbit of the normaliser N(H) on the
        cyclic subgroups (x <H, g> x^-1 = <H, x g x^-1> for x in N(H)) finds every class. Subsets
        are looked up by a random 64-bit sum over their members, then compared exactly.
        """
        cyclic_id, cyclic_gens = self._cyclic_subgroups
        weights = np.random.default_rng(0).integers(-(2**62), 2**62, size=self.n)
        known: dict[int, list[np.ndarray]] = {}  # hash -> member arrays of the subgroups found
        found = []  # (representative mask, its generators, its normaliser, conjugates, their generators)
        trivial = np.zeros(self.n, bool)
        trivial[self.identity] = True

        def is_known(members: np.ndarray) -> bool:
            return any(np.array_equal(members, m) for m in known.get(int(weights[members].sum()), []))

        def add(mask: np.ndarray, gens: tuple[int, ...]) -> None:
            for g in list(gens):  # drop generators the others already give
                rest = [h for h in gens if h != g]
                if (self._closure(trivial, rest) == mask).all():
                    gens = tuple(rest)
            members = np.flatnonzero(mask)
            conj = self.table[self.table[:, members], self.inverse[:, None]]  # row x: x H x^-1
            codes = weights[conj].sum(axis=1)
            _, first = np.unique(codes, return_index=True)
            rows = np.sort(conj[first], axis=1)
            g = np.asarray(gens, dtype=np.int64)
            conj_gens = [tuple(self.table[self.table[x, g], self.inverse[x]].tolist()) for x in first]
            for code, row in zip(codes[first], rows):
                known.setdefault(int(code), []).append(row)
            found.append((mask, gens, np.flatnonzero(codes == codes[self.identity]), rows, conj_gens))

        add(trivial, ())
        i = 0
        while i < len(found):
            mask, gens, normaliser, _, _ = found[i]
            i += 1
            # orbit[x, c]: the cyclic subgroup x <g_c> x^-1, for x in N(H)
            orbit = cyclic_id[self.table[self.table[normaliser[:, None], cyclic_gens[None, :]], self.inverse[normaliser][:, None]]]
            done = np.zeros(len(cyclic_gens), bool)
            done[cyclic_id[mask]] = True  # cyclic subgroups inside H add nothing
            for c in range(len(cyclic_gens)):
                if done[c]:
                    continue
                done[orbit[:, c]] = True
                joined = self._closure(mask, [int(cyclic_gens[c])])
                if not is_known(np.flatnonzero(joined)):
                    add(joined, gens + (int(cyclic_gens[c]),))
        return [(rows, conj_gens) for _, _, _, rows, conj_gens in found]

    @cached_property
    def subgroups(self) -> list[Subgroup]:
        """All subgroups, sorted by (order, conjugacy class); ``class_id`` numbers the classes in
        the order (subgroup order, lexicographically smallest member list of the class)."""
        classes = sorted(self._subgroup_classes, key=lambda c: (c[0].shape[1], min(c[0].tolist())))
        subs = []
        for class_id, (rows, gens) in enumerate(classes):
            name = self._isomorphism_name(rows[0])
            subs += [Subgroup(tuple(r.tolist()), g, name, class_id) for r, g in zip(rows, gens)]
        return sorted(subs, key=lambda s: (s.order, s.class_id, s.elements))

    def subgroup_classes(self) -> list[list[Subgroup]]:
        """Conjugacy classes of subgroups, ordered as ``class_id``."""
        classes: dict[int, list[Subgroup]] = {}
        for s in self.subgroups:
            classes.setdefault(s.class_id, []).append(s)
        return [classes[i] for i in sorted(classes)]

    def _isomorphism_name(self, members) -> str:
        m = sorted(members)
        order = len(m)
        if order == self.n:
            return self.name
        orders = Counter(self.orders[m].tolist())
        sub = np.asarray(m)
        abelian = bool((self.table[np.ix_(sub, sub)] == self.table[np.ix_(sub, sub)].T).all())
        if orders.get(order):
            return f"C{order}" if order > 1 else "1"
        signature = (order, abelian, tuple(sorted(orders.items())))
        if signature in _KNOWN_TYPES:
            return _KNOWN_TYPES[signature]
        if abelian:
            return _abelian_name(orders)
        if signature == _dihedral_signature(order // 2):
            return f"D{order // 2}"
        return f"order-{order}"

    def cosets(self, members, side: str = "left") -> list[np.ndarray]:
        """Left cosets gH or right cosets Hg of a subgroup, as sorted index arrays."""
        m = np.asarray(sorted(members))
        seen, out = np.zeros(self.n, bool), []
        for g in range(self.n):
            if not seen[g]:
                c = np.sort(self.table[g, m] if side == "left" else self.table[m, g])
                seen[c] = True
                out.append(c)
        return out

    def coset_labels(self, members, side: str = "left") -> np.ndarray:
        """Shape (n,): which coset each element lies in."""
        labels = np.empty(self.n, dtype=np.int64)
        for i, c in enumerate(self.cosets(members, side)):
            labels[c] = i
        return labels

    def coset_of(self, cluster) -> tuple[int, ...] | None:
        """The subgroup H with C = c0 H (c0 = min C) if the cluster C is a coset, else None.

        A coset has no side: C = c0 H is also the right coset (c0 H c0^-1) c0, so a cluster is a
        left coset exactly when it is a right one. Which subgroup's partition a set of clusters
        forms is a question about all of them (``analysis.cosets``), not about one cluster.
        """
        c = np.asarray(sorted(cluster))
        h = np.sort(self.table[self.inverse[c[0]], c])
        return tuple(h.tolist()) if self.is_subgroup(h) else None

    # ---- characters ---------------------------------------------------------------------------
    @cached_property
    def character_table(self) -> np.ndarray:
        """Shape (k irreps, k classes), complex, orthonormal rows (over the group); rows sorted by
        (dimension, values), a complex character before its conjugate.

        Burnside's method: class sums K_i satisfy K_i K_j = sum_k c_ijk K_k, and each irrep gives
        a common eigenvector omega(K_j) = |C_j| chi(g_j) / chi(1) of the matrices (c_ijk)_jk; one
        random combination sum_i r_i c_ijk separates them. chi(1)^2 = |G| / sum_j |omega_j|^2 / |C_j|
        fixes the scale. A table that fails the orthonormality check is recomputed with new weights.
        """
        classes = self.conjugacy_classes
        k = len(classes)
        sizes = np.array([len(c) for c in classes], dtype=float)
        for seed in range(4):
            weight = np.random.default_rng(seed).normal(size=k)[self.class_of]  # r_i for the class of each x
            a = np.empty((k, k))
            for l, c in enumerate(classes):  # a[j, l] = sum_i r_i #{x in C_i : x^-1 z in C_j}, z in C_l
                a[:, l] = np.bincount(self.class_of[self.table[self.inverse, c[0]]], weights=weight, minlength=k)
            _, vecs = np.linalg.eig(a)  # sum_l a[j, l] omega_l = lambda omega_j
            omega = (vecs / vecs[0]).T
            dims = np.sqrt(self.n / (np.abs(omega) ** 2 / sizes).sum(1))
            table = omega * dims[:, None] / sizes
            chars = table[:, self.class_of]
            if np.allclose(chars @ chars.conj().T / self.n, np.eye(k), atol=1e-8) and np.allclose(dims, dims.round(), atol=1e-8):
                break
        else:
            raise GroupError(f"the character table of {self.name} did not come out orthonormal")
        re_, im = table.real.copy(), table.imag.copy()
        re_[np.abs(re_) < 1e-9], im[np.abs(im) < 1e-9] = 0, 0
        table = re_ + 1j * im
        key = lambda i: (round(table[i, 0].real), -round(table[i].real.sum(), 6),  # noqa: E731
                         tuple(-np.round(table[i].real, 6)), tuple(-np.round(table[i].imag, 6)))
        return table[sorted(range(k), key=key)]

    def characters(self) -> np.ndarray:
        """Shape (k irreps, n elements): chi(g) for every element."""
        return self.character_table[:, self.class_of]

    @cached_property
    def irrep_partitions(self) -> list[tuple[int, ...]] | None:
        """For a full symmetric group S_d: the partition of d labelling each irrep (its character by
        the Murnaghan-Nakayama rule matches the row); None for other groups."""
        if not self.is_symmetric:
            return None
        types = [cycle_type(self.elements[c[0]]) for c in self.conjugacy_classes]
        chars = {lam: [symmetric_character(lam, t) for t in types] for lam in partitions(self.degree)}
        return [next(lam for lam, v in chars.items() if np.allclose(row, v, atol=1e-6)) for row in self.character_table]

    @cached_property
    def _irrep_aliases(self) -> list[list[str]]:
        """Every name of each irrep, the one shown first."""
        table, parts = self.character_table, self.irrep_partitions
        special = {}
        if parts:
            d = self.degree
            special = {(d,): "trivial", (1,) * d: "sign"}
            if d >= 4:
                special.update({(d - 1, 1): "standard", (2,) + (1,) * (d - 2): "standard x sign"})
        out, counts = [], Counter()
        for i, row in enumerate(table):
            conj = next(j for j in range(len(table)) if np.allclose(table[j], row.conj(), atol=1e-6))
            if np.allclose(row, 1):
                names = ["trivial"]
            elif parts and parts[i] in special:
                names = [special[parts[i]]]
            elif conj < i:
                names = [out[conj][0] + "*"]
            else:
                d = int(round(row[0].real))
                counts[d] += 1
                names = [f"dim{d}{letter_name(counts[d] - 1)}"]
            out.append(names + ([partition_name(parts[i])] if parts else []))
        return out

    @cached_property
    def irrep_names(self) -> list[str]:
        """One name per row of ``character_table``: 'trivial', else 'dim<d><letter>' lettered by
        dimension in table order; the conjugate of a complex irrep is its name with '*'. For S_n
        also 'sign', 'standard' = (n-1,1) and 'standard x sign' = (2,1^(n-2)) (n >= 4); the others
        keep dimension names (S5: dim5a = (3,2), dim5b = (2,2,1), dim6a = (3,1,1)), with their
        partitions in ``irrep_partitions`` and accepted by ``irrep_index``."""
        return [names[0] for names in self._irrep_aliases]

    def irrep_index(self, irrep) -> int:
        """Row of ``character_table`` for an index or a name: one of ``irrep_names`` or, for S_n,
        a partition ('(3,2)' or '3,2')."""
        if isinstance(irrep, (int, np.integer)):
            if not 0 <= irrep < len(self.irrep_names):
                raise GroupError(f"{self.name} has {len(self.irrep_names)} irreps; index {irrep} is out of range")
            return int(irrep)
        key = str(irrep).replace(" ", "")
        if re.fullmatch(r"[\d,]+", key):
            key = f"({key})"
        for i, names in enumerate(self._irrep_aliases):
            if key in [n.replace(" ", "") for n in names]:
                return i
        raise GroupError(f"unknown irrep {irrep!r} of {self.name}; choose one of: {', '.join(self.irrep_names)}")


# ---- names, permutations, partitions -----------------------------------------------------------


def letter_name(i: int) -> str:
    """0 -> 'a', 25 -> 'z', 26 -> 'aa', 27 -> 'ab', ... (spreadsheet columns, from 0)."""
    s = ""
    while True:
        s = "abcdefghijklmnopqrstuvwxyz"[i % 26] + s
        i = i // 26 - 1
        if i < 0:
            return s


def cycles_to_permutation(cycles, degree: int) -> tuple[int, ...]:
    """((0, 3), (1, 4)) -> the permutation tuple mapping 0->3->0 and 1->4->1."""
    perm = list(range(degree))
    for cyc in cycles:
        for a, b in zip(cyc, cyc[1:] + cyc[:1]):
            perm[a] = b
    return tuple(perm)


def permutation_to_cycles(perm) -> str:
    """(3, 4, 2, 0, 1) -> '(0,3)(1,4)'; the identity is '()'."""
    seen, out = set(), []
    for i in range(len(perm)):
        if i in seen or perm[i] == i:
            continue
        cyc, j = [], i
        while j not in seen:
            seen.add(j)
            cyc.append(j)
            j = perm[j]
        out.append("(" + ",".join(map(str, cyc)) + ")")
    return "".join(out) or "()"


def cycle_type(perm) -> tuple[int, ...]:
    """Cycle lengths of a permutation, fixed points included, largest first: (1,0,2) -> (2, 1)."""
    seen, lengths = set(), []
    for i in range(len(perm)):
        if i not in seen:
            j, k = i, 0
            while j not in seen:
                seen.add(j)
                j, k = perm[j], k + 1
            lengths.append(k)
    return tuple(sorted(lengths, reverse=True))


def partitions(n: int, largest: int | None = None) -> list[tuple[int, ...]]:
    """Partitions of n as non-increasing tuples, in reverse lexicographic order: (n), ..., (1^n)."""
    largest = n if largest is None else largest
    if n == 0:
        return [()]
    return [(k,) + rest for k in range(min(n, largest), 0, -1) for rest in partitions(n - k, k)]


def partition_name(shape) -> str:
    return "(" + ",".join(map(str, shape)) + ")"


def symmetric_character(shape: tuple[int, ...], cycles: tuple[int, ...]) -> int:
    """chi^shape of S_n at a permutation with cycle lengths ``cycles`` (Murnaghan-Nakayama rule:
    remove a rim hook of each cycle's length, sign (-1)^(its height); on beta-numbers a hook of
    length r moves a bead from b to b - r, its height the beads passed over)."""
    if not cycles:
        return 1
    r, rest = cycles[0], cycles[1:]
    m = len(shape)
    beta = [shape[i] + m - 1 - i for i in range(m)]
    total = 0
    for b in beta:
        if b - r >= 0 and b - r not in beta:
            sign = (-1) ** sum(1 for c in beta if b - r < c < b)
            new = sorted([c for c in beta if c != b] + [b - r], reverse=True)
            smaller = tuple(v for v in (new[i] - (m - 1 - i) for i in range(m)) if v > 0)
            total += sign * symmetric_character(smaller, rest)
    return total


# ---- groups by name or by generators ---------------------------------------------------------


def _factor_permutations(kind: str, k: int) -> list[tuple[int, ...]]:
    if kind == "S":
        return list(itertools.permutations(range(k)))
    if kind == "A":
        return [p for p in itertools.permutations(range(k)) if (k - len(cycle_type(p))) % 2 == 0]
    if kind == "C":
        return [tuple((i + s) % k for i in range(k)) for s in range(k)]
    return [tuple((s + e * i) % k for i in range(k)) for s in range(k) for e in (1, -1)]  # D: rotations, reflections


_MIN_SIZE = {"S": 2, "A": 3, "D": 3, "C": 2}


def _factor_order(kind: str, k: int) -> int:
    if kind in "SA":
        return math.factorial(min(k, 20)) // (2 if kind == "A" else 1)
    return 2 * k if kind == "D" else k


def group_from_spec(spec: str) -> FiniteGroup:
    """A group by name ('S4', 'A5', 'D7', 'C12', products 'C3xS3') or by generators in cycle
    notation ('(0,1,2);(0,1)': one generator per ';', disjoint cycles each). Built once per process."""
    key = re.sub(r"\s+", "", spec)
    return _group_from_key(key if key.startswith("(") else key.upper().replace("×", "X"))


@lru_cache(maxsize=32)
def _group_from_key(key: str) -> FiniteGroup:
    if key.startswith("("):
        return _generated_group(key)
    factors = []
    for f in key.split("X"):
        m = re.fullmatch(r"([SADC])(\d+)", f)
        if not m:
            raise GroupError(f"unknown group {key!r}: name S<n>, A<n>, D<n>, C<n> or a product like C3xS3, "
                             "or give generators like '(0,1,2);(0,1)'")
        kind, k = m.group(1), int(m.group(2))
        if k < _MIN_SIZE[kind]:
            raise GroupError(f"{kind}{k} is too small: {kind}<n> needs n >= {_MIN_SIZE[kind]}")
        factors.append((kind, k))
    order = math.prod(_factor_order(kind, k) for kind, k in factors)
    if order > MAX_ORDER:
        raise GroupError(f"{key} has {order:,} elements; at most {MAX_ORDER:,} are supported")
    perms: list[tuple[int, ...]] = [()]
    for kind, k in factors:
        shift = len(perms[0])
        perms = [a + tuple(x + shift for x in b) for a in perms for b in _factor_permutations(kind, k)]
    return FiniteGroup.from_permutations(perms, name="x".join(f"{kind}{k}" for kind, k in factors))


def _generated_group(key: str) -> FiniteGroup:
    generators = []
    for g in key.split(";"):
        if not re.fullmatch(r"(\((\d+(,\d+)*)?\))+", g):
            raise GroupError(f"bad generator {g!r}: write each in cycle notation, e.g. '(0,1,2)(3,4)', separated by ';'")
        cycles = [tuple(int(x) for x in c.split(",")) for c in re.findall(r"\(([\d,]*)\)", g) if c]
        points = [x for c in cycles for x in c]
        if len(points) != len(set(points)):
            raise GroupError(f"bad generator {g!r}: its cycles must be disjoint, without repeated points")
        generators.append(cycles)
    degree = 1 + max((x for cycles in generators for c in cycles for x in c), default=0)
    gens = [cycles_to_permutation(c, degree) for c in generators]
    members = {tuple(range(degree))}
    frontier = list(members)
    while frontier:
        new = {tuple(x[i] for i in g) for x in frontier for g in gens} - members  # x * g
        members |= new
        frontier = list(new)
        if len(members) > MAX_ORDER:
            raise GroupError(f"the generators {key} give more than {MAX_ORDER:,} elements")
    return FiniteGroup.from_permutations(members, name=f"<{key}>")


def _abelian_name(orders: Counter) -> str:
    """Invariant factors of an abelian group from its element orders: 'C6xC2', 'C2^3'."""
    n = sum(orders.values())
    per_prime = []
    for p in (q for q in range(2, n + 1) if n % q == 0 and all(q % r for r in range(2, q))):
        ge, previous, k = [], 0, 1  # ge[k-1]: how many cyclic p-factors have exponent >= k
        while True:
            s = round(math.log(sum(c for o, c in orders.items() if p**k % o == 0), p))
            if s == previous:
                break
            ge.append(s - previous)
            previous, k = s, k + 1
        per_prime.append([p ** sum(1 for c in ge if c > i) for i in range(ge[0])])
    width = max(len(f) for f in per_prime)
    factors = Counter(math.prod(f[i] for f in per_prime if i < len(f)) for i in range(width))
    return "x".join(f"C{f}" + (f"^{m}" if m > 1 else "") for f, m in sorted(factors.items(), reverse=True))


def _dihedral_signature(m: int):
    """(order, abelian, element-order histogram) of D_m (order 2m): phi(d) rotations of order d for
    each d | m, m reflections."""
    if m < 3:
        return None
    hist = Counter({d: sum(1 for j in range(1, d + 1) if math.gcd(j, d) == 1) for d in range(1, m + 1) if m % d == 0})
    hist[2] += m
    return (2 * m, False, tuple(sorted(hist.items())))


# (order, abelian, element-order histogram) -> name, for the small groups met inside S_n.
_KNOWN_TYPES = {
    (4, True, ((1, 1), (2, 3))): "V4",
    (6, False, ((1, 1), (2, 3), (3, 2))): "S3",
    (8, False, ((1, 1), (2, 5), (4, 2))): "D4",
    (8, True, ((1, 1), (2, 7))): "C2^3",
    (8, True, ((1, 1), (2, 3), (4, 4))): "C4xC2",
    (10, False, ((1, 1), (2, 5), (5, 4))): "D5",
    (12, False, ((1, 1), (2, 3), (3, 8))): "A4",
    (12, False, ((1, 1), (2, 7), (3, 2), (6, 2))): "D6",
    (20, False, ((1, 1), (2, 5), (4, 10), (5, 4))): "F20",
    (24, False, ((1, 1), (2, 9), (3, 8), (4, 6))): "S4",
    (60, False, ((1, 1), (2, 15), (3, 20), (5, 24))): "A5",
    (120, False, ((1, 1), (2, 25), (3, 20), (4, 30), (5, 24), (6, 20))): "S5",
}
