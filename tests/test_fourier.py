import numpy as np
import pytest
import torch

from grokinterp.analysis import fourier as fa
from grokinterp.analysis.phases import detect_phases
from grokinterp.analysis.progress import fourier_ginis as progress_ginis
from grokinterp.analysis.progress import gini, restricted_and_excluded_loss
from grokinterp.engine import per_example_loss
from grokinterp.tasks import Task

P = 31
PLANTED = [3, 7, 11]


def test_basis_is_orthonormal_with_correct_names():
    B = fa.fourier_basis(P)
    torch.testing.assert_close(B @ B.T, torch.eye(P, dtype=torch.float64))
    names = fa.basis_names(P)
    x = torch.arange(P, dtype=torch.float64)
    assert names[5] == "cos 3" and torch.allclose(B[5] * np.sqrt(P / 2), torch.cos(2 * np.pi * 3 * x / P))
    assert names[6] == "sin 3" and torch.allclose(B[6] * np.sqrt(P / 2), torch.sin(2 * np.pi * 3 * x / P))


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_transform_equals_the_real_fft(dim):
    """The coefficients against a real FFT: const = X_0 / sqrt(p), cos k = Re X_k / sqrt(p/2), sin k = -Im X_k / sqrt(p/2)."""
    x = torch.randn(P, P, P, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    X = torch.fft.rfft(x.movedim(dim, -1), dim=-1)
    expected = torch.empty(x.movedim(dim, -1).shape, dtype=torch.float64)
    expected[..., 0] = X[..., 0].real / np.sqrt(P)
    expected[..., 1::2] = X[..., 1:].real / np.sqrt(P / 2)
    expected[..., 2::2] = X[..., 1:].imag / -np.sqrt(P / 2)
    torch.testing.assert_close(fa.transform(x, dim), expected.movedim(-1, dim), rtol=0, atol=1e-12)
    torch.testing.assert_close(fa.transform(x.float().transpose(0, 1), dim), fa.transform(x.transpose(0, 1), dim), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="odd p"):
        fa.transform(torch.zeros(3, 4), -1)


def test_parseval_2d():
    x = torch.randn(P, P, 4, dtype=torch.float64)
    X = fa.transform_2d(x, (0, 1))
    torch.testing.assert_close(X.pow(2).sum(), x.pow(2).sum())


def test_gini_extremes():
    n = 10
    assert gini(torch.nn.functional.one_hot(torch.tensor(3), n).double()).item() == pytest.approx(1 - 1 / n)
    assert gini(torch.ones(n)).item() == pytest.approx(0.0)


def planted_weights(rng, d_model=16, d_mlp=40):
    """W_E, W_out, W_U whose only Fourier content is at the planted frequencies."""
    x = np.arange(P)
    waves = np.concatenate([[np.cos(2 * np.pi * k * x / P), np.sin(2 * np.pi * k * x / P)] for k in PLANTED])  # (2F, P)
    W_E = np.concatenate([(rng.normal(size=(d_model, len(waves))) @ waves).T, rng.normal(size=(1, d_model))])  # + '=' row
    W_U = rng.normal(size=(d_model, len(waves))) @ waves  # (d_model, P)
    W_out = rng.normal(size=(d_mlp, d_model))
    t = lambda a: torch.tensor(a, dtype=torch.float32)[None]  # noqa: E731
    return {"embed.W_E": t(W_E), "blocks.0.mlp.W_out": t(W_out), "unembed.W_U": t(W_U)}


def planted_activations(rng, d_mlp=40):
    """Neuron n computes a wave of frequency PLANTED[n % 3] in a, b and a + b (plus a little noise)."""
    a, b = np.meshgrid(np.arange(P), np.arange(P), indexing="ij")
    acts = []
    for n in range(d_mlp):
        w = 2 * np.pi * PLANTED[n % len(PLANTED)] / P
        ph = rng.uniform(0, 2 * np.pi, 3)
        acts.append(np.cos(w * (a + b) + ph[0]) + 0.5 * np.cos(w * a + ph[1]) + 0.3 * np.sin(w * b + ph[2]) + 2.0)
    return torch.tensor(np.stack(acts, -1)) + 0.01 * torch.randn(P, P, d_mlp, dtype=torch.float64)


def test_planted_frequencies_are_found_by_every_rule():
    rng = np.random.default_rng(0)
    kf = fa.key_frequencies(planted_weights(rng), planted_activations(rng), P)
    assert kf.from_neurons == PLANTED and kf.from_embedding == PLANTED and kf.from_logit_map == PLANTED
    assert kf.agree and kf.unassigned == 0 and kf.keys == PLANTED and kf.why_none is None
    assert {k: len(v) for k, v in kf.clusters.items()} == {3: 14, 7: 13, 11: 13}
    assert kf.neuron_variance_explained > 0.99 and kf.embedding_energy_explained > 0.999


def test_flat_spectrum_is_not_mistaken_for_planted():
    rng = np.random.default_rng(1)
    acts = torch.tensor(rng.normal(size=(P, P, 40)))
    clusters, unassigned = fa.neuron_clusters(fa.neuron_frequency_shares(acts))
    assert clusters == {} and unassigned == 40


def test_random_weights_have_no_key_frequencies():
    """The gap rules always pick something; without neuron clusters there are no key frequencies."""
    rng = np.random.default_rng(2)
    t = lambda a: torch.tensor(a, dtype=torch.float32)[None]  # noqa: E731
    w = {"embed.W_E": t(rng.normal(size=(P + 1, 16))), "blocks.0.mlp.W_out": t(rng.normal(size=(40, 16))),
         "unembed.W_U": t(rng.normal(size=(16, P)))}
    kf = fa.key_frequencies(w, torch.tensor(rng.normal(size=(P, P, 40))), P)
    assert kf.from_logit_map and kf.from_embedding  # what the old headline fell back to
    assert kf.keys == [] and kf.embedding_energy_explained == 0.0 and kf.logit_map_energy_explained == 0.0
    assert kf.top_neuron_share < 0.85 and f"{kf.top_neuron_share:.0%}" in kf.why_none


def test_gini_over_components_and_per_frequency():
    """W_E with a large constant part and one frequency: the two readings differ, each exactly."""
    x = np.arange(P)
    K = (P - 1) // 2
    W_E = np.stack([np.full(P, 3.0), np.cos(2 * np.pi * 5 * x / P)], 1)  # (P, 2)
    W = {"embed.W_E": torch.tensor(np.vstack([W_E, np.zeros((1, 2))]))[None],
         "blocks.0.mlp.W_out": torch.eye(2, dtype=torch.float64)[None], "unembed.W_U": torch.tensor(W_E.T)[None]}
    g = progress_ginis(W, P)
    assert g["gini_embedding_per_frequency"][0] == pytest.approx(1 - 1 / K)  # one frequency of K
    c = np.sort([3.0 * np.sqrt(P), np.sqrt(P / 2)])  # the two non-zero component norms of P
    assert g["gini_embedding"][0] == pytest.approx(((2 * np.arange(P - 1, P + 1) - P - 1) * c).sum() / (P * c.sum()))
    assert g["gini_logit_map"][0] == pytest.approx(g["gini_embedding"][0])


def pure_key_frequency_logits(task, freqs, scale=4.0):
    a, b = task.pairs[:, 0], task.pairs[:, 1]
    c = np.arange(task.p)
    z = (a + b)[:, None] - c[None]
    return torch.tensor(scale * sum(np.cos(2 * np.pi * k * z / task.p) for k in freqs))[None]  # (1, N, p)


def test_restricted_loss_of_pure_key_frequency_logits_equals_loss_and_excluded_is_uniform():
    task = Task("add", P)
    logits = pure_key_frequency_logits(task, PLANTED)
    labels = task.all_labels()
    train = torch.zeros(len(task), dtype=torch.bool)
    train[::3] = True
    dirs = fa.answer_directions(task.labels, P, PLANTED)
    restricted, excluded = restricted_and_excluded_loss(logits, labels, PLANTED, train)
    loss = per_example_loss(logits, labels[None]).mean()
    assert restricted.item() == pytest.approx(loss.item(), rel=1e-9)
    assert excluded.item() == pytest.approx(np.log(P), rel=1e-6)
    assert fa.logit_variance_explained(logits, dirs).item() == pytest.approx(1.0)
    # the directions for x+y are Nanda et al.'s 2-D Fourier directions
    B = fa.fourier_basis(P)
    k = PLANTED[0]
    nanda = (torch.outer(B[2 * k - 1], B[2 * k - 1]) - torch.outer(B[2 * k], B[2 * k])) / np.sqrt(2)
    torch.testing.assert_close(dirs[0], nanda.flatten())


@pytest.mark.parametrize("op,subset", [("add", False), ("sub", True)])  # subset: 60% of the pairs, answers unevenly often
def test_restricted_and_excluded_loss_equal_the_per_pair_projection(op, subset):
    """Computed per answer, the losses equal the definition on every pair: the logits projected on the
    N-long unit vectors ``answer_directions`` (centred per answer), for random logits of 3 checkpoints."""
    task = Task(op, P)
    gen = torch.Generator().manual_seed(0)
    keep = torch.rand(len(task), generator=gen) < 0.6 if subset else torch.ones(len(task), dtype=torch.bool)
    labels, z = task.all_labels()[keep], task.labels[keep.numpy()]
    counts = torch.bincount(labels, minlength=P)
    assert (counts.max() > counts.min()) == subset
    logits = torch.randn(3, len(labels), P, dtype=torch.float64, generator=gen) * 3
    train = torch.rand(len(labels), generator=gen) < 0.3
    dirs = fa.answer_directions(z, P, PLANTED)
    gram = dirs @ dirs.T  # orthonormal on the full grid (the progress measures' case); unit vectors on a subset
    torch.testing.assert_close(gram.diagonal(), torch.ones(2 * len(PLANTED), dtype=torch.float64))
    assert torch.allclose(gram, torch.eye(2 * len(PLANTED), dtype=torch.float64)) != subset
    mean = logits.mean(1, keepdim=True)
    along = torch.einsum("dn,dm,smc->snc", dirs, dirs, logits - mean)  # sum over directions of d d^T (logits - mean)
    y = labels.expand(3, -1)
    restricted, excluded = restricted_and_excluded_loss(logits, labels, PLANTED, train)
    torch.testing.assert_close(restricted, per_example_loss(mean + along, y).mean(1), rtol=1e-12, atol=0)
    torch.testing.assert_close(excluded, per_example_loss((logits - along)[:, train], y[:, train]).mean(1), rtol=1e-12, atol=0)
    assert not torch.allclose(restricted, per_example_loss(logits, y).mean(1), rtol=1e-3)  # the projection does something


def test_logit_cosine_with_the_algorithm():
    task = Task("add", P)
    logits = pure_key_frequency_logits(task, [5])[0].reshape(P, P, P)
    cos = fa.ideal_logit_cosine(logits, [5, 6])
    assert cos[5] == pytest.approx(1.0) and abs(cos[6]) < 1e-9


def test_phase_detection_on_synthetic_curves():
    steps = np.arange(0, 20001, 100)
    train_acc = np.where(steps >= 300, 1.0, 0.1)
    test_acc = 1 / (1 + np.exp(-(steps - 9800) / 250))
    norm = np.where(steps < 1200, 100 + steps / 12, 190 - 150 / (1 + np.exp(-(steps - 11000) / 600)))
    ph = detect_phases(steps, train_acc, test_acc, norm)
    assert ph.memorised_step == 300 and ph.memorisation_end == 1100
    assert ph.cleanup_start == 9800 and 10900 <= ph.grokked_step <= 11100
    assert 12000 < ph.cleanup_end < 15000
    none = detect_phases(steps, train_acc, np.zeros_like(test_acc), norm)
    assert none.grokked_step is None and none.cleanup_end is None


def test_phases_line_says_what_was_not_reached():
    """The report's phases line: all three phases; boundaries not reached; a run that generalised before it
    memorised (no memorisation phase to read); a run that never fit its training data."""
    from grokinterp.report import _phases_text

    steps = np.arange(0, 20001, 100)
    train_acc = np.where(steps >= 300, 1.0, 0.1)
    test_acc = 1 / (1 + np.exp(-(steps - 9800) / 250))
    norm = np.where(steps < 1200, 100 + steps / 12, 190 - 150 / (1 + np.exp(-(steps - 11000) / 600)))
    assert _phases_text(detect_phases(steps, train_acc, test_acc, norm)).startswith("phases: memorisation 0-1,100, circuit formation to 9,800, cleanup to 1")
    assert _phases_text(detect_phases(steps, train_acc, np.zeros_like(test_acc), norm)) == (
        "phases: memorisation 0-1,100, circuit formation to (not reached by the last checkpoint), "
        "cleanup to (not reached by the last checkpoint)")
    early = detect_phases(steps, np.where(steps >= 5000, 1.0, 0.1), test_acc * 0 + (steps >= 3000), norm)
    assert early.memorisation_end is None and "not separable: test accuracy passed 50% (step 3,000) before train accuracy reached 99% (step 5,000)" in _phases_text(early)
    assert _phases_text(detect_phases(steps, train_acc * 0, test_acc * 0, norm)).startswith("phases: none: train accuracy never reached 99%")
    # both at one checkpoint (a run with a tiny test set, or wd 0): no memorisation phase of no length, no bands
    both = detect_phases(steps, np.where(steps >= 3000, 1.0, 0.1), (steps >= 3000) * 1.0, norm)
    assert both.memorisation_end is None and both.bands() == []
    assert "not separable: test accuracy passed 50% (step 3,000) at the same checkpoint as train accuracy reached 99%" in _phases_text(both)


def test_trained_run_key_frequencies_agree_and_measures_order(tiny_run):
    from grokinterp.analysis.batched import logits_and_neurons
    from grokinterp.analysis.progress import progress_measures
    from grokinterp.models import model_spec

    p, spec = tiny_run.task.p, model_spec(tiny_run.config.model)
    w = tiny_run.stacked_weights([tiny_run.steps[-1]])
    _, acts = logits_and_neurons(w, tiny_run.task, spec)
    kf = fa.key_frequencies(w, acts[0].reshape(p, p, -1), p)
    assert kf.from_neurons and kf.from_neurons == kf.from_logit_map
    assert set(kf.from_embedding) >= set(kf.from_neurons)
    m = progress_measures(tiny_run.stacked_weights(), tiny_run.steps, tiny_run.task, spec, tiny_run.train_mask, kf.from_neurons)
    np.testing.assert_allclose(m.test_loss, tiny_run.metrics["test_loss"], rtol=1e-4)  # batched == training-time metrics
    ph = detect_phases(m.steps, m.train_acc, m.test_acc, m.sum_squared_weights)
    before = (m.steps >= ph.memorised_step) & (m.steps < ph.grokked_step)
    assert before.any() and (m.restricted_loss[before] < m.test_loss[before]).all()
    assert m.gini_logit_map[-1] > m.gini_logit_map[0] + 0.2


def test_untrained_model_has_no_key_frequencies_and_progress_says_so(capsys, tiny_run, tmp_path):
    """Step 0 of a trained run: no clusters; a run cut back to its first checkpoints: progress has no
    key frequencies, so no restricted/excluded loss, unless --freqs gives them."""
    import json
    import shutil

    from grokinterp.cli import main

    d = str(tiny_run.path.parent)
    assert main(["fourier", "--run", "tiny23", "--runs-dir", d, "--json", "--no-figures", "--step", "0"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["key_frequencies"] == [] and "no neuron cluster" in data["no_key_frequencies_because"]
    assert data["key_frequencies_logit_map"]  # the gap rule still picks some: not reported as key
    assert main(["fourier", "--run", "tiny23", "--runs-dir", d, "--no-figures", "--step", "0"]) == 0
    assert "key frequencies: none (no neuron cluster" in capsys.readouterr().out
    early = tmp_path / "early"
    shutil.copytree(tiny_run.path, early)
    for f in sorted((early / "checkpoints").glob("step_*.safetensors"))[3:]:
        f.unlink()
    args = ["progress", "--run", str(early), "--no-figures"]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["key_frequencies"] == [] and data["final"]["restricted_loss"] is None
    assert all(v is None for v in data["measures"]["excluded_loss"])
    assert main(args) == 0
    assert "restricted and excluded loss not computed" in capsys.readouterr().out
    assert main([*args, "--json", "--freqs", "1,2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["key_frequencies"] == [1, 2] and data["final"]["restricted_loss"] > 0
    for bad, says in (("a,b", "--freqs"), ("0,3", "key frequencies of p = 23 are 1..11, got 0")):
        assert main([*args, "--freqs", bad]) == 2
        assert says in capsys.readouterr().err


def test_one_grokking_step_in_every_report(tiny_run, tmp_path):
    """training and progress state the metrics.csv step and the first checkpoint at or after it (here
    a copy whose test accuracy reaches 99% at step 500 and whose checkpoint 500 is gone: 550)."""
    import csv
    import shutil

    import grokinterp as gi
    from grokinterp.report import grokking_steps, progress_report, training_report

    run_dir = tmp_path / "runs" / "g"
    shutil.copytree(tiny_run.path, run_dir)
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    for r in rows:
        r["test_acc"] = "1.0" if int(r["step"]) >= 500 else str(min(float(r["test_acc"]), 0.5))
    with (run_dir / "metrics.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (run_dir / "checkpoints" / "step_00000500.safetensors").unlink()
    run = gi.load_run("g", tmp_path / "runs")
    g = grokking_steps(run)
    assert g == {"logged_step": 500, "logged_every": 50, "first_checkpoint_at_or_after": 550, "logged_in": "metrics.csv"}
    text = "test acc >= 99% first logged at step 500 (metrics.csv, every 50 steps there); first checkpoint at/after it: 550"
    assert text in "\n".join(training_report(run).lines) and text in "\n".join(progress_report(run).lines)


def test_memorisation_is_not_ended_while_the_weights_still_grow():
    """A run that fit its training data and never generalised, its weights growing to the last checkpoint:
    the largest weight norm there is no peak yet, so no memorisation end and no circuit formation is claimed
    (it used to read 'memorisation 0-600, circuit formation to (not reached ...)'). Once the norm has turned,
    its peak ends memorisation as before."""
    from grokinterp.report import _phases_text

    steps = np.arange(0, 601, 50)
    train_acc, test_acc = np.where(steps >= 100, 1.0, 0.3), np.full(len(steps), 0.05)
    growing = detect_phases(steps, train_acc, test_acc, 500.0 + steps)
    assert growing.memorised_step == 100 and growing.memorisation_end is None and growing.cleanup_start is None
    text = _phases_text(growing)
    assert "not ended by the last checkpoint" in text and "circuit formation" not in text
    turned = detect_phases(steps, train_acc, test_acc, 500.0 + np.minimum(steps, 800 - steps))
    assert turned.memorisation_end == 400 and _phases_text(turned).startswith("phases: memorisation 0-400, circuit formation to (not")


def test_the_shuffled_null_of_the_largest_share_sees_a_few_large_directions():
    """W_U^T with two large directions: a Gaussian matrix of its shape understates how large a share one
    frequency takes by chance; shuffles of its own rows do not (the null `grokinterp tsne` uses)."""
    gen = torch.Generator().manual_seed(0)
    iso = torch.randn(23, 64, generator=gen, dtype=torch.float64)
    wide = iso * torch.tensor([10.0, 10.0] + [1.0] * 62, dtype=torch.float64)
    gauss = torch.randn(200, 23, 64, generator=gen, dtype=torch.float64)
    gaussian_99th = float(torch.quantile(fa.frequency_shares(gauss).max(-1).values, 0.99))
    assert fa.shuffled_largest_share(iso) == pytest.approx(gaussian_99th, abs=0.02)
    assert fa.shuffled_largest_share(wide) > gaussian_99th + 0.05


def test_a_tiny_test_set_is_named_where_accuracies_rest_on_it():
    """Below 100 held-out pairs a percentage hides how few pairs decide it (11 pairs: 99% is all of them)."""
    from grokinterp.report import _small_test_set_lines

    assert _small_test_set_lines(100) == []
    assert _small_test_set_lines(11) == ["  the test set is only 11 pairs: one pair moves test accuracy by 9.1%; 99% means all 11 right, "
                                         "and 50% means 6"]
    assert "only 1 pair:" in _small_test_set_lines(1)[0]
