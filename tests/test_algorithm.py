"""Clock or pizza (Zhong et al. 2023): the attention rate in the engine, the two measures on planted
algorithms, and `grokinterp algorithm` on a real (untrained) run."""

import dataclasses
import json
import math

import pytest
import torch

import grokinterp as gi
from grokinterp.analysis import algorithm as al
from grokinterp.cli import main
from grokinterp.config import ConfigError, RunConfig
from grokinterp.engine import forward
from grokinterp.models import init_params, model_spec
from grokinterp.store import RunError
from grokinterp.tasks import Task

P, KEYS = 59, [4, 11, 17]


def _circles(radii: torch.Tensor) -> torch.Tensor:
    """(p, 2K) operand embedding: (r_a cos w_k a, r_a sin w_k a) per key frequency."""
    x = torch.arange(P, dtype=torch.float64)
    cols = []
    for k in KEYS:
        w = 2 * math.pi * k / P
        cols += [radii * torch.cos(w * x), radii * torch.sin(w * x)]
    return torch.stack(cols, 1)


def planted_clock(e_a, e_b, keys=KEYS):
    """Nanda et al.'s clock: rotate by a, then by b (products of coordinates); logit cos(w(a+b-c))."""
    c, out = torch.arange(P, dtype=torch.float64), 0
    for i, k in enumerate(keys):
        w = 2 * math.pi * k / P
        ca, sa, cb, sb = e_a[:, 2 * i], e_a[:, 2 * i + 1], e_b[:, 2 * i], e_b[:, 2 * i + 1]
        out = out + (ca * cb - sa * sb)[:, None] * torch.cos(w * c) + (sa * cb + ca * sb)[:, None] * torch.sin(w * c)
    return out


def planted_pizza(e_a, e_b):
    """The pizza: average first (h = E_a + E_b), then a square; logit 2cos^2(w(a-b)/2)(1 + cos(w(a+b-c)))."""
    c, h, out = torch.arange(P, dtype=torch.float64), e_a + e_b, 0
    for i, k in enumerate(KEYS):
        w = 2 * math.pi * k / P
        out = out + (h[:, 2 * i : 2 * i + 1] * torch.cos(w * c / 2) + h[:, 2 * i + 1 : 2 * i + 2] * torch.sin(w * c / 2)) ** 2
    return out


def _accuracy(f, E):
    a, b = (x.reshape(-1) for x in torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij"))
    return float((f(E[a], E[b]).argmax(1) == (a + b) % P).double().mean())


def test_planted_clock_is_a_clock():
    radii = 1 + 0.2 * torch.rand(P, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # a real clock's radii vary
    E = _circles(radii)
    assert _accuracy(planted_clock, E) == 1.0
    res = al.algorithm(planted_clock, E, KEYS, n_triples=500)
    assert res.verdict == "clock" and {m.verdict for m in res.per_frequency.values()} == {"clock"}
    assert abs(res.overall.gradient_symmetricity) < 0.2  # cos(w(a-b)) averaged over random triples: ~0
    assert res.overall.symmetric_share < 0.05
    assert res.overall.distance_irrelevance > 0.9  # the correct logit r_a r_b sum does not follow a - b


def test_planted_pizza_is_a_pizza():
    E = _circles(torch.ones(P, dtype=torch.float64))
    assert _accuracy(planted_pizza, E) == 1.0
    res = al.algorithm(planted_pizza, E, KEYS, n_triples=500)
    assert res.verdict == "pizza" and {m.verdict for m in res.per_frequency.values()} == {"pizza"}
    assert res.overall.gradient_symmetricity > 0.999 and res.overall.symmetric_share == 1.0
    assert res.overall.distance_irrelevance < 1e-6  # the correct logit 4 sum cos^2(w(a-b)/2) is a function of a - b
    # the paper's diagnostic: the correct logit against a - b is the cos^2 profile (peak at d = 0)
    d = torch.arange(P, dtype=torch.float64)
    ideal = sum(4 * torch.cos(math.pi * k * d / P) ** 2 for k in KEYS)
    assert torch.allclose(torch.as_tensor(res.overall.logit_by_distance), ideal)


def test_isolated_frequency_and_combined_verdicts():
    E = _circles(torch.ones(P, dtype=torch.float64))
    iso = al.isolate_frequency(E, 11)
    assert torch.allclose(iso[:, 2:4], E[:, 2:4]) and iso[:, [0, 1, 4, 5]].abs().max() < 1e-10
    m = lambda v: al.AlgorithmMeasures(0, 0, 0, v, None, None)  # noqa: E731
    even = {1: 0.5, 2: 0.5}
    assert al.combine({}, {}) == ("undetermined", "no key frequencies")
    assert al.combine({1: m("clock"), 2: m("pizza")}, even)[0] == "mixed"
    assert al.combine({1: m("pizza"), 2: m("unclear")}, even)[0] == "undetermined"
    verdict, reason = al.combine({1: m("pizza"), 2: m("unclear")}, {1: 0.997, 2: 0.003})  # a minor circle is left out
    assert verdict == "pizza" and "left out: frequency 2 (0.30%" in reason


def _clocks_beside_a_pizza(e_a, e_b):
    """Clock circles on the first two key frequencies, a pizza circle on the third."""
    c, h = torch.arange(P, dtype=torch.float64), e_a + e_b
    w = 2 * math.pi * KEYS[2] / P
    pizza = (h[:, 4:5] * torch.cos(w * c / 2) + h[:, 5:6] * torch.sin(w * c / 2)) ** 2
    return planted_clock(e_a, e_b, KEYS[:2]) + pizza


@pytest.mark.parametrize("pizza_radius, verdict", [(1.0, "mixed"), (0.05, "clock")])
def test_a_minor_circle_does_not_decide_the_verdict(pizza_radius, verdict):
    """A pizza circle at full strength beside two clocks makes a mixed model; at radius 0.05 its logits
    scale as r^2, so its share of the key-frequency logit variance goes as r^4: minor, left out."""
    E = _circles(torch.ones(P, dtype=torch.float64))
    E[:, 4:] *= pizza_radius
    res = al.algorithm(_clocks_beside_a_pizza, E, KEYS, n_triples=300)
    assert [m.verdict for m in res.per_frequency.values()] == ["clock", "clock", "pizza"]  # the isolated circles
    assert sum(res.circle_shares.values()) == pytest.approx(1.0)
    assert res.minor(KEYS[2]) == (pizza_radius < 1) and not res.minor(KEYS[0]) and not res.minor(KEYS[1])
    assert res.verdict == verdict


def _tiny_weights(p=23, model="tiny-1l"):
    task = Task("add", p, op_token=model_spec(model).op_token)
    w = {k: v[None] for k, v in init_params(model, task.d_vocab, task.n, task.n_ctx, seed=3).items()}
    return task, model_spec(model), w


def test_attention_rate_in_the_engine():
    task, spec, w = _tiny_weights()
    x = task.all_inputs()[None]
    plain = forward(w, x, spec)
    assert torch.equal(forward(w, x, spec, attention_rate=torch.ones(1)), plain)  # alpha = 1: today's model, exactly
    other = dict(w, **{"blocks.0.attn.W_Q": torch.randn_like(w["blocks.0.attn.W_Q"]) * 3})
    assert not torch.allclose(forward(other, x, spec), plain, atol=1e-4)
    const = torch.zeros(1)  # alpha = 0: constant attention, queries and keys no longer matter
    assert torch.allclose(forward(other, x, spec, attention_rate=const), forward(w, x, spec, attention_rate=const), atol=1e-6)
    half = forward(w, x, spec, attention_rate=torch.tensor([0.5]))
    assert not torch.allclose(half, plain, atol=1e-5) and not torch.allclose(half, forward(w, x, spec, attention_rate=const), atol=1e-5)
    # a run's spec carries its rate: the forward uses it when no per-member rates are given
    assert torch.equal(forward(w, x, dataclasses.replace(spec, attention_rate=0.5)), half)
    assert RunConfig(name="x", model="tiny-1l", attention_rate=0.5).spec == dataclasses.replace(spec, attention_rate=0.5)
    with pytest.raises(ConfigError, match="attention rate"):
        RunConfig(name="x", attention_rate=1.5)


@pytest.mark.parametrize("model", ["tiny-1l", "power-2l-post"])  # `x y =`; `x op y =` with 2 post-LN layers
def test_model_logit_fn_matches_the_forward_and_separates_examples(model):
    task, spec, w = _tiny_weights(p=23 if model == "tiny-1l" else 7, model=model)
    for rate in (1.0, 0.3):
        f = al.model_logit_fn(w, task, dataclasses.replace(spec, attention_rate=rate))
        E = w["embed.W_E"][0, : task.p]
        ref = forward(w, task.all_inputs()[None], spec, attention_rate=torch.tensor([rate]))[0]
        assert torch.allclose(f(E[torch.as_tensor(task.pairs[:, 0])], E[torch.as_tensor(task.pairs[:, 1])]), ref, atol=1e-5)
    # the batched gradients equal one-example gradients (each example has its own embedding rows)
    batch = al.gradient_cosines(f, E, n_triples=40, seed=1)
    a, b, c = torch.randint(0, task.p, (3, 40), generator=torch.Generator().manual_seed(1))
    ea, eb = E[a[7:8]].clone().requires_grad_(True), E[b[7:8]].clone().requires_grad_(True)
    ga, gb = torch.autograd.grad(f(ea, eb)[0, c[7]], (ea, eb))
    assert torch.allclose(batch[7], torch.nn.functional.cosine_similarity(ga.double(), gb.double()), atol=1e-6)


def test_ensemble_over_attention_rates_equals_members_alone(tmp_path):
    base = gi.preset("tiny23").replace(steps=3, checkpoint_every=3, log_checkpoints=False)
    cfgs = [base.replace(name=f"a{r:g}", attention_rate=r) for r in (0.0, 1.0)]
    ens = gi.train(cfgs, runs_dir=tmp_path / "ens", progress=False)
    alone = gi.train([cfgs[0]], runs_dir=tmp_path / "alone", progress=False)[0]
    w_ens, w_alone = gi.load_run(ens[0]).weights(3), gi.load_run(alone).weights(3)
    assert all(torch.allclose(w_ens[k], w_alone[k], atol=1e-5) for k in w_alone)
    w_std = gi.load_run(ens[1]).weights(3)
    assert not torch.allclose(w_ens["blocks.0.mlp.W_in"], w_std["blocks.0.mlp.W_in"], atol=1e-4)  # alpha changed training
    assert gi.load_run(ens[0]).config.attention_rate == 0.0


def test_algorithm_command_on_an_untrained_run(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "--run", "tiny23", "--name", "untrained", "--steps", "1", "--attention-rate", "0.5",
                 "--runs-dir", str(runs), "--no-progress"]) == 0
    assert gi.load_run("untrained", runs).config.attention_rate == 0.5
    with pytest.raises(RunError, match="HookedTransformer cannot express"):
        gi.load_run("untrained", runs).model()
    capsys.readouterr()
    assert main(["algorithm", "--run", "untrained", "--runs-dir", str(runs), "--json", "--no-figures", "--triples", "200"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "undetermined" and out["accuracy"] < 0.5 and out["attention_rate"] == 0.5
    assert set(out["overall"]) == {"gradient_symmetricity", "symmetric_share", "distance_irrelevance", "measures_read", "verdict"}
    # a model that does not compute a + b runs neither algorithm: no row names one, whatever its measures read
    rows = [out["overall"], *out["per_frequency"].values()]
    assert all(r["verdict"] == "undetermined" and r["measures_read"] in ("clock", "pizza", "unclear") for r in rows)
    # no neuron clusters: the frequencies examined come from the W_L gap rule, and the report says so
    assert out["key_frequencies_from"] == "W_L spectrum gap" and out["key_frequencies"]
    assert main(["algorithm", "--run", "untrained", "--runs-dir", str(runs), "--no-figures", "--triples", "200"]) == 0
    text = capsys.readouterr().out
    assert "no neuron clusters: the frequencies above the largest gap of the W_L spectrum" in text
    table = [line for line in text.splitlines() if line.startswith(("  frequency ", "  whole model"))]
    assert len(table) == len(out["per_frequency"]) + 1 and all("  none (its measures read " in line for line in table)
    assert main(["algorithm", "--run", "untrained", "--runs-dir", str(runs), "--triples", "0"]) == 2
    assert main(["algorithm", "--run", "s5", "--no-figures"]) == 1  # not a + b mod p: one line, no traceback
    err = capsys.readouterr().err
    assert "triples must be an integer at least 100" in err and "analyses modular tasks" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def constant_attention_run(tmp_path_factory):
    """tiny23 with constant attention (alpha = 0), a few steps: metrics.csv holds the trainer's own numbers."""
    runs = tmp_path_factory.mktemp("alpha0")
    cfg = gi.preset("tiny23").replace(name="const", attention_rate=0.0, steps=30, checkpoint_every=10)
    gi.train(cfg, runs_dir=runs, progress=False)
    return gi.load_run("const", runs)


def test_analyses_of_an_alpha_0_run_agree_with_its_trainer(constant_attention_run):
    """Progress measures recompute the trainer's logged losses and accuracies at alpha = 0, to the 9 digits
    of metrics.csv. Computed at alpha = 1 (the bug this guards against) they differ by 1e-4 and more;
    results cached under the key used before the rate was part of it are not reused."""
    from dataclasses import fields

    from grokinterp.analysis.progress import ProgressMeasures, progress_measures
    from grokinterp.cache import ResultCache, checkpoint_hash

    run = constant_attention_run
    stale = ResultCache(run, "progress", {"key_frequencies": [3]})
    names = [f.name for f in fields(ProgressMeasures) if f.name not in ("steps", "key_frequencies")]
    stale.save({checkpoint_hash(run.path, s): dict.fromkeys(names, 0.0) for s in run.steps})
    m = gi.progress(run, key_freqs=[3]).payload["measures"]
    logged = run.metrics
    at = [int((logged["step"] == s).nonzero()[0][0]) for s in m["steps"]]
    assert len(at) == 8  # every checkpoint, 0 to 30
    for k in ("train_loss", "test_loss", "train_acc", "test_acc"):
        assert m[k] == pytest.approx(logged[k][at].tolist(), rel=1e-6, abs=1e-8), k
    plain = progress_measures(run.stacked_weights(m["steps"]), m["steps"], run.task, model_spec("tiny-1l"), run.train_mask, [])
    assert plain.train_loss != pytest.approx(logged["train_loss"][at], rel=1e-5)  # the same weights as a standard transformer
    assert plain.test_acc != pytest.approx(logged["test_acc"][at], abs=1e-3)


def test_every_analysis_forward_of_a_run_uses_its_attention_rate(constant_attention_run, monkeypatch, tmp_path):
    """progress, fourier, the explorer and algorithm all run on an alpha = 0 run, and every forward they
    make (through ``logits_and_neurons`` or the logit function) computes alpha = 0."""
    import grokinterp.analysis.algorithm as algorithm_module
    import grokinterp.analysis.batched as batched
    from grokinterp.explore import explorer_html

    rates = []

    def spy(real):
        def f(params, tokens, spec, *args, attention_rate=None, **kw):
            rates.append(spec.attention_rate if attention_rate is None else attention_rate.tolist())
            return real(params, tokens, spec, *args, attention_rate=attention_rate, **kw)
        return f

    monkeypatch.setattr(batched, "forward", spy(batched.forward))
    monkeypatch.setattr(algorithm_module, "forward", spy(algorithm_module.forward))
    monkeypatch.setenv("GROKINTERP_CACHE", str(tmp_path / "cache"))
    run = constant_attention_run
    gi.progress(run)
    assert gi.fourier(run).payload["step"] == 30
    assert "<html" in explorer_html(run)[:200].lower()
    with pytest.raises(RunError, match="HookedTransformer cannot express"):
        run.model()
    assert main(["algorithm", "--run", str(run.path), "--json", "--no-figures", "--triples", "100"]) == 0
    assert len(rates) >= 4 and set(map(str, rates)) == {"0.0"}
