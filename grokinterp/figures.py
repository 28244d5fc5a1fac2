"""Plotly figures of the analyses, one function per figure, in a shared paper-style theme.

Each function takes analysis results (numpy arrays, dataclasses) and returns a ``go.Figure``;
``save_figures`` / ``FigureWriter`` write them as interactive HTML and, where a Chrome/Chromium is found, as PNG.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# ---- the style: every figure goes through `style` (the template and the axis rules below) ------------

FONT = "Helvetica, Arial, sans-serif"
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]
PHASE_COLORS = {"memorisation": "rgba(31,119,180,0.12)", "circuit formation": "rgba(44,160,44,0.12)",
                "cleanup": "rgba(214,39,40,0.12)"}
WIDTH, HEIGHT, WIDE = 800, 500, 1000  # pixels of a plain figure, and of one with two panels or many bars

_AXIS = dict(showline=True, linecolor="black", ticks="outside", gridcolor="#eeeeee", zerolinecolor="#bbbbbb", mirror=False,
             automargin=True, title_font_size=15, tickfont_size=12, title_standoff=8)
TEMPLATE = go.layout.Template(
    layout=dict(
        font=dict(family=FONT, size=14, color="#222222"),
        title=dict(font_size=19, x=0.5, xanchor="center"),  # a <sup> subtitle: 13 px
        plot_bgcolor="white",
        paper_bgcolor="white",
        colorway=COLORS,
        xaxis=_AXIS,
        yaxis=_AXIS,
        legend=dict(bgcolor="rgba(255,255,255,0.8)", font_size=13),
        annotationdefaults=dict(font_size=15),  # subplot titles
        margin=dict(l=70, r=30, t=80, b=60),
        width=WIDTH,
        height=HEIGHT,
    )
)
LOG_AXIS = dict(exponentformat="power", showexponent="all", minorloglabels="none")  # 10^-6, not "1μ"; no "2", "5"
LINEAR_AXIS = dict(exponentformat="none", separatethousands=True)  # 25,000, not "25k" or 2.5x10^4


def style(fig: go.Figure) -> go.Figure:
    """Apply the template and the tick format per axis type (log axes: powers of ten); returns ``fig``."""
    fig.update_layout(template=TEMPLATE)
    fig.for_each_xaxis(lambda ax: ax.update(LOG_AXIS if ax.type == "log" else LINEAR_AXIS))
    fig.for_each_yaxis(lambda ax: ax.update(LOG_AXIS if ax.type == "log" else LINEAR_AXIS))
    return fig


def log_ticks(values, decades: int = 3) -> dict:
    """Axis settings for a log axis over ``values`` that spans at most ``decades``: ticks at 1, 2 and
    5 x 10^k with plain labels (0.5, 2, 20), or, within a factor of 5, at even steps (1.12, 1.14).
    Powers of ten alone would label one tick or none there, and plotly's minor log labels print 20
    as "2". Wider spans and constant values: {} (the powers of ten of ``style``)."""
    v = np.concatenate([np.asarray(x, float).ravel() for x in values]) if len(values) else np.zeros(0)
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v) or v.max() == v.min() or np.log10(v.max() / v.min()) > decades:
        return {}
    lo, hi = v.min(), v.max()
    if hi / lo >= 5:
        ticks = [m * 10.0**e for e in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1) for m in (1, 2, 5)]
        ticks = [t for t in ticks if lo / 5 <= t <= hi * 5]  # those past the data are cut by the axis range
        return dict(tickmode="array", tickvals=ticks, ticktext=[f"{t:,g}" for t in ticks])
    k = int(np.floor(np.log10(hi - lo)))  # the largest step of 1, 2, 5 x 10^j with at least 2 steps on the data
    step = next(s for s in (5 * 10.0**k, 2 * 10.0**k, 10.0**k, 5 * 10.0 ** (k - 1)) if (hi - lo) / s >= 2)
    digits = max(0, -int(np.floor(np.log10(step))))
    ticks = [round(i * step, digits + 3) for i in range(max(1, int(np.floor(lo / step)) - 1), int(np.ceil(hi / step)) + 2)]
    return dict(tickmode="array", tickvals=ticks, ticktext=[f"{t:,.{digits}f}" for t in ticks])


def _title(title: str, run: str | None = None, step: int | None = None) -> str:
    """``title`` with a subtitle naming the run and the step where given."""
    where = ", ".join(([f"run {run}"] if run else []) + ([f"step {step:,}"] if step is not None else []))
    return f"{title}<br><sup>{where}</sup>" if where else title


def _fig(title: str, **layout) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, **layout)
    return style(fig)


def _steps(steps, log_x: bool):
    """x values and the mask of points to draw: on a log axis step 0 is left out (not moved to step 1)."""
    s = np.asarray(steps)
    keep = s > 0 if log_x else np.ones(len(s), bool)
    return s[keep], keep


def _note_if_empty(fig: go.Figure, s: np.ndarray, log_x: bool) -> go.Figure:
    """Say so in the figure when no checkpoint is left to draw (only step 0, which a log axis leaves out)."""
    if not len(s):
        fig.add_annotation(text="no checkpoint after step 0: nothing to draw on a log-step axis" if log_x else "no checkpoints",
                           xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font=dict(size=16))
    return fig


def _fraction_axis(fig: go.Figure, curves: dict) -> go.Figure:
    """A sweep over one training fraction: centre it on a narrow axis (not -0.5..1.5) and keep the legend."""
    fracs = {f for c in curves.values() for f in c.fracs}
    if len(fracs) == 1:
        f = fracs.pop()
        fig.update_xaxes(range=[f - 0.1, f + 0.1], tickvals=[f])
    return fig.update_layout(showlegend=True)


def add_phases(fig: go.Figure, phases, row=None, col=None, legend: bool = True, log_x: bool = False) -> None:
    """Shade memorisation / circuit formation / cleanup (phases: a Phases or None), each a legend entry.

    On a log x axis the first phase starts at step 1 (step 0 would stretch the axis to 10^-inf).
    """
    if phases is None:
        return
    if row is None:
        xref, yref = "x", "y domain"
    else:  # the subplot's axes; the shapes are set in one go (fig.add_vrect costs ~50 ms a shape)
        sub = fig.get_subplot(row, col)
        xref, yref = sub.xaxis.plotly_name.replace("axis", ""), sub.yaxis.plotly_name.replace("axis", "") + " domain"
    shapes = [dict(type="rect", x0=x0, x1=x1, y0=0, y1=1, xref=xref, yref=yref, fillcolor=PHASE_COLORS[name], line_width=0,
                   layer="below", name=f"phase: {name}", legendgroup=name, showlegend=legend)
              for name, x0, x1 in phases.bands(start=1 if log_x else 0)]
    fig.update_layout(shapes=[*fig.layout.shapes, *shapes])


# ---- training curves -------------------------------------------------------------------------


def loss_curves(metrics: dict, phases=None, title: str = "Train and test loss", *, log_x: bool = False,
                run: str | None = None) -> go.Figure:
    """Train/test loss, log y, with the phases shaded (Nanda et al. Fig. 2 top: linear steps; ``log_x`` as Power Fig. 4)."""
    fig = _fig(_title(title, run), xaxis_title="step", yaxis_title="loss (cross-entropy)",
               xaxis_type="log" if log_x else "linear", yaxis_type="log")
    s, keep = _steps(metrics["step"], log_x)
    fig.add_trace(go.Scatter(x=s, y=metrics["train_loss"][keep], name="train", line=dict(color=COLORS[0])))
    fig.add_trace(go.Scatter(x=s, y=metrics["test_loss"][keep], name="test", line=dict(color=COLORS[1])))
    add_phases(fig, phases, log_x=log_x)
    return _note_if_empty(fig, s, log_x)


def accuracy_curves(metrics: dict, title: str = "Train and validation accuracy", *, log_x: bool = True,
                    run: str | None = None) -> go.Figure:
    """Power et al. Fig. 1 (left): accuracy against optimisation steps, log x (step 0 left out)."""
    fig = _fig(_title(title, run), xaxis_title="optimisation steps", yaxis_title="accuracy",
               xaxis_type="log" if log_x else "linear", yaxis_range=[0, 1.02])
    s, keep = _steps(metrics["step"], log_x)
    fig.add_trace(go.Scatter(x=s, y=metrics["train_acc"][keep], name="train", line=dict(color=COLORS[1])))
    fig.add_trace(go.Scatter(x=s, y=metrics["test_acc"][keep], name="validation", line=dict(color=COLORS[2])))
    return _note_if_empty(fig, s, log_x)


def validation_loss(metrics: dict, title: str = "Validation loss", *, log_x: bool = True, run: str | None = None) -> go.Figure:
    """Power et al. Fig. 4: validation loss against steps, log x (double descent where it occurs)."""
    fig = _fig(_title(title, run), xaxis_title="optimisation steps", yaxis_title="validation loss (cross-entropy)",
               xaxis_type="log" if log_x else "linear")
    s, keep = _steps(metrics["step"], log_x)
    fig.add_trace(go.Scatter(x=s, y=metrics["test_loss"][keep], name="validation", line=dict(color=COLORS[1])))
    return _note_if_empty(fig, s, log_x)


# ---- Fourier ---------------------------------------------------------------------------------


def embedding_fourier_norms(norms: np.ndarray, names: list[str], title: str = "Norms of the embedding in the Fourier basis",
                            *, run: str | None = None, step: int | None = None) -> go.Figure:
    """Bars per frequency k, cos k and sin k side by side and labelled (Nanda Fig. 2 left); k = 0 is the constant.

    norms: (p,) in the order of ``names`` (const, cos 1, sin 1, ..., cos K, sin K).
    """
    fig = _fig(_title(title, run, step), xaxis_title="frequency k", yaxis_title="norm", barmode="group", bargap=0.15, width=WIDE)
    K = (len(names) - 1) // 2
    k = np.arange(1, K + 1)
    fig.add_trace(go.Bar(x=[0], y=[norms[0]], name="const", marker_color=COLORS[8], hovertext=[names[0]]))
    fig.add_trace(go.Bar(x=k, y=norms[1::2], name="cos k", marker_color=COLORS[0], hovertext=names[1::2]))
    fig.add_trace(go.Bar(x=k, y=norms[2::2], name="sin k", marker_color=COLORS[1], hovertext=names[2::2]))
    fig.update_xaxes(dtick=5)
    return fig


def spectrum_over_training(steps: np.ndarray, energy: np.ndarray, title: str, *, run: str | None = None) -> go.Figure:
    """Heatmap of the norm per frequency k (rows, k = 1..K) over checkpoints (columns); energy: (checkpoints, K)."""
    fig = _fig(_title(title, run), xaxis_title="step", yaxis_title="frequency k")
    fig.add_trace(go.Heatmap(x=steps, y=np.arange(1, energy.shape[1] + 1), z=np.sqrt(energy).T, colorscale="Blues",
                             colorbar=dict(title="norm")))
    return fig


def neuron_clusters(shares: np.ndarray, clusters: dict[int, list[int]], threshold: float, *, run: str | None = None,
                    step: int | None = None) -> go.Figure:
    """Each neuron's share of variance per key frequency, neurons grouped by cluster (Nanda Fig. 5).

    shares: (neurons, K), the share of each neuron's variance explained by frequency k = 1..K.
    """
    fig = make_subplots(rows=1, cols=2, column_widths=[0.35, 0.65],
                        subplot_titles=("neurons per key frequency", "share of variance explained"))
    fig.update_layout(title=_title("MLP neurons clustered by frequency", run, step), width=WIDE, showlegend=False)
    ks = list(clusters)
    fig.add_trace(go.Bar(x=[str(k) for k in ks], y=[len(clusters[k]) for k in ks], marker_color=COLORS[0]), 1, 1)
    order = [n for k in ks for n in clusters[k]]
    if order:
        cols = [k - 1 for k in ks]
        fig.add_trace(go.Heatmap(z=shares[order][:, cols].T, y=[f"k = {k}" for k in ks], colorscale="Viridis",
                                 zmin=0, zmax=1, colorbar=dict(title="share")), 1, 2)
    else:  # say why both panels are empty: no neuron's largest share reaches the cut
        fig.add_annotation(text=f"no neuron clusters (largest share {shares.max():.2f} below cut {threshold})", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5, font=dict(size=16))
    fig.update_xaxes(title_text="key frequency k", type="category", row=1, col=1)
    fig.update_yaxes(title_text=f"neurons (share ≥ {threshold})", row=1, col=1)
    fig.update_xaxes(title_text="neuron (grouped by cluster)", row=1, col=2)
    fig.update_yaxes(title_text="key frequency", row=1, col=2)
    return style(fig)


def logit_fourier_2d(norms: np.ndarray, names: list[str], title: str = "Logits in the 2-D Fourier basis", *,
                     run: str | None = None, step: int | None = None) -> go.Figure:
    """Norm over answers of the 2-D Fourier coefficients of the logits over (a, b) (Nanda Fig. 3).

    norms: (p, p), rows the basis element of a, columns that of b, in the order of ``names``; every name is a tick.
    """
    cell = 11  # pixels per basis element: every name readable at 10 px
    side = max(500, cell * len(names))
    fig = _fig(_title(title, run, step), xaxis_title="b component", yaxis_title="a component",
               width=side + 250, height=side + 190, margin=dict(l=110, r=40, t=90, b=110))
    idx = np.arange(len(names))
    fig.add_trace(go.Heatmap(z=norms, x=idx, y=idx, colorscale="Blues", colorbar=dict(title="norm"),
                             customdata=np.array([[(a, b) for b in names] for a in names]),
                             hovertemplate="a: %{customdata[0]}<br>b: %{customdata[1]}<br>norm: %{z:.3g}<extra></extra>"))
    ticks = dict(tickmode="array", tickvals=idx, ticktext=list(names), tickfont_size=10, ticks="", showgrid=False, zeroline=False)
    fig.update_xaxes(**ticks, tickangle=-90, constrain="domain")
    fig.update_yaxes(**ticks, autorange="reversed", scaleanchor="x")
    return style(fig)


NO_KEYS = "no key frequencies: restricted/excluded loss need them"


def progress_panels(m, phases=None, *, run: str | None = None) -> go.Figure:
    """Excluded loss, restricted loss, test/restricted loss ratio, sum of squared weights, Gini (Nanda Fig. 7).

    m: ProgressMeasures (arrays over its ``steps``); phases: Phases or None, shaded in every panel.
    """
    titles = ("excluded loss", "restricted loss", "test loss / restricted loss", "sum of squared weights",
              "Gini coefficient of the Fourier norms")
    fig = make_subplots(rows=3, cols=2, subplot_titles=titles, vertical_spacing=0.1, horizontal_spacing=0.12,
                        specs=[[{}, {}], [{}, {}], [{}, None]])
    keys = f"key frequencies {', '.join(map(str, m.key_frequencies))}" if m.key_frequencies else NO_KEYS
    fig.update_layout(title=_title(f"Progress measures ({keys})", run), width=WIDE, height=950,
                      legend=dict(x=0.56, y=0.3, xanchor="left", yanchor="top", tracegroupgap=4))  # in the free sixth cell
    panels = [
        (1, 1, [("train", m.train_loss, COLORS[0]), ("test", m.test_loss, COLORS[1]), ("excluded (train)", m.excluded_loss, COLORS[3])],
         "log", "loss"),
        (1, 2, [("train", m.train_loss, COLORS[0]), ("test", m.test_loss, COLORS[1]), ("restricted", m.restricted_loss, COLORS[2])],
         "log", "loss"),
        (2, 1, [("test / restricted", m.test_loss / m.restricted_loss, COLORS[4])], "log", "ratio"),
        (2, 2, [("sum of squared weights", m.sum_squared_weights, COLORS[5])], "linear", "sum of squared weights"),
        (3, 1, [("Gini W_E", m.gini_embedding, COLORS[6]), ("Gini W_L", m.gini_logit_map, COLORS[7])], "linear", "Gini coefficient"),
    ]
    shown = set()
    for row, col, traces, ytype, ytitle in panels:
        for name, y, color in traces:
            fig.add_trace(go.Scatter(x=m.steps, y=y, name=name, line=dict(color=color), legendgroup=name,
                                     showlegend=name not in shown), row, col)
            shown.add(name)
        fig.update_yaxes(type=ytype, title_text=ytitle, row=row, col=col)
        add_phases(fig, phases, row, col, legend=(row, col) == (1, 1))
    if not m.key_frequencies:  # the ratio panel (x3) is empty; excluded/restricted show only train and test
        fig.add_annotation(text=NO_KEYS, xref="x3 domain", yref="y3 domain", x=0.5, y=0.5, showarrow=False)
    fig.update_xaxes(title_text="step", row=3, col=1)  # the lowest panel of each column
    fig.update_xaxes(title_text="step", row=2, col=2)
    return style(fig)


# ---- groups ----------------------------------------------------------------------------------


def tsne_modular(xy: np.ndarray, k: int = 8, title: str = "t-SNE of the output weights (x + y mod p)", *,
                 run: str | None = None, step: int | None = None) -> go.Figure:
    """Power et al. Fig. 3 (right): points coloured by x mod k, lines from x to x + k. xy: (p, 2)."""
    from .analysis.tsne import modular_lines

    colour, segments = modular_lines(len(xy), k)
    fig = _fig(_title(title, run, step), width=700, height=650, xaxis_title="t-SNE 1", yaxis_title="t-SNE 2")
    lx, ly = [], []
    for a, b in segments:
        lx += [xy[a, 0], xy[b, 0], None]
        ly += [xy[a, 1], xy[b, 1], None]
    fig.add_trace(go.Scatter(x=lx, y=ly, mode="lines", line=dict(color="#bbbbbb", width=1), name=f"x -> x+{k}", hoverinfo="skip"))
    for r in range(k):
        idx = np.flatnonzero(colour == r)
        fig.add_trace(go.Scatter(x=xy[idx, 0], y=xy[idx, 1], mode="markers+text", text=[str(i) for i in idx], textposition="top center",
                                 textfont_size=9, marker=dict(size=8, color=COLORS[r % len(COLORS)]), name=f"x mod {k} = {r}"))
    return fig


def tsne_group(xy: np.ndarray, labels: np.ndarray, names: list[str], title: str, *, subgroup: str | None = None,
               note: str | None = None, run: str | None = None, step: int | None = None) -> go.Figure:
    """Power et al. Fig. 3 (left): points coloured by the coset (of ``subgroup``, where named) they belong to.

    xy: (n, 2); labels: (n,) coset index 0..k-1, shown as "coset 1 of H" .. "coset k of H";
    ``note`` (e.g. "up to conjugacy and side") goes under the legend's title "cosets of H".
    """
    of = f" of {subgroup}" if subgroup else ""
    fig = _fig(_title(title, run, step), width=750, height=650, xaxis_title="t-SNE 1", yaxis_title="t-SNE 2",
               legend_title_text=f"cosets{of}" + (f"<br><sup>{note}</sup>" if note else ""))
    palette = COLORS + ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d"]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        fig.add_trace(go.Scatter(x=xy[idx, 0], y=xy[idx, 1], mode="markers", marker=dict(size=9, color=palette[c % len(palette)]),
                                 text=[names[i] for i in idx], hoverinfo="text", name=f"coset {c + 1}{of}"))
    return fig


def coset_scores_over_training(steps: np.ndarray, ratios: dict[str, np.ndarray], scores: dict[str, np.ndarray],
                               title: str = "Coset structure over training", *, run: str | None = None) -> go.Figure:
    """The ranking quantity, the variance ratio F (1 = random), of the best partition of each subgroup
    class over checkpoints, log scale; the hover adds its score (0 = chance, 1 = collapsed cosets)."""
    fig = _fig(_title(title, run), xaxis_title="step", yaxis_title="variance ratio F (random: 1)", yaxis_type="log", width=950)
    for name, y in ratios.items():
        fig.add_trace(go.Scatter(x=steps, y=y, name=name, mode="lines+markers", customdata=scores[name],
                                 hovertemplate="step %{x:,}<br>F %{y:.2f}<br>score %{customdata:.3f}"))
    fig.update_yaxes(**log_ticks(list(ratios.values())))
    return fig


def irrep_shares(names: list[str], shares: dict[str, np.ndarray], title: str = "Share explained per irreducible representation",
                 *, run: str | None = None, step: int | None = None) -> go.Figure:
    """Grouped bars: for each matrix (W_E, W_U, logits), the share of each irrep; shares: {matrix: (irreps,)}."""
    fig = _fig(_title(title, run, step), xaxis_title="irreducible representation", yaxis_title="share of variance",
               barmode="group")
    for i, (what, values) in enumerate(shares.items()):
        fig.add_trace(go.Bar(x=names, y=values, name=what, marker_color=COLORS[i % len(COLORS)]))
    return fig


def irrep_shares_over_training(steps: np.ndarray, names: list[str], shares: np.ndarray, title: str, *,
                               run: str | None = None) -> go.Figure:
    """The share of each irrep (columns of shares: (checkpoints, irreps)) over checkpoints."""
    fig = _fig(_title(title, run), xaxis_title="step", yaxis_title="share of variance")
    for i, name in enumerate(names):
        fig.add_trace(go.Scatter(x=steps, y=shares[:, i], name=name))
    return fig


# ---- sequence phase changes -------------------------------------------------------------------


def loss_groups(metrics: dict, prefix: str, title: str, log_y: bool = True, labels: dict[str, str] | None = None) -> go.Figure:
    """One line per loss group (e.g. each answer digit) against steps; ``labels``: legend name per group."""
    fig = _fig(title, xaxis_title="step", yaxis_title="loss (cross-entropy)", yaxis_type="log" if log_y else "linear")
    groups = [k for k in metrics if k.startswith(prefix)]
    for i, k in enumerate(groups):
        name = k[len(prefix):]
        fig.add_trace(go.Scatter(x=metrics["step"], y=metrics[k], name=(labels or {}).get(name, name),
                                 line=dict(color=COLORS[i % len(COLORS)])))
    if log_y:
        fig.update_yaxes(**log_ticks([metrics[k] for k in groups]))
    return fig


def train_vs_test(runs: dict[str, dict], title: str) -> go.Figure:
    """Mean train and test loss of several runs side by side (infinite vs finite data); the keys are the panel titles."""
    names = list(runs)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True)
    fig.update_layout(title=title, width=500 * len(names))
    for c, name in enumerate(names, start=1):
        m = runs[name]
        for split, color in (("train", COLORS[0]), ("test", COLORS[1])):
            cols = [v for k, v in m.items() if k.startswith(f"{split}_")]
            fig.add_trace(go.Scatter(x=m["step"], y=np.mean(cols, 0), name=split, line=dict(color=color), showlegend=c == 1), 1, c)
        fig.update_yaxes(type="log", row=1, col=c)
        fig.update_xaxes(title_text="step", row=1, col=c)
    fig.update_yaxes(title_text="mean loss (cross-entropy)", row=1, col=1)
    style(fig)
    drawn = [np.mean([v for k, v in m.items() if k.startswith(f"{split}_")], 0) for m in runs.values() for split in ("train", "test")]
    return fig.update_yaxes(**log_ticks(drawn))


def induction_scores(metrics: dict, title: str) -> go.Figure:
    """Per head: the textbook induction score (offset 1, solid) and, where logged, the best score over offsets (dashed)."""
    fig = _fig(title, xaxis_title="step", yaxis_title="induction score", yaxis_range=[0, 1.02])
    for i, k in enumerate(k for k in metrics if k.startswith("induction_head")):
        color = COLORS[i % len(COLORS)]
        fig.add_trace(go.Scatter(x=metrics["step"], y=metrics[k], name=f"head {i}, offset 1", line=dict(color=color)))
        if f"induction_best{i}" in metrics:
            offset = f" ({int(metrics[f'induction_offset{i}'][-1])} at the end)" if f"induction_offset{i}" in metrics else ""
            fig.add_trace(go.Scatter(x=metrics["step"], y=metrics[f"induction_best{i}"], name=f"head {i}, best offset{offset}",
                                     line=dict(color=color, dash="dash")))
    return fig


# ---- sweeps ----------------------------------------------------------------------------------


def steps_vs_fraction(curves: dict, title: str) -> go.Figure:
    """Power et al. Fig. 1 (centre): median steps until 99% validation accuracy vs training fraction,
    one line per setting (``sweep.median_steps_to_generalise``). Fractions whose median was not
    reached within the budget are triangles above the dashed budget line, labelled with how many
    seeds did get there."""
    budget = max((c.budget for c in curves.values()), default=1)
    fig = _fig(title, xaxis_title="training data fraction", yaxis_title="median steps to 99% validation accuracy", yaxis_type="log")
    fig.add_hline(y=budget, line=dict(color="#7f7f7f", dash="dash", width=1))
    fig.add_annotation(x=1, xref="paper", xanchor="right", y=np.log10(budget), yanchor="top", showarrow=False,  # log axis: log10 y
                       text=f"budget: {budget:,} steps", font=dict(size=11, color="#7f7f7f"))
    top = []
    for i, (name, c) in enumerate(curves.items()):
        color = COLORS[i % len(COLORS)]
        seeds = [f"{k}/{n} seeds reached 99%" for k, n in zip(c.reached, c.runs)]
        ok = [j for j, v in enumerate(c.values) if v is not None]
        fig.add_trace(go.Scatter(x=[c.fracs[j] for j in ok], y=[c.values[j] for j in ok], name=name, legendgroup=name,
                                 mode="lines+markers", line=dict(color=color), hovertext=[seeds[j] for j in ok]))
        missed = [j for j, v in enumerate(c.values) if v is None]
        if missed:
            y = budget * 1.35 * 1.25**i  # one row per setting, so markers at one fraction do not hide each other
            top.append(y)
            fig.add_trace(go.Scatter(x=[c.fracs[j] for j in missed], y=[y] * len(missed), name=name, legendgroup=name,
                                     showlegend=not ok,
                                     mode="markers+text", marker=dict(symbol="triangle-up", size=10, color=color),
                                     text=[f"{c.reached[j]}/{c.runs[j]}" for j in missed], textposition="middle right",
                                     textfont=dict(size=10, color=color), hovertext=[f"{name}: not reached ({seeds[j]})" for j in missed]))
    if top:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", marker=dict(symbol="triangle-up", size=10, color="#7f7f7f"),
                                 name="median not reached within the budget<br>(k/n: seeds that reached 99%)"))
    low = min([v for c in curves.values() for v in c.values if v is not None] + [budget])
    fig.update_yaxes(range=[np.log10(low) - 0.2, np.log10(max(top + [budget])) + 0.15], **log_ticks([low, budget, *top]))
    return _fraction_axis(fig, curves)


def accuracy_vs_fraction(curves: dict, title: str) -> go.Figure:
    """Power et al. Fig. 2: best validation accuracy within the budget vs training fraction, one
    line per setting (``sweep.best_accuracy``; mean over seeds). Lines often coincide (every setting
    at 1.0): each has its own marker, drawn smaller than the one before, so coinciding ones stay visible."""
    fig = _fig(title, xaxis_title="training data fraction", yaxis_title="best validation accuracy (mean over seeds)",
               yaxis_range=[0, 1.04])
    symbols = ("circle", "square", "diamond", "triangle-up", "x", "cross", "star", "triangle-down")
    for i, (name, c) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=c.fracs, y=c.values, name=name, mode="lines+markers", line=dict(color=COLORS[i % len(COLORS)]),
                                 marker=dict(symbol=symbols[i % len(symbols)], size=max(5, 15 - 2 * i)),
                                 hovertext=[f"mean of {n} seeds" for n in c.runs]))
    return _fraction_axis(fig, curves)


# ---- writing ---------------------------------------------------------------------------------

_png_warned = False
# shown by a figure that shares plotly.min.js when it is opened without it (copied alone), instead of a blank page
_NO_PLOTLY = ("<script>if (typeof Plotly === 'undefined') document.body.insertAdjacentHTML('afterbegin', "
              "'<p style=\"font-family: sans-serif\">This figure needs <code>plotly.min.js</code> from the folder it was "
              "written to: copy that file next to this one, or write the figure with <code>--self-contained</code>.</p>')"
              "</script>")


def write_html(fig: go.Figure, path: Path, self_contained: bool = True) -> None:
    """One figure as HTML that opens offline: plotly.js inside the file (about 4.8 MB), or, with
    ``self_contained=False``, a few KB that load ``plotly.min.js`` from the same folder (written there once)."""
    path = Path(path)
    if self_contained:
        fig.write_html(path, include_plotlyjs=True)
        return
    js = path.parent / "plotly.min.js"
    if not js.exists():
        from plotly.offline import get_plotlyjs

        js.write_text(get_plotlyjs(), encoding="utf-8")
    path.write_text(fig.to_html(include_plotlyjs="directory").replace("</body>", _NO_PLOTLY + "</body>"), encoding="utf-8")


PNG_TIMEOUT_S = 300  # the longest `FigureWriter.close` waits for the PNGs


def _browser_found() -> bool:
    """Whether kaleido's browser lookup (choreographer's: $BROWSER_PATH, the system, `plotly_get_chrome`) finds one."""
    try:
        from choreographer.browsers.chromium import Chromium
    except ImportError:
        return False
    return Chromium.find_browser(skip_local=False) is not None


class FigureWriter:
    """Writes figures as they are made: each HTML at once (see ``write_html``), and, where Chrome is
    found, each PNG on a background thread that keeps one Chromium open (through kaleido), so the
    rendering overlaps the analyses that make the next figures. ``close`` (or leaving the ``with``)
    waits for the PNGs; ``written`` lists every file written.

    ``self_contained`` False: the set shares one ``plotly.min.js`` in ``out``. Without a browser the
    PNGs are skipped with one note per process (on stderr with ``quiet``)."""

    def __init__(self, out: Path, png: bool = True, quiet: bool = False, self_contained: bool = False):
        import queue
        import threading

        self.out, self.quiet, self.self_contained = Path(out), quiet, self_contained
        self.out.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []
        self._pngs: queue.Queue | None = queue.Queue() if png else None
        self._thread = threading.Thread(target=self._render, daemon=True) if png else None
        self._failed: Exception | None = None

    def __enter__(self) -> FigureWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, figs: dict[str, go.Figure]) -> None:
        """Write ``<out>/<stem>.html`` for each figure now; queue its PNG."""
        for stem, fig in figs.items():
            path = self.out / f"{stem}.html"
            write_html(fig, path, self.self_contained)
            self.written.append(path)
        if self._pngs is not None and figs:
            # as JSON made here: kaleido's encoder, on the render thread, would import pandas for numpy
            # arrays, and an import racing the main thread's import of it fails ("partially initialized module")
            self._pngs.put([(self.out / f"{stem}.png", json.loads(fig.to_json()), fig.layout.width or WIDTH, fig.layout.height or HEIGHT)
                            for stem, fig in figs.items()])
            if self._thread.ident is None:  # the first PNGs start the thread
                self._thread.start()

    def close(self) -> list[Path]:
        global _png_warned
        if self._thread is not None and self._thread.ident is not None:
            self._pngs.put(None)
            self._thread.join(PNG_TIMEOUT_S)
            if self._thread.is_alive():  # a browser that hangs: the HTML is written, go on without the PNGs
                self._failed = TimeoutError(f"no PNGs after {PNG_TIMEOUT_S} s")
        self._thread = None
        if self._failed is not None and not _png_warned:
            _png_warned = True
            print(f"note: PNG export skipped ({type(self._failed).__name__}); HTML written. For PNGs install Chromium "
                  "(apt-get install chromium) or run `plotly_get_chrome`.", file=sys.stderr if self.quiet else sys.stdout)
        return self.written

    def _render(self) -> None:
        import asyncio

        try:
            asyncio.run(self._render_pngs())
        except Exception as e:  # closing the browser failed: say so, as for any other PNG failure
            self._failed = self._failed or e

    async def _render_pngs(self) -> None:
        """Render queued figures in one Chromium (kaleido's async API) until ``None`` arrives."""
        import asyncio
        import contextlib

        browser = None
        async with contextlib.AsyncExitStack() as stack:
            while (pngs := await asyncio.to_thread(self._pngs.get)) is not None:
                if self._failed is not None:
                    continue
                try:
                    if browser is None:
                        if not _browser_found():  # kaleido would wait for one forever
                            raise FileNotFoundError("no Chrome/Chromium found")
                        browser = await stack.enter_async_context(_kaleido_keeping_its_page()(n=1, mathjax=False))  # MathJax would come from a CDN
                    await browser.write_fig_from_object(
                        [{"fig": fig, "path": path, "opts": {"format": "png", "width": width, "height": height, "scale": 1}}
                         for path, fig, width, height in pngs], cancel_on_error=True)
                    self.written += [path for path, *_ in pngs]
                except Exception as e:  # no Chrome, or kaleido missing: HTML is still there
                    self._failed = e


def _kaleido_keeping_its_page():
    """kaleido.Kaleido that keeps its page loaded between figures. Kaleido reloads the page, plotly.js
    and all, after every figure (about 0.25 CPU-s each here); each figure is drawn afresh either way,
    and the PNGs are byte-identical without the reload (tests/test_figures.py). Overrides a private
    method: should kaleido rename it, the override goes unused and the reloads come back."""
    import kaleido

    class KaleidoKeepingItsPage(kaleido.Kaleido):
        async def _return_kaleido_tab(self, tab, *args, **kwargs):
            await self.tabs_ready.put(tab)

    return KaleidoKeepingItsPage


def save_figures(figs: dict[str, go.Figure], out: Path, png: bool = True, quiet: bool = False,
                 self_contained: bool | None = None) -> list[Path]:
    """Write each figure as ``<out>/<stem>.html`` and, where Chrome is found, ``<stem>.png``
    (``FigureWriter``). ``self_contained`` (default: only when there is one figure): each HTML carries
    plotly.js and renders anywhere offline; otherwise the set shares one ``plotly.min.js`` in ``out``."""
    with FigureWriter(out, png, quiet, len(figs) == 1 if self_contained is None else self_contained) as writer:
        writer.add(figs)
    return writer.written


# ---- census of seeds -------------------------------------------------------------------------


def census_bars(rows: list[dict], title: str) -> go.Figure:
    """Seeds that reached 99% test accuracy, per dominant irrep of W_U (left) and per best coset class
    (right), split by whether k-means recovers that class's cosets."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("dominant irrep of W_U (share > 50%)", "best coset class"),
                        horizontal_spacing=0.12)
    grokked = [r for r in rows if r["grokked_step"] is not None]
    fig.update_layout(title=f"{title}<br><sup>the {len(grokked)} of {len(rows)} seeds that reached 99% test accuracy</sup>",
                      barmode="stack", width=WIDE, height=HEIGHT, margin=dict(t=110))
    def irrep(r):
        return f"{r['irrep']} {r.get('irrep_partition', '')}".strip() if r["irrep_dominant"] else "no dominant irrep"

    for col, key in ((1, irrep), (2, lambda r: r["best_class"])):
        cats = sorted({key(r) for r in grokked}, key=lambda c: (-sum(key(r) == c for r in grokked), c))  # ties by name
        for verdict, color, name in ((True, COLORS[2], "k-means recovers the cosets"), (False, "#bbbbbb", "no coset clusters")):
            fig.add_trace(go.Bar(x=cats, y=[sum(key(r) == c and r["clusters_into_cosets"] == verdict for r in grokked) for c in cats],
                                 name=name, marker_color=color, showlegend=col == 1), row=1, col=col)
        fig.update_yaxes(title_text="seeds", row=1, col=col)
        fig.update_xaxes(title_text="irrep" if col == 1 else "subgroup class", row=1, col=col)
    return style(fig)
