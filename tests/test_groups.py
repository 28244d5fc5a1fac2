import math
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
    c0 = min(left)
    conj = S5.table[S5.table[c0, list(sub)], S5.inverse[c0]]  # c0 H c0^-1: the same set is its right coset
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


# ---- groups by name and by generators ------------------------------------------------------------

from grokinterp.groups import GroupError, group_from_spec, letter_name, partitions, symmetric_character  # noqa: E402


def tau(n):
    return sum(1 for d in range(1, n + 1) if n % d == 0)


def sigma(n):
    return sum(d for d in range(1, n + 1) if n % d == 0)


@pytest.mark.parametrize("spec,subgroups,classes", [
    ("S3", 6, 4), ("S4", 30, 11), ("A4", 10, 5), ("A5", 59, 9), ("S5", 156, 19), ("A6", 501, 22),
    ("C2", 2, 2), ("C12", tau(12), tau(12)), ("C30", tau(30), tau(30)),  # C_n: one subgroup per divisor of n
    ("D3", tau(3) + sigma(3), 4), ("D4", tau(4) + sigma(4), 8), ("D7", tau(7) + sigma(7), 4), ("D12", tau(12) + sigma(12), None),
])
def test_known_subgroup_counts(spec, subgroups, classes):
    g = group_from_spec(spec)
    assert len(g.subgroups) == subgroups
    if classes is not None:
        assert len(g.subgroup_classes()) == classes
    assert all(g.is_subgroup(h.elements) and g.generate(h.generators) == frozenset(h.elements) for h in g.subgroups)


def test_s6_subgroups_in_a_few_seconds():
    import time

    t = time.perf_counter()
    g = group_from_spec("S6")
    assert len(g.subgroups) == 1455 and len(g.subgroup_classes()) == 56
    assert time.perf_counter() - t < 30  # about 2 s on two shared CPU cores
    assert sum(len(c) for c in g.subgroup_classes()) == 1455
    assert Counter(h.order for h in g.subgroups)[360] == 1  # A6


def naive_subgroups(g):
    """Every join of cyclic subgroups, without the conjugacy shortcut (the old algorithm)."""
    cyclic = {g.generate([x]) for x in range(g.n)}
    found, frontier = set(cyclic), set(cyclic)
    while frontier:
        frontier = {g.generate(list(h | c)) for h in frontier for c in cyclic if not c <= h} - found
        found |= frontier
    return found


@pytest.mark.parametrize("spec", ["C3xS3", "D6", "C2xC2xC2", "(0,1,2,3)(4,5,6,7);(0,4,2,6)(1,7,3,5)", "(0,1)(2,3);(0,2,4)"])
def test_enumeration_agrees_with_joining_every_pair(spec):
    g = group_from_spec(spec)
    assert {frozenset(h.elements) for h in g.subgroups} == naive_subgroups(g)
    for cls in g.subgroup_classes():  # a class is one orbit under conjugation
        h = cls[0].elements
        assert {frozenset(s.elements) for s in cls} == {frozenset(g.table[g.table[x, list(h)], g.inverse[x]].tolist()) for x in range(g.n)}


@pytest.mark.parametrize("spec,order,degree", [("S4", 24, 4), ("a5", 60, 5), ("D7", 14, 7), ("C12", 12, 12), ("C3xS3", 18, 6),
                                               ("C2 x C2 x C2", 8, 6), ("(0,1,2);(0,1)", 6, 3), ("(0,4)", 2, 5)])
def test_groups_by_name_and_generators(spec, order, degree):
    g = group_from_spec(spec)
    assert g.n == order and g.degree == degree and g.identity == 0
    t = g.table
    a, b, c = np.meshgrid(*(np.arange(order),) * 3, indexing="ij")
    assert (t[t[a, b], c] == t[a, t[b, c]]).all()
    for x in range(0, order, 5):  # products are compositions of the permutations
        for y in range(order):
            assert g.elements[t[x, y]] == tuple(g.elements[x][i] for i in g.elements[y])


def test_named_groups_are_what_they_say():
    assert group_from_spec("D7").name == "D7" and Counter(group_from_spec("D7").orders.tolist()) == {1: 1, 2: 7, 7: 6}
    assert all(sum(np.array(p) != np.arange(5)) != 2 for p in group_from_spec("A5").elements)  # no transpositions
    s3 = group_from_spec("(0,1,2);(0,1)")
    assert (s3.table == group_from_spec("S3").table).all() and s3.element_names()[1] == "(1,2)"
    assert group_from_spec("s4") is group_from_spec("S4")  # one group per process
    c6c6 = {h.name for h in group_from_spec("C6xC6").subgroups}
    assert {"C6xC2", "C3^2", "C6xC3", "V4"} <= c6c6
    assert {"D6", "D4", "S3", "C12"} <= {h.name for h in group_from_spec("D12").subgroups}


@pytest.mark.parametrize("spec,message", [
    ("Q8", "unknown group"), ("S1", "too small"), ("D2", "too small"), ("S7", "5,040 elements"), ("C40xC40", "1,600 elements"),
    ("(0,1,1)", "disjoint"), ("(0,1);0,2", "bad generator"), ("(0,1,2,3,4,5,6)(7,8);(0,1)", "more than 1,000"),
])
def test_bad_group_specs(spec, message):
    with pytest.raises(GroupError, match=message):
        group_from_spec(spec)


# ---- characters and irreps --------------------------------------------------------------------

ALL = ["S3", "S4", "S5", "S6", "A4", "A5", "D7", "D8", "C12", "C3xS3", "(0,1,2,3)(4,5,6,7);(0,4,2,6)(1,7,3,5)"]


@pytest.mark.parametrize("spec", ALL)
def test_character_tables_are_orthonormal(spec):
    g = group_from_spec(spec)
    ct, chars = g.character_table, g.characters()
    sizes = np.array([len(c) for c in g.conjugacy_classes])
    assert ct.shape == (len(sizes), len(sizes))
    assert np.allclose(chars @ chars.conj().T / g.n, np.eye(len(ct)), atol=1e-9)  # rows
    assert np.allclose(ct.conj().T @ ct, np.diag(g.n / sizes), atol=1e-8)  # columns
    dims = ct[:, 0].real
    assert np.allclose(dims, dims.round()) and round((dims**2).sum()) == g.n and all(g.n % round(d) == 0 for d in dims)
    assert len(set(g.irrep_names)) == len(ct) and g.irrep_names[0] == "trivial"
    assert [g.irrep_index(name) for name in g.irrep_names] == list(range(len(ct)))


def test_complex_characters_are_named_in_conjugate_pairs():
    g = group_from_spec("C12")
    ct, names = g.character_table, g.irrep_names
    assert sum(np.abs(row.imag).max() > 1e-9 for row in ct) == 10  # of orders 3, 4, 6, 12: all but 2 are non-real
    for i, name in enumerate(names):
        if name.endswith("*"):
            assert np.allclose(ct[names.index(name[:-1])], ct[i].conj())
    assert group_from_spec("A4").irrep_names == ["trivial", "dim1a", "dim1a*", "dim3a"]
    assert group_from_spec("C12").character_table.tolist() == group_from_spec("C12").character_table.tolist()  # cached, stable


def hook_dimension(shape):
    n = sum(shape)
    hooks = 1
    for i, row in enumerate(shape):
        for j in range(row):
            arm, leg = row - j - 1, sum(1 for r in shape[i + 1:] if r > j)
            hooks *= arm + leg + 1
    return math.factorial(n) // hooks


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_symmetric_group_irreps_by_partition(n):
    g = group_from_spec(f"S{n}")
    parts = g.irrep_partitions
    assert sorted(parts) == sorted(partitions(n))
    assert [round(d) for d in g.character_table[:, 0].real] == [hook_dimension(p) for p in parts]  # hook length formula
    assert parts[g.irrep_index("sign")] == (1,) * n and g.irrep_index(f"({n})") == g.irrep_index("trivial")
    if n >= 4:
        assert parts[g.irrep_index("standard")] == (n - 1, 1) and parts[g.irrep_index("standard x sign")] == (2,) + (1,) * (n - 2)


def test_s5_names_keep_todays_meaning():
    g = group_from_spec("S5")
    assert g.irrep_names == ["trivial", "sign", "standard", "standard x sign", "dim5a", "dim5b", "dim6a"]
    assert g.irrep_index("dim5a") == g.irrep_index("(3,2)") == g.irrep_index("3, 2") == 4
    assert g.irrep_index("dim5b") == g.irrep_index("(2,2,1)") == 5 and g.irrep_index(6) == 6
    with pytest.raises(GroupError, match="unknown irrep"):
        g.irrep_index("dim7a")
    assert symmetric_character((3, 2), (2, 1, 1, 1)) == 1 and symmetric_character((2, 2, 1), (5,)) == 0


def test_letter_names():
    assert [letter_name(i) for i in (0, 25, 26, 27, 701, 702)] == ["a", "z", "aa", "ab", "zz", "aaa"]


def test_irrep_names_of_a_table_without_permutations():
    g = FiniteGroup((np.arange(6)[:, None] + np.arange(6)) % 6)
    assert g.degree is None and g.irrep_partitions is None and g.element_names()[:2] == ["0", "1"]
    assert g.irrep_names == ["trivial", "dim1a", "dim1a*", "dim1b", "dim1b*", "dim1c"]  # orders 6, 3, 2


# ---- the irrep and coset analyses on other groups ------------------------------------------------

import torch  # noqa: E402

from grokinterp.analysis.cosets import averaging_matrices, coset_partitions, coset_scores, within_share  # noqa: E402
from grokinterp.analysis.representations import irrep_column_ranks, irrep_shares, isotypic_projectors, logit_irrep_cosines  # noqa: E402


@pytest.mark.parametrize("spec", ["C12", "A4", "C3xS3", "D7"])
def test_irrep_shares_with_complex_characters(spec):
    """With complex characters the projectors are complex: the real part alone (the old code) is no
    projector, and the shares of a random matrix then summed to less than 1."""
    g = group_from_spec(spec)
    P = isotypic_projectors(g)
    assert torch.allclose(P.sum(0), torch.eye(g.n, dtype=P.dtype), atol=1e-10)
    assert torch.allclose(P @ P, P, atol=1e-10)
    E = torch.randn(2, g.n, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shares = irrep_shares(E, g)
    assert torch.allclose(shares.sum(-1), torch.ones(2, dtype=torch.float64)) and (shares >= 0).all()
    names = g.irrep_names
    for i, name in enumerate(names):
        if name.endswith("*"):  # a real matrix has equal parts in chi and its conjugate
            assert torch.allclose(shares[:, i], shares[:, names.index(name[:-1])])


def test_cyclic_group_irreps_are_the_fourier_frequencies():
    g = group_from_spec("C12")  # element x is the rotation by x: (x * y) = x + y mod 12
    x = np.array([g.elements[i][0] for i in range(12)])  # where 0 goes: the rotation amount
    E = torch.tensor(np.stack([np.cos(2 * np.pi * 5 * x / 12), np.sin(2 * np.pi * 5 * x / 12)], 1))[None]
    shares = irrep_shares(E, g)[0].numpy()
    top = np.argsort(-shares)[:2]
    assert np.allclose(shares[top], 0.5) and {g.irrep_names[i].rstrip("*") for i in top} == {g.irrep_names[top[0]].rstrip("*")}
    assert np.allclose(irrep_column_ranks(E, g)[0].numpy()[top], 1)  # a 1-dim irrep has one column


def test_logit_cosines_with_complex_characters():
    g = group_from_spec("A4")
    pairs = np.stack(np.nonzero(np.ones((g.n, g.n))), 1)
    k = g.irrep_index("dim1a")
    ab = g.table[pairs[:, 0], pairs[:, 1]]
    planted = torch.tensor(g.characters()[k][g.table[ab[:, None], g.inverse[None, :]]].real)[None]  # Re chi(a b c^-1)
    cos = logit_irrep_cosines(planted, pairs, g)[0].numpy()
    assert np.isclose((cos**2).sum(), 1) and np.isclose(cos[k], cos[g.irrep_index("dim1a*")])  # all in the pair, split evenly
    assert np.allclose(np.delete(cos, [k, k + 1]), 0, atol=1e-9)


@pytest.mark.parametrize("spec", ["S4", "D7", "C3xS3"])
def test_coset_scores_match_the_averaging_matrices(spec):
    g = group_from_spec(spec)
    parts = coset_partitions(g)
    X = torch.randn(3, g.n, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dense = within_share(X, averaging_matrices(parts, g.n))
    scores = coset_scores(X, g, parts)
    expected = np.array([(g.n - len(np.unique(p.labels))) / (g.n - 1) for p in parts])
    assert np.allclose(scores.scores, 1 - dense.numpy() / expected)
    planted = torch.zeros(1, g.n, 4, dtype=torch.float64)  # constant on the left cosets of one subgroup
    best = parts[len(parts) // 2]
    planted[0, :, 0] = torch.as_tensor(best.labels, dtype=torch.float64)
    assert coset_scores(planted, g, parts).scores[0, len(parts) // 2] == pytest.approx(1)


# ---- group tasks end to end -----------------------------------------------------------------------


@pytest.mark.parametrize("flags", [["--group", "S4"], ["--generators", "(0,1,2,3,4,5,6);(1,6)(2,5)(3,4)"]])
def test_group_runs_train_and_report(tmp_path, capsys, flags):
    import json

    from grokinterp.cli import main

    argv = ["train", *flags, "--name", "g", "--model", "tiny-1l", "--steps", "4", "--checkpoint-every", "2", "--frac", "0.5",
            "--runs-dir", str(tmp_path), "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    config = json.loads((tmp_path / "g" / "config.json").read_text())["config"]
    assert config["task"] == "group_mul" and config["group"] == flags[1]
    group = group_from_spec(flags[1])
    assert group.n == (24 if flags[0] == "--group" else 14)  # the generators give D7
    capsys.readouterr()
    assert main(["reps", "--run", "g", "--runs-dir", str(tmp_path), "--json", "--no-figures"]) == 0
    reps = json.loads(capsys.readouterr().out)
    assert reps["irreps"] == group.irrep_names and np.isclose(sum(reps["share_W_U"]), 1)
    assert main(["cosets", "--run", "g", "--runs-dir", str(tmp_path), "--json", "--no-figures"]) == 0
    cos = json.loads(capsys.readouterr().out)
    assert cos["best"]["order"] in {h.order for h in group.subgroups} and 1 < cos["best"]["order"] < group.n
    assert len(cos["classes_ranked"]) == len(group.subgroup_classes()) - 2  # every proper nontrivial class, once
