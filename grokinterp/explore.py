"""The training explorer: one offline HTML page with a slider over a run's checkpoints.

    page = explorer_html(load_run("modadd113"))      # what `grokinterp explore --run modadd113` writes

Every panel shows an analysis at the checkpoint the slider points to, and moving the slider moves
them all. The page holds plotly.js once, each panel's plotly figure, and every checkpoint's values
as float32 arrays (base64); a small script slices them into the panels (``Plotly.react``) when the
slider moves. The analyses are those of ``grokinterp.analysis``; this module only arranges their
results (it sits beside ``figures``).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch
from plotly.subplots import make_subplots

from .figures import COLORS, TEMPLATE, add_phases
from .store import read_metrics

PANEL_WIDTH, PANEL_HEIGHT = 640, 430
THRESHOLD = 0.85  # neuron share of one frequency needed to join its cluster (as `grokinterp fourier`)


@dataclass
class Panel:
    """One plotly figure of the page and what the slider changes in it."""

    figure: go.Figure
    note: str  # what to look for, shown under the panel
    updates: list[tuple[int, str, np.ndarray]] = field(default_factory=list)  # (trace, key, values (S, ...))
    cursor: list[int] = field(default_factory=list)  # layout shapes moved to the current step
    logged: np.ndarray | None = None  # (S,) per checkpoint: the step of the metrics row its curve markers show


def _figure(title: str, rows: int = 1, cols: int = 1, titles=None, **layout) -> go.Figure:
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.12) if rows * cols > 1 else go.Figure()
    layout = dict(width=PANEL_WIDTH, height=PANEL_HEIGHT, margin=dict(l=60, r=20, t=70, b=50), legend=dict(font_size=11)) | layout
    fig.update_layout(template=TEMPLATE, title=dict(text=title, font_size=15), **layout)
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True, exponentformat="power")  # 10^-6, not the SI "1μ"
    return fig


def _at_checkpoints(metric_steps: np.ndarray, steps) -> np.ndarray:
    """Row of the last logged metrics at or before each checkpoint step."""
    return np.clip(np.searchsorted(metric_steps, np.asarray(steps), side="right") - 1, 0, len(metric_steps) - 1)


def _curves(panel: Panel, steps, x, curves: list[tuple[str, np.ndarray, str]], at: np.ndarray, row=None, col=None) -> None:
    """Lines over training, a marker on each at the current checkpoint, and a vertical cursor line.

    ``x``, each curve's y: shape (T,); ``at``: (S,) index into them of each checkpoint.
    """
    fig = panel.figure
    for name, y, color in curves:
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines", line=dict(color=color, width=1.6), legendgroup=name,
                                 showlegend=row in (None, 1) and col in (None, 1)), row=row, col=col)
    fig.add_trace(go.Scatter(x=np.repeat(x[at[:1]], len(curves)), y=[c[1][at[0]] for c in curves], mode="markers",
                             marker=dict(color=[c[2] for c in curves], size=9, line=dict(color="black", width=1)),
                             showlegend=False, hoverinfo="x+y"), row=row, col=col)
    marker = len(fig.data) - 1
    panel.logged = np.asarray(x)[at]
    panel.updates += [(marker, "x", np.repeat(x[at][:, None], len(curves), 1)),
                      (marker, "y", np.stack([c[1][at] for c in curves], 1))]
    fig.add_vline(x=steps[0], line=dict(color="black", width=1, dash="dot"), row=row or "all", col=col or "all")
    panel.cursor.append(len(fig.layout.shapes) - 1)


def _bars(panel: Panel, x, series: list[tuple[str, np.ndarray, str]], y_title: str) -> None:
    """Bars whose heights (S, len(x)) follow the slider; the y range fits every checkpoint."""
    fig = panel.figure
    for name, values, color in series:
        fig.add_trace(go.Bar(x=x, y=values[0], name=name, marker_color=color))
        panel.updates.append((len(fig.data) - 1, "y", values))
    top = max(float(np.nanmax(v)) for _, v, _ in series)
    fig.update_layout(barmode="group", bargap=0.15)
    fig.update_yaxes(title_text=y_title, range=[min(0.0, min(float(np.nanmin(v)) for _, v, _ in series)) * 1.05, top * 1.05 or 1])


def _accuracy_note(m: dict) -> str:
    """What this run's logged accuracies did: memorised, grokked, both at once, or neither yet."""
    from .analysis.phases import first_step
    from .report import relapse_text

    fit, grok, last = first_step(m["step"], m["train_acc"] >= 0.99), first_step(m["step"], m["test_acc"] >= 0.99), int(m["step"][-1])
    half = first_step(m["step"], m["test_acc"] >= 0.5)
    if fit is None:
        return f"Train accuracy has not reached 99% by step {last:,} (the last logged): the run has not fit its training set."
    if grok is None:
        return (f"Train accuracy reaches 99% at step {fit:,} (memorisation); test accuracy has not reached 99% by step {last:,} "
                "(the last logged): no grokking yet.")
    if grok <= fit:
        return (f"Test accuracy reaches 99% at step {grok:,}, train accuracy at step {fit:,}: this run generalised while it fit, "
                "with no memorisation first.")
    if half <= fit:
        when = "the step at which train accuracy reaches 99%" if half == fit else f"before train accuracy reaches 99% at step {fit:,}"
        return (f"Test accuracy passes 50% at step {half:,}, {when}, and reaches 99% "
                f"at step {grok:,}: this run generalised while it fit, with no memorisation first to grok from.")
    relapse = relapse_text(m["step"], m["test_acc"], grok)
    return (f"Train accuracy reaches 99% at step {fit:,} (memorisation); test accuracy follows at step {grok:,} (grokking)"
            + (f", then {relapse}." if relapse else "."))


def _shading_note(phases) -> str:
    """Which phases the panel shades: those whose two boundaries the rules found."""
    bands = [name for name, *_ in phases.bands()] if phases is not None else []
    return f" Shading: {', '.join(bands)} (Nanda et al. Sec. 5.2; the rules in docs/analyses.md)." if bands else ""


def _loss_and_accuracy(run, steps, phases=None) -> Panel:
    m = run.metrics
    panel = Panel(_figure(f"{run.name}: loss and accuracy", 1, 2, ("loss (log)", "accuracy")),
                  _accuracy_note(m) + _shading_note(phases))
    at = _at_checkpoints(m["step"], steps)
    _curves(panel, steps, m["step"], [("train", m["train_loss"], COLORS[0]), ("test", m["test_loss"], COLORS[1])], at, 1, 1)
    _curves(panel, steps, m["step"], [("train", m["train_acc"], COLORS[0]), ("test", m["test_acc"], COLORS[1])], at, 1, 2)
    panel.figure.update_yaxes(type="log", title_text="loss (cross-entropy)", row=1, col=1)
    panel.figure.update_yaxes(range=[0, 1.03], title_text="accuracy", row=1, col=2)
    panel.figure.update_xaxes(title_text="step")
    if phases is not None:
        for col in (1, 2):
            add_phases(panel.figure, phases, 1, col, legend=False)
    return panel


# ---- modular arithmetic ----------------------------------------------------------------------------


def _modular_panels(run, steps, progress: bool) -> list[Panel]:
    from tqdm.auto import tqdm

    from .analysis import fourier as fa
    from .analysis.batched import chunk_size, chunks, logits_and_neurons
    from .analysis.phases import detect_phases
    from .analysis.progress import gini, restricted_and_excluded_loss, sum_squared_weights
    from .analysis.views import frequency_projector, project, structured_plane
    from .cache import key_frequencies as cached_key_frequencies

    task, spec, p = run.task, run.config.spec, run.task.p
    w = run.stacked_weights(steps)
    # key frequencies: the neuron clusters of the last checkpoint, as Nanda et al. (and `grokinterp progress`)
    last = {k: v[-1:] for k, v in w.items()}
    _, acts = logits_and_neurons(last, task, spec)
    kf = cached_key_frequencies(run, steps[-1], last, acts[0].reshape(p, p, -1), THRESHOLD)
    keys, cut = kf.keys, kf.cut  # the cut: THRESHOLD, or chance at the last checkpoint where larger (small p)
    train, labels = torch.from_numpy(run.train_mask), task.all_labels()
    K = fa.n_frequencies(p)
    restricted, excluded, maps, sizes = [], [], [], []
    with tqdm(total=len(steps), unit="checkpoint", desc="explorer", disable=not progress) as bar:
        for part in chunks(w, chunk_size(task, spec.d_mlp)):
            logits, acts = logits_and_neurons(part, task, spec)
            r, e = restricted_and_excluded_loss(logits, labels, keys, train)
            restricted.append(r)
            excluded.append(e)
            shares = fa.neuron_frequency_shares(acts.reshape(len(logits), p, p, -1))
            for s in range(len(logits)):
                maps.append(fa.logit_fourier_norms_2d(logits[s].reshape(p, p, -1)).float())
                clusters, _ = fa.neuron_clusters(shares[s], cut)
                sizes.append([len(clusters.get(k, [])) for k in range(1, K + 1)])
            bar.update(len(logits))
    restricted, excluded = torch.cat(restricted).numpy(), torch.cat(excluded).numpy()
    m = run.metrics
    at = _at_checkpoints(m["step"], steps)
    phases = detect_phases(steps, m["train_acc"][at], m["test_acc"][at], sum_squared_weights(w, spec).numpy())
    panels = [_loss_and_accuracy(run, steps, phases)]

    # progress measures (Nanda et al. Fig. 7)
    x = np.asarray(steps)
    pm = Panel(_figure(f"Progress measures (key frequencies {', '.join(map(str, keys)) or 'none'})", 1, 2,
                       ("loss (log)", "Gini of Fourier norms")),
               ("In a grokking run the excluded loss (key directions removed, train pairs) rises while the test loss is "
                "still high: the circuit forms before the test loss falls; the restricted loss (only the key directions) "
                "falls first." if keys else "No neuron clusters at the last checkpoint, so no key frequencies: the restricted "
                "and excluded losses are not drawn.")
               + " In a grokking run the Gini of W_E and W_L rises as they become sparse in the Fourier basis.")
    every = np.arange(len(steps))
    losses = [("train", m["train_loss"][at], COLORS[0]), ("test", m["test_loss"][at], COLORS[1])]
    if keys:  # without key frequencies there is nothing to restrict to or exclude
        losses += [("restricted", restricted, COLORS[2]), ("excluded (train)", excluded, COLORS[3])]
    _curves(pm, steps, x, losses, every, 1, 1)
    _curves(pm, steps, x, [("Gini W_E", gini(fa.embedding_spectrum(w, p)).numpy(), COLORS[6]),
                           ("Gini W_L", gini(fa.logit_map_spectrum(w)).numpy(), COLORS[7])], every, 1, 2)
    pm.figure.update_traces(showlegend=True, selector=dict(mode="lines"))
    pm.figure.update_yaxes(type="log", title_text="loss (cross-entropy)", row=1, col=1)
    pm.figure.update_yaxes(range=[0, 1], title_text="Gini coefficient", row=1, col=2)
    pm.figure.update_xaxes(title_text="step")
    for col in (1, 2):
        add_phases(pm.figure, phases, 1, col, legend=False)
    panels.append(pm)

    # Fourier spectra of W_E and W_L (Nanda et al. Fig. 2 left)
    k = np.arange(1, K + 1)
    for title, norms, note in (
        ("Norms of W_E in the Fourier basis", fa.embedding_spectrum(w, p).numpy(),
         "In a grokking run the embedding starts spread over all frequencies and ends on a few key frequencies (cos and sin "
         "together)."),
        ("Norms of W_L = W_out W_U in the Fourier basis", fa.logit_map_spectrum(w).numpy(),
         "How neurons write to the answer logits, per frequency of the answer: in a grokking run, sparse on the key "
         "frequencies after grokking."),
    ):
        panel = Panel(_figure(title, xaxis_title="frequency k"), note)
        _bars(panel, [0], [("const", norms[:, :1], COLORS[8])], "norm")
        _bars(panel, k, [("cos k", norms[:, 1::2], COLORS[0]), ("sin k", norms[:, 2::2], COLORS[1])], "norm")
        panels.append(panel)

    # neuron clusters (Nanda et al. Fig. 5)
    panel = Panel(_figure(f"MLP neurons per frequency cluster (share >= {cut:.2f})", xaxis_title="frequency k"),
                  f"Neurons whose activations over (a, b) are at least {cut:.0%} one frequency ({kf.chance_text} at the "
                  "last checkpoint). Clusters form on the key frequencies during circuit formation in a grokking run."
                  + ("" if np.any(sizes) else " In this run no checkpoint has a cluster (2 or more neurons at the cut): the bars are empty."))
    _bars(panel, k, [("neurons", np.asarray(sizes, dtype=np.float32), COLORS[0])], "neurons")
    panel.figure.update_layout(showlegend=False)
    panels.append(panel)

    # logits in the 2-D Fourier basis (Nanda et al. Fig. 3)
    names = fa.basis_names(p)
    maps = torch.stack(maps).numpy()
    panel = Panel(_figure("Logits in the 2-D Fourier basis (norm over answers)", height=PANEL_HEIGHT + 120,
                          xaxis_title="b component", yaxis_title="a component"),
                  "After grokking the logits live in the 2 x 2 blocks {cos k, sin k} x {cos k, sin k} of the key "
                  "frequencies: cos(w(a + b - c)) expands into those products (colour scale per checkpoint).")
    panel.figure.add_trace(go.Heatmap(z=maps[0], x=names, y=names, colorscale="Blues", colorbar=dict(title="norm")))
    panel.updates.append((0, "z", maps))
    panel.figure.update_yaxes(autorange="reversed")
    panels.append(panel)

    # output vectors on the final key-frequency planes
    if keys:
        shown = keys[:4]
        U = w["unembed.W_U"].transpose(1, 2)
        panel = Panel(_figure("Output vectors (columns of W_U) on the final key-frequency planes", 1, len(shown),
                              [f"k = {k}" for k in shown], showlegend=False, width=2 * PANEL_WIDTH + 12),
                      "Each answer c projected on the plane where the last checkpoint's W_U carries frequency k (the "
                      "same plane at every checkpoint): the points move onto a circle, in the order of k c mod p (colour).")
        c = np.arange(p)
        for i, kk in enumerate(shown, start=1):
            xy = project(U, structured_plane(U[-1], frequency_projector(p, kk))).float().numpy()
            lim = float(np.abs(xy).max()) * 1.08 or 1.0
            panel.figure.add_trace(go.Scatter(x=xy[0, :, 0], y=xy[0, :, 1], mode="markers", text=[f"c = {v}" for v in c],
                                              hoverinfo="text", marker=dict(color=(kk * c) % p, colorscale="Phase", size=6)),
                                   row=1, col=i)
            panel.updates += [(len(panel.figure.data) - 1, "x", xy[:, :, 0]), (len(panel.figure.data) - 1, "y", xy[:, :, 1])]
            panel.figure.update_xaxes(range=[-lim, lim], showticklabels=False, row=1, col=i)
            panel.figure.update_yaxes(range=[-lim, lim], showticklabels=False, scaleanchor=f"x{i if i > 1 else ''}", row=1, col=i)
        panels.append(panel)
    return panels


# ---- groups ----------------------------------------------------------------------------------------


def _group_panels(run, steps, progress: bool) -> list[Panel]:
    from .analysis.cosets import SHUFFLES, averaging_matrices, coset_scores, shuffled_best_ratios
    from .analysis.representations import irrep_shares
    from .analysis.views import project, structured_plane

    group = run.task.group
    w = run.stacked_weights(steps, names=["embed.W_E", "unembed.W_U"])
    E, U = w["embed.W_E"][:, : group.n], w["unembed.W_U"].transpose(1, 2)
    panels = [_loss_and_accuracy(run, steps)]

    names = group.irrep_names
    panel = Panel(_figure("Share of W_E and W_U per irreducible representation", xaxis_title="irrep"),
                  "Chughtai et al.: the embeddings concentrate on a few irreps (often one) as the model generalises.")
    _bars(panel, names, [("W_E", irrep_shares(E, group).float().numpy(), COLORS[0]),
                         ("W_U", irrep_shares(U, group).float().numpy(), COLORS[1])], "share")
    panels.append(panel)

    cs = coset_scores(U, group)
    ranked = cs.ranked_classes(group)[:6]  # partition indices, one per subgroup class, best first at the end
    label = lambda part: f"{group.subgroups[part.subgroup].name} (class {group.subgroups[part.subgroup].class_id})"  # noqa: E731
    panel = Panel(_figure("Coset scores of W_U: the best subgroup classes at the end", xaxis_title="subgroup class"),
                  "1 - W / E_random[W] per coset partition (0: chance, 1: each coset collapsed to a point); the classes "
                  "ranked best at the last checkpoint (one partition each, the best of its conjugates and sides), followed "
                  "over training.")
    _bars(panel, [label(cs.partitions[i]) for i in ranked], [("score", cs.scores[:, ranked], COLORS[2])], "score")
    panel.figure.update_layout(showlegend=False)
    panels.append(panel)

    best = cs.best()
    ratio, threshold = float(cs.ratios[-1, cs.best_index()]), float(shuffled_best_ratios(U[-1:], group)[0])
    stands = (f"Its F ({ratio:.2f}) is above the best F of W_U's vectors shuffled over the elements (99% of {SHUFFLES} shuffles: "
              f"{threshold:.2f}): W_U is tied to these cosets; how tightly is the score, {float(cs.scores[-1, cs.best_index()]):.3f} "
              "(0: chance, 1: each coset a point), not the colours' look." if ratio > threshold else
              f"No coset structure stands out: its F ({ratio:.2f}) is within what W_U's vectors shuffled over the elements give "
              f"(99% of {SHUFFLES} shuffles: {threshold:.2f}), so the colours are the top of a ranking of noise.")
    xy = project(U, structured_plane(U[-1], averaging_matrices([best], group.n)[0])).float().numpy()
    lim = float(np.abs(xy).max()) * 1.08 or 1.0
    panel = Panel(_figure(f"Output vectors (W_U) coloured by the last checkpoint's top-ranked cosets: {label(best)}", showlegend=False),
                  "Each element's output vector on the plane that separates the last checkpoint's top-ranked cosets, "
                  "up to conjugacy and side (the same plane at every checkpoint). " + stands)
    panel.figure.add_trace(go.Scatter(x=xy[0, :, 0], y=xy[0, :, 1], mode="markers", text=run.task.element_names(), hoverinfo="text",
                                      marker=dict(color=best.labels, colorscale="Turbo", size=8)))
    panel.updates += [(0, "x", xy[:, :, 0]), (0, "y", xy[:, :, 1])]
    panel.figure.update_xaxes(range=[-lim, lim], showticklabels=False)
    panel.figure.update_yaxes(range=[-lim, lim], showticklabels=False, scaleanchor="x")
    panels.append(panel)
    return panels


# ---- sequence runs ---------------------------------------------------------------------------------


def _sequence_panels(run, steps) -> list[Panel]:
    from .analysis.phase_changes import phase_changes

    rows = read_metrics(run.path / "metrics.csv", fields=None)
    m = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    at = _at_checkpoints(m["step"], steps)
    panels = []
    for split in ("test", "train"):
        cols = [k for k in m if k.startswith(f"{split}_")]
        changes = phase_changes(m, f"{split}_")
        said = ", ".join(f"{k} {v:,}" for k, v in changes.items() if v is not None) or "none yet"
        panel = Panel(_figure(f"{run.name}: {split} loss per part (log)", xaxis_title="step", yaxis_type="log"),
                      f"One curve per answer digit / part; phase changes (a part's loss below 10% of its start, as "
                      f"`grokinterp phases`): {said}.")
        _curves(panel, steps, m["step"], [(k[len(split) + 1:], m[k], COLORS[i % len(COLORS)]) for i, k in enumerate(cols)], at)
        panels.append(panel)
    heads = [k for k in m if k.startswith("induction_head")]
    if heads:
        from .analysis.phase_changes import induction_formation_step
        from .report import CIRCUIT_THRESHOLD

        best = [k for k in m if k.startswith("induction_best")]
        curves = [(f"head {i}, offset 1", m[k], COLORS[i % len(COLORS)]) for i, k in enumerate(heads)]
        note = ("Attention from each token to the one after its previous occurrence (offset 1): a textbook induction head "
                "scores near 1.")
        if best:  # the score at each head's best offset, which `grokinterp phases` reads the circuit from
            curves += [(f"head {i}, best offset", m[k], COLORS[i % len(COLORS)]) for i, k in enumerate(best)]
            formed = induction_formation_step(m, CIRCUIT_THRESHOLD, prefix="induction_best")
            note += (f" At its best offset (the one it scores highest at; `grokinterp phases` names it) a head passes {CIRCUIT_THRESHOLD} "
                     + (f"first at step {formed:,}: the circuit `grokinterp phases` reports." if formed is not None
                        else "at no logged step: no circuit yet."))
        panel = Panel(_figure(f"{run.name}: induction score per head (last layer)", xaxis_title="step", yaxis_range=[0, 1.03]), note)
        _curves(panel, steps, m["step"], curves, at)
        panels.append(panel)
    return panels


# ---- the page --------------------------------------------------------------------------------------


def explorer_panels(run, steps: list[int], progress: bool = False) -> list[Panel]:
    """The panels that apply to the run at its checkpoints ``steps``: modular (full p x p table, odd p),
    group, or sequence runs; other tables get loss and accuracy."""
    if run.kind == "sequence":
        return _sequence_panels(run, steps)
    t = run.task
    if t.group is not None:
        return _group_panels(run, steps, progress)
    if t.is_modular and len(t) == t.p * t.p and t.p % 2:
        return _modular_panels(run, steps, progress)
    return [_loss_and_accuracy(run, steps)]


def _typed(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a, dtype=np.float32)
    return {"shape": list(a.shape), "bdata": base64.b64encode(a.tobytes()).decode()}


_SCRIPT = """
const D = JSON.parse(document.getElementById('explorer-data').textContent);
const CONFIG = {displaylogo: false, responsive: false};
function decode(u) {
  const s = atob(u.bdata), b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  u.values = new Float32Array(b.buffer);
  u.size = u.shape.slice(1).reduce((a, c) => a * c, 1);
}
function at(u, i) {
  const flat = u.values.subarray(i * u.size, (i + 1) * u.size);
  if (u.shape.length < 3) return flat;
  const c = u.shape[2];
  return Array.from({length: u.shape[1]}, (_, r) => flat.subarray(r * c, (r + 1) * c));
}
D.panels.forEach(p => p.updates.forEach(decode));
const slider = document.getElementById('step-slider'), label = document.getElementById('step-label');
function show(i) {
  const step = D.steps[i];
  label.textContent = 'step ' + step.toLocaleString('en') + '  (checkpoint ' + (i + 1) + ' of ' + D.steps.length + ')'
    + (D.logged && D.logged[i] !== step ? '; curve markers at step ' + D.logged[i].toLocaleString('en') + ' (the last logged before it)' : '');
  for (const p of D.panels) {
    const data = p.figure.data.map(t => Object.assign({}, t));
    for (const u of p.updates) data[u.trace][u.key] = at(u, i);
    const layout = Object.assign({}, p.figure.layout, {datarevision: i});
    if (p.cursor.length) layout.shapes = p.figure.layout.shapes.map((s, k) => p.cursor.includes(k) ? Object.assign({}, s, {x0: step, x1: step}) : s);
    Plotly.react(p.id, data, layout, CONFIG);
  }
}
slider.addEventListener('input', () => show(+slider.value));
let timer = null;
const play = document.getElementById('play');
play.addEventListener('click', () => {
  if (timer) { clearInterval(timer); timer = null; play.textContent = 'play'; return; }
  if (+slider.value >= D.steps.length - 1) slider.value = 0;
  play.textContent = 'pause';
  timer = setInterval(() => {
    if (+slider.value >= D.steps.length - 1) { play.click(); return; }
    slider.value = +slider.value + 1; show(+slider.value);
  }, 400);
});
show(+slider.value);
"""

_STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1340px; color: #222; }
header { position: sticky; top: 0; background: white; z-index: 10; padding: 8px 12px; border-bottom: 1px solid #ddd; }
h1 { font-size: 20px; margin: 4px 0; }
#controls { display: flex; align-items: center; gap: 12px; }
#step-slider { flex: 1; }
#step-label { font-variant-numeric: tabular-nums; min-width: 260px; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; padding: 12px; }
.note { font-size: 13px; color: #555; margin: 2px 8px 10px; }
"""


def explorer_html(run, progress: bool = False) -> str:
    """The whole page (plotly.js embedded once, no network needed) for every checkpoint of ``run``."""
    from plotly.offline import get_plotlyjs

    run.resolve_step(None)  # a run without checkpoints stops here, with what to do
    steps = run.steps
    panels = explorer_panels(run, steps, progress)
    what = run.record["config"]["task"] if run.kind == "sequence" else run.task.formula
    logged = next((p.logged.tolist() for p in panels if p.logged is not None), steps)  # every panel's curves: the one metrics.csv
    data = {"steps": steps, "logged": None if logged == steps else logged, "panels": [
        {"id": f"panel-{i}", "figure": json.loads(pio.to_json(p.figure, validate=False)), "cursor": p.cursor,
         "updates": [{"trace": t, "key": k, **_typed(v)} for t, k, v in p.updates]} for i, p in enumerate(panels)]}
    blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    cells = "\n".join(f"<div class='panel' style='width: {p.figure.layout.width}px'><div id='panel-{i}'></div>"
                      f"<p class='note'>{html.escape(p.note)}</p></div>"
                      for i, p in enumerate(panels))
    ticks = "".join(f"<option value='{i}'></option>" for i in range(len(steps)))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>grokinterp explorer: {html.escape(run.name)}</title>
<style>{_STYLE}</style>
<script>{get_plotlyjs()}</script></head>
<body>
<header><h1>{html.escape(run.name)}: {html.escape(what)}, {len(steps)} checkpoints</h1>
<div id="controls"><button id="play">play</button>
<input type="range" id="step-slider" min="0" max="{len(steps) - 1}" step="1" value="0" list="checkpoints">
<datalist id="checkpoints">{ticks}</datalist><span id="step-label"></span></div></header>
<div class="grid">
{cells}
</div>
<script type="application/json" id="explorer-data">{blob}</script>
<script>{_SCRIPT}</script>
</body></html>
"""


def inline(page: str, height: int = 1200):
    """The page in a Jupyter cell: an iframe that holds it (srcdoc), so its script runs on its own."""
    from IPython.display import HTML

    return HTML(f"<div><iframe srcdoc=\"{html.escape(page, quote=True)}\" style=\"width: 100%; height: {height}px; "
                "border: 1px solid #ddd\"></iframe></div>")

