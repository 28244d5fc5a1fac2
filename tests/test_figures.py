"""The shared figure style: every figure titled, no empty panels, log axes in powers of ten, offline HTML."""

import re

import numpy as np
import pytest

import grokinterp.figures as F
from grokinterp.analysis.fourier import basis_names
from grokinterp.analysis.phases import Phases
from grokinterp.analysis.progress import ProgressMeasures
from grokinterp.sweep import best_accuracy, median_steps_to_generalise

P = 13
STEPS = np.array([0, 10, 100, 500, 1000, 2000, 4000])
RNG = np.random.default_rng(0)


def _metrics():
    n = len(STEPS)
    return {"step": STEPS, "train_loss": np.geomspace(5, 1e-7, n), "test_loss": np.geomspace(5, 1e-3, n),
            "train_acc": np.linspace(0, 1, n), "test_acc": np.linspace(0, 0.5, n)}


def _sweep_rows():
    """Two seeds at two fractions: both reach 99% at 0.5, neither at 0.3 (drawn as 'not reached')."""
    return [{"task": "add", "frac": f, "seed": s, "variant": "adamw wd=1 full batch", "steps": 4000,
             "grokked_step": 1000 if f == 0.5 else None, "best_test_acc": 1.0 if f == 0.5 else 0.4} for f in (0.3, 0.5) for s in (0, 1)]


def _progress():
    n, m = len(STEPS), _metrics()
    return ProgressMeasures(steps=STEPS, key_frequencies=[2, 5], train_loss=m["train_loss"], test_loss=m["test_loss"],
                            restricted_loss=np.geomspace(3, 1e-6, n), excluded_loss=np.linspace(1, 5, n),
                            gini_embedding=np.linspace(0, 0.8, n), gini_logit_map=np.linspace(0, 0.9, n),
                            gini_embedding_per_frequency=np.linspace(0, 0.7, n), gini_logit_map_per_frequency=np.linspace(0, 0.8, n),
                            sum_squared_weights=np.linspace(3000, 900, n), train_acc=m["train_acc"], test_acc=m["test_acc"])


PHASES = Phases(memorisation_end=100, cleanup_start=1000, cleanup_end=2000, grokked_step=2000, memorised_step=100)


def _sequence_metrics():
    return {"step": STEPS, "train_d0": np.geomspace(2, 0.1, len(STEPS)), "test_d0": np.geomspace(2, 0.3, len(STEPS)),
            "induction_head0": np.linspace(0, 1, len(STEPS)), "induction_best0": np.linspace(0.2, 1, len(STEPS))}


def all_figures() -> dict:
    """Every figure function of the module on small made-up inputs."""
    names = basis_names(P)
    K = (P - 1) // 2
    m, irreps = _metrics(), ["trivial", "sign", "standard"]
    return {
        "loss_curves": F.loss_curves(m, PHASES),
        "loss_curves_log": F.loss_curves(m, PHASES, log_x=True),
        "accuracy_curves": F.accuracy_curves(m),
        "validation_loss": F.validation_loss(m),
        "embedding_fourier_norms": F.embedding_fourier_norms(RNG.random(P), names),
        "spectrum_over_training": F.spectrum_over_training(STEPS, RNG.random((len(STEPS), K)), "spectrum"),
        "neuron_clusters": F.neuron_clusters(RNG.random((20, K)), {2: [0, 1, 2], 5: [3, 4]}, 0.85),
        "logit_fourier_2d": F.logit_fourier_2d(RNG.random((P, P)), names),
        "progress_panels": F.progress_panels(_progress(), PHASES),
        "tsne_modular": F.tsne_modular(RNG.random((P, 2)), 4),
        "tsne_group": F.tsne_group(RNG.random((6, 2)), np.array([0, 0, 1, 1, 2, 2]), list("abcdef"), "cosets"),
        "coset_scores_over_training": F.coset_scores_over_training(STEPS, {"C2": np.geomspace(1, 20, len(STEPS))},
                                                                   {"C2": np.linspace(0, 0.5, len(STEPS))}),
        "irrep_shares": F.irrep_shares(irreps, {"W_E": np.array([0.1, 0.2, 0.7])}),
        "irrep_shares_over_training": F.irrep_shares_over_training(STEPS, irreps, RNG.random((len(STEPS), 3)), "irreps"),
        "loss_groups": F.loss_groups(_sequence_metrics(), "test_", "per digit"),
        "train_vs_test": F.train_vs_test({"finite data": _sequence_metrics(), "infinite data": _sequence_metrics()}, "both"),
        "induction_scores": F.induction_scores(_sequence_metrics(), "induction"),
        "steps_vs_fraction": F.steps_vs_fraction(median_steps_to_generalise(_sweep_rows()), "Fig. 1"),
        "accuracy_vs_fraction": F.accuracy_vs_fraction(best_accuracy(_sweep_rows()), "Fig. 2"),
        "census_bars": F.census_bars([{"grokked_step": 100, "irrep": "standard", "irrep_dominant": True, "best_class": "S4",
                                       "clusters_into_cosets": True},
                                      {"grokked_step": 200, "irrep": "dim5a", "irrep_dominant": False, "best_class": "D5",
                                       "clusters_into_cosets": False}], "census"),
    }


FIGS = all_figures()


def _axes(fig, letter):
    """{'x', 'x2', ...: axis object} for every axis of that letter in the layout."""
    layout = fig.layout.to_plotly_json()
    return {letter + k[5:]: fig.layout[k] for k in layout if re.fullmatch(f"{letter}axis\\d*", k)}


def test_every_public_figure_function_is_covered():
    public = {n for n, f in vars(F).items() if callable(f) and getattr(f, "__module__", "") == F.__name__
              and not n.startswith("_") and n not in {"style", "log_ticks", "add_phases", "save_figures", "write_html", "FigureWriter"}}
    assert public <= set(FIGS), public - set(FIGS)


@pytest.mark.parametrize("name", sorted(FIGS))
def test_no_empty_panel_and_every_axis_titled(name):
    fig = FIGS[name]
    used = {(t.xaxis or "x", t.yaxis or "y") for t in fig.data}
    xs, ys = _axes(fig, "x"), _axes(fig, "y")
    assert {x for x, _ in used} == set(xs), f"panels without data: {set(xs) - {x for x, _ in used}}"
    assert {y for _, y in used} == set(ys)
    for axes, what in ((xs, "column"), (ys, "row")):  # panels in one column (row) may share one x (y) title
        titled = {tuple(a.domain or (0, 1)) for a in axes.values() if a.title.text}
        assert all(tuple(a.domain or (0, 1)) in titled for a in axes.values()), f"a {what} of panels without an axis title"
    assert fig.layout.title.text


@pytest.mark.parametrize("name", sorted(FIGS))
def test_one_style_and_log_axes_in_powers_of_ten(name):
    fig = FIGS[name]
    assert fig.layout.template.layout.font.family == F.FONT
    for axis in [*_axes(fig, "x").values(), *_axes(fig, "y").values()]:
        if axis.type == "log":  # 10^-6, never the SI "1μ" / "100n"
            assert (axis.exponentformat, axis.minorloglabels) == ("power", "none")
        else:
            assert axis.exponentformat == "none"


def test_log_x_leaves_out_step_zero_instead_of_drawing_it_at_one():
    m = _metrics()
    for fig in (F.accuracy_curves(m), F.validation_loss(m), F.loss_curves(m, log_x=True)):
        assert fig.layout.xaxis.type == "log"
        assert all(min(t.x) == 10 and len(t.x) == len(STEPS) - 1 for t in fig.data)
    assert min(s.x0 for s in F.loss_curves(m, PHASES, log_x=True).layout.shapes) > 0  # shading from 0 breaks a log axis


def test_loss_curves_are_linear_in_steps_by_default_as_in_nanda():
    fig = F.loss_curves(_metrics())
    assert (fig.layout.xaxis.type, fig.layout.yaxis.type) == ("linear", "log")
    assert list(fig.data[0].x) == list(STEPS)


def test_titles_name_the_run_and_step():
    m, names = _metrics(), basis_names(P)
    with_step = [F.embedding_fourier_norms(RNG.random(P), names, run="r1", step=12000),
                 F.neuron_clusters(RNG.random((4, 6)), {2: [0, 1]}, 0.85, run="r1", step=12000),
                 F.logit_fourier_2d(RNG.random((P, P)), names, run="r1", step=12000),
                 F.irrep_shares(["a"], {"W_U": np.ones(1)}, run="r1", step=12000),
                 F.tsne_modular(RNG.random((P, 2)), 4, run="r1", step=12000),
                 F.tsne_group(RNG.random((6, 2)), np.array([0, 0, 1, 1, 2, 2]), list("abcdef"), "t", run="r1", step=12000)]
    with_run = [F.loss_curves(m, run="r1"), F.accuracy_curves(m, run="r1"), F.validation_loss(m, run="r1"),
                F.spectrum_over_training(STEPS, np.ones((len(STEPS), 6)), "s", run="r1"),
                F.progress_panels(_progress(), run="r1"),
                F.irrep_shares_over_training(STEPS, ["a"], np.ones((len(STEPS), 1)), "i", run="r1"),
                F.coset_scores_over_training(STEPS, {"C2": np.ones(len(STEPS))}, {"C2": np.ones(len(STEPS))}, run="r1")]
    assert all("run r1, step 12,000" in f.layout.title.text for f in with_step)
    assert all("run r1" in f.layout.title.text for f in with_run)
    assert "run" not in F.loss_curves(m).layout.title.text


def test_tsne_legend_names_the_subgroup():
    fig = F.tsne_group(RNG.random((6, 2)), np.array([0, 0, 1, 1, 2, 2]), list("abcdef"), "t", subgroup="S4",
                       note="up to conjugacy and side")
    assert [t.name for t in fig.data] == ["coset 1 of S4", "coset 2 of S4", "coset 3 of S4"]
    assert "cosets of S4" in fig.layout.legend.title.text and "up to conjugacy and side" in fig.layout.legend.title.text


@pytest.mark.parametrize("lo,hi,inside", [(0.8, 30, ["1", "2", "5", "10", "20"]), (1.12, 1.19, ["1.12", "1.14", "1.16", "1.18"])])
def test_narrow_log_axes_label_their_ticks_with_their_values(lo, hi, inside):
    """A variance ratio from 0.8 to 30 on a log axis: ticks 1, 2, 5, 10, 20 labelled as such (not 20 as "2",
    not only "1"); a range within a factor of 5 gets even steps. Wide ranges keep the powers of ten."""
    ratios = {"S4": np.geomspace(lo, hi, len(STEPS))}
    axis = F.coset_scores_over_training(STEPS, ratios, {"S4": np.zeros(len(STEPS))}).layout.yaxis
    assert axis.type == "log" and axis.tickmode == "array"
    assert all(float(text.replace(",", "")) == pytest.approx(v) for v, text in zip(axis.tickvals, axis.ticktext))
    assert [text for v, text in zip(axis.tickvals, axis.ticktext) if lo <= v <= hi] == inside
    assert F.log_ticks([1e-7, 10]) == {} and F.log_ticks([2, 2]) == {}


def test_phases_are_in_the_legend_once():
    for fig in (FIGS["loss_curves"], FIGS["progress_panels"]):
        legend = [s.name for s in fig.layout.shapes if s.showlegend]
        assert legend == ["phase: memorisation", "phase: circuit formation", "phase: cleanup"]
    assert len(FIGS["progress_panels"].layout.shapes) == 3 * 5  # shaded in all five panels


def test_logits_2d_names_every_basis_element_readably():
    fig, names = FIGS["logit_fourier_2d"], basis_names(P)
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert list(axis.ticktext) == names and len(axis.tickvals) == P
        assert axis.tickfont.size >= 10


def test_one_figure_is_self_contained_several_share_plotly_js(tmp_path):
    one, two = FIGS["accuracy_curves"], FIGS["validation_loss"]
    F.save_figures({"a": one}, tmp_path / "one", png=False)
    html = (tmp_path / "one" / "a.html").read_text()
    assert not (tmp_path / "one" / "plotly.min.js").exists() and len(html) > 1_000_000  # plotly.js inside
    F.save_figures({"a": one, "b": two}, tmp_path / "set", png=False)
    assert (tmp_path / "set" / "plotly.min.js").stat().st_size > 1_000_000
    for stem in "ab":
        html = (tmp_path / "set" / f"{stem}.html").read_text()
        assert len(html) < 100_000 and 'src="plotly.min.js"' in html
        assert "typeof Plotly === 'undefined'" in html  # opened alone, it says what to copy instead of a blank page
    F.save_figures({"a": one, "b": two}, tmp_path / "forced", png=False, self_contained=True)
    assert not (tmp_path / "forced" / "plotly.min.js").exists()


def test_a_hanging_png_export_does_not_hang_the_writer(monkeypatch, tmp_path, capsys):
    """A browser that never answers: `close` gives up after PNG_TIMEOUT_S, keeps the HTML and notes it once."""
    import asyncio
    import threading

    release = threading.Event()

    class Hanging:  # kaleido.Kaleido's async interface, answering never
        def __init__(self, **kwargs):
            pass

        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            return None

        async def write_fig_from_object(self, specs, **kwargs):
            await asyncio.to_thread(release.wait)

    monkeypatch.setattr(F, "PNG_TIMEOUT_S", 1)
    monkeypatch.setattr(F, "_browser_found", lambda: True)
    monkeypatch.setattr(F, "_png_warned", False)
    monkeypatch.setattr(F, "_kaleido_keeping_its_page", lambda: Hanging)
    with F.FigureWriter(tmp_path) as writer:
        writer.add({"a": F.go.Figure()})
    assert [p.name for p in writer.written] == ["a.html"] and (tmp_path / "a.html").exists()
    assert capsys.readouterr().out.count("PNG export skipped (TimeoutError)") == 1
    release.set()


def test_pngs_without_kaleidos_page_reloads_are_the_same_bytes(tmp_path):
    """The writer keeps kaleido's page loaded between figures; plotly's own export reloads it after
    each. A heatmap, a log-axis line plot and a scatter with text come out byte-identical."""
    from choreographer.browsers.chromium import Chromium

    if Chromium.find_browser(skip_local=False) is None:
        pytest.skip("no Chrome/Chromium on this machine: PNG export untested here (.ci/run installs Chromium)")
    import plotly.io as pio

    rng = np.random.default_rng(0)
    figs = {"heat": F.go.Figure(F.go.Heatmap(z=rng.normal(size=(30, 40)))),
            "lines": F.go.Figure(F.go.Scatter(x=np.arange(1, 200), y=rng.random(199).cumsum())).update_xaxes(type="log"),
            "text": F.go.Figure(F.go.Scatter(x=rng.random(20), y=rng.random(20), mode="markers+text", text=[str(i) for i in range(20)]))}
    with F.FigureWriter(tmp_path / "kept", self_contained=True) as writer:
        writer.add(figs)
    (tmp_path / "plotly").mkdir()
    pio.write_images(list(figs.values()), [tmp_path / "plotly" / f"{k}.png" for k in figs], width=F.WIDTH, height=F.HEIGHT)
    for k in figs:
        kept, reloaded = (tmp_path / d / f"{k}.png" for d in ("kept", "plotly"))
        assert kept.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and kept.read_bytes() == reloaded.read_bytes(), k


def test_empty_panels_say_why_when_a_run_has_no_key_frequencies():
    """A run trained 10 steps has no key frequencies and no neuron clusters: the progress figure's title and
    its empty ratio panel say restricted/excluded loss need them (it read 'key frequencies )'), and the neuron
    figure says its largest share is below the cut (it was two empty panels)."""
    from types import SimpleNamespace

    import numpy as np

    from grokinterp import figures as F

    steps = np.array([0, 5, 10])
    nan = np.full(3, np.nan)
    m = SimpleNamespace(steps=steps, key_frequencies=[], train_loss=np.ones(3), test_loss=np.ones(3), excluded_loss=nan,
                        restricted_loss=nan, sum_squared_weights=np.ones(3), gini_embedding=np.ones(3), gini_logit_map=np.ones(3))
    fig = F.progress_panels(m)
    assert F.NO_KEYS in fig.layout.title.text and "key frequencies )" not in fig.layout.title.text
    assert [a.text for a in fig.layout.annotations if a.xref == "x3 domain"] == [F.NO_KEYS]
    shares = np.full((6, 4), 0.1)
    shares[2, 1] = 0.48
    fig = F.neuron_clusters(shares, {}, 0.85)
    assert "no neuron clusters (largest share 0.48 below cut 0.85)" in [a.text for a in fig.layout.annotations]
    m.key_frequencies = [3]
    assert not any(a.text == F.NO_KEYS for a in F.progress_panels(m).layout.annotations)


def test_degenerate_axes_say_so_or_stay_readable():
    """Only step 0: the log-step curves say nothing is left to draw (they were empty traces); one training
    fraction: the sweep figures centre it (the axis ran -0.5..1.5) and fig2 keeps a legend naming the setting."""
    from types import SimpleNamespace

    import numpy as np

    from grokinterp import figures as F

    metrics = {"step": np.array([0]), "train_acc": np.array([0.1]), "test_acc": np.array([0.0]),
               "train_loss": np.array([3.0]), "test_loss": np.array([3.1])}
    for fig in (F.accuracy_curves(metrics), F.validation_loss(metrics), F.loss_curves(metrics, log_x=True)):
        assert [a.text for a in fig.layout.annotations if "no checkpoint after step 0" in a.text]
    assert not F.loss_curves(metrics).layout.annotations  # linear axis: step 0 is drawn
    curves = {"x + y mod 97": SimpleNamespace(fracs=[0.5], values=[0.8], runs=[2], reached=[1], budget=1000)}
    for fig in (F.accuracy_vs_fraction(curves, "fig2"), F.steps_vs_fraction(curves, "fig1")):
        assert tuple(fig.layout.xaxis.range) == (0.4, 0.6) and fig.layout.showlegend
        assert fig.data[0].name == "x + y mod 97"
