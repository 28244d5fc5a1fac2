"""The census of group runs: planted coset structure is found per seed, random weights claim nothing."""

import json

import numpy as np
import torch

from grokinterp.analysis.census import census_row
from grokinterp.census import census_report, census_table
from grokinterp.cli import main
from grokinterp.groups import FiniteGroup
from grokinterp.tasks import Task

G = Task("s5_mul", 0).group


def _subgroup(name):
    return next(h for h in G.subgroups if h.name == name)


def _planted(name, noise=0.05, seed=0, d=32):
    """Output vectors constant (up to noise) on the left cosets of the first subgroup called ``name``."""
    rng = np.random.default_rng(seed)
    labels = G.coset_labels(_subgroup(name).elements, "left")
    centres = rng.normal(size=(labels.max() + 1, d))
    return torch.tensor(centres[labels] + noise * rng.normal(size=(G.n, d)))


def _member(X_final, seed, grokked=True):
    steps = np.array([0, 50, 100])
    acc = np.array([0.0, 0.5, 1.0 if grokked else 0.5])
    X = torch.stack([torch.randn(G.n, X_final.shape[1], dtype=torch.float64), X_final, X_final])
    return {"run": f"m{seed}", "seed": seed, "frac": 0.5, "steps": list(steps), "X": X,
            "metrics": {"step": steps, "train_acc": np.ones(3), "test_acc": acc}}


def test_planted_d5_cosets_are_found_and_dated():
    X = _planted("D5")
    row = census_row(torch.stack([torch.randn(G.n, 32, dtype=torch.float64), X]), G, [0, 100])
    assert row["best_class"] == "D5" and row["n_cosets"] == 12
    assert row["clusters_into_cosets"] and row["cosets_first_recovered_at"] == 100
    assert row["score"] > 0.9 and row["z_vs_random"] > 10 and row["stands_out"] and row["variance_ratio"] > 10 * row["shuffled_best_variance_ratio"]


def test_random_weights_claim_no_structure():
    row = census_row(torch.randn(2, G.n, 32, dtype=torch.float64), G, [0, 100])
    assert not row["irrep_dominant"] and not row["clusters_into_cosets"]
    assert row["cosets_first_recovered_at"] is None
    assert not row["stands_out"]  # the best partition of noise is what the same rows shuffled give


def test_census_counts_and_figure():
    members = [_member(_planted("S4", seed=s), s) for s in range(2)] + [_member(_planted("D5", seed=9), 9),
                                                                        _member(torch.randn(G.n, 32, dtype=torch.float64), 5, False)]
    rows = census_table(members, G)
    rep = census_report(rows, "test census")
    assert rep.payload["grokked"] == 3
    assert rep.payload["clustered_best_class"] == {"S4": 2, "D5": 1}
    assert "k-means recovers the cosets of the best class in 3" in "\n".join(rep.lines)
    assert "shuffled over the elements in 3: S4 2, D5 1" in "\n".join(rep.lines)
    bars = rep.figures["census"].data
    assert sum(sum(b.y) for b in bars) == 2 * 3  # each grokked seed once per panel
    assert census_report(rows[-1:], "no seed generalised").figures == {}  # no empty figure


def test_census_per_class_lines_count_only_generalised_seeds():
    """A seed that never reached 99% is not listed under its best class (the lines above it count only those that did)."""
    members = [_member(_planted("S4", seed=s), s) for s in range(2)] + [_member(_planted("S4", seed=7), 7, False)]
    rows = census_table(members, G)
    assert all(r["irrep_dominant"] for r in rows)
    lines = census_report(rows, "test census").lines
    assert "  per best class, among the 2 with a dominant irrep:" in lines
    assert "    S4: seeds 0, 1 (k-means recovers its cosets in 2)" in lines


def test_census_command_on_a_group_sweep(tmp_path, capsys):
    from grokinterp.sweep import SweepSpec, run_sweep

    spec = SweepSpec(name="g", tasks=["s5_mul", "add"], fracs=[0.5], seeds=[0, 1], model="tiny-1l", lr=1e-2, steps=20,
                     checkpoint_every=10, p=23)
    run_sweep(spec, tmp_path, progress=False)
    member = next((tmp_path / "g").glob("s5_mul*_s1_*"))
    record = json.loads((member / "config.json").read_text())
    record["config"]["steps"] = 40  # as a member killed at step 20 of 40 reads
    (member / "config.json").write_text(json.dumps(record))
    assert main(["census", "--sweep", "g", "--runs-dir", str(tmp_path), "--json", "--no-figures"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["seeds"] == 2 and len(out["rows"]) == 2 and (tmp_path / "g" / "census.csv").is_file()
    # the modular members are not counted silently, the unfinished one is named, and nothing is counted out of 0
    assert sum("left out, not a group task" in n for n in out["notes"]) == 2
    assert [n for n in out["notes"] if "unfinished" in n] == [f"{member.name}: unfinished, counted as it stands (last logged step 20 of 40; "
                                                              "resume the sweep to finish it)"]
    assert main(["census", "--sweep", "g", "--runs-dir", str(tmp_path), "--no-figures"]) == 0
    text = capsys.readouterr().out
    assert "in 0 of 0" not in text and "left out, not a group task (x+y (mod 23))" in text
    assert main(["census", "--sweep", "nothing", "--runs-dir", str(tmp_path)]) == 1
    assert "no sweep named" in capsys.readouterr().err


def test_a_small_group_has_no_dominant_irrep_by_chance():
    """In S3 a random matrix puts d^2 / (n - 1) = 80% in the 2-dimensional irrep: above the 50% rule, not
    above the rows shuffled over the elements, so no irrep is dominant (it used to be)."""
    S3 = FiniteGroup.symmetric(3)
    row = census_row(torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64), S3, [0, 10])
    assert row["irrep_share"] > 0.5 and row["irrep_share"] <= row["irrep_share_shuffled"] and not row["irrep_dominant"]


def test_one_sweep_lookup_serves_census_and_sweep_members(tmp_path, monkeypatch, capsys):
    """`census --sweep` and `--run SWEEP/MEMBER` find a sweep the same way (runs.find_sweep): a path first,
    then the search folders in order, the first sweep of that name winning; a member is looked for in
    each sweep of that name in turn, as before."""
    from grokinterp.runs import find_sweep, find_sweep_member

    first, second = tmp_path / "first", tmp_path / "here" / "checkpoints"
    for d, member in ((first, "a"), (second, "b")):
        (d / "sw" / member).mkdir(parents=True)
        (d / "sw" / "sweep.json").write_text("{}")
        (d / "sw" / member / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path / "here")  # the search folders: --runs-dir, ./checkpoints (second), the repository's
    assert find_sweep("sw", first) == first / "sw" and find_sweep("sw", tmp_path / "none") == second / "sw"
    assert find_sweep(str(second / "sw"), first) == second / "sw"  # a path to a sweep folder is taken as it is
    assert find_sweep("nothing", first) is None
    assert find_sweep_member("sw/a", first) == first / "sw" / "a"
    assert find_sweep_member("sw/b", first) == second / "sw" / "b"  # only in the second sweep called sw
    assert main(["census", "--sweep", "nothing", "--runs-dir", str(first)]) == 1
    err = capsys.readouterr().err
    assert err == ("grokinterp census: error: no sweep named 'nothing'; train one with `grokinterp sweep --name nothing "
                   "--tasks s5_mul ...`\n")


def test_hints_suggest_an_analysis_that_applies_to_the_task():
    """The sweep summary and `import` suggest a command: fourier on a modular table, cosets on a group
    (a group sweep's hint named fourier, which refuses group runs)."""
    import grokinterp as gi
    from grokinterp.cli import _analysis_for

    assert _analysis_for(gi.preset("s5").make_task()) == "cosets"
    assert _analysis_for(gi.preset("tiny23").make_task()) == "fourier"


def test_a_sweep_of_a_task_that_needs_a_group_says_where_the_group_goes(tmp_path, capsys):
    assert main(["sweep", "--name", "x", "--tasks", "group_mul", "--runs-dir", str(tmp_path)]) == 2
    assert "only `train` takes: train each run with `grokinterp train --task group_mul --group G" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
