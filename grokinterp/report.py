"""Compose a run, the analyses and the figures into what a command prints and draws.

Each ``*_report(run, ...)`` returns a ``Report``: a JSON-ready payload, summary lines for people,
and named plotly figures. The CLI prints and saves them; notebooks can call these too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .runs import InMemoryRun, Run
from .store import RunError


@dataclass(repr=False)
class Report:
    payload: dict
    lines: list[str]
    figures: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        """The summary lines and the names of the figures and payload keys (the payload itself can be
        tens of thousands of characters: a notebook cell ending in ``gi.fourier(run)`` shows this)."""
        return "\n".join([*self.lines, f"figures: {', '.join(self.figures) or 'none'}",
                          f"payload keys: {', '.join(self.payload)}"])

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # IPython
        printer.text(repr(self))


def _require_modular_grid(run: Run, what: str) -> None:
    t = run.task
    if not t.is_modular or len(t) != t.p * t.p or t.p % 2 == 0:
        raise RunError(f"`{what}` analyses modular tasks on the full p x p table with odd p; run {run.name} is {t.formula}")


def _fmt_freqs(ks) -> str:
    return ", ".join(map(str, ks)) if ks else "none"


def fourier_report(run: Run, step: int | None = None, threshold: float = 0.85) -> Report:
    """Key frequencies (the neuron rule; the two spectrum gap rules beside it), their share of
    embedding, neurons and logits at one checkpoint. No neuron clusters: no key frequencies."""
    from . import figures as F
    from .analysis import fourier as fa
    from .analysis.batched import logits_and_neurons
    from .cache import key_frequencies as cached_key_frequencies

    _require_modular_grid(run, "fourier")
    step = run.resolve_step(step)
    p, spec = run.task.p, run.config.spec
    w = run.stacked_weights([step])
    logits, acts = logits_and_neurons(w, run.task, spec)
    grid_acts = acts[0].reshape(p, p, -1)
    kf = cached_key_frequencies(run, step, w, grid_acts, threshold)
    keys = kf.keys
    directions = fa.answer_directions(run.task.labels, p, keys)
    logit_share = float(fa.logit_variance_explained(logits, directions)[0])
    grid_logits = logits[0].reshape(p, p, -1)
    cosines = fa.ideal_logit_cosine(grid_logits, keys)
    names = fa.basis_names(p)
    emb_norms = fa.embedding_spectrum(w, p)[0].numpy()
    wl_norms = fa.logit_map_spectrum(w)[0].numpy()
    shares = kf.neuron_shares.numpy()
    payload = {
        "run": run.name, "step": step, "p": p,
        "key_frequencies": keys,
        "no_key_frequencies_because": kf.why_none,
        "key_frequencies_neurons": kf.from_neurons,
        "key_frequencies_embedding": kf.from_embedding,
        "key_frequencies_logit_map": kf.from_logit_map,
        "rules_agree": kf.agree,
        "largest_neuron_share": kf.top_neuron_share,
        "neuron_share_threshold": kf.threshold,
        "relabelled_largest_share_99th": kf.chance_share,
        "neuron_share_cut": kf.cut,
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
    lines = [f"{run.name} at step {step:,} ({run.task.formula}):"]
    if keys:
        lines += [
            f"  key frequencies (neuron clusters, share >= {kf.cut:.2f}): {_fmt_freqs(keys)}",
            f"    ({kf.chance_text})",
            f"  key frequencies from the W_E spectrum:                 {_fmt_freqs(kf.from_embedding)}",
            f"  key frequencies from the W_L = W_out W_U spectrum:     {_fmt_freqs(kf.from_logit_map)}"
            + ("   (all three rules agree)" if kf.agree else "   (the rules differ)"),
            "  neurons per cluster: " + ", ".join(f"{k}: {len(v)}" for k, v in kf.clusters.items())
            + f"; unassigned: {kf.unassigned} of {shares.shape[0]}",
            f"  share explained by the key frequencies: embedding {kf.embedding_energy_explained:.1%}, "
            f"W_L {kf.logit_map_energy_explained:.1%}, MLP variance {kf.neuron_variance_explained:.1%}, "
            f"logit variance {logit_share:.1%}",
        ]
    else:
        lines += [
            f"  key frequencies: none ({kf.why_none})",
            f"  the largest-gap frequencies of the W_E spectrum ({_fmt_freqs(kf.from_embedding)}) and of the W_L spectrum "
            f"({_fmt_freqs(kf.from_logit_map)}) are not key frequencies here: the gap rule always returns some",
        ]
    steps = np.array(run.steps)
    all_w = run.stacked_weights(names=["embed.W_E"])
    figs = {
        "fourier_embedding": F.embedding_fourier_norms(emb_norms, names, "Norms of W_E in the Fourier basis", run=run.name, step=step),
        "fourier_logit_map": F.embedding_fourier_norms(wl_norms, names, "Norms of W_L = W_out W_U in the Fourier basis",
                                                       run=run.name, step=step),
        "fourier_spectrum_over_training": F.spectrum_over_training(
            steps, fa.frequency_energy(fa.embedding_spectrum(all_w, p)).numpy(), "Embedding norm per frequency over training",
            run=run.name),
        "neuron_clusters": F.neuron_clusters(shares, kf.clusters, round(kf.cut, 2), run=run.name, step=step),
        "logits_fourier_2d": F.logit_fourier_2d(fa.logit_fourier_norms_2d(grid_logits).numpy(), names, run=run.name, step=step),
    }
    return Report(payload, lines, figs)


def progress_report(run: Run, key_freqs: list[int] | None = None, progress: bool = False) -> Report:
    """Progress measures over every checkpoint, phases, and the figures of Nanda et al. Fig. 2 and 7."""
    from . import figures as F
    from .analysis.batched import logits_and_neurons
    from .analysis.phases import detect_phases
    from .cache import key_frequencies as cached_key_frequencies
    from .cache import progress_measures

    _require_modular_grid(run, "progress")
    p, spec = run.task.p, run.config.spec
    steps = run.steps
    _ = run.train_mask  # a corrupt split.json, and below a corrupt checkpoint header, fail before anything is computed or cached
    for s in steps:
        run.weights(s, names=[])
    why_none, given = None, key_freqs
    if key_freqs is None:  # from the last checkpoint, as Nanda et al. did
        w_last = run.stacked_weights([steps[-1]])
        _, acts = logits_and_neurons(w_last, run.task, spec)
        kf = cached_key_frequencies(run, steps[-1], w_last, acts[0].reshape(p, p, -1))
        key_freqs, why_none = kf.keys, kf.why_none
    from tqdm.auto import tqdm

    with tqdm(total=len(steps), unit="checkpoint", desc="progress measures", disable=not progress) as bar:
        m = progress_measures(run, key_freqs, steps, progress=bar.update)  # cached per checkpoint
    ph = detect_phases(m.steps, m.train_acc, m.test_acc, m.sum_squared_weights)
    last = m.at(-1)
    grok = grokking_steps(run)
    payload = {"run": run.name, "key_frequencies": list(key_freqs), "no_key_frequencies_because": why_none,
               "grokking": grok, "phases": ph.as_dict(), "final": last, "measures": m.as_dict()}
    peak = int(np.argmax(m.sum_squared_weights))
    gini = lambda name: f"{getattr(m, name)[0]:.3f} -> {last[name]:.3f}"  # noqa: E731
    if key_freqs:
        source = " (from the last checkpoint's neuron clusters)" if given is None else " (given)"
        head = f"key frequencies {_fmt_freqs(key_freqs)}{source}"
        losses = f", restricted {last['restricted_loss']:.3g}, excluded {last['excluded_loss']:.3g}"
    else:
        head = f"no key frequencies at the last checkpoint ({why_none})"
        losses = "; restricted and excluded loss not computed: they need key frequencies (pass --freqs K1,K2,...)"
    lines = [
        f"{run.name}: {len(steps)} checkpoints to step {steps[-1]:,}; {head}",
        f"  {_grokking_text(grok)}",
        f"  at the checkpoints: train acc >= 99% {_first_at(ph.memorised_step)}, test acc >= 99% {_first_at(ph.grokked_step)}",
        f"  {_phases_text(ph)}",
        *_small_test_set_lines(len(run.test_idx)),
        f"  final: train loss {last['train_loss']:.3g}, test loss {last['test_loss']:.3g}{losses}",
        f"  Gini of the Fourier norms, first -> last checkpoint: over the {p} components W_E {gini('gini_embedding')}, "
        f"W_L {gini('gini_logit_map')}; over the {(p - 1) // 2} frequencies W_E {gini('gini_embedding_per_frequency')}, "
        f"W_L {gini('gini_logit_map_per_frequency')}",
        f"  sum of squared weights peaks at step {int(m.steps[peak]):,} ({m.sum_squared_weights[peak]:,.0f}) and ends at "
        f"{last['sum_squared_weights']:,.0f}",
    ]
    metrics = {"step": m.steps, "train_loss": m.train_loss, "test_loss": m.test_loss,
               "train_acc": m.train_acc, "test_acc": m.test_acc}
    figs = {
        "loss_curves": F.loss_curves(metrics, ph, "Train and test loss", run=run.name),
        "progress_measures": F.progress_panels(m, ph, run=run.name),
    }
    return Report(payload, lines, figs)


# ---- group tasks -------------------------------------------------------------------------------


def _require_group(run: Run, what: str):
    if run.task.group is None:
        raise RunError(f"`{what}` needs a group task (s5_mul, ...); run {run.name} is {run.task.formula}")
    return run.task.group


def _irrep_labels(group) -> list[str]:
    """``group.irrep_names``, for S_n with each irrep's partition beside it ('dim5a (3,2)')."""
    from .groups import partition_name

    parts = group.irrep_partitions
    return [f"{n} {partition_name(lam)}" for n, lam in zip(group.irrep_names, parts)] if parts else list(group.irrep_names)


def _class_label(group, part) -> str:
    h = group.subgroups[part.subgroup]
    return f"{h.name} (order {h.order}, class {h.class_id}, {group.n // h.order} cosets)"


def _identified_note(group, cs, ident, names) -> str:
    """How far the data single out the best partition (see ``analysis.cosets.identify_best``)."""
    part = cs.partitions[ident.candidates[0]]
    if not ident.stands_out:
        return "does not stand out of shuffled rows"
    if len(ident.candidates) == 1:
        return "normal: one partition"
    if ident.identified:
        return f"the {part.side} cosets of <{', '.join(names[g] for g in group.subgroups[part.subgroup].generators)}>"
    return "up to conjugacy and side"


def _identified_label(group, cs, ident, names) -> str:
    """The best partition's class, with ``_identified_note``."""
    label, note = _class_label(group, cs.partitions[ident.candidates[0]]), _identified_note(group, cs, ident, names)
    if len(ident.candidates) == 1 or not ident.stands_out:
        return f"{label}, {note}"
    return f"{label}: {note}" if ident.identified else f"{label} {note}"


def _identification_line(group, cs, ident) -> str:
    from .analysis.cosets import MARGIN_SIGMAS

    n = len(ident.candidates)
    if not ident.stands_out:
        return "  conjugate and side not asked for: no coset structure stands out, so there is nothing to identify"
    if n == 1:
        return "  its left and right cosets are one partition (a normal subgroup): nothing to tell apart"
    lo, hi = ident.scores.min(), ident.scores.max()
    spread = f"the {n} partitions of its class (conjugates x sides) score {lo:.4f}-{hi:.4f}, random spread +-{ident.noise:.4f}"
    lead = f"the best leads the runner-up by {ident.margin:.4f} ({ident.margin / max(ident.noise, 1e-12):.1f} spreads"
    if ident.identified:
        return f"  conjugate and side identified: {spread}; {lead}, above {MARGIN_SIGMAS:g})"
    return (f"  conjugate and side cannot be told apart: {spread}; {lead}, not above {MARGIN_SIGMAS:g}) "
            "(one coset gH is also the right coset (gHg^-1)g)")


def _structure_line(matrix: str, ratio: float, threshold: float, score: float) -> str:
    """Whether the best partition's F stands out of ``threshold``, the 99% quantile of the best F of the matrix's
    vectors shuffled over the elements (``analysis.cosets.shuffled_best_ratios``): the only claim of coset
    structure a report makes; how tight its cosets are is the ``score``, not the test."""
    from .analysis.cosets import SHUFFLES

    of = (f"the best F of {matrix}'s vectors (one per element) shuffled over the elements (99% quantile of {SHUFFLES} "
          f"shuffles: {threshold:.2f})")
    if ratio > threshold:
        return (f"  the best partition stands out: F {ratio:.2f} is above {of}; how tight its cosets are is the score, "
                f"{score:.3f} (0: random, 1: each coset a point)")
    return f"  no coset structure stands out: F {ratio:.2f} is within {of}, so the best partition is only the top of a ranking of noise"


def grokking_steps(run: Run) -> dict:
    """Test acc >= 99%: first logged step (metrics.csv, or the metrics of a run in memory: ``logged_in``), the
    logging interval there, and the first checkpoint at or after it (what checkpoint-based analyses can see)."""
    from .analysis.phases import first_step

    m = run.metrics
    logged = first_step(m["step"], m["test_acc"] >= 0.99)
    at = np.flatnonzero(m["step"] == logged) if logged is not None else []
    every = int(logged - m["step"][at[0] - 1]) if len(at) and at[0] > 0 else None
    ckpt = next((s for s in run.steps if s >= logged), None) if logged is not None else None
    return {"logged_step": logged, "logged_every": every, "first_checkpoint_at_or_after": ckpt,
            "logged_in": "the run's metrics, in memory" if isinstance(run, InMemoryRun) else "metrics.csv"}


def _small_test_set_lines(n_test: int) -> list[str]:
    """A caveat where the held-out pairs are too few for a percentage: below 100, one pair moves test accuracy
    by more than 1%, and 99% means every pair right."""
    if n_test >= 100:
        return []
    return [f"  the test set is only {n_test} pair{'s' if n_test > 1 else ''}: one pair moves test accuracy by {1 / n_test:.1%}; "
            f"99% means all {n_test} right, and 50% means {-(-n_test // 2)}"]


def _phases_text(ph) -> str:
    """The phases line: the three phases where the rules found their boundaries, else what was not reached."""
    if ph.memorised_step is None:
        return "phases: none: train accuracy never reached 99% at a checkpoint (no memorisation to start from)"
    if ph.memorisation_end is None and ph.cleanup_start is None:
        return (f"phases: memorisation from step 0, not ended by the last checkpoint: train accuracy reached 99% at step "
                f"{ph.memorised_step:,}, test accuracy never passed 50%, and the sum of squared weights is largest at the last "
                "checkpoint (still growing)")
    if ph.memorisation_end is None:
        when = ("at the same checkpoint as train accuracy reached 99%" if ph.cleanup_start == ph.memorised_step else
                f"before train accuracy reached 99% (step {ph.memorised_step:,})")
        return (f"phases: not separable: test accuracy passed 50% (step {ph.cleanup_start:,}) {when}, so the run "
                "generalised while it was still fitting")
    reached = lambda s: f"{s:,}" if s is not None else "(not reached by the last checkpoint)"  # noqa: E731
    return (f"phases: memorisation 0-{ph.memorisation_end:,}, circuit formation to {reached(ph.cleanup_start)}, "
            f"cleanup to {reached(ph.cleanup_end)}")


def _first_at(s) -> str:
    return "at none of them" if s is None else f"first at {s:,}"


def _fmt_step(s) -> str:
    return "never" if s is None else f"{s:,}"


def _grokking_text(g: dict) -> str:
    if g["logged_step"] is None:
        return f"test acc >= 99% never logged ({g['logged_in']})"
    every = f", every {g['logged_every']:,} steps there" if g["logged_every"] else ""
    return (f"test acc >= 99% first logged at step {g['logged_step']:,} ({g['logged_in']}{every}); "
            f"first checkpoint at/after it: {_fmt_step(g['first_checkpoint_at_or_after'])}")


def _steps_text(steps: list[int], selected: list[int]) -> str:
    """The selected checkpoints as ranges of consecutive ones: '1,000-6,500' or '20,000, 60,000-100,000'."""
    flags = ["x" if s in selected else "" for s in steps]
    return ", ".join(part[:-2] for part in _runs_text(steps, flags).split(", ") if part.endswith(" x"))


def _runs_text(steps: list[int], values: list) -> str:
    """'0-100 F20, 178 D6, 500-15,000 A5': consecutive checkpoints with one value joined."""
    out, i = [], 0
    while i < len(steps):
        j = i
        while j + 1 < len(steps) and values[j + 1] == values[i]:
            j += 1
        out.append((f"{steps[i]:,}" if i == j else f"{steps[i]:,}-{steps[j]:,}") + f" {values[i]}")
        i = j + 1
    return ", ".join(out)


def _formation_vs_grokking(formed, steps, grok) -> str:
    """How the first checkpoint with the structure relates to the first logged 99% test accuracy."""
    if formed is None:
        return "never recovered at a saved checkpoint"
    i = list(steps).index(formed)
    prev = int(steps[i - 1]) if i > 0 else None
    text = f"first recovered at checkpoint {formed:,}" + (f" (not at {prev:,})" if prev is not None else "")
    if grok is None:
        return text + "; the run never reached 99% test accuracy"
    if formed < grok:
        return text + f", before test acc reached 99% (step {grok:,})"
    if formed == grok:
        return text + ", the step at which test acc first reached 99%"
    if prev is not None and prev < grok:
        return text + (f"; test acc reached 99% at step {grok:,}, between these checkpoints, so which came first "
                       "cannot be told at this checkpoint spacing")
    return text + f", after test acc reached 99% (step {grok:,})"


def _gone_by_the_end(recovered, steps) -> str:
    """Where the clusters were recovered at some checkpoints but not at the last: the structure did not last."""
    if not recovered or recovered[-1] == steps[-1]:
        return ""
    return f"; none after checkpoint {recovered[-1]:,}, so not at the last ({steps[-1]:,})"


def tsne_report(run: Run, step: int | None = None, seed: int = 0, k: int = 8) -> Report:
    """Power et al. Fig. 3: t-SNE of the output weights, coloured by cosets (groups) or x mod k (modular)."""
    from . import figures as F
    from .analysis.cosets import coset_scores, identify_best, random_partition_scores, shuffled_best_ratios
    from .analysis.tsne import output_vectors, tsne

    step = run.resolve_step(step)
    w = run.stacked_weights([step], names=["unembed.W_U"])
    X = output_vectors(w)
    xy = tsne(X, seed)
    payload = {"run": run.name, "step": step, "seed": seed, "points": xy}
    if run.task.group is None:
        from .analysis.fourier import frequency_shares, shuffled_largest_share

        p = run.task.p
        shares = frequency_shares(X).numpy()
        top = [int(i) for i in np.argsort(-shares)[:4]]
        f1 = top[0] + 1
        shuffled_top = shuffled_largest_share(X, seed=seed)  # does the largest share stand out of shuffled rows'?
        inverse = pow(f1, -1, p)
        stands_out = bool(shares[f1 - 1] > shuffled_top)
        standing = [int(i) + 1 for i in np.argsort(-shares) if shares[i] > shuffled_top]
        payload.update(frequency_shares={int(i) + 1: float(shares[i]) for i in np.argsort(-shares)},
                       largest_share_shuffled_99th=shuffled_top, frequency_stands_out=stands_out, frequencies_standing_out=standing,
                       circle_step=min(inverse, p - inverse) if stands_out else None)  # x -> x+k and x -> x-k are the two neighbours
        lines = [f"{run.name} at step {step:,}: t-SNE of the {run.task.n} output vectors, coloured by x mod {k} with lines x -> x+{k}",
                 "  output vectors per frequency: " + ", ".join(f"{i + 1}: {shares[i]:.0%}" for i in top)
                 + " (each frequency's share of W_U's energy over x; one that holds most of it puts the output vectors on a circle)"]
        if stands_out:
            several = (f"; they lie on {len(standing)} circles at once, so the t-SNE need not show one ring" if len(standing) > 1
                       else "; the t-SNE can show its circle as a ring")
            lines.append(f"  frequencies standing out: {_fmt_freqs(standing)} (share above {shuffled_top:.1%}, the 99th percentile of the "
                         f"largest share when the output vectors (W_U's columns) are shuffled over x, 200 shuffles){several}")
            lines.append(f"  neighbours on the circle of frequency {f1} (the largest share) differ by {payload['circle_step']} "
                         f"(--k {payload['circle_step']} joins them)")
        else:
            lines.append(f"  no frequency stands out: the largest share, {shares[f1 - 1]:.1%}, is within what the output vectors shuffled over x "
                         f"give (99th percentile of the largest share in 200 shuffles: {shuffled_top:.1%}), so there is no circle to join")
        fig = F.tsne_modular(xy, k, f"t-SNE of the output weights ({run.task.formula})", run=run.name, step=step)
    else:
        group = run.task.group
        cs = coset_scores(X[None], group)
        best = cs.best()
        threshold = float(shuffled_best_ratios(X[None], group, seed=seed)[0])
        ratio = float(cs.ratios[0, cs.best_index()])
        ident = identify_best(cs, group, float(random_partition_scores(X[None], best.labels)[0].std()), ratio > threshold)
        payload["colour_by"] = _identified_label(group, cs, ident, run.task.element_names())
        payload["colour_by_identified"] = ident.identified
        payload.update(colour_by_variance_ratio=ratio, shuffled_best_variance_ratio=threshold,
                       colour_by_stands_out=ratio > threshold)
        lines = [f"{run.name} at step {step:,}: t-SNE of the {group.n} output vectors, coloured by the top-ranked coset partition "
                 f"(variance ratio): {payload['colour_by']}", _structure_line("W_U", ratio, threshold, float(cs.scores[0, cs.best_index()])),
                 _identification_line(group, cs, ident)]
        hname, score = group.subgroups[best.subgroup].name, float(cs.scores[0, cs.best_index()])
        standing = f"stands out: score {score:.3f}" if ratio > threshold else "does not stand out of shuffled rows"
        fig = F.tsne_group(xy, best.labels, run.task.element_names(), f"t-SNE of the output weights ({group.name}; {hname} {standing})",
                           subgroup=hname,
                           note=_identified_note(group, cs, ident, run.task.element_names())
                           + ("" if ident.stands_out else ":<br>colours are the top of a ranking of noise"), run=run.name, step=step)
    return Report(payload, lines, {"tsne_output_weights": fig})


KMEANS_SEEDS = 5  # seeds of the direct clustering at the last checkpoint
OVER_TRAINING_SHUFFLES = 50  # shuffles per checkpoint for the top class over training (200 at the last checkpoint)


def cosets_report(run: Run, matrix: str = "W_U", clusters: str = "kmeans") -> Report:
    """Best coset partition of an embedding for every checkpoint, against random partitions and the
    irreps' prediction; how far its conjugate and side are identified; direct clustering at every
    checkpoint into the final best class's cosets, against the grokking step; link to irreps."""
    from . import figures as F
    from .analysis.census import COSET_CLUSTERS
    from .analysis.cosets import (class_fraction, cluster_cosets, coset_scores, identify_best, irrep_predicted_scores,
                                  random_partition_scores, same_partition, shuffled_best_ratios, shuffled_rows_null)
    from .analysis.representations import fixed_dimensions, irrep_column_ranks, irrep_shares, stabilising_subgroups
    from .config import ConfigError

    if matrix not in ("W_U", "W_E"):
        raise ConfigError(f"unknown matrix {matrix!r}; choose W_U or W_E")
    group = _require_group(run, "cosets")
    steps = np.array(run.steps)
    X = run.output_vectors() if matrix == "W_U" else run.stacked_weights(names=["embed.W_E"])["embed.W_E"][:, : group.n]
    names = run.task.element_names()
    cs = coset_scores(X, group)
    b = cs.best_index()
    best = cs.partitions[b]
    h = group.subgroups[best.subgroup]
    n_cosets = group.n // h.order
    null = random_partition_scores(X[-1:], best.labels)[0]
    z = (cs.scores[-1, b] - null.mean()) / max(null.std(), 1e-12)
    shuffled = shuffled_rows_null(X[-1], group)
    stands_out = bool(cs.ratios[-1, b] > shuffled.best_ratio)
    ident = identify_best(cs, group, float(null.std()), stands_out)
    ranked = cs.ranked_classes(group)  # one partition per class, by variance ratio
    shares = irrep_shares(X[-1:], group)
    predicted = irrep_predicted_scores(shares, group, cs.partitions)[0]  # (P,) at the last checkpoint
    shares = shares[0].numpy()
    best_steps = [cs.best_index(s) for s in range(len(steps))]
    over_training = shuffled_best_ratios(X, group, OVER_TRAINING_SHUFFLES)  # (S,) the best F's null at every checkpoint
    stands_out_over_training = [bool(cs.ratios[s, i] > q) for s, (i, q) in enumerate(zip(best_steps, over_training))]
    # direct clustering into the final best class's number of cosets: at every checkpoint (seed 0),
    # and at the last with several seeds
    runs = [cluster_cosets(X[s], group, n_cosets, clusters) for s in range(len(steps))]
    fractions = [class_fraction(r, h.class_id) for r in runs]
    recovered = [int(steps[s]) for s in range(len(steps)) if fractions[s] >= COSET_CLUSTERS]
    formed = recovered[0] if recovered else None
    seeds = list(range(KMEANS_SEEDS)) if clusters == "kmeans" else [0]
    finals = [runs[-1]] + [cluster_cosets(X[-1], group, n_cosets, clusters, seed) for seed in seeds[1:]]
    final_fracs = [class_fraction(r, h.class_id) for r in finals]
    found = []  # which partition of the class each seed returned exactly (None: not a coset partition)
    for r in finals:
        found.append(next((i for i in ident.candidates if same_partition(r["labels"], cs.partitions[i].labels)), None))
    distinct = sorted({i for i in found if i is not None})
    grok = grokking_steps(run)
    fixed = fixed_dimensions(group, h.elements)
    columns = irrep_column_ranks(X[-1:], group)[0].numpy()
    dims = group.character_table[:, 0].real.round().astype(int)
    irreps = group.irrep_names
    top_irrep = int(np.argmax(shares))
    top_above = bool(shuffled.irreps_above(shares)[top_irrep])  # is the largest irrep more than shuffled rows give?
    stabilisers = stabilising_subgroups(group, top_irrep)
    is_stabiliser = h.class_id in {c for c, *_ in stabilisers}
    describe = lambda i: {"subgroup": group.subgroups[cs.partitions[i].subgroup].name,  # noqa: E731
                          "generators": [names[g] for g in group.subgroups[cs.partitions[i].subgroup].generators],
                          "side": cs.partitions[i].side, "score": float(cs.scores[-1, i])}
    payload = {
        "run": run.name, "matrix": matrix, "step": int(steps[-1]),
        "ranking": "variance ratio F = [(1 - W)/(k - 1)] / [W/(n - k)] (random partitions: about 1); score = 1 - W / E_random[W]",
        "best": {"subgroup": h.name, "order": h.order, "class_id": h.class_id, "n_cosets": n_cosets,
                 "identified": ident.identified,
                 "side": best.side if ident.identified else None,
                 "generators": [names[g] for g in h.generators] if ident.identified else None,
                 "score": float(cs.scores[-1, b]), "variance_ratio": float(cs.ratios[-1, b]),
                 "z_vs_random_partitions": float(z), "irrep_prediction": float(predicted[b]), "stands_out": stands_out},
        "shuffled_rows": {"draws": shuffled.draws, "irrep_draws": shuffled.irrep_draws, "quantile": shuffled.quantile,
                          "best_variance_ratio": shuffled.best_ratio, "irrep_shares": shuffled.irrep_shares.tolist()},
        "class_partitions": {"count": len(ident.candidates), "margin_over_runner_up": ident.margin,
                             "random_spread": ident.noise, "partitions": [describe(i) for i in ident.candidates]},
        "random_baseline": {"score": 0.0, "variance_ratio": 1.0, "score_mean": float(null.mean()), "score_std": float(null.std()),
                            "draws": len(null)},
        "classes_ranked": [{"class_id": group.subgroups[cs.partitions[i].subgroup].class_id,
                            "subgroup": group.subgroups[cs.partitions[i].subgroup].name,
                            "order": group.subgroups[cs.partitions[i].subgroup].order,
                            "variance_ratio": float(cs.ratios[-1, i]), "score": float(cs.scores[-1, i]),
                            "irrep_prediction": float(predicted[i])} for i in ranked],
        "direct_clustering": {"method": clusters, "k": n_cosets, "seeds": seeds, "class_id": h.class_id,
                              "coset_fraction_per_seed": final_fracs, "distinct_partitions_found": len(distinct),
                              "seeds_without_an_exact_partition": sum(i is None for i in found)},
        "clusters_into_cosets": final_fracs[0] >= COSET_CLUSTERS,
        "structure_forms_at_step": formed, "structure_recovered_at_steps": recovered,
        "steps_with_best_class_clusters": recovered,
        "best_class_fraction_over_training": fractions,
        "grokking": grok,
        "best_score_over_training": [float(cs.scores[s, i]) for s, i in enumerate(best_steps)],
        "best_subgroup_over_training": [group.subgroups[cs.partitions[i].subgroup].name for i in best_steps],
        "best_stands_out_over_training": stands_out_over_training,
        "shuffled_best_variance_ratio_over_training": over_training.tolist(),
        "irreps": {"names": irreps, "share_of_matrix": shares.tolist(), "dims_fixed_by_best_subgroup": fixed.tolist(),
                   "above_shuffled_rows": [n for n, up in zip(irreps, shuffled.irreps_above(shares)) if up]},
        "dominant_irrep": {"name": irreps[top_irrep], "share": float(shares[top_irrep]), "above_shuffled_rows": top_above,
                           "stabilising_subgroups": [{"class_id": c, "subgroup": n, "order": o, "fixed_dims": d} for c, n, o, d in stabilisers],
                           "best_class_fixes_it": bool(fixed[top_irrep] > 0), "best_class_is_a_stabiliser": is_stabiliser,
                           "columns_used": float(columns[top_irrep]), "dimension": int(dims[top_irrep])},
    }
    labels = _irrep_labels(group)
    used = [n for n, up in zip(labels, shuffled.irreps_above(shares)) if up]
    seeds_text = f"seeds {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else "one run"
    if len(ident.candidates) == 1 or not distinct:
        which = ""
    elif len(distinct) == 1 and found.count(distinct[0]) == len(found):
        which = f"; every run returns the same partition ({cs.partitions[distinct[0]].side} cosets)"
    else:
        which = f"; they return {len(distinct)} different partitions of the class"
    lines = [
        f"{run.name}: coset structure of {matrix} over {len(steps)} checkpoints; partitions ranked by the variance ratio F "
        "(random: about 1), which rewards fewer blocks: a finer class can score higher yet rank lower",
        f"  best at step {steps[-1]:,}: {_identified_label(group, cs, ident, names)}; F {cs.ratios[-1, b]:.1f}, score "
        f"{cs.scores[-1, b]:.3f} (random partitions of the same sizes: {null.mean():.3f} +- {null.std():.3f}, z = {z:.0f})",
        _structure_line(matrix, float(cs.ratios[-1, b]), shuffled.best_ratio, float(cs.scores[-1, b])),
        _identification_line(group, cs, ident),
        f"  the irrep shares of {matrix} predict a score of {predicted[b]:.3f} for it (each irrep part using all columns of rho "
        "alike; more means tighter cosets)",
        "  next classes by F: " + "; ".join(f"{group.subgroups[cs.partitions[i].subgroup].name} (class "
                                             f"{group.subgroups[cs.partitions[i].subgroup].class_id}) F {cs.ratios[-1, i]:.1f}, "
                                             f"score {cs.scores[-1, i]:.3f}" for i in ranked[1:5]),
        f"  {clusters} with k = {n_cosets}, {seeds_text}: " + ", ".join(f"{f:.0%}" for f in final_fracs)
        + f" of the clusters are cosets of class {h.class_id} ({h.name}){which}",
        f"  {h.name} cosets (>= {COSET_CLUSTERS:.0%} of the clusters, seed 0) at {len(recovered)} of {len(steps)} checkpoints"
        + (f" ({_steps_text(steps.tolist(), recovered)})" if recovered else "") + ": "
        + _formation_vs_grokking(formed, steps, grok["logged_step"]) + _gone_by_the_end(recovered, steps),
        f"  top class by F per checkpoint, where its F is above {OVER_TRAINING_SHUFFLES} shuffles of that checkpoint's vectors (99% "
        "quantile; else none): " + _runs_text(steps.tolist(), [n if up else "none" for n, up in
                                                               zip(payload["best_subgroup_over_training"], stands_out_over_training)]),
        "  " + _grokking_text(grok),
        f"  irreps carrying more of {matrix} than its vectors shuffled give ({shuffled.irrep_draws} shuffles, {shuffled.quantile:.0%} for all "
        f"irreps at once): {', '.join(used) or 'none'}; "
        f"{h.name} fixes dims "
        + ", ".join(f"{n}: {abs(d):g}" for n, d in zip(labels, fixed)),
        (f"  {matrix} is {shares[top_irrep]:.0%} in {labels[top_irrep]}, whose vectors have the stabilisers (largest first) "
         + ", ".join(f"{n}" for _, n, _, _ in stabilisers[:4])
         + f": the cosets it can show; {h.name} {'is' if is_stabiliser else 'is not'} among them; shuffled vectors put up to "
         f"{shuffled.irrep_shares[top_irrep]:.0%} in that irrep" if top_above else
         f"  {matrix}'s largest irrep, {labels[top_irrep]} at {shares[top_irrep]:.0%}, is within what shuffled vectors put in it "
         f"(up to {shuffled.irrep_shares[top_irrep]:.0%}): its stabilisers ("
         + ", ".join(f"{n}" for _, n, _, _ in stabilisers[:4]) + f") say nothing about the cosets of {matrix}"),
        f"  that part uses {columns[top_irrep]:.1f} of the {dims[top_irrep]} columns of rho(g) (built from the columns H fixes "
        "alone, it would be constant on H's cosets)",
    ]
    top = ranked[:6]
    ratios_by_class = cs.class_maxima(group)
    scores_by_class = cs.class_maxima(group, cs.scores)
    label = lambda i: f"{_class_label(group, cs.partitions[i])}"  # noqa: E731
    cids = [group.subgroups[cs.partitions[i].subgroup].class_id for i in top]
    figs = {f"cosets_{matrix}_over_training": F.coset_scores_over_training(
        steps, {label(i): ratios_by_class[c] for i, c in zip(top, cids)}, {label(i): scores_by_class[c] for i, c in zip(top, cids)},
        f"Coset structure of {matrix}: the top {len(top)} subgroup classes at the end", run=run.name)}
    return Report(payload, lines, figs)


LOGIT_SHARE = 0.01  # an irrep's share of the logit variance (cos^2) from which the reps report names it as explaining the logits
# (chance: cos^2 with one fixed direction of the N x n logits, 1 / (N n - 1) for random logits, 6e-7 for S5; an untrained S5 model
# ~3e-8, tests/test_negative_reports.py; the shipped runs' logits shuffled over the pairs <= 2.4e-5, docs/analyses.md)


def reps_report(run: Run, step: int | None = None) -> Report:
    """Share of W_E, W_U and the logits explained by each irrep (Chughtai et al.), and over training."""
    from . import figures as F
    from .analysis.batched import logits_and_neurons
    from .analysis.representations import irrep_column_ranks, irrep_shares, logit_irrep_cosines
    from .groups import partition_name

    group = _require_group(run, "reps")
    step = run.resolve_step(step)
    spec = run.config.spec
    w = run.stacked_weights([step])
    names, labels = group.irrep_names, _irrep_labels(group)
    E, U = w["embed.W_E"][:, : group.n], w["unembed.W_U"].transpose(1, 2)
    WE, WU = irrep_shares(E, group)[0].numpy(), irrep_shares(U, group)[0].numpy()
    cols_E, cols_U = irrep_column_ranks(E, group)[0].numpy(), irrep_column_ranks(U, group)[0].numpy()
    logits, _ = logits_and_neurons(w, run.task, spec)
    cos = logit_irrep_cosines(logits, run.task.pairs, group)[0].numpy()
    steps = np.array(run.steps)
    over = irrep_shares(run.output_vectors(), group).numpy()
    logit_share = cos**2
    top = np.argsort(-logit_share)[:2]
    payload = {"run": run.name, "step": step, "irreps": names, "dims": group.character_table[:, 0].real.round().astype(int).tolist(),
               "share_W_E": WE.tolist(), "share_W_U": WU.tolist(), "logit_cosine": cos.tolist(),
               "logit_share": logit_share.tolist(), "logit_share_top2": float(logit_share[top].sum()),
               "columns_used_W_E": cols_E.tolist(), "columns_used_W_U": cols_U.tolist(),
               "irrep_partitions": None if group.irrep_partitions is None else [partition_name(lam) for lam in group.irrep_partitions]}
    width = max(map(len, labels))
    lines = [f"{run.name} at step {step:,}: share explained per irrep of {group.name} (dimension; columns of rho(g) used)"]
    lines += [f"  {n:<{width}}  d={d}  W_E {a:6.1%} ({ce:3.1f})  W_U {b:6.1%} ({cu:3.1f})  logit cosine {c:+.3f}"
              for n, d, a, b, c, ce, cu in zip(labels, payload["dims"], WE, WU, cos, cols_E, cols_U)]
    carriers = [labels[i] for i in top if logit_share[i] >= LOGIT_SHARE]
    chance = 1 / (logits.shape[1] * logits.shape[2] - 1)  # E cos^2 of random logits with one direction
    payload["logit_share_random_logits"] = chance
    chance_text = f"random logits: {chance:.0e} each, one direction chi(a b c^-1) of the {logits.shape[1]:,} x {logits.shape[2]} logits"
    paper = "; Chughtai et al.'s S5 model: sign + standard, about 85%" if group.is_symmetric and group.degree == 5 else ""
    if carriers:
        lines.append(f"  logits explained by {' + '.join(carriers)}: {logit_share[top[: len(carriers)]].sum():.1%} of the variance "
                     f"(squared logit cosines, each >= {LOGIT_SHARE:.0%}; {chance_text}{paper})")
    else:
        lines.append(f"  no irrep explains {LOGIT_SHARE:.0%} of the logit variance (squared logit cosine; the largest, {labels[top[0]]}, "
                     f"{logit_share[top[0]]:.2%}; {chance_text}{paper})")
    figs = {
        "irreps_shares": F.irrep_shares(labels, {"W_E": WE, "W_U": WU, "logits (cos^2)": logit_share}, run=run.name, step=step),
        "irreps_W_U_over_training": F.irrep_shares_over_training(steps, labels, over, "Irrep shares of W_U over training",
                                                                 run=run.name),
    }
    return Report(payload, lines, figs)


def relapse_text(steps, test_acc, after: int | None) -> str:
    """'' when the test accuracy stays above 50% after ``after``; else how often and how late it falls below
    (a predicate for "test accuracy ..."; ``analysis.phases.relapses`` counts them)."""
    from .analysis.phases import relapses

    n, of, last = relapses(steps, test_acc, after)
    return (f"falls below 50% again at {n} of the {of} logged steps after it, the last at step {last:,} "
            f"(final {float(np.asarray(test_acc)[-1]):.1%})") if n else ""


def training_report(run: Run) -> Report:
    """Power et al. Fig. 1 (left) and Fig. 4: accuracy and validation loss against steps."""
    from . import figures as F
    from .analysis.phases import first_step

    _ = run.config  # a sequence run has no accuracies: one line that points to `grokinterp phases`
    m = run.metrics
    grok = grokking_steps(run)
    memorised = first_step(m["step"], m["train_acc"] >= 0.99)
    payload = {"run": run.name, "memorised_step": memorised, "grokked_step": grok["logged_step"], "grokking": grok,
               "final_train_acc": float(m["train_acc"][-1]), "final_test_acc": float(m["test_acc"][-1])}
    reached = f"first logged at step {memorised:,}" if memorised is not None else "never logged"
    lines = [f"{run.name}: train acc >= 99% {reached}; final train {m['train_acc'][-1]:.3f}, "
             f"test {m['test_acc'][-1]:.3f}",
             f"  {_grokking_text(grok)}"]
    relapse = relapse_text(m["step"], m["test_acc"], grok["logged_step"])
    payload["relapse"] = relapse or None
    if relapse:
        lines.append(f"  test accuracy {relapse}")
    payload["test_pairs"] = len(run.test_idx)
    lines += _small_test_set_lines(len(run.test_idx))
    figs = {"power_fig1_accuracy": F.accuracy_curves(m, f"Train and validation accuracy ({run.task.formula})", run=run.name),
            "power_fig4_validation_loss": F.validation_loss(m, f"Validation loss ({run.task.formula})", run=run.name)}
    return Report(payload, lines, figs)


def all_reports(run: Run, on_report=None) -> dict[str, Report]:
    """Every report that applies to the run's task, for `grokinterp figures`. ``on_report(report)`` is
    called as each is done (the figures writer renders its PNGs meanwhile). The training curves and the
    t-SNE come first: they use one core (the t-SNE mostly imports scikit-learn), while the PNG renderer
    starts Chromium on the other; the batched analyses after them use both."""
    makers = {"training": training_report, "tsne": tsne_report}
    if run.task.group is not None:
        makers.update(cosets=cosets_report, reps=reps_report)
    elif run.task.is_modular and len(run.task) == run.task.p ** 2:
        makers.update(fourier=fourier_report, progress=progress_report)
    done = {}
    for name in makers:
        done[name] = makers[name](run)
        if on_report is not None:
            on_report(done[name])
    return done


def portable_command(command: str) -> str:
    """A run's command without the machine-specific ``--runs-dir`` / ``--out`` paths."""
    import re

    return re.sub(r"\s--(?:runs-dir|out)(?:=|\s+)\S+", "", command)


def index_page(run: Run, reports: dict[str, Report], files: list[str]) -> str:
    """A small HTML page listing every figure with the summaries."""
    import html

    parts = [f"<html><head><meta charset='utf-8'><title>grokinterp: {html.escape(run.name)}</title></head>",
             "<body style='font-family: Helvetica, Arial, sans-serif; max-width: 1000px; margin: auto'>",
             f"<h1>{html.escape(run.name)}: {html.escape(run.task.formula)}</h1>",
             f"<p>Made by <code>{html.escape(portable_command(run.command))}</code></p>"]
    for name, rep in reports.items():
        parts.append(f"<h2>{html.escape(name)}</h2><pre>{html.escape(chr(10).join(rep.lines))}</pre><ul>")
        for stem in rep.figures:
            png = f"{stem}.png" if any(f.endswith(f"{stem}.png") for f in files) else None
            parts.append(f"<li><a href='{stem}.html'>{stem}</a>" + (f"<br><img src='{png}' width='600'>" if png else "") + "</li>")
        parts.append("</ul>")
    parts.append(f"<h2>training explorer</h2><p><a href='explore.html'>explore.html</a>: a slider over every checkpoint that moves "
                 f"every panel (<code>grokinterp explore --run {html.escape(run.name)}</code>, with the same <code>--out</code>, writes it here)</p>")
    return "\n".join(parts + ["</body></html>"])


def _final_offset_profile(run_dir) -> np.ndarray:
    """(heads, offsets) induction scores of the last layer at the last checkpoint, on fresh sequences."""
    from .sequence_training import induction_profile, load_sequence_model

    cfg, task, model = load_sequence_model(run_dir)
    return induction_profile(task, model, task.sample(np.random.default_rng([cfg.seed, 4]), 256))


def _sequence_data(cfg: dict) -> str:
    return "infinite data" if cfg["n_train"] is None else f"{cfg['n_train']} training sequences"


_SETTING_NAMES = {"wd": "wd", "lr": "lr", "batch_size": "batch", "seed": "seed"}


def _setting(cfg: dict, key: str) -> str:
    v = cfg.get(key)
    return "full batch" if key == "batch_size" and v is None else f"{_SETTING_NAMES[key]} {v:g}" if isinstance(v, float) else f"{_SETTING_NAMES[key]} {v}"


def _sequence_settings(cfg: dict) -> str:
    """A sequence run's settings in words: task, model, data, weight decay and batch."""
    return f"{cfg['task']} on {cfg['model']}, {_sequence_data(cfg)}, {_setting(cfg, 'wd')}, {_setting(cfg, 'batch_size')}"


def _sequence_labels(cfg: dict, other: dict, names: tuple[str, str]) -> tuple[str, str]:
    """Panel titles for two sequence runs side by side: task, model, data size and every setting that
    differs (weight decay, learning rate, batch, seed); the run folders' names only for equal settings."""
    keys = [k for k in _SETTING_NAMES if cfg.get(k) != other.get(k)]
    a, b = (f"{c['task']} on {c['model']}, {_sequence_data(c)}" + "".join(f", {_setting(c, k)}" for k in keys) for c in (cfg, other))
    return (a, b) if a != b else (f"{a} ({names[0]})", f"{b} ({names[1]})")


CIRCUIT_THRESHOLD = 0.3  # attention share at one offset; chance is ~1/context length


def _offsets_text(profile: np.ndarray) -> str:
    """Each head's best induction offset (profile: (heads, offsets) scores), named only above
    ``CIRCUIT_THRESHOLD``: below it the offsets' scores are all near chance and their argmax is noise."""
    return "; ".join(f"head {h}: offset {int(row.argmax()) + 1} ({row.max():.2f})" if row.max() > CIRCUIT_THRESHOLD
                     else f"head {h}: none above {CIRCUIT_THRESHOLD} (best {row.max():.2f})" for h, row in enumerate(profile))


def phases_report(run_dir, compare=None) -> Report:
    """Per-group phase changes of a sequence run (and, with ``compare``, a second run beside it)."""
    from . import figures as F
    from .analysis.phase_changes import distinct_steps, induction_formation_step, phase_changes
    from .store import read_json, read_metrics

    def load(d):
        rows = read_metrics(d / "metrics.csv", fields=None)
        return read_json(d / "config.json"), {k: np.array([r[k] for r in rows]) for k in rows[0]}

    loaded = {d: load(d) for d in (run_dir, compare) if d is not None}
    for d, (r, _) in loaded.items():
        if r.get("kind") != "sequence":
            raise RunError(f"run {d.name} is not a sequence run; for modular runs use `grokinterp progress`")
    record, m = loaded[run_dir]
    cfg = record["config"]
    test_pc, train_pc = phase_changes(m, "test_"), phase_changes(m, "train_")
    formed = induction_formation_step(m)
    data = _sequence_data(cfg)
    payload = {"run": run_dir.name, "task": cfg["task"], "model": cfg["model"], "data": data,
               "test_phase_changes": test_pc, "train_phase_changes": train_pc,
               "distinct_test_phase_changes": distinct_steps(list(test_pc.values())), "induction_formed_step": formed,
               "final": {k: float(v[-1]) for k, v in m.items() if k != "step"}}
    fmt = lambda d: ", ".join(f"{k} {_fmt_step(v)}" for k, v in d.items())  # noqa: E731
    last, planned = int(m["step"][-1]), int(cfg["steps"])
    lines = [f"{run_dir.name}: {cfg['task']} on {cfg['model']}, {data}, "
             + (f"{last:,} steps" if last >= planned else f"{last:,} of {planned:,} steps (unfinished: resume it to go on)"),
             f"  test loss below 10% of its start (phase change) at: {fmt(test_pc)}",
             f"  train loss phase change at: {fmt(train_pc)}",
             f"  distinct test phase changes: {payload['distinct_test_phase_changes']}"]
    from .sequence_training import read_sequence_config

    task = read_sequence_config(run_dir, record).make_task()
    what = "answer digit" if cfg["task"] == "add5" else "group"
    who = f"{run_dir.name}: {_sequence_settings(cfg)}"
    figs = {"phases_test_loss_per_group": F.loss_groups(m, "test_", F._title(f"Test loss per {what}", who), labels=task.loss_labels)}
    if any(k.startswith("induction_head") for k in m):
        best = max(float(m[k][-1]) for k in m if k.startswith("induction_head"))
        lines.append(f"  induction head formed (score > 0.5) at step {formed:,}" if formed is not None
                     else f"  no induction head at offset 1 (best final score {best:.2f})")
        profile = _final_offset_profile(run_dir)
        payload["final_offset_profile"] = profile.tolist()
        lines.append("  last layer at the end, best induction offset per head: " + _offsets_text(profile))
        circuit = induction_formation_step(m, CIRCUIT_THRESHOLD, prefix="induction_best")
        if any(k.startswith("induction_best") for k in m):
            payload["induction_circuit_step"] = circuit
            at = lambda h: int(m[f"induction_offset{h}"][list(m["step"]).index(circuit)])  # noqa: E731
            heads_at = sorted({at(h) for h in range(len(profile)) if f"induction_offset{h}" in m}) if circuit is not None else []
            lines.append(f"  induction circuit at any offset (score > {CIRCUIT_THRESHOLD}) first at step {circuit:,} "
                         f"(offsets {', '.join(map(str, heads_at))})" if circuit is not None
                         else f"  no induction circuit at any offset (score > {CIRCUIT_THRESHOLD}) in the logged steps")
        figs["phases_induction_scores"] = F.induction_scores(m, F._title("Induction score per head (last layer)", who))
    if compare is not None:
        record2, m2 = loaded[compare]
        cfg2 = record2["config"]
        a, b = _sequence_labels(cfg, cfg2, (run_dir.name, compare.name))
        figs["phases_train_vs_test"] = F.train_vs_test({a: m, b: m2}, "Train and test loss")
        mean_test = lambda mm: float(np.mean([v[-1] for k, v in mm.items() if k.startswith("test_")]))  # noqa: E731
        other = (f"; another task ({cfg2['task']}, not {cfg['task']}): its losses are on another table, so the panels "
                 "stand side by side without comparing like with like") if cfg2["task"] != cfg["task"] else ""
        last2 = int(m2["step"][-1])
        if compare.resolve() == run_dir.resolve():
            other += "; that is this run itself"
        elif last2 != last:
            other += "; they end at different steps, so the two losses are not at a like point"
        lines.append(f"  compared with {compare.name} ({b}): final mean test loss {mean_test(m2):.3g} at step {last2:,}, "
                     f"against {mean_test(m):.3g} here at step {last:,}{other}")
        payload.update(compare=compare.name, compare_task=cfg2["task"], compare_final_mean_test_loss=mean_test(m2))
    return Report(payload, lines, figs)
