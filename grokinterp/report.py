"""Compose a run, the analyses and the figures into what a command prints and draws.

Each ``*_report(run, ...)`` returns a ``Report``: a JSON-ready payload, summary lines for people,
and named plotly figures. The CLI prints and saves them; notebooks can call these too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .models import model_spec
from .runs import Run
from .store import RunError


@dataclass
class Report:
    payload: dict
    lines: list[str]
    figures: dict = field(default_factory=dict)


def _require_modular_grid(run: Run, what: str) -> None:
    t = run.task
    if not t.is_modular or len(t) != t.p * t.p or t.p % 2 == 0:
        raise RunError(f"`{what}` analyses modular tasks on the full p x p table with odd p; run {run.name} is {t.formula}")


def _fmt_freqs(ks) -> str:
    return ", ".join(map(str, ks)) if ks else "none"


def fourier_report(run: Run, step: int | None = None, threshold: float = 0.85) -> Report:
    """Key frequencies (three rules), their share of embedding, neurons and logits at one checkpoint."""
    from . import figures as F
    from .analysis import fourier as fa
    from .analysis.batched import logits_and_neurons

    _require_modular_grid(run, "fourier")
    step = run.resolve_step(step)
    p, spec = run.task.p, model_spec(run.config.model)
    w = run.stacked_weights([step])
    logits, acts = logits_and_neurons(w, run.task, spec)
    grid_acts = acts[0].reshape(p, p, -1)
    kf = fa.key_frequencies(w, grid_acts, p, threshold)
    keys = kf.from_neurons or kf.from_logit_map
    directions = fa.answer_directions(run.task.labels, p, keys)
    logit_share = float(fa.logit_variance_explained(logits, directions)[0])
    grid_logits = logits[0].reshape(p, p, -1)
    cosines = fa.ideal_logit_cosine(grid_logits, keys)
    names = fa.basis_names(p)
    emb_norms = fa.embedding_spectrum(w, p)[0].numpy()
    wl_norms = fa.logit_map_spectrum(w)[0].numpy()
    shares = fa.neuron_frequency_shares(grid_acts).numpy()
    payload = {
        "run": run.name, "step": step, "p": p,
        "key_frequencies": keys,
        "key_frequencies_neurons": kf.from_neurons,
        "key_frequencies_embedding": kf.from_embedding,
        "key_frequencies_logit_map": kf.from_logit_map,
        "rules_agree": kf.agree,
        "neuron_clusters": {str(k): v for k, v in kf.clusters.items()},
        "cluster_sizes": {str(k): len(v) for k, v in kf.clusters.items()},
        "unassigned_neurons": kf.unassigned,
        "neuron_variance_explained": kf.neuron_variance_explained,
        "embedding_energy_explained": kf.embedding_energy_explained,
        "logit_map_energy_explained": kf.logit_map_energy_explained,
        "logit_variance_explained": logit_share,
        "logit_cosine_cos_w_a_plus_b_minus_c": {str(k): v for k, v in cosines.items()},
        "embedding_component_norms": dict(zip(names, emb_norms.tolist())),
    }
    lines = [
        f"{run.name} at step {step} ({run.task.formula}):",
        f"  key frequencies (neuron clusters, share >= {threshold}): {_fmt_freqs(kf.from_neurons)}",
        f"  key frequencies from the W_E spectrum:                 {_fmt_freqs(kf.from_embedding)}",
        f"  key frequencies from the W_L = W_out W_U spectrum:     {_fmt_freqs(kf.from_logit_map)}"
        + ("   (all three rules agree)" if kf.agree else "   (the rules differ)"),
        "  neurons per cluster: " + (", ".join(f"{k}: {len(v)}" for k, v in kf.clusters.items()) or "none")
        + f"; unassigned: {kf.unassigned} of {shares.shape[0]}",
        f"  share explained by the key frequencies: embedding {kf.embedding_energy_explained:.1%}, "
        f"W_L {kf.logit_map_energy_explained:.1%}, MLP variance {kf.neuron_variance_explained:.1%}, "
        f"logit variance {logit_share:.1%}",
    ]
    steps = np.array(run.steps)
    all_w = run.stacked_weights(names=["embed.W_E"])
    figs = {
        "fourier_embedding": F.embedding_fourier_norms(emb_norms, names, f"Norms of W_E in the Fourier basis (step {step})"),
        "fourier_logit_map": F.embedding_fourier_norms(wl_norms, names, f"Norms of W_L = W_out W_U in the Fourier basis (step {step})"),
        "fourier_spectrum_over_training": F.spectrum_over_training(
            steps, fa.frequency_energy(fa.embedding_spectrum(all_w, p)).numpy(), "Embedding norm per frequency over training"),
        "neuron_clusters": F.neuron_clusters(shares, kf.clusters, threshold),
        "logits_fourier_2d": F.logit_fourier_2d(fa.logit_fourier_norms_2d(grid_logits).numpy(), names),
    }
    return Report(payload, lines, figs)


def progress_report(run: Run, key_freqs: list[int] | None = None, progress: bool = False) -> Report:
    """Progress measures over every checkpoint, phases, and the figures of Nanda et al. Fig. 2 and 7."""
    from . import figures as F
    from .analysis import fourier as fa
    from .analysis.batched import logits_and_neurons
    from .analysis.phases import detect_phases
    from .analysis.progress import progress_measures

    _require_modular_grid(run, "progress")
    p, spec = run.task.p, model_spec(run.config.model)
    steps = run.steps
    if key_freqs is None:  # from the last checkpoint, as Nanda et al. did
        w_last = run.stacked_weights([steps[-1]])
        _, acts = logits_and_neurons(w_last, run.task, spec)
        kf = fa.key_frequencies(w_last, acts[0].reshape(p, p, -1), p)
        key_freqs = kf.from_neurons or kf.from_logit_map
    weights, train_mask = run.stacked_weights(steps), run.train_mask
    from tqdm.auto import tqdm

    with tqdm(total=len(steps), unit="checkpoint", desc="progress measures", disable=not progress) as bar:
        m = progress_measures(weights, steps, run.task, spec, train_mask, key_freqs, progress=bar.update)
    ph = detect_phases(m.steps, m.train_acc, m.test_acc, m.sum_squared_weights)
    last = m.at(-1)
    payload = {"run": run.name, "phases": ph.as_dict(), "final": last, "measures": m.as_dict()}
    fmt = lambda s: "not reached" if s is None else f"{s:,}"  # noqa: E731
    peak = int(np.argmax(m.sum_squared_weights))
    lines = [
        f"{run.name}: {len(steps)} checkpoints to step {steps[-1]:,}; key frequencies {_fmt_freqs(key_freqs)}",
        f"  train acc >= 99% at step {fmt(ph.memorised_step)}; test acc >= 99% (grokked) at step {fmt(ph.grokked_step)}",
        f"  phases: memorisation 0-{fmt(ph.memorisation_end)}, circuit formation to {fmt(ph.cleanup_start)}, "
        f"cleanup to {fmt(ph.cleanup_end)}",
        f"  final: train loss {last['train_loss']:.3g}, test loss {last['test_loss']:.3g}, restricted {last['restricted_loss']:.3g}, "
        f"excluded {last['excluded_loss']:.3g}",
        f"  Gini W_E {m.gini_embedding[0]:.2f} -> {last['gini_embedding']:.2f}, W_L {m.gini_logit_map[0]:.2f} -> {last['gini_logit_map']:.2f}; "
        f"sum of squared weights peaks at step {int(m.steps[peak]):,} ({m.sum_squared_weights[peak]:.0f}) and ends at "
        f"{last['sum_squared_weights']:.0f}",
    ]
    metrics = {"step": m.steps, "train_loss": m.train_loss, "test_loss": m.test_loss,
               "train_acc": m.train_acc, "test_acc": m.test_acc}
    figs = {
        "loss_curves": F.loss_curves(metrics, ph, f"{run.name}: train and test loss"),
        "progress_measures": F.progress_panels(m, ph),
    }
    return Report(payload, lines, figs)
