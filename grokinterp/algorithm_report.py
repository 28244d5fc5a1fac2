"""``grokinterp algorithm``: clock or pizza (Zhong et al. 2023) for one checkpoint of an a + b mod p run.

Composes the key frequencies (``analysis.fourier``), both measures per key frequency and for the
whole model (``analysis.algorithm``), the verdict, and the paper's two diagnostic plots.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .analysis import algorithm as al
from .report import Report, _fmt_freqs, _require_modular_grid
from .runs import Run
from .store import RunError

MIN_ACCURACY = 0.9  # below this on the whole table the model does not compute a + b: no verdict


def logit_vs_distance_figure(res: al.AlgorithmResult, p: int, title: str, computes: bool = True) -> go.Figure:
    """Mean correct logit against (a - b) mod p, per isolated key frequency and for the whole model
    (Zhong et al. Fig. 2/3: flat for a Clock, |cos(w(a-b)/2)|-shaped for a Pizza). ``computes``: whether
    the model computes a + b; only then does the legend name each circle's algorithm."""
    from .figures import COLORS, _fig

    fig = _fig(title, xaxis_title="(a - b) mod p", yaxis_title="correct logit (mean over a + b)")
    d = np.arange(p)
    fig.add_trace(go.Scatter(x=d, y=res.overall.logit_by_distance, name="whole model", line=dict(color="black")))
    for i, (k, m) in enumerate(res.per_frequency.items()):
        kind = [m.verdict] if computes else []
        note = ", ".join(kind + (["minor"] if res.minor(k) else []))
        fig.add_trace(go.Scatter(x=d, y=m.logit_by_distance, name=f"frequency {k}" + (f" ({note})" if note else ""),
                                 line=dict(color=COLORS[i % len(COLORS)])))
    return fig


def gradient_cosine_figure(res: al.AlgorithmResult, title: str) -> go.Figure:
    """Histogram of cos(dQ/dE_a, dQ/dE_b) over the sampled triples (pizza: a spike at 1)."""
    from .figures import COLORS, _fig

    fig = _fig(title, xaxis_title="cosine of dQ_abc/dE_a and dQ_abc/dE_b", yaxis_title="triples", barmode="overlay")
    bins = dict(start=-1, end=1.0001, size=0.02)
    fig.add_trace(go.Histogram(x=res.overall.cosines, xbins=bins, name="whole model", marker_color="black", opacity=0.6))
    for i, (k, m) in enumerate(res.per_frequency.items()):
        fig.add_trace(go.Histogram(x=m.cosines, xbins=bins, name=f"frequency {k}", opacity=0.5,
                                   marker_color=COLORS[i % len(COLORS)]))
    fig.add_vline(x=al.SYMMETRIC_COSINE, line_dash="dot", annotation_text="0.99")
    return fig


def _measures_dict(m: al.AlgorithmMeasures, computes: bool) -> dict:
    """The measures; ``verdict`` is what they read (``measures_read``) only for a model that computes a + b."""
    return {"gradient_symmetricity": m.gradient_symmetricity, "symmetric_share": m.symmetric_share,
            "distance_irrelevance": m.distance_irrelevance, "measures_read": m.verdict,
            "verdict": m.verdict if computes else "undetermined"}


def _minor_line(res: al.AlgorithmResult) -> str:
    """What makes a circle minor: ``MIN_CIRCLE_SHARE``, or what the logits shuffled over the pairs put in a key circle."""
    null = f"99% quantile of {al.CIRCLE_SHUFFLES} shuffles of the logits over the pairs"
    if res.chance_share >= 1:
        return (f"  every circle is minor: the key circles together hold less logit variance than shuffled logits put in one "
                f"({null})")
    return (f"  a circle is minor below {res.min_share:.2%} of the key-frequency logit variance ({al.MIN_CIRCLE_SHARE:.1%}, or where "
            f"larger what shuffled logits put in a key circle: {res.chance_share:.2%}, {null})")


def algorithm_report(run: Run, step: int | None = None, n_triples: int = 2000, seed: int = 0) -> Report:
    """Clock or pizza at one checkpoint: key frequencies, both measures per frequency, verdict, plots."""
    from .analysis.batched import logits_and_neurons
    from .cache import key_frequencies as cached_key_frequencies

    _require_modular_grid(run, "algorithm")
    if run.task.name != "add":
        raise RunError(f"`algorithm` tells clock from pizza on a + b mod p; run {run.name} is {run.task.formula}")
    step = run.resolve_step(step)
    p, spec = run.task.p, run.config.spec
    rate = spec.attention_rate
    w = run.stacked_weights([step])
    logits, acts = logits_and_neurons(w, run.task, spec)
    accuracy = float((logits[0].argmax(-1) == run.task.all_labels()).double().mean())
    keys, source = [], None
    if acts is not None:
        kf = cached_key_frequencies(run, step, w, acts[0].reshape(p, p, -1))
        keys, source = (kf.from_neurons, "neuron clusters") if kf.from_neurons else (kf.from_logit_map, "W_L spectrum gap")
    f = al.model_logit_fn(w, run.task, spec)
    res = al.algorithm(f, w["embed.W_E"][0, :p], keys, n_triples, seed)
    verdict, reason = res.verdict, res.reason
    computes = accuracy >= MIN_ACCURACY
    if not computes:  # the rows' verdicts are then only what their measures read like
        verdict, reason = "undetermined", f"accuracy {accuracy:.1%} on the table: the model does not compute a + b"
    payload = {
        "run": run.name, "step": step, "p": p, "attention_rate": rate, "accuracy": accuracy,
        "key_frequencies": keys, "key_frequencies_from": source, "n_triples": n_triples, "seed": seed,
        "overall": _measures_dict(res.overall, computes),
        "per_frequency": {str(k): _measures_dict(m, computes) | {"logit_share": res.circle_shares[k], "minor": res.minor(k)}
                          for k, m in res.per_frequency.items()},
        "verdict": verdict, "reason": reason,
        "thresholds": {"symmetric_cosine": al.SYMMETRIC_COSINE, "pizza_symmetricity": al.PIZZA_SYMMETRICITY,
                       "pizza_distance_irrelevance": al.PIZZA_DISTANCE_IRRELEVANCE, "min_accuracy": MIN_ACCURACY,
                       "min_circle_share": al.MIN_CIRCLE_SHARE},
        "circle_share_shuffled_99th": res.chance_share, "circle_share_cut": res.min_share,
    }
    def row(label, m, share=None):
        share_text = f"{share:>12.2%}" if share is not None else f"{'':>12}"
        minor = " (minor circle: left out of the verdict)" if share is not None and share < res.min_share else ""
        # a model that does not compute a + b runs neither algorithm, whatever its measures read like
        kind = m.verdict if computes else f"none (its measures read {m.verdict})"
        return (f"  {label:<14} {m.gradient_symmetricity:>12.3f} {m.symmetric_share:>10.1%} "
                f"{m.distance_irrelevance:>12.3f} {share_text}  {kind}{minor}")

    lines = [
        f"{run.name} at step {step} ({run.task.formula}, attention rate {rate:g}, accuracy {accuracy:.1%}):",
        f"  key frequencies: {_fmt_freqs(keys)}" + (
            " (no circles found: nothing to classify)" if not keys else
            " (no neuron clusters: the frequencies above the largest gap of the W_L spectrum, a rule that always returns some)"
            if source == "W_L spectrum gap" else ""),
        f"  {'':<14} {'grad. symm.':>12} {'cos > 0.99':>10} {'dist. irrel.':>12} {'logit share':>12}  algorithm",
        *[row(f"frequency {k}", m, res.circle_shares[k]) for k, m in res.per_frequency.items()],
        row("whole model", res.overall),
        *([_minor_line(res)] if keys else []),
        f"  verdict: {verdict} ({reason})",
    ]
    figs = {
        "algorithm_logit_vs_distance": logit_vs_distance_figure(res, p, f"{run.name}: correct logit vs a - b (step {step})", computes),
        "algorithm_gradient_cosines": gradient_cosine_figure(res, f"{run.name}: gradient cosines over {n_triples} triples"),
    }
    return Report(payload, lines, figs)
