from collections import Counter

import numpy as np
import pytest

from grokinterp.groups import FiniteGroup, cycles_to_permutation, permutation_to_cycles


@pytest.fixture(scope="module")
def S5():
    return FiniteGroup.symmetric(5)


@pytest.mark.parametrize("n,subgroups,classes", [(3, 6, 4), (4, 30, 11), (5, 156, 19)])
def test_subgroup_counts(n, subgroups, classes):
    g = FiniteGroup.symmetric(n)
    assert len(g.subgroups) == subgroups
    assert len(g.subgroup_classes()) == classes


def test_every_subgroup_is_closed_and_obeys_lagrange(S5):
    for h in S5.subgroups:
        assert S5.is_subgroup(h.elements)
        assert 120 % h.order == 0
        assert S5.generate(h.generators) == frozenset(h.elements)
        for side in ("left", "right"):
            cosets = S5.cosets(h.elements, side)
            assert len(cosets) == 120 // h.order and all(len(c) == h.order for c in cosets)


def test_power_subgroup_is_d5_with_12_cosets(S5):
    gens = [S5.index_of(((0, 3), (1, 4))), S5.index_of(((1, 2), (3, 4)))]
    h = S5.generate(gens)
    assert len(h) == 10
    match = [s for s in S5.subgroups if frozenset(s.elements) == h]
    assert match and match[0].name == "D5"
    assert len(S5.cosets(h)) == 12
    assert sum(1 for s in S5.subgroups if s.class_id == match[0].class_id) == 6  # 6 conjugates


def test_isomorphism_types_of_s5_subgroups(S5):
    counts = Counter(s.name for s in S5.subgroups)
    assert counts["A5"] == 1 and counts["S4"] == 5 and counts["F20"] == 6 and counts["D5"] == 6 and counts["A4"] == 5


def test_a_coset_is_found_with_its_subgroup_and_has_no_side(S5):
    h = S5.subgroups[30].elements  # some small subgroup
    g = 77
    left = S5.table[g, list(h)]
    sub = S5.coset_of(left)
    assert sub is not None and S5.is_subgroup(sub) and sorted(S5.table[min(left), list(sub)]) == sorted(left)
    conj = S5.conjugate(sub, min(left))  # c0 H c0^-1: the same set is its right coset
    assert sorted(S5.table[list(conj), min(left)]) == sorted(left)
    assert S5.coset_of([0, 1, 2, 5, 7, 11]) is None


def test_character_orthogonality_and_dimensions(S5):
    chars = S5.characters()  # (irreps, elements)
    gram = (chars @ chars.conj().T).real / 120
    assert np.allclose(gram, np.eye(len(chars)), atol=1e-8)
    assert sorted(np.round(S5.character_table[:, 0].real).astype(int)) == [1, 1, 4, 4, 5, 5, 6]
    cols = S5.character_table
    sizes = np.array([len(c) for c in S5.conjugacy_classes])
    assert np.allclose((cols.conj().T @ cols).real, np.diag(120 / sizes), atol=1e-8)  # column orthogonality
    assert S5.irrep_names[:3] == ["trivial", "sign", "standard"]


def test_characters_of_an_abstract_table():
    z6 = FiniteGroup((np.arange(6)[:, None] + np.arange(6)) % 6)
    ct = z6.character_table
    assert ct.shape == (6, 6) and np.allclose(np.abs(ct), 1)


def test_cycle_notation_round_trip():
    p = cycles_to_permutation(((0, 3), (1, 4)), 5)
    assert p == (3, 4, 2, 0, 1) and permutation_to_cycles(p) == "(0,3)(1,4)"


def test_bad_table_is_rejected():
    with pytest.raises(ValueError):
        FiniteGroup(np.zeros((3, 3), int))
