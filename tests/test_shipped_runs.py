"""The reference runs shipped in checkpoints/: small enough, grokked, and faithful in float16."""

from pathlib import Path

import numpy as np
import pytest
import torch

import grokinterp as gi
from grokinterp.analysis import fourier as fa
from grokinterp.analysis.batched import logits_and_neurons
from grokinterp.analysis.cosets import coset_scores
from grokinterp.analysis.progress import progress_measures
from grokinterp.analysis.representations import irrep_shares
from grokinterp.export import full_precision_weights
from grokinterp.models import model_spec

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"


def test_shipped_checkpoints_fit_in_100_mib():
    total = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file() and "figures" not in p.parts and p.name != "state.safetensors")
    assert total < 100 * 2**20


@pytest.fixture(scope="module")
def modadd():
    return gi.load_run(SHIPPED / "modadd113")


@pytest.fixture(scope="module")
def s5():
    return gi.load_run(SHIPPED / "s5")


def both_precisions(run, step):
    """Stacked weights (S = 2): [float16 as shipped, float32 copy]."""
    half, full = run.weights(step), full_precision_weights(run, step)
    return {k: torch.stack([half[k], full[k]]) for k in half}


def test_modadd113_grokked_and_was_recorded(modadd):
    m = modadd.metrics
    assert m["train_acc"][-1] == 1.0 and m["test_acc"][-1] >= 0.99
    assert "grokinterp train --run modadd113" in modadd.command
    assert modadd.record["export"]["dtype"] == "float16"


def test_modadd113_analyses_survive_float16(modadd):
    p, spec = modadd.task.p, model_spec(modadd.config.model)
    for step in modadd.record["export"]["full_precision_steps"]:
        w = both_precisions(modadd, step)
        _, acts = logits_and_neurons(w, modadd.task, spec)
        keys = []
        for i in range(2):
            one = {k: v[i : i + 1] for k, v in w.items()}
            kf = fa.key_frequencies(one, acts[i].reshape(p, p, -1), p, relabellings=5)  # the null's cost is not under test here
            keys.append((kf.from_neurons, kf.from_embedding, kf.from_logit_map))
        assert keys[0] == keys[1], step  # key frequencies identical
        m = progress_measures(w, [step, step], modadd.task, spec, modadd.train_mask, keys[1][0] or keys[1][2])
        for name in ("restricted_loss", "excluded_loss", "gini_embedding", "gini_logit_map", "sum_squared_weights", "test_acc"):
            a, b = getattr(m, name)
            assert a == pytest.approx(b, rel=0.03, abs=1e-4), (step, name)
        # float16 rounding moves tiny losses by a relative amount; the scale stays
        assert abs(np.log10(m.test_loss[0]) - np.log10(m.test_loss[1])) < 0.1


def test_s5_grokked(s5):
    m = s5.metrics
    assert m["train_acc"][-1] >= 0.99 and m["test_acc"][-1] >= 0.99


def test_s5_analyses_survive_float16(s5):
    G = s5.task.group
    for step in s5.record["export"]["full_precision_steps"]:
        w = both_precisions(s5, step)
        X = w["unembed.W_U"].transpose(1, 2)
        cs = coset_scores(X, G)
        assert cs.best_index(0) == cs.best_index(1)
        np.testing.assert_allclose(cs.scores[0], cs.scores[1], atol=0.01)
        shares = irrep_shares(X, G).numpy()
        np.testing.assert_allclose(shares[0], shares[1], atol=0.005)


def test_s5_group_reports(s5, capsys):
    """`reps` and `cosets` on the shipped S5 run: the embedding lives in one irrep and uses all of its
    columns; the best W_E coset class is the exact stabiliser of a vector of that irrep."""
    import json

    from grokinterp.cli import main

    args = ["--run", "s5", "--runs-dir", str(SHIPPED), "--no-figures", "--json"]
    assert main(["reps", *args]) == 0
    reps = json.loads(capsys.readouterr().out)
    k = int(np.argmax(reps["share_W_E"]))
    assert reps["share_W_E"][k] > 0.9 and sum(reps["share_W_E"]) == pytest.approx(1.0)
    assert 0.9 * reps["dims"][k] < reps["columns_used_W_E"][k] <= reps["dims"][k] + 1e-6
    assert all(0 <= c <= d + 1e-6 for c, d in zip(reps["columns_used_W_U"], reps["dims"]))
    assert main(["cosets", *args, "--matrix", "W_E"]) == 0
    cos = json.loads(capsys.readouterr().out)
    dominant = cos["dominant_irrep"]
    assert dominant["name"] == reps["irreps"][k] and dominant["columns_used"] == pytest.approx(reps["columns_used_W_E"][k], rel=1e-3)
    assert dominant["best_class_is_a_stabiliser"] and cos["best"]["class_id"] in [s["class_id"] for s in dominant["stabilising_subgroups"]]


def test_s5_post_output_weights_cluster_into_cosets(capsys):
    """Power et al. Fig. 3 in their own block (shipped s5-post, 1e5 steps): W_U lies in one irrep, and
    k-means finds exactly the cosets of that irrep's largest stabiliser, far above random partitions,
    at the score the irreps predict."""
    import json

    from grokinterp.cli import main
    from grokinterp.runs import Run

    run = gi.load_run(SHIPPED / "s5-post")
    assert run.config == gi.preset("s5-post") and Run(str(run.path)).metrics["step"][-1] == 100_000  # a str path works
    assert run.metrics["train_acc"][-1] >= 0.99 and run.metrics["test_acc"][-1] >= 0.99
    args = ["--run", "s5-post", "--runs-dir", str(SHIPPED), "--no-figures", "--json"]
    assert main(["cosets", *args]) == 0
    cos = json.loads(capsys.readouterr().out)
    dominant, best = cos["dominant_irrep"], cos["best"]
    assert dominant["share"] > 0.95 and dominant["best_class_is_a_stabiliser"]
    assert best["class_id"] == dominant["stabilising_subgroups"][0]["class_id"]  # the largest stabiliser
    assert best["z_vs_random_partitions"] > 10 and best["score"] == pytest.approx(best["irrep_prediction"], abs=0.03)
    assert best["stands_out"] and best["variance_ratio"] > 3 * cos["shuffled_rows"]["best_variance_ratio"]  # 9.8 against 1.9
    assert cos["irreps"]["above_shuffled_rows"] == [dominant["name"]] and dominant["above_shuffled_rows"] and all(cos["best_stands_out_over_training"][1:])
    # conjugate and side: the 10 point-stabiliser partitions (5 conjugates x 2 sides) score within the random spread
    part = cos["class_partitions"]
    assert part["count"] == 10 and part["margin_over_runner_up"] < part["random_spread"]
    assert not best["identified"] and best["side"] is None and best["generators"] is None
    direct = cos["direct_clustering"]
    assert cos["clusters_into_cosets"] and direct["coset_fraction_per_seed"] == [1.0] * 5
    assert direct["distinct_partitions_found"] >= 2  # k-means seeds land on different conjugates/sides
    # the final class's (S4) cosets appear at 20,000; at 10,000 the clusters were A5's halves; 99% test at 13,000
    assert cos["structure_forms_at_step"] == 20_000 and cos["structure_recovered_at_steps"][-1] == 100_000 and cos["best_subgroup_over_training"][1] == "A5"
    assert cos["grokking"]["logged_step"] == 13_000 and cos["grokking"]["first_checkpoint_at_or_after"] == 20_000
    # one ranking: classes by variance ratio, the best first; finer classes (S3) score higher yet rank lower
    ranked = cos["classes_ranked"]
    assert ranked[0]["class_id"] == best["class_id"]
    assert [c["variance_ratio"] for c in ranked] == sorted((c["variance_ratio"] for c in ranked), reverse=True)
    assert any(c["score"] > best["score"] for c in ranked[1:])
    assert main(["reps", *args]) == 0
    reps = json.loads(capsys.readouterr().out)
    assert max(reps["logit_share"]) > 0.85  # logits carried by the irrep W_U lies in


def test_no_machine_paths_and_no_missing_tracked_files():
    """The index page's `Made by` command drops --runs-dir/--out; .gitignore keeps only files that exist."""
    from grokinterp.report import index_page, portable_command

    for name in ("modadd113", "s5", "s5-post"):
        run = gi.load_run(SHIPPED / name)
        page = index_page(run, {}, [])
        assert "Made by <code>grokinterp " in page and "--runs-dir" not in page and "/tmp" not in page
    assert portable_command("grokinterp train --run s5 --runs-dir /tmp/ref") == "grokinterp train --run s5"
    root = SHIPPED.parent
    kept = [line[2:] for line in (root / ".gitignore").read_text().splitlines() if line.startswith("!/")]
    assert kept and all((root / k).exists() for k in kept)
