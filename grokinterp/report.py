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


# ---- group tasks -------------------------------------------------------------------------------


def _require_group(run: Run, what: str):
    if run.task.group is None:
        raise RunError(f"`{what}` needs a group task (s5_mul, ...); run {run.name} is {run.task.formula}")
    return run.task.group


def _subgroup_label(group, part) -> str:
    h = group.subgroups[part.subgroup]
    return f"{h.name} (order {h.order}, class {h.class_id}, {part.side} cosets)"


def tsne_report(run: Run, step: int | None = None, seed: int = 0, k: int = 8) -> Report:
    """Power et al. Fig. 3: t-SNE of the output weights, coloured by cosets (groups) or x mod k (modular)."""
    from . import figures as F
    from .analysis.cosets import coset_scores
    from .analysis.tsne import output_vectors, tsne

    step = run.resolve_step(step)
    w = run.stacked_weights([step], names=["unembed.W_U"])
    X = output_vectors(w)
    xy = tsne(X, seed)
    payload = {"run": run.name, "step": step, "seed": seed, "points": xy}
    if run.task.group is None:
        from .analysis.fourier import component_norms, frequency_energy

        p = run.task.p
        energy = frequency_energy(component_norms(X[None]))[0]
        shares = (energy / energy.sum()).numpy()
        top = [int(i) for i in np.argsort(-shares)[:4]]
        f1 = top[0] + 1
        payload["frequency_shares"] = {int(i) + 1: float(shares[i]) for i in np.argsort(-shares)}
        inverse = pow(f1, -1, p)
        payload["circle_step"] = min(inverse, p - inverse)  # x -> x+k and x -> x-k are the two neighbours
        lines = [f"{run.name} at step {step}: t-SNE of the {run.task.n} output vectors, coloured by x mod {k} with lines x -> x+{k}",
                 "  output vectors per frequency: " + ", ".join(f"{i + 1}: {shares[i]:.0%}" for i in top)
                 + " (the output vectors of one frequency lie on a circle; the t-SNE shows one where a frequency stands out)",
                 f"  neighbours on frequency {f1}'s circle differ by {payload['circle_step']} (--k {payload['circle_step']} joins them)"]
        fig = F.tsne_modular(xy, k, f"t-SNE of the output weights<br><sup>{run.task.formula}, step {step}</sup>")
    else:
        group = run.task.group
        best = coset_scores(X[None], group).best()
        payload["colour_by"] = _subgroup_label(group, best)
        lines = [f"{run.name} at step {step}: t-SNE of the 120 output vectors, coloured by the best coset partition: "
                 f"{payload['colour_by']}"]
        fig = F.tsne_group(xy, best.labels, run.task.element_names(),
                           f"t-SNE of the output weights (S5, step {step})<br><sup>colour: cosets of {payload['colour_by']}</sup>")
    return Report(payload, lines, {"tsne_output_weights": fig})


COSET_CLUSTERS = 0.8  # share of k-means clusters that must be cosets for "the matrix clusters into cosets"


def cosets_report(run: Run, matrix: str = "W_U", clusters: str = "kmeans") -> Report:
    """Best coset partition of an embedding for every checkpoint, against random partitions and the
    irreps' prediction; direct clustering at every checkpoint; link to irreps."""
    from . import figures as F
    from .analysis.cosets import cluster_cosets, coset_scores, irrep_predicted_scores, random_partition_scores
    from .analysis.representations import fixed_dimensions, irrep_column_ranks, irrep_shares, stabilising_subgroups

    group = _require_group(run, "cosets")
    steps = np.array(run.steps)
    if matrix == "W_U":
        X = run.stacked_weights(names=["unembed.W_U"])["unembed.W_U"].transpose(1, 2)
    elif matrix == "W_E":
        X = run.stacked_weights(names=["embed.W_E"])["embed.W_E"][:, : group.n]
    else:
        raise RunError(f"unknown matrix {matrix!r}; choose W_U or W_E")
    cs = coset_scores(X, group)
    best = cs.best()
    h = group.subgroups[best.subgroup]
    per_class = sorted(cs.best_per_class(group).items(), key=lambda kv: -kv[1][0])
    others = [(cid, side, sc, p) for (cid, side), (sc, p) in per_class if (cid, side) != (h.class_id, best.side)]
    series = {}
    for (cid, side), (_, part) in per_class[:6]:
        series[f"{group.subgroups[part.subgroup].name} class {cid} ({side})"] = cs.scores[:, cs.partitions.index(part)]
    b = cs.best_index()
    n_cosets = group.n // h.order
    null = random_partition_scores(X[-1:], best.labels)[0]
    z = (cs.scores[-1, b] - null.mean()) / max(null.std(), 1e-12)
    shares = irrep_shares(X[-1:], group)
    predicted = irrep_predicted_scores(shares, group, cs.partitions)[0]  # (P,) at the last checkpoint
    shares = shares[0].numpy()
    best_steps = [cs.best_index(s) for s in range(len(steps))]
    best_score = np.array([cs.scores[s, i] for s, i in enumerate(best_steps)])
    # direct clustering at every checkpoint, into as many clusters as that checkpoint's best class has cosets
    directs = [cluster_cosets(X[s], group, group.n // group.subgroups[cs.partitions[i].subgroup].order, clusters)
               for s, i in enumerate(best_steps)]
    direct, fractions = directs[-1], [d["coset_fraction"] for d in directs]
    clustered = [int(steps[s]) for s in range(len(steps)) if fractions[s] >= COSET_CLUSTERS]
    formed = clustered[0] if clustered else None
    fixed = fixed_dimensions(group, h.elements)
    columns = irrep_column_ranks(X[-1:], group)[0].numpy()
    dims = group.character_table[:, 0].real.round().astype(int)
    names = group.irrep_names
    top_irrep = int(np.argmax(shares))
    stabilisers = stabilising_subgroups(group, top_irrep)
    is_stabiliser = h.class_id in {c for c, *_ in stabilisers}
    payload = {
        "run": run.name, "matrix": matrix, "step": int(steps[-1]),
        "best": {"subgroup": h.name, "order": h.order, "class_id": h.class_id, "side": best.side,
                 "generators": [run.task.element_names()[g] for g in h.generators], "score": float(cs.scores[-1, b]),
                 "variance_ratio": float(cs.ratios[-1, b]), "z_vs_random_partitions": float(z),
                 "irrep_prediction": float(predicted[b]), "n_cosets": n_cosets},
        "random_baseline": {"score": 0.0, "variance_ratio": 1.0, "score_mean": float(null.mean()), "score_std": float(null.std()),
                            "draws": len(null)},
        "per_class": [{"class_id": cid, "side": side, "subgroup": group.subgroups[p.subgroup].name,
                       "order": group.subgroups[p.subgroup].order, "score": sc,
                       "irrep_prediction": float(predicted[cs.partitions.index(p)])} for (cid, side), (sc, p) in per_class],
        "direct_clustering": {"method": clusters, "k": n_cosets, "coset_fraction": direct["coset_fraction"], "sides": direct["sides"]},
        "irreps": {"names": names, "share_of_matrix": shares.tolist(), "dims_fixed_by_best_subgroup": fixed.tolist()},
        "dominant_irrep": {"name": names[top_irrep], "share": float(shares[top_irrep]),
                           "stabilising_subgroups": [{"class_id": c, "subgroup": n, "order": o, "fixed_dims": d} for c, n, o, d in stabilisers],
                           "best_class_fixes_it": bool(fixed[top_irrep] > 0), "best_class_is_a_stabiliser": is_stabiliser,
                           "columns_used": float(columns[top_irrep]), "dimension": int(dims[top_irrep])},
        "clusters_into_cosets": direct["coset_fraction"] >= COSET_CLUSTERS,
        "structure_forms_at_step": formed,
        "best_score_over_training": best_score.tolist(),
        "best_subgroup_over_training": [group.subgroups[cs.partitions[i].subgroup].name for i in best_steps],
        "coset_fraction_over_training": fractions,
        "steps_with_coset_clusters": clustered,
    }
    used = [n for n, s in zip(names, shares) if s > 0.1]
    verdict = (f"the {matrix} vectors cluster into the cosets of {h.name}" if payload["clusters_into_cosets"]
               else f"no coset clusters (fewer than {COSET_CLUSTERS:.0%} of the clusters are cosets)")
    lines = [
        f"{run.name}: coset structure of {matrix} over {len(steps)} checkpoints",
        f"  best at step {steps[-1]:,}: {_subgroup_label(group, best)} generated by "
        f"{', '.join(payload['best']['generators'])}; score {payload['best']['score']:.3f} (random partitions of the same sizes: "
        f"{null.mean():.3f} +- {null.std():.3f}, z = {z:.0f}), variance ratio {payload['best']['variance_ratio']:.1f} (random: 1)",
        f"  the irrep shares of {matrix} predict {predicted[b]:.3f} for it (each irrep part using all columns of rho alike; "
        "more means tighter cosets)",
        "  next classes: " + "; ".join(f"{group.subgroups[p.subgroup].name}/{side} {sc:.3f}" for _, side, sc, p in others[:4]),
        f"  k-means with k = {n_cosets}: {direct['coset_fraction']:.0%} of the clusters are cosets: {verdict}",
        (f"  coset clusters at {len(clustered)} of {len(steps)} checkpoints (first at step {clustered[0]:,}, last at {clustered[-1]:,})"
         if clustered else "  no coset clusters at any checkpoint"),
        f"  irreps carrying {matrix} (share > 10%): {', '.join(used) or 'none'}; {h.name} fixes dims "
        + ", ".join(f"{n}: {abs(d):g}" for n, d in zip(names, fixed)),
        f"  {matrix} is {shares[top_irrep]:.0%} in {names[top_irrep]}, whose vectors have the stabilisers (largest first) "
        + ", ".join(f"{n}" for _, n, _, _ in stabilisers[:4])
        + f": the cosets it can show; {h.name} {'is' if is_stabiliser else 'is not'} among them",
        f"  that part uses {columns[top_irrep]:.1f} of the {dims[top_irrep]} columns of rho(g) (built from the columns H fixes "
        "alone, it would be constant on H's cosets)",
    ]
    figs = {f"cosets_{matrix}_over_training": F.coset_scores_over_training(steps, series, f"Coset structure of {matrix} over training")}
    return Report(payload, lines, figs)


def reps_report(run: Run, step: int | None = None) -> Report:
    """Share of W_E, W_U and the logits explained by each irrep (Chughtai et al.), and over training."""
    from . import figures as F
    from .analysis.batched import logits_and_neurons
    from .analysis.representations import irrep_column_ranks, irrep_shares, logit_irrep_cosines

    group = _require_group(run, "reps")
    step = run.resolve_step(step)
    spec = model_spec(run.config.model)
    w = run.stacked_weights([step])
    names = group.irrep_names
    E, U = w["embed.W_E"][:, : group.n], w["unembed.W_U"].transpose(1, 2)
    WE, WU = irrep_shares(E, group)[0].numpy(), irrep_shares(U, group)[0].numpy()
    cols_E, cols_U = irrep_column_ranks(E, group)[0].numpy(), irrep_column_ranks(U, group)[0].numpy()
    logits, _ = logits_and_neurons(w, run.task, spec)
    cos = logit_irrep_cosines(logits, run.task.pairs, group)[0].numpy()
    steps = np.array(run.steps)
    over = irrep_shares(run.stacked_weights(names=["unembed.W_U"])["unembed.W_U"].transpose(1, 2), group).numpy()
    logit_share = cos**2
    top = np.argsort(-logit_share)[:2]
    payload = {"run": run.name, "step": step, "irreps": names, "dims": group.character_table[:, 0].real.round().astype(int).tolist(),
               "share_W_E": WE.tolist(), "share_W_U": WU.tolist(), "logit_cosine": cos.tolist(),
               "logit_share": logit_share.tolist(), "logit_share_top2": float(logit_share[top].sum()),
               "columns_used_W_E": cols_E.tolist(), "columns_used_W_U": cols_U.tolist()}
    lines = [f"{run.name} at step {step}: share explained per irrep (dimension; columns of rho(g) used)"]
    lines += [f"  {n:<16} d={d}  W_E {a:6.1%} ({ce:3.1f})  W_U {b:6.1%} ({cu:3.1f})  logit cosine {c:+.3f}"
              for n, d, a, b, c, ce, cu in zip(names, payload["dims"], WE, WU, cos, cols_E, cols_U)]
    carriers = [names[i] for i in top if logit_share[i] >= 0.01] or [names[top[0]]]
    lines.append(f"  logits explained by {' + '.join(carriers)}: {logit_share[top[: len(carriers)]].sum():.1%} of the variance "
                 "(Chughtai et al.'s model: sign + standard, about 85%)")
    figs = {
        "irreps_shares": F.irrep_shares(names, {"W_E": WE, "W_U": WU, "logits (cos^2)": logit_share}),
        "irreps_W_U_over_training": F.irrep_shares_over_training(steps, names, over, "Irrep shares of W_U over training"),
    }
    return Report(payload, lines, figs)


def training_report(run: Run) -> Report:
    """Power et al. Fig. 1 (left) and Fig. 4: accuracy and validation loss against steps."""
    from . import figures as F
    from .analysis.phases import first_step

    m = run.metrics
    grokked = first_step(m["step"], m["test_acc"] >= 0.99)
    memorised = first_step(m["step"], m["train_acc"] >= 0.99)
    payload = {"run": run.name, "memorised_step": memorised, "grokked_step": grokked,
               "final_train_acc": float(m["train_acc"][-1]), "final_test_acc": float(m["test_acc"][-1])}
    lines = [f"{run.name}: train acc >= 99% at step {memorised}, test acc >= 99% at step {grokked}; "
             f"final train {m['train_acc'][-1]:.3f}, test {m['test_acc'][-1]:.3f}"]
    figs = {"power_fig1_accuracy": F.accuracy_curves(m, f"{run.name}: train and validation accuracy ({run.task.formula})"),
            "power_fig4_validation_loss": F.validation_loss(m, f"{run.name}: validation loss ({run.task.formula})")}
    return Report(payload, lines, figs)


def all_reports(run: Run) -> dict[str, Report]:
    """Every report that applies to the run's task, for `grokinterp figures`."""
    reports = {"training": training_report(run), "tsne": tsne_report(run)}
    if run.task.group is not None:
        reports.update(cosets=cosets_report(run), reps=reps_report(run))
    elif run.task.is_modular and len(run.task) == run.task.p ** 2:
        reports.update(fourier=fourier_report(run), progress=progress_report(run))
    return reports


def index_page(run: Run, reports: dict[str, Report], files: list[str]) -> str:
    """A small HTML page listing every figure with the summaries."""
    import html

    parts = [f"<html><head><meta charset='utf-8'><title>grokinterp: {html.escape(run.name)}</title></head>",
             "<body style='font-family: Helvetica, Arial, sans-serif; max-width: 1000px; margin: auto'>",
             f"<h1>{html.escape(run.name)}: {html.escape(run.task.formula)}</h1>",
             f"<p>Made by <code>{html.escape(run.command)}</code></p>"]
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


CIRCUIT_THRESHOLD = 0.3  # attention share at one offset; chance is ~1/context length


def phases_report(run_dir, compare=None) -> Report:
    """Per-group phase changes of a sequence run (and, with ``compare``, a second run beside it)."""
    from . import figures as F
    from .analysis.phase_changes import distinct_steps, induction_formation_step, phase_changes
    from .store import read_json, read_metrics

    def load(d):
        rows = read_metrics(d / "metrics.csv", fields=None)
        return read_json(d / "config.json"), {k: np.array([r[k] for r in rows]) for k in rows[0]}

    record, m = load(run_dir)
    if record.get("kind") != "sequence":
        raise RunError(f"run {run_dir.name} is not a sequence run; for modular runs use `grokinterp progress`")
    cfg = record["config"]
    test_pc, train_pc = phase_changes(m, "test_"), phase_changes(m, "train_")
    formed = induction_formation_step(m)
    data = "infinite data" if cfg["n_train"] is None else f"{cfg['n_train']} training sequences"
    payload = {"run": run_dir.name, "task": cfg["task"], "model": cfg["model"], "data": data,
               "test_phase_changes": test_pc, "train_phase_changes": train_pc,
               "distinct_test_phase_changes": distinct_steps(list(test_pc.values())), "induction_formed_step": formed,
               "final": {k: float(v[-1]) for k, v in m.items() if k != "step"}}
    fmt = lambda d: ", ".join(f"{k} {v if v is not None else 'never'}" for k, v in d.items())  # noqa: E731
    lines = [f"{run_dir.name}: {cfg['task']} on {cfg['model']}, {data}, {int(m['step'][-1]):,} steps",
             f"  test loss below 10% of its start (phase change) at: {fmt(test_pc)}",
             f"  train loss phase change at: {fmt(train_pc)}",
             f"  distinct test phase changes: {payload['distinct_test_phase_changes']}"]
    figs = {"phases_test_loss_per_group": F.loss_groups(m, "test_", f"{run_dir.name}: test loss per group")}
    if any(k.startswith("induction_head") for k in m):
        best = max(float(m[k][-1]) for k in m if k.startswith("induction_head"))
        lines.append(f"  induction head formed (score > 0.5) at step {formed}" if formed is not None
                     else f"  no induction head at offset 1 (best final score {best:.2f})")
        profile = _final_offset_profile(run_dir)
        payload["final_offset_profile"] = profile.tolist()
        heads = [f"head {h}: offset {int(row.argmax()) + 1} ({row.max():.2f})" for h, row in enumerate(profile)]
        lines.append("  last layer at the end, best induction offset per head: " + "; ".join(heads))
        circuit = induction_formation_step(m, CIRCUIT_THRESHOLD, prefix="induction_best")
        if any(k.startswith("induction_best") for k in m):
            payload["induction_circuit_step"] = circuit
            at = lambda h: int(m[f"induction_offset{h}"][list(m["step"]).index(circuit)])  # noqa: E731
            heads_at = sorted({at(h) for h in range(len(profile)) if f"induction_offset{h}" in m}) if circuit is not None else []
            lines.append(f"  induction circuit at any offset (score > {CIRCUIT_THRESHOLD}) first at step {circuit:,} "
                         f"(offsets {', '.join(map(str, heads_at))})" if circuit is not None
                         else f"  no induction circuit at any offset (score > {CIRCUIT_THRESHOLD}) in the logged steps")
        figs["phases_induction_scores"] = F.induction_scores(m, f"{run_dir.name}: induction score per head (last layer)")
    if compare is not None:
        _, m2 = load(compare)
        figs["phases_train_vs_test"] = F.train_vs_test({run_dir.name: m, compare.name: m2}, "Train and test loss")
    return Report(payload, lines, figs)
