import numpy as np
import pytest
import torch

from grokinterp.analysis.cosets import (
    class_fraction,
    cluster_cosets,
    coset_scores,
    identify_best,
    irrep_predicted_scores,
    random_expectation,
    random_partition_scores,
    shuffled_rows_null,
)
from grokinterp.analysis.representations import (
    fixed_dimensions,
    irrep_column_ranks,
    irrep_shares,
    isotypic_projectors,
    logit_irrep_cosines,
    stabilising_subgroups,
)
from grokinterp.analysis.tsne import tsne
from grokinterp.groups import FiniteGroup
from grokinterp.tasks import Task


@pytest.fixture(scope="module")
def S5():
    return FiniteGroup.symmetric(5)


def _subgroup(group, name):
    """The first subgroup of the first conjugacy class with that isomorphism type."""
    return next(s for s in group.subgroups if s.name == name and s.class_id == min(t.class_id for t in group.subgroups if t.name == name))


def planted(group, members, side, noise=0.3, d=32, seed=0):
    """Rows = the centre of the element's coset (left or right) + Gaussian noise."""
    rng = np.random.default_rng(seed)
    labels = group.coset_labels(members, side)
    centres = rng.normal(size=(labels.max() + 1, d))
    return torch.tensor(centres[labels] + noise * rng.normal(size=(group.n, d))), labels


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("which", ["D5", "S4", "A4", "C5"])
def test_planted_cosets_are_scored_best(S5, side, which):
    h = _subgroup(S5, which)
    X, _ = planted(S5, h.elements, side)
    cs = coset_scores(X[None], S5)
    best = cs.best()
    assert best.subgroup == S5.subgroups.index(h) and best.side == side
    assert cs.scores[0].max() > 0.8


def test_random_embedding_scores_near_zero(S5):
    X = torch.randn(3, 120, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cs = coset_scores(X, S5)
    assert np.abs(cs.scores).max() < 0.25 and abs(cs.scores.mean()) < 0.05


def test_random_partition_expectation(S5):
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.normal(size=(120, 16)))
    from grokinterp.analysis.cosets import Partition, averaging_matrices, within_share

    parts = [Partition(0, "left", rng.permutation(np.repeat(np.arange(12), 10))) for _ in range(200)]
    W = within_share(X[None], averaging_matrices(parts, 120))
    assert W.mean().item() == pytest.approx(random_expectation(parts[0].labels), abs=0.01)  # (n - k) / (n - 1)


def test_direct_clustering_recovers_coset_clusters(S5):
    d5 = S5.generate([S5.index_of(((0, 3), (1, 4))), S5.index_of(((1, 2), (3, 4)))])
    X, _ = planted(S5, d5, "left", noise=0.05)
    for method in ("kmeans", "agglomerative"):
        out = cluster_cosets(X, S5, 12, method)
        d5_class = next(h.class_id for h in S5.subgroups if frozenset(h.elements) == d5)
        assert out["coset_fraction"] == 1.0 and class_fraction(out, d5_class) == 1.0


def test_a_planted_side_and_conjugate_are_identified(S5):
    """Tight left cosets of one point stabiliser: the other 4 conjugates and the right cosets score far
    lower, so the report names this conjugate and side."""
    h = _subgroup(S5, "S4")
    X, _ = planted(S5, h.elements, "left", noise=0.05)
    cs = coset_scores(X[None], S5)
    null = random_partition_scores(X[None], cs.best().labels)[0]
    ident = identify_best(cs, S5, float(null.std()), stands_out=True)
    assert ident.identified and len(ident.candidates) == 10  # 5 conjugates x 2 sides
    best = cs.partitions[ident.candidates[0]]
    assert S5.subgroups[best.subgroup] == h and best.side == "left" and ident.margin > 10 * ident.noise


def test_random_output_weights_have_no_identified_conjugate_or_side(S5):
    """Untrained (Gaussian) W_U: the 10 partitions of a non-normal best class score alike, and the gap
    between the top two exceeds one random spread often (the old rule 'margin > spread' named a conjugate
    and side from noise); the MARGIN_SIGMAS rule names none, even were the partition taken to stand out."""
    from grokinterp.analysis.cosets import MARGIN_SIGMAS

    ratios, named = [], 0
    for seed in range(20):
        X = torch.tensor(np.random.default_rng(seed).normal(size=(S5.n, 128)))
        cs = coset_scores(X[None], S5)
        ident = identify_best(cs, S5, float(random_partition_scores(X[None], cs.best().labels)[0].std()), stands_out=True)
        if ident.margin is not None:
            ratios.append(ident.margin / ident.noise)
            named += ident.identified
    assert len(ratios) >= 10 and named == 0 and max(ratios) < MARGIN_SIGMAS
    assert sum(r > 1 for r in ratios) >= 2  # what the one-spread rule would have called identified


def test_no_identification_is_claimed_when_nothing_stands_out(S5):
    """Planted tight cosets whose partition is taken not to stand out: nothing is identified, and neither
    the label nor the line says 'identified' or names generators."""
    from grokinterp.report import _identification_line, _identified_label, _identified_note

    h = _subgroup(S5, "S4")
    X, _ = planted(S5, h.elements, "left", noise=0.05)
    cs = coset_scores(X[None], S5)
    null = random_partition_scores(X[None], cs.best().labels)[0]
    ident = identify_best(cs, S5, float(null.std()), stands_out=False)
    names = [str(e) for e in S5.elements]
    assert not ident.identified and ident.margin > 10 * ident.noise
    line, label = _identification_line(S5, cs, ident), _identified_label(S5, cs, ident, names)
    assert "not asked for" in line and "identified" not in line
    assert "cosets of <" not in label and "does not stand out" in _identified_note(S5, cs, ident, names)
    shown = identify_best(cs, S5, float(null.std()), stands_out=True)
    assert "conjugate and side identified" in _identification_line(S5, cs, shown)
    assert f"the left cosets of <{', '.join(names[g] for g in h.generators)}>" in _identified_label(S5, cs, shown, names)


def test_partitions_of_a_class_cannot_be_told_apart_in_an_irrep_using_every_column(S5):
    """The standard irrep using all its columns alike (rows of its projector): all 10 point-stabiliser
    partitions score the same (the situation of s5-post, 99% standard with 4.0 of 4 columns), so
    conjugate and side are not identified; A5 (normal) has one partition."""
    X = isotypic_projectors(S5)[S5.irrep_names.index("standard")]
    cs = coset_scores(X[None], S5)
    null = random_partition_scores(X[None], cs.best().labels)[0]
    ident = identify_best(cs, S5, float(null.std()), stands_out=True)
    assert S5.subgroups[cs.best().subgroup].name == "S4" and len(ident.candidates) == 10
    assert not ident.identified and ident.margin < ident.noise
    a5 = next(i for i, p in enumerate(cs.partitions) if S5.subgroups[p.subgroup].name == "A5")
    cs.ratios[0, a5] = cs.ratios.max() + 1  # pretend A5 ranks first
    normal = identify_best(cs, S5, 0.0, stands_out=True)
    assert len(normal.candidates) == 1 and normal.identified


def test_one_ranking_orders_classes_and_figure(S5):
    """Classes are ranked by variance ratio, one partition per class; the figure draws that ratio per class."""
    from grokinterp.figures import coset_scores_over_training

    h = _subgroup(S5, "S4")
    X, _ = planted(S5, h.elements, "left", noise=0.3)
    cs = coset_scores(torch.stack([X, X]), S5)
    ranked = cs.ranked_classes(S5)
    assert ranked[0] == cs.best_index() and list(cs.ratios[-1, ranked]) == sorted(cs.ratios[-1, ranked], reverse=True)
    assert len({S5.subgroups[cs.partitions[i].subgroup].class_id for i in ranked}) == len(ranked) == 17  # proper nontrivial classes
    r, sc = cs.class_maxima(S5), cs.class_maxima(S5, cs.scores)
    cid = h.class_id
    assert r[cid][-1] == cs.ratios[-1, ranked[0]] and sc[cid][-1] == cs.scores[-1, ranked[0]]
    fig = coset_scores_over_training(np.array([0, 1]), {"S4": r[cid]}, {"S4": sc[cid]})
    assert fig.data[0].name == "S4" and fig.layout.yaxis.type == "log"


def test_formation_against_the_grokking_step():
    from grokinterp.report import _formation_vs_grokking, _steps_text

    assert _steps_text([0, 500, 1000, 1500, 2000], [500, 1000, 2000]) == "500-1,000, 2,000"

    steps = [0, 10_000, 20_000, 40_000]
    assert "cannot be told" in _formation_vs_grokking(20_000, steps, 13_000)  # s5-post: 99% test between checkpoints
    assert "before test acc reached 99%" in _formation_vs_grokking(10_000, steps, 13_000)
    assert "after test acc reached 99%" in _formation_vs_grokking(40_000, steps, 13_000)
    assert "never recovered" in _formation_vs_grokking(None, steps, 13_000)


def test_clusters_gone_by_the_last_checkpoint_are_said_to_be_gone():
    """`cosets --run s5`: A5 clusters at 1,000-6,500 and none at the last checkpoint (15,000); the line
    must not leave 'first recovered at 1,000' standing as if the structure were there at the end."""
    from grokinterp.report import _gone_by_the_end

    steps = [0, 1000, 6500, 7000, 15_000]
    assert _gone_by_the_end([1000, 6500], steps) == "; none after checkpoint 6,500, so not at the last (15,000)"
    assert _gone_by_the_end([1000, 15_000], steps) == "" and _gone_by_the_end([], steps) == ""


def test_isotypic_projectors_are_a_resolution_of_identity(S5):
    P = isotypic_projectors(S5)
    torch.testing.assert_close(P.sum(0), torch.eye(120, dtype=torch.float64))
    torch.testing.assert_close(P[2] @ P[2], P[2])
    torch.testing.assert_close(P[2] @ P[3], torch.zeros(120, 120, dtype=torch.float64))
    assert [round(torch.trace(p).item()) for p in P] == [1, 1, 16, 16, 25, 25, 36]  # d_chi^2


def test_irrep_shares_of_a_planted_irrep(S5):
    P = isotypic_projectors(S5)
    E = P[2] @ torch.randn(120, 20, dtype=torch.float64)  # lives in the standard irrep only
    shares = irrep_shares(E[None], S5)[0]
    assert shares[2].item() == pytest.approx(1.0) and shares.sum().item() == pytest.approx(1.0)


def test_logit_cosine_of_a_character_model(S5):
    task = Task("s5_mul")
    abc = S5.table[S5.table[task.pairs[:, 0], task.pairs[:, 1]][:, None], S5.inverse[None, :]]
    chars = S5.characters().real
    logits = torch.tensor(chars[1][abc] + 0.5 * chars[2][abc])[None]  # sign + standard
    cos = logit_irrep_cosines(logits, task.pairs, S5)[0]
    assert cos[0] == 0 and (cos[1] ** 2 + cos[2] ** 2).item() == pytest.approx(1.0)
    assert cos[1].item() > 0 and cos[2].item() > 0 and abs(cos[4].item()) < 1e-9


def test_fixed_dimensions_match_reference(S5):
    d5 = S5.generate([S5.index_of(((0, 3), (1, 4))), S5.index_of(((1, 2), (3, 4)))])
    fixed = dict(zip(S5.irrep_names, fixed_dimensions(S5, d5)))
    # REFERENCE: D5 fixes a vector only in the trivial, sign and the two 5-dimensional irreps
    assert fixed == {"trivial": 1, "sign": 1, "standard": 0, "standard x sign": 0, "dim5a": 1, "dim5b": 1, "dim6a": 0}


def test_stabilising_subgroups_by_name_or_index(S5):
    names = S5.irrep_names
    assert stabilising_subgroups(S5, "standard") == stabilising_subgroups(S5, names.index("standard"))
    assert stabilising_subgroups(S5, "standard")[0][1] == "S4"
    with pytest.raises(ValueError, match="unknown irrep"):
        stabilising_subgroups(S5, "dim9")
    with pytest.raises(ValueError, match="out of range"):
        stabilising_subgroups(S5, len(names))


def test_stabilising_subgroups_of_s5_irreps(S5):
    """The largest stabilisers of a vector: S4 (a point stabiliser) for the standard irrep, A4 for
    standard x sign, F20 for one 5-dimensional irrep and D6 for the other; none is S5 itself (so the
    trivial irrep, which S5 fixes, has none)."""
    names = S5.irrep_names
    assert stabilising_subgroups(S5, names.index("trivial")) == []
    largest = {n: stabilising_subgroups(S5, i)[0][1] for i, n in enumerate(names) if n != "trivial"}
    assert largest["standard"] == "S4" and largest["standard x sign"] == "A4" and largest["sign"] == "A5"
    assert {largest["dim5a"], largest["dim5b"]} == {"F20", "D6"}
    d5 = [t for t in stabilising_subgroups(S5, names.index("dim5a")) if t[1] == "D5"]
    assert d5 and d5[0][3] == 1
    assert all(t[2] < 120 for i in range(len(names)) for t in stabilising_subgroups(S5, i))


def test_exact_stabilisers_separate_d5_from_f20(S5):
    """D5 fixes a line in both 5-dimensional irreps; where F20 fixes it too, the line's stabiliser is
    F20, so D5 is the exact stabiliser of a vector in one 5-dimensional irrep only."""
    names = S5.irrep_names
    holds = lambda name: {n for i, n in enumerate(names) if any(t[1] == name for t in stabilising_subgroups(S5, i))}  # noqa: E731
    assert holds("D5") == {"dim5a"} and holds("F20") == {"dim5b"}
    assert holds("S4") == {"standard"} and holds("A5") == {"sign"} and holds("1") == set()


@pytest.mark.parametrize("irrep, which", [("dim5a", "D5"), ("standard x sign", "A4"), ("standard", "S4"), ("dim6a", "C5")])
def test_one_column_of_an_irrep_shows_the_cosets_of_its_stabiliser(S5, irrep, which):
    """The chi-part of the indicator functions of H's left cosets is an embedding in chi alone that is
    constant on those cosets and uses at most as many columns of rho as H fixes dimensions (one, where
    H fixes a line)."""
    k, h = S5.irrep_names.index(irrep), _subgroup(S5, which)
    gen = torch.Generator().manual_seed(0)
    indicators = torch.nn.functional.one_hot(torch.as_tensor(S5.coset_labels(h.elements, "left"))).double()
    E = isotypic_projectors(S5)[k] @ indicators @ torch.randn(indicators.shape[1], 32, generator=gen, dtype=torch.float64)
    E = E / E.norm() * 10 + 0.01 * torch.randn(E.shape, generator=gen, dtype=torch.float64)
    cs = coset_scores(E[None], S5)
    assert S5.subgroups[cs.best().subgroup] == h and cs.best().side == "left" and cs.scores[0].max() > 0.95
    assert irrep_shares(E[None], S5)[0, k].item() > 0.99
    fixed = fixed_dimensions(S5, h.elements)[k]
    assert 0.85 < irrep_column_ranks(E[None], S5)[0, k].item() < fixed + 0.15  # exactly 1 where H fixes a line


def test_a_generic_embedding_uses_every_column(S5):
    E = torch.randn(120, 256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cols = irrep_column_ranks(E[None], S5)[0]
    dims = torch.tensor(S5.character_table[:, 0].real)
    assert torch.all(cols[1:] > 0.7 * dims[1:]) and torch.all(cols <= dims + 1e-9)
    assert cols[0] == 0  # the trivial part of a centred embedding vanishes


@pytest.mark.parametrize("irrep", ["standard", "standard x sign", "dim5a", "dim6a"])
def test_irreps_predict_the_coset_scores_of_a_generic_embedding(S5, irrep):
    """A matrix in one irrep that uses every column alike scores what its irrep predicts for every
    partition: f/d of its variance between H's cosets. Planted one-column embeddings score far above."""
    k = S5.irrep_names.index(irrep)
    E = isotypic_projectors(S5)[k] @ torch.randn(120, 128, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cs = coset_scores(E[None], S5)
    predicted = irrep_predicted_scores(irrep_shares(E[None], S5), S5, cs.partitions)
    gap = np.abs(cs.scores - predicted)[0]
    large = np.array([S5.subgroups[p.subgroup].order >= 10 for p in cs.partitions])  # few, large cosets
    assert gap.max() < 0.12 and gap[large].max() < 0.05  # a prediction in expectation: 2-element cosets scatter most
    d, f = S5.character_table[k, 0].real, fixed_dimensions(S5, S5.subgroups[cs.best().subgroup].elements)[k]
    assert predicted[0, cs.best_index()] == pytest.approx(1 - (1 - f / d) / random_expectation(cs.best().labels))


def test_one_column_scores_above_the_irrep_prediction(S5):
    h = _subgroup(S5, "D5")
    k = S5.irrep_names.index("dim5a")
    indicators = torch.nn.functional.one_hot(torch.as_tensor(S5.coset_labels(h.elements, "left"))).double()
    E = isotypic_projectors(S5)[k] @ indicators @ torch.randn(12, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cs = coset_scores(E[None], S5)
    b = cs.best_index()
    assert cs.scores[0, b] > 0.95 and irrep_predicted_scores(irrep_shares(E[None], S5), S5, cs.partitions)[0, b] < 0.15


def test_random_partition_null(S5):
    """Random partitions score 0 on average; planted cosets lie many standard deviations above."""
    h = _subgroup(S5, "A4")
    X, labels = planted(S5, h.elements, "left")
    null = random_partition_scores(X[None], labels, draws=300)[0]
    assert abs(null.mean()) < 3 * null.std() / np.sqrt(300) + 1e-3 and null.std() < 0.05
    score = coset_scores(X[None], S5).scores[0].max()
    assert (score - null.mean()) / null.std() > 20


def test_tsne_is_deterministic_for_a_seed():
    X = torch.randn(60, 8, generator=torch.Generator().manual_seed(0))
    a, b = tsne(X, seed=3), tsne(X, seed=3)
    assert a.shape == (60, 2) and np.array_equal(a, b)


def test_group_commands_refuse_modular_runs(capsys, tiny_run):
    from grokinterp.cli import main

    assert main(["cosets", "--run", "tiny23", "--runs-dir", str(tiny_run.path.parent)]) == 1
    assert "needs a group task" in capsys.readouterr().err
    assert main(["tsne", "--run", "tiny23", "--runs-dir", str(tiny_run.path.parent), "--no-figures", "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    shares, p, k = out["frequency_shares"], tiny_run.task.p, out["circle_step"]
    assert sum(shares.values()) == pytest.approx(1.0) and len(shares) == (p - 1) // 2
    top = int(next(iter(shares)))  # JSON keys are strings; the largest share comes first
    assert shares[str(top)] == max(shares.values()) and (top * k) % p in (1, p - 1)
    assert out["frequency_stands_out"] and shares[str(top)] > out["largest_share_shuffled_99th"]
    standing = out["frequencies_standing_out"]  # every frequency above random's largest, not only the top one
    assert standing[0] == top and all(shares[str(f)] > out["largest_share_shuffled_99th"] for f in standing)
    assert all(v <= out["largest_share_shuffled_99th"] for f, v in shares.items() if int(f) not in standing)


def test_tsne_names_no_circle_for_an_untrained_model(capsys, tmp_path):
    """At initialisation W_U's frequency shares are those of a random matrix: no circle is claimed."""
    import json

    import grokinterp as gi
    from grokinterp.cli import main

    gi.train(gi.preset("tiny23").replace(name="init", steps=1, checkpoint_every=1), runs_dir=tmp_path, progress=False)
    assert main(["tsne", "--run", "init", "--runs-dir", str(tmp_path), "--step", "0", "--no-figures", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert not out["frequency_stands_out"] and out["circle_step"] is None
    assert max(out["frequency_shares"].values()) <= out["largest_share_shuffled_99th"]
    assert main(["tsne", "--run", "init", "--runs-dir", str(tmp_path), "--step", "0", "--no-figures"]) == 0
    text = capsys.readouterr().out
    assert "no frequency stands out" in text and "joins them" not in text


def test_tsne_refuses_k_below_one(capsys, tiny_run):
    from grokinterp.cli import main

    assert main(["tsne", "--run", "tiny23", "--runs-dir", str(tiny_run.path.parent), "--k", "0", "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "k must be an integer in 1..22 for p = 23" in err and len(err.strip().splitlines()) == 1


# ---- reports on any group: wording, irrep partitions, figure titles ---------------------------------


@pytest.fixture(scope="module")
def group_reports(tmp_path_factory):
    """The reports on runs of S4, D7 (reps, tsne, cosets, training) and S5 (reps), 4 steps of tiny-1l each."""
    import grokinterp as gi
    from grokinterp.cli import main
    from grokinterp.report import cosets_report, reps_report, training_report, tsne_report

    d = tmp_path_factory.mktemp("group_runs")
    out = {}
    for spec, reports in (("S4", (reps_report, tsne_report, cosets_report, training_report)),
                          ("D7", (reps_report, tsne_report, cosets_report)), ("S5", (reps_report,))):
        assert main(["train", "--group", spec, "--name", spec, "--model", "tiny-1l", "--steps", "4", "--checkpoint-every", "2",
                     "--frac", "0.5", "--runs-dir", str(d), "--no-progress", "--device", "cpu"]) == 0
        run = gi.load_run(spec, d)
        out[spec] = {f.__name__.removesuffix("_report"): f(run) for f in reports} | {"run": run}
    return out


@pytest.mark.parametrize("spec", ["S4", "D7"])
def test_group_reports_speak_of_their_own_group(group_reports, spec):
    reps, tsne_rep = group_reports[spec]["reps"], group_reports[spec]["tsne"]
    n = group_reports[spec]["run"].task.group.n
    text = "\n".join(reps.lines + tsne_rep.lines)
    assert f"t-SNE of the {n} output vectors" in text and "S5" not in text and "120" not in text
    assert "Chughtai" not in text  # their ~85% is a number for S5 models only
    fig = tsne_rep.figures["tsne_output_weights"]
    h = tsne_rep.payload["colour_by"].split(" (")[0]  # the top-ranked subgroup, e.g. "D4"
    assert f"({spec}; {h} " in fig.layout.title.text and all(t.name.endswith(f" of {h}") for t in fig.data)
    assert [t.name for t in fig.data][:2] == [f"coset 1 of {h}", f"coset 2 of {h}"]


def test_irreps_of_s_n_carry_their_partitions(group_reports):
    reps = group_reports["S4"]["reps"]
    assert reps.payload["irrep_partitions"] == ["(4)", "(1,1,1,1)", "(2,2)", "(3,1)", "(2,1,1)"]
    assert reps.payload["irreps"] == group_reports["S4"]["run"].task.group.irrep_names  # names unchanged in --json
    rows = reps.lines[1:6]
    assert rows[2].split()[:2] == ["dim2a", "(2,2)"] and rows[3].split()[:2] == ["standard", "(3,1)"]
    cosets = "\n".join(group_reports["S4"]["cosets"].lines)
    assert "dim2a (2,2)" in cosets and "standard (3,1)" in cosets
    d7 = group_reports["D7"]
    assert d7["reps"].payload["irrep_partitions"] is None
    assert "(" not in d7["reps"].lines[2].split("d=")[0] and "dim2a (" not in "\n".join(d7["cosets"].lines)
    s5 = group_reports["S5"]["reps"]
    assert "Chughtai et al.'s S5 model: sign + standard, about 85%" in s5.lines[-1]
    assert any(line.split()[:2] == ["dim5a", "(3,2)"] for line in s5.lines)


def test_every_group_figure_names_the_run_and_step(group_reports):
    titles = {stem: fig.layout.title.text for name, rep in group_reports["S4"].items() if name != "run"
              for stem, fig in rep.figures.items()}
    assert len(titles) == 6 and all(t.count("run S4") == 1 for t in titles.values()), titles  # named once, in the subtitle
    at_step = {"irreps_shares", "tsne_output_weights"}
    assert all(("step 4" in t) == (stem in at_step) for stem, t in titles.items()), titles


def test_shuffled_rows_null_tells_structure_from_noise(S5):
    """Coset structure and irrep shares are claimed only above what the same rows shuffled over the
    elements give: a Gaussian matrix shows neither, even one with a few large directions (whose best
    partition reaches an F that an isotropic matrix's rarely does); planted cosets and one irrep do."""
    gen = torch.Generator().manual_seed(1)
    for scale in (torch.ones(16), torch.tensor([8.0, 8.0] + [1.0] * 14)):
        X = torch.randn(120, 16, generator=gen, dtype=torch.float64) * scale
        null = shuffled_rows_null(X, S5)
        assert coset_scores(X[None], S5).ratios.max() <= null.best_ratio
        assert not null.irreps_above(irrep_shares(X[None], S5)[0].numpy()).any()
    X, _ = planted(S5, _subgroup(S5, "S4").elements, "left", noise=1.0, d=16)
    assert coset_scores(X[None], S5).ratios.max() > shuffled_rows_null(X, S5).best_ratio
    k = S5.irrep_names.index("standard")
    one_irrep = isotypic_projectors(S5)[k] @ torch.randn(120, 16, generator=gen, dtype=torch.float64)
    above = shuffled_rows_null(one_irrep, S5).irreps_above(irrep_shares(one_irrep[None], S5)[0].numpy())
    assert above.tolist() == [i == k for i in range(len(S5.irrep_names))]


@pytest.mark.parametrize("spec", ["S4", "D7"])
def test_group_reports_claim_no_structure_on_untrained_models(group_reports, spec):
    """4 steps from initialisation: W_U's best coset partition is only the top of a ranking of noise,
    no irrep carries more of it than shuffled rows, no irrep explains the logits, nothing was memorised.
    (Before: 'irreps carrying W_U (share > 10%)' listed every irrep of dimension >= 2, and reps named an
    irrep 'explaining' 0.0% of the logits.)"""
    cosets, tsne_rep = group_reports[spec]["cosets"], group_reports[spec]["tsne"]
    for rep in (cosets, tsne_rep):
        assert any(line.startswith("  no coset structure stands out: F ") for line in rep.lines)
    assert not cosets.payload["best"]["stands_out"] and not tsne_rep.payload["colour_by_stands_out"]
    assert cosets.payload["best"]["variance_ratio"] <= cosets.payload["shuffled_rows"]["best_variance_ratio"]
    assert cosets.payload["irreps"]["above_shuffled_rows"] == [] and not cosets.payload["dominant_irrep"]["above_shuffled_rows"]
    assert any("is within what shuffled vectors put in it" in line and "say nothing about the cosets" in line for line in cosets.lines)
    assert not any(cosets.payload["best_stands_out_over_training"])  # at every checkpoint, not only the last
    assert any(line.startswith("  top class by F per checkpoint") and line.endswith(" none") for line in cosets.lines)
    assert any(": none; " in line for line in cosets.lines if "irreps carrying more of W_U" in line)
    assert group_reports[spec]["reps"].lines[-1].startswith("  no irrep explains 1% of the logit variance")
    if "training" in group_reports[spec]:
        assert "train acc >= 99% never logged" in group_reports[spec]["training"].lines[0]


def test_explorer_names_coset_structure_only_where_it_stands_out(group_reports):
    """The explorer's coset panel says whether the top-ranked partition stands out of W_U's vectors shuffled
    over the elements: not on an S4 run 4 steps old, yes on the shipped s5-post."""
    import grokinterp as gi
    from grokinterp.explore import explorer_panels

    def coset_note(run):
        panel = next(p for p in explorer_panels(run, run.steps) if p.figure.layout.title.text.startswith("Output vectors"))
        assert "up to conjugacy and side" in panel.note and ", left" not in panel.figure.layout.title.text
        return panel.note

    assert "No coset structure stands out" in coset_note(group_reports["S4"]["run"])
    assert "is above the best F of W_U's vectors shuffled" in coset_note(gi.load_run("s5-post"))


@pytest.mark.parametrize("spec", ["S4", "D7"])
def test_tsne_figure_and_cosets_json_say_what_the_report_says(group_reports, spec):
    """A 4-step run: the t-SNE title carries whether the partition stands out (with its score when it does),
    and neither the t-SNE payload nor cosets' --json calls anything identified that does not stand out."""
    tsne_rep, cos = group_reports[spec]["tsne"], group_reports[spec]["cosets"]
    title = tsne_rep.figures["tsne_output_weights"].layout.title.text
    if tsne_rep.payload["colour_by_stands_out"]:
        assert "stands out: score" in title
    else:
        assert "does not stand out of shuffled rows" in title and not tsne_rep.payload["colour_by_identified"]
        assert "colours are the top of a ranking of noise" in tsne_rep.figures["tsne_output_weights"].layout.legend.title.text
    best = cos.payload["best"]
    assert best["stands_out"] or (not best["identified"] and best["side"] is None and best["generators"] is None)
    assert any(t.startswith("  conjugate and side not asked for") for t in cos.lines) == (not best["stands_out"])
