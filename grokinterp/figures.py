"""Plotly figures of the analyses, one function per figure, in a shared paper-style theme.

Each function takes analysis results (numpy arrays, dataclasses) and returns a ``go.Figure``;
``save_figures`` writes them as interactive HTML and, where a Chrome/Chromium is found, as PNG.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]
PHASE_COLORS = {"memorisation": "rgba(31,119,180,0.08)", "circuit formation": "rgba(44,160,44,0.08)", "cleanup": "rgba(214,39,40,0.08)"}

TEMPLATE = go.layout.Template(
    layout=dict(
        font=dict(family="Helvetica, Arial, sans-serif", size=14),
        plot_bgcolor="white",
        paper_bgcolor="white",
        colorway=COLORS,
        xaxis=dict(showline=True, linecolor="black", ticks="outside", gridcolor="#eeeeee", mirror=False),
        yaxis=dict(showline=True, linecolor="black", ticks="outside", gridcolor="#eeeeee", mirror=False),
        legend=dict(bgcolor="rgba(255,255,255,0.7)"),
        margin=dict(l=70, r=30, t=60, b=60),
        width=800,
        height=500,
    )
)


def _fig(title: str, **layout) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(template=TEMPLATE, title=title, **layout)
    return fig


def add_phases(fig: go.Figure, phases, row=None, col=None) -> None:
    """Shade memorisation / circuit formation / cleanup (phases: a Phases or None)."""
    if phases is None:
        return
    b = [0, phases.memorisation_end, phases.cleanup_start, phases.cleanup_end]
    for (name, color), x0, x1 in zip(PHASE_COLORS.items(), b[:-1], b[1:]):
        if x0 is not None and x1 is not None and x1 > x0:
            label = dict(annotation_text=name, annotation_position="top left", annotation_font_size=10) if row is None else {}
            fig.add_vrect(x0=max(x0, 1), x1=x1, fillcolor=color, line_width=0, row=row, col=col, **label)


# ---- training curves -------------------------------------------------------------------------


def loss_curves(metrics: dict, phases=None, title: str = "Train and test loss") -> go.Figure:
    """Train/test loss on log axes with the phase boundaries (Nanda et al. Fig. 2 top; Power Fig. 4)."""
    fig = _fig(title, xaxis_title="step", yaxis_title="loss (cross-entropy)", xaxis_type="log", yaxis_type="log")
    s = np.maximum(metrics["step"], 1)
    fig.add_trace(go.Scatter(x=s, y=metrics["train_loss"], name="train", line=dict(color=COLORS[0])))
    fig.add_trace(go.Scatter(x=s, y=metrics["test_loss"], name="test", line=dict(color=COLORS[1])))
    add_phases(fig, phases)
    return fig


def accuracy_curves(metrics: dict, title: str = "Train and validation accuracy") -> go.Figure:
    """Power et al. Fig. 1 (left): accuracy against optimisation steps, log x."""
    fig = _fig(title, xaxis_title="optimisation steps", yaxis_title="accuracy", xaxis_type="log", yaxis_range=[0, 1.02])
    s = np.maximum(metrics["step"], 1)
    fig.add_trace(go.Scatter(x=s, y=metrics["train_acc"], name="train", line=dict(color=COLORS[1])))
    fig.add_trace(go.Scatter(x=s, y=metrics["test_acc"], name="validation", line=dict(color=COLORS[2])))
    return fig


def validation_loss(metrics: dict, title: str = "Validation loss") -> go.Figure:
    """Power et al. Fig. 4: validation loss against steps (double descent where it occurs)."""
    fig = _fig(title, xaxis_title="optimisation steps", yaxis_title="validation loss", xaxis_type="log")
    fig.add_trace(go.Scatter(x=np.maximum(metrics["step"], 1), y=metrics["test_loss"], name="validation", line=dict(color=COLORS[1])))
    return fig


# ---- Fourier ---------------------------------------------------------------------------------


def embedding_fourier_norms(norms: np.ndarray, names: list[str], title: str = "Norms of the embedding in the Fourier basis") -> go.Figure:
    """Bars per frequency k, cos k and sin k side by side and labelled (Nanda Fig. 2 left); k = 0 is the constant."""
    fig = _fig(title, xaxis_title="frequency k", yaxis_title="norm", barmode="group", bargap=0.15, width=1000)
    K = (len(names) - 1) // 2
    k = np.arange(1, K + 1)
    fig.add_trace(go.Bar(x=[0], y=[norms[0]], name="const", marker_color=COLORS[8], hovertext=[names[0]]))
    fig.add_trace(go.Bar(x=k, y=norms[1::2], name="cos k", marker_color=COLORS[0], hovertext=names[1::2]))
    fig.add_trace(go.Bar(x=k, y=norms[2::2], name="sin k", marker_color=COLORS[1], hovertext=names[2::2]))
    fig.update_xaxes(dtick=5)
    return fig


def spectrum_over_training(steps: np.ndarray, energy: np.ndarray, title: str) -> go.Figure:
    """Heatmap of norm per frequency (rows) over checkpoints (columns)."""
    fig = _fig(title, xaxis_title="step", yaxis_title="frequency k")
    fig.add_trace(go.Heatmap(x=steps, y=np.arange(1, energy.shape[1] + 1), z=np.sqrt(energy).T, colorscale="Blues",
                             colorbar=dict(title="norm")))
    return fig


def neuron_clusters(shares: np.ndarray, clusters: dict[int, list[int]], threshold: float) -> go.Figure:
    """Each neuron's best share of variance per frequency, grouped by cluster (Nanda Fig. 5)."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.35, 0.65],
                        subplot_titles=("neurons per key frequency", "share of variance explained"))
    fig.update_layout(template=TEMPLATE, title="MLP neurons clustered by frequency", width=1000, showlegend=False)
    ks = list(clusters)
    fig.add_trace(go.Bar(x=[str(k) for k in ks], y=[len(clusters[k]) for k in ks], marker_color=COLORS[0]), 1, 1)
    order = [n for k in ks for n in clusters[k]]
    if order:
        cols = [k - 1 for k in ks]
        fig.add_trace(go.Heatmap(z=shares[order][:, cols].T, y=[f"k={k}" for k in ks], colorscale="Viridis",
                                 zmin=0, zmax=1, colorbar=dict(title="share")), 1, 2)
    fig.update_xaxes(title_text="frequency", row=1, col=1)
    fig.update_yaxes(title_text=f"neurons (share >= {threshold})", row=1, col=1)
    fig.update_xaxes(title_text="neuron (grouped by cluster)", row=1, col=2)
    return fig


def logit_fourier_2d(norms: np.ndarray, names: list[str], title: str = "Logits in the 2-D Fourier basis") -> go.Figure:
    """Norm over answers of the 2-D Fourier coefficients of the logits over (a, b) (Nanda Fig. 3)."""
    fig = _fig(title, xaxis_title="b component", yaxis_title="a component", width=750, height=700)
    fig.add_trace(go.Heatmap(z=norms, x=names, y=names, colorscale="Blues", colorbar=dict(title="norm")))
    fig.update_yaxes(autorange="reversed", tickfont_size=7)
    fig.update_xaxes(tickfont_size=7)
    return fig


def progress_panels(m, phases=None) -> go.Figure:
    """Excluded loss, restricted loss, test/restricted loss ratio, sum of squared weights, Gini (Nanda Fig. 7)."""
    titles = ("excluded loss", "restricted loss", "test loss / restricted loss", "sum of squared weights",
              "Gini of Fourier norms", "")
    fig = make_subplots(rows=3, cols=2, subplot_titles=titles[:5], vertical_spacing=0.1)
    fig.update_layout(template=TEMPLATE, title=f"Progress measures (key frequencies {m.key_frequencies})", width=1000, height=950)
    s = np.maximum(m.steps, 1)
    panels = [
        (1, 1, [("train", m.train_loss, COLORS[0]), ("test", m.test_loss, COLORS[1]), ("excluded (train)", m.excluded_loss, COLORS[3])], "log"),
        (1, 2, [("train", m.train_loss, COLORS[0]), ("test", m.test_loss, COLORS[1]), ("restricted", m.restricted_loss, COLORS[2])], "log"),
        (2, 1, [("test / restricted", m.test_loss / m.restricted_loss, COLORS[4])], "log"),
        (2, 2, [("sum of squared weights", m.sum_squared_weights, COLORS[5])], "linear"),
        (3, 1, [("Gini W_E", m.gini_embedding, COLORS[6]), ("Gini W_L", m.gini_logit_map, COLORS[7])], "linear"),
    ]
    shown = set()
    for row, col, traces, ytype in panels:
        for name, y, color in traces:
            fig.add_trace(go.Scatter(x=s, y=y, name=name, line=dict(color=color), legendgroup=name,
                                     showlegend=name not in shown), row, col)
            shown.add(name)
        fig.update_yaxes(type=ytype, row=row, col=col)
        fig.update_xaxes(title_text="step", row=row, col=col)
        add_phases(fig, phases, row, col)
    return fig


# ---- groups ----------------------------------------------------------------------------------


def tsne_modular(xy: np.ndarray, k: int = 8, title: str = "t-SNE of the output weights (x + y mod p)") -> go.Figure:
    """Power et al. Fig. 3 (right): points coloured by x mod k, lines from x to x + k."""
    from .analysis.tsne import modular_lines

    colour, segments = modular_lines(len(xy), k)
    fig = _fig(title, width=700, height=650, xaxis_title="t-SNE 1", yaxis_title="t-SNE 2")
    lx, ly = [], []
    for a, b in segments:
        lx += [xy[a, 0], xy[b, 0], None]
        ly += [xy[a, 1], xy[b, 1], None]
    fig.add_trace(go.Scatter(x=lx, y=ly, mode="lines", line=dict(color="#bbbbbb", width=1), name=f"x -> x+{k}", hoverinfo="skip"))
    for r in range(k):
        idx = np.flatnonzero(colour == r)
        fig.add_trace(go.Scatter(x=xy[idx, 0], y=xy[idx, 1], mode="markers+text", text=[str(i) for i in idx], textposition="top center",
                                 textfont_size=8, marker=dict(size=8, color=COLORS[r % len(COLORS)]), name=f"x mod {k} = {r}"))
    return fig


def tsne_group(xy: np.ndarray, labels: np.ndarray, names: list[str], title: str) -> go.Figure:
    """Power et al. Fig. 3 (left): points coloured by the coset they belong to."""
    fig = _fig(title, width=750, height=650, xaxis_title="t-SNE 1", yaxis_title="t-SNE 2")
    palette = COLORS + ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d"]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        fig.add_trace(go.Scatter(x=xy[idx, 0], y=xy[idx, 1], mode="markers", marker=dict(size=9, color=palette[c % len(palette)]),
                                 text=[names[i] for i in idx], hoverinfo="text", name=f"coset {c}"))
    return fig


def coset_scores_over_training(steps: np.ndarray, series: dict[str, np.ndarray], title: str = "Coset structure over training") -> go.Figure:
    """Best coset score per subgroup class and side over checkpoints (0 = chance, 1 = collapsed cosets)."""
    fig = _fig(title, xaxis_title="step", yaxis_title="score (1 - W / E_random[W])", width=950)
    for name, y in series.items():
        fig.add_trace(go.Scatter(x=steps, y=y, name=name, mode="lines"))
    return fig


def irrep_shares(names: list[str], shares: dict[str, np.ndarray], title: str = "Share explained per irreducible representation") -> go.Figure:
    """Grouped bars: for each matrix (W_E, W_U, logits), the share of each irrep."""
    fig = _fig(title, xaxis_title="irrep", yaxis_title="share", barmode="group")
    for i, (what, values) in enumerate(shares.items()):
        fig.add_trace(go.Bar(x=names, y=values, name=what, marker_color=COLORS[i % len(COLORS)]))
    return fig


def irrep_shares_over_training(steps: np.ndarray, names: list[str], shares: np.ndarray, title: str) -> go.Figure:
    fig = _fig(title, xaxis_title="step", yaxis_title="share")
    for i, name in enumerate(names):
        fig.add_trace(go.Scatter(x=steps, y=shares[:, i], name=name))
    return fig


# ---- sequence phase changes -------------------------------------------------------------------


def loss_groups(metrics: dict, prefix: str, title: str, log_y: bool = True) -> go.Figure:
    """One line per loss group (e.g. each answer digit) against steps."""
    fig = _fig(title, xaxis_title="step", yaxis_title="loss", yaxis_type="log" if log_y else "linear")
    for i, k in enumerate(k for k in metrics if k.startswith(prefix)):
        fig.add_trace(go.Scatter(x=metrics["step"], y=metrics[k], name=k[len(prefix):], line=dict(color=COLORS[i % len(COLORS)])))
    return fig


def train_vs_test(runs: dict[str, dict], title: str) -> go.Figure:
    """Mean train and test loss of several runs side by side (infinite vs finite data)."""
    names = list(runs)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True)
    fig.update_layout(template=TEMPLATE, title=title, width=500 * len(names))
    for c, name in enumerate(names, start=1):
        m = runs[name]
        for split, color in (("train", COLORS[0]), ("test", COLORS[1])):
            cols = [v for k, v in m.items() if k.startswith(f"{split}_")]
            fig.add_trace(go.Scatter(x=m["step"], y=np.mean(cols, 0), name=split, line=dict(color=color), showlegend=c == 1), 1, c)
        fig.update_yaxes(type="log", row=1, col=c)
        fig.update_xaxes(title_text="step", row=1, col=c)
    return fig


def induction_scores(metrics: dict, title: str) -> go.Figure:
    """Per head: the textbook induction score (offset 1, solid) and, where logged, the best score over offsets (dashed)."""
    fig = _fig(title, xaxis_title="step", yaxis_title="induction score", yaxis_range=[0, 1.02])
    for i, k in enumerate(k for k in metrics if k.startswith("induction_head")):
        color = COLORS[i % len(COLORS)]
        fig.add_trace(go.Scatter(x=metrics["step"], y=metrics[k], name=f"head {i}, offset 1", line=dict(color=color)))
        if f"induction_best{i}" in metrics:
            fig.add_trace(go.Scatter(x=metrics["step"], y=metrics[f"induction_best{i}"], name=f"head {i}, best offset",
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
    fig.update_yaxes(range=[np.log10(low) - 0.2, np.log10(max(top + [budget])) + 0.15])
    return fig


def accuracy_vs_fraction(curves: dict, title: str) -> go.Figure:
    """Power et al. Fig. 2: best validation accuracy within the budget vs training fraction, one
    line per setting (``sweep.best_accuracy``; mean over seeds)."""
    fig = _fig(title, xaxis_title="training data fraction", yaxis_title="best validation accuracy", yaxis_range=[0, 1.02])
    for i, (name, c) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=c.fracs, y=c.values, name=name, mode="lines+markers", line=dict(color=COLORS[i % len(COLORS)]),
                                 hovertext=[f"mean of {n} seeds" for n in c.runs]))
    return fig


# ---- writing ---------------------------------------------------------------------------------

_png_warned = False


def save_figures(figs: dict[str, go.Figure], out: Path, png: bool = True, quiet: bool = False) -> list[Path]:
    """Write each figure as ``<out>/<stem>.html`` and, where Chrome is found, ``<stem>.png``."""
    global _png_warned
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, fig in figs.items():
        path = out / f"{stem}.html"
        fig.write_html(path, include_plotlyjs="directory")
        written.append(path)
    if png and figs:
        import plotly.io as pio

        pngs = [out / f"{stem}.png" for stem in figs]
        try:
            figures = list(figs.values())
            pio.write_images(figures, pngs, width=[f.layout.width or 800 for f in figures],
                             height=[f.layout.height or 500 for f in figures])
            written += pngs
        except Exception as e:  # no Chrome, or kaleido missing: HTML is still there
            if not _png_warned:
                _png_warned = True
                print(f"note: PNG export skipped ({type(e).__name__}); HTML written. For PNGs install Chromium "
                      "(apt-get install chromium) or run `plotly_get_chrome`.", file=sys.stderr if quiet else sys.stdout)
    return written
