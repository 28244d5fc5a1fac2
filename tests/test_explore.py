"""The training explorer: the page's data (no browser) and the page in a real Chromium (playwright)."""

import base64
import contextlib
import io
import json
import re
import shutil

import numpy as np
import pytest
import torch

import grokinterp as gi
from grokinterp.cli import main
from grokinterp.explore import explorer_html


def _blob(page: str) -> dict:
    """The page's embedded data, with every per-checkpoint array decoded to numpy (S, ...)."""
    data = json.loads(re.search(r"<script type=\"application/json\" id=\"explorer-data\">(.*?)</script>", page, re.S).group(1))
    for p in data["panels"]:
        for u in p["updates"]:
            u["values"] = np.frombuffer(base64.b64decode(u["bdata"]), dtype=np.float32).reshape(u["shape"])
    return data


@pytest.fixture(scope="module")
def explore_command(tiny_run, tmp_path_factory):
    """`grokinterp explore --json` on the tiny run, once for the module: (its JSON output, the folder)."""
    out = tmp_path_factory.mktemp("explore")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["explore", "--run", "tiny23", "--runs-dir", str(tiny_run.path.parent), "--out", str(out), "--json"]) == 0
    return json.loads(printed.getvalue()), out


@pytest.fixture(scope="module")
def tiny_page(explore_command):
    return explore_command[1] / "explore.html"


def test_page_is_offline_and_holds_the_analyses_at_every_checkpoint(tiny_run, tiny_page):
    from grokinterp.analysis.fourier import embedding_spectrum

    page = tiny_page.read_text()
    assert re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", page) is None  # nothing fetched from elsewhere
    assert page.count("Plotly.register") >= 1 and page.count("plotly.js v") == 1  # plotly.js embedded once
    data = _blob(page)
    steps = tiny_run.steps
    assert data["steps"] == steps
    assert len(data["panels"]) == 7  # loss/acc, progress, W_E, W_L, clusters, 2-D logit map, output vectors
    for p in data["panels"]:
        assert p["updates"] and all(u["values"].shape[0] == len(steps) for u in p["updates"])
    # the W_E panel shows embedding_spectrum at every checkpoint: const, then cos k and sin k
    we = next(p for p in data["panels"] if "W_E in the Fourier" in p["figure"]["layout"]["title"]["text"])
    norms = embedding_spectrum(tiny_run.stacked_weights(names=["embed.W_E"]), tiny_run.task.p).numpy()
    got = {we["figure"]["data"][u["trace"]]["name"]: u["values"] for u in we["updates"]}
    np.testing.assert_allclose(got["cos k"], norms[:, 1::2], rtol=1e-5)
    np.testing.assert_allclose(got["sin k"], norms[:, 2::2], rtol=1e-5)
    assert not np.allclose(got["cos k"][0], got["cos k"][-1])


def test_output_vectors_stay_on_one_plane_and_form_a_circle(tiny_page, tiny_run):
    data = _blob(tiny_page.read_text())
    panel = next(p for p in data["panels"] if p["figure"]["layout"]["title"]["text"].startswith("Output vectors"))
    xs = [u["values"] for u in panel["updates"] if u["key"] == "x"]
    ys = [u["values"] for u in panel["updates"] if u["key"] == "y"]
    radius = np.hypot(xs[0][-1], ys[0][-1])  # the first key frequency's plane, at the last checkpoint
    assert radius.std() / radius.mean() < 0.35  # the p answers lie near one circle ...
    assert np.hypot(xs[0][0], ys[0][0]).mean() < radius.mean()  # ... that grows from the initial weights


def test_structured_plane_recovers_a_planted_frequency_plane():
    from grokinterp.analysis.views import frequency_projector, project, structured_plane

    p, d, k = 31, 16, 4
    rng = np.random.default_rng(0)
    Q = torch.linalg.qr(torch.tensor(rng.normal(size=(d, 2))))[0]  # the planted plane
    c = torch.arange(p, dtype=torch.float64)
    circle = torch.stack([torch.cos(2 * np.pi * k * c / p), torch.sin(2 * np.pi * k * c / p)], 1)
    X = 3 * circle @ Q.T + 0.3 * torch.tensor(rng.normal(size=(p, d)))
    plane = structured_plane(X, frequency_projector(p, k))
    assert torch.linalg.svdvals(Q.T @ plane).min() > 0.95  # the same plane up to rotation
    assert torch.linalg.svdvals(Q.T @ structured_plane(X, frequency_projector(p, k + 1))).min() < 0.9  # another k: not it
    xy = project(X[None].repeat(2, 1, 1), plane)
    assert xy.shape == (2, p, 2) and torch.allclose(xy[0], xy[1])


def test_without_key_frequencies_the_page_leaves_out_what_needs_them(tiny_run, tmp_path):
    from grokinterp.explore import explorer_panels

    for name in ("config.json", "split.json", "metrics.csv", "checkpoints/step_00000000.safetensors"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(tiny_run.path / name, tmp_path / name)
    untrained = gi.load_run(tmp_path)  # only the initial weights: no neuron clusters
    panels = explorer_panels(untrained, untrained.steps)
    titles = [p.figure.layout.title.text for p in panels]
    assert "Progress measures (key frequencies none)" in titles and not any(t.startswith("Output vectors") for t in titles)
    names = {t.name for p in panels for t in p.figure.data}
    assert "restricted" not in names and "excluded (train)" not in names and "Gini W_E" in names


def test_explore_command_writes_the_page_and_figures_links_it(explore_command, tiny_run, tmp_path, capsys):
    from grokinterp.report import index_page

    out, folder = explore_command
    assert out["path"] == str(folder / "explore.html") and out["checkpoints"] == len(tiny_run.steps)
    assert (folder / "explore.html").stat().st_size == out["bytes"] < 15e6
    assert "<a href='explore.html'>" in index_page(tiny_run, {}, [])
    assert main(["explore", "--run", "no-such-run", "--runs-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run named" in err


def test_sequence_run_panels(tmp_path):
    """A sequence run's panels come from its metrics.csv (written here as the trainer writes it)."""
    from grokinterp.store import atomic_write_json, atomic_write_tensors, checkpoint_path, write_metrics

    atomic_write_json(tmp_path / "config.json", {"kind": "sequence", "config": {"task": "repeat"}})
    steps = np.arange(0, 101, 10)
    rows = [{"step": int(s), "train_part0": 5 * np.exp(-s / 20), "test_part0": 5 * np.exp(-s / 30),
             **{f"induction_head{h}": min(1.0, s / (40 + 30 * h)) for h in range(2)},
             **{f"induction_best{h}": min(1.0, s / 50) for h in range(2)}} for s in steps]
    write_metrics(tmp_path / "metrics.csv", rows, list(rows[0]))
    for s in (0, 50, 100):
        atomic_write_tensors(checkpoint_path(tmp_path, s), {"w": torch.zeros(1)})
    run = gi.load_run(tmp_path)
    page = explorer_html(run)
    data = _blob(page)
    assert data["steps"] == [0, 50, 100]
    titles = [p["figure"]["layout"]["title"]["text"] for p in data["panels"]]
    assert titles == [f"{run.name}: test loss per part (log)", f"{run.name}: train loss per part (log)",
                      f"{run.name}: induction score per head (last layer)"]
    heads = data["panels"][2]["updates"][1]["values"]  # marker y: each head's score at each checkpoint
    np.testing.assert_allclose(heads, [[0, 0, 0, 0], [1, 50 / 70, 1, 1], [1, 1, 1, 1]], rtol=1e-6)  # offset 1, then best offset
    assert "`grokinterp phases`): part0 70." in page  # test loss first below 10% of its start at step 70: 5 e^(-70/30) < 0.5
    # the best-offset scores are drawn and the note gives the step the circuit passes 0.3 (20/50 >= 0.3 at step 20)
    assert "head 1, best offset" in page and "0.3 first at step 20: the circuit `grokinterp phases` reports" in page


# ---- in a real browser -----------------------------------------------------------------------------


def _chromium():
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]' (or pip install playwright)")
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("no Chromium for the browser test: apt-get install -y chromium (playwright's own browser download is not needed)")
    return exe


def _panel_data(page) -> list[str]:
    """Every panel's traces as the browser holds them (typed arrays made plain), one string per panel."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => JSON.stringify(
        gd.data.map(t => Object.fromEntries(['x', 'y', 'z'].filter(k => t[k] !== undefined).map(k =>
            [k, Array.from(t[k], v => (v && v.length !== undefined) ? Array.from(v) : v)])))))""")


def _open(pw, exe, path):
    browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1340, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.resolve().as_uri())
    page.wait_for_function("document.getElementById('step-label').textContent.startsWith('step')")
    return browser, page, errors


def _check_slider(page, errors, steps) -> None:
    slider = page.locator("#step-slider")
    assert (int(slider.get_attribute("min")), int(slider.get_attribute("max")), slider.get_attribute("step")) == (0, len(steps) - 1, "1")
    assert page.locator("#checkpoints option").count() == len(steps)  # one stop per checkpoint
    before = _panel_data(page)
    slider.focus()
    page.keyboard.press("End")  # as a user would: to the last checkpoint
    page.wait_for_function(f"document.getElementById('step-label').textContent.startsWith('step {steps[-1]:,}')")
    after = _panel_data(page)
    assert len(before) == len(after) >= 3
    assert sum(a != b for a, b in zip(before, after)) >= 3
    assert errors == []


def test_explorer_in_chromium(tiny_run, request):
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    tiny_page = request.getfixturevalue("tiny_page")  # built only where a browser can open it

    with sync_playwright() as pw:
        browser, page, errors = _open(pw, exe, tiny_page)
        try:
            _check_slider(page, errors, tiny_run.steps)
            assert sum(a != b for a, b in zip(_panel_data(page), _panel_data(page))) == 0  # nothing moves by itself
            page.keyboard.press("Home")
            page.wait_for_function("document.getElementById('step-label').textContent.startsWith('step 0 ')")
            cursor = page.evaluate("document.getElementById('panel-0').layout.shapes.filter(s => s.line.dash === 'dot').map(s => s.x0)")
            assert cursor and all(x == 0 for x in cursor)
        finally:
            browser.close()


def test_explorer_of_shipped_s5_post_in_chromium(tmp_path):
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    run = gi.load_run("s5-post")
    path = tmp_path / "explore.html"
    path.write_text(explorer_html(run), encoding="utf-8")
    with sync_playwright() as pw:
        browser, page, errors = _open(pw, exe, path)
        try:
            _check_slider(page, errors, run.steps)
        finally:
            browser.close()


def test_run_explore_shows_the_page_inline(tiny_run, tiny_page, monkeypatch):
    import html

    import grokinterp.explore as ex

    page = tiny_page.read_text()
    monkeypatch.setattr(ex, "explorer_html", lambda run: page if run is tiny_run else None)
    shown = tiny_run.explore(height=700)
    frame = re.search(r'<iframe srcdoc="([^"]*)" style="[^"]*height: 700px', shown.data)
    assert frame and html.unescape(frame.group(1)) == page


@pytest.mark.parametrize("train,test,says", [
    ([0.1, 0.5, 0.8], [0.0, 0.1, 0.1], "has not reached 99% by step 20 (the last logged): the run has not fit"),
    ([0.5, 1.0, 1.0], [0.0, 0.1, 0.3], "Train accuracy reaches 99% at step 10 (memorisation); test accuracy has not reached 99% by step 20"),
    ([0.5, 1.0, 1.0], [0.0, 0.4, 1.0], "Train accuracy reaches 99% at step 10 (memorisation); test accuracy follows at step 20 (grokking)"),
    ([0.5, 1.0, 1.0], [0.0, 0.5, 1.0], "passes 50% at step 10, the step at which train accuracy reaches 99%, and reaches 99% at step 20: this run generalised while it fit"),  # as detect_phases
    ([0.5, 1.0, 1.0], [0.5, 1.0, 1.0], "generalised while it fit, with no memorisation first"),
])
def test_loss_panel_note_says_what_this_run_did(train, test, says):
    """The note under the loss and accuracy panel reads the run's own accuracies, not the textbook story."""
    from grokinterp.explore import _accuracy_note

    assert says in _accuracy_note({"step": np.array([0, 10, 20]), "train_acc": np.array(train), "test_acc": np.array(test)})


def test_loss_panel_names_only_the_phases_it_shades():
    from grokinterp.analysis.phases import detect_phases
    from grokinterp.explore import _shading_note

    steps = np.arange(0, 601, 50)
    fit = np.where(steps >= 100, 1.0, 0.3)
    growing = detect_phases(steps, fit, np.full(len(steps), 0.05), 500.0 + steps)  # memorisation not ended: no band
    grokked = detect_phases(steps, fit, np.where(steps >= 400, 1.0, 0.05), 500.0 + np.minimum(steps, 600 - steps))
    assert _shading_note(growing) == "" and _shading_note(None) == ""
    assert _shading_note(grokked).startswith(" Shading: memorisation, circuit formation")


def test_loss_panel_note_on_early_generalisation_and_relapses():
    """Test accuracy past 50% before train accuracy reaches 99% is no memorisation then grokking (tiny23 reads so),
    and a run whose test accuracy collapses after grokking says how often and how late."""
    from grokinterp.explore import _accuracy_note

    steps = np.array([0, 10, 20, 30, 40])
    early = _accuracy_note({"step": steps, "train_acc": np.array([0.5, 0.9, 1.0, 1.0, 1.0]),
                            "test_acc": np.array([0.0, 0.6, 0.8, 1.0, 1.0])})
    assert "passes 50% at step 10, before train accuracy reaches 99% at step 20" in early and "(grokking)" not in early
    relapsing = _accuracy_note({"step": steps, "train_acc": np.array([0.5, 1.0, 1.0, 1.0, 1.0]),
                                "test_acc": np.array([0.0, 0.1, 1.0, 0.2, 1.0])})
    assert relapsing.endswith("(grokking), then falls below 50% again at 1 of the 2 logged steps after it, the last at step 30 "
                              "(final 100.0%).")


def test_no_phase_bands_where_the_phases_are_not_separable():
    """The run generalised while it fit: the report says the phases are not separable, so no band is shaded
    (a cleanup band from step 32 used to be drawn on tiny23)."""
    from grokinterp.analysis.phases import detect_phases
    from grokinterp.report import _phases_text

    steps = np.arange(0, 401, 50)
    train = np.array([0.3, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    test = np.array([0.0, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0, 1.0, 1.0])
    norm = np.array([10, 12, 13, 12, 11, 9, 8, 7.9, 7.85])
    ph = detect_phases(steps, train, test, norm)
    assert ph.cleanup_start == 50 and ph.memorised_step == 100 and ph.cleanup_end is not None
    assert _phases_text(ph).startswith("phases: not separable") and ph.bands() == []
