"""The ``grokinterp`` command line: thin wrappers that compose tasks, training, runs, analyses, figures.

Heavy imports (torch, TransformerLens) happen inside the commands that need them.
Errors a user can cause print one line; exit code 2 for usage errors, 1 for the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from .config import OPTIMIZERS, PRESETS, ConfigError, RunConfig, preset
from .models import MODELS, ModelError
from .tasks import GROUP_HELP, MODULAR_OPS, TASKS, TaskError


class UsageError(Exception):
    """Bad flags or values: exit code 2."""


# ---- helpers -------------------------------------------------------------------------------------


def _add_runs_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", help="folder of run directories (default: $GROKINTERP_RUNS, ./checkpoints, the repository's)")


def _add_run(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--run", required=required, help="run name (see `grokinterp runs`) or path to a run directory")
    _add_runs_dir(p)


def _add_output(p: argparse.ArgumentParser, figures: bool = True, step: bool = True) -> None:
    if step:
        p.add_argument("--step", type=int, help="checkpoint step to analyse (default: the last)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a summary")
    if figures:
        p.add_argument("--no-figures", action="store_true", help="skip writing figures")
        p.add_argument("--out", help="folder for figures (default: <run>/figures)")
        p.add_argument("--self-contained", action="store_true", help="put plotly.js in every HTML figure (default: only when one figure)")


def _add_group(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--group", help=f"group of a group_* task (alone: group_mul): {GROUP_HELP}")
    g.add_argument("--generators", help="the group by permutation generators in cycle notation, ';' between them, "
                   "e.g. '(0,1,2);(0,1)' (points from 0; the degree is the largest point + 1)")


def _open_run(args):
    from .runs import load_run

    run = load_run(args.run, args.runs_dir)
    run.resolve_step(None)  # RunError while the run has no checkpoints to analyse
    return run


def _os_error_message(e: OSError, command: str) -> str:
    """One line for a file-system error (permission denied, read-only file system, disk full, ...)."""
    import errno

    where = f": {e.filename}" if e.filename else ""
    what = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        todo = "free some space and run the command again" + (" (with --resume to continue the run)" if command == "train" else "")
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        todo = "check its permissions, or use a folder you can read and write (--out, --runs-dir)"
    else:
        todo = "check the path"
    return f"{what}{where}; {todo}"


def _emit(args, payload: dict, lines: list[str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=1, default=_json_default))
    else:
        print("\n".join(lines))


def _json_default(o):
    import numpy as np

    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")


def _write_figures(args, run, figs: dict) -> list[str]:
    """Write {stem: figure} as HTML (+ PNG where a browser is found) to the run's figures folder."""
    if getattr(args, "no_figures", False) or not figs:
        return []
    from .figures import save_figures

    out = Path(args.out) if getattr(args, "out", None) else run.path / "figures"
    written = save_figures(figs, out, quiet=getattr(args, "json", False),
                           self_contained=getattr(args, "self_contained", False) or None)
    return [str(p) for p in written]


# ---- commands ------------------------------------------------------------------------------------


def cmd_train(args) -> int:
    import warnings

    with warnings.catch_warnings():  # the trainer's warnings (resuming from step 0, another thread count) as one line
        warnings.showwarning = lambda message, *_: print(f"grokinterp train: warning: {message}", file=sys.stderr)
        return _train(args)


def _train(args) -> int:
    from .training import train

    if args.from_weights and not args.resume:
        raise UsageError("--from-weights continues an existing run: add --resume")
    overrides = {k: v for k, v in {
        "task": args.task, "p": args.p, "frac": args.frac, "model": args.model, "lr": args.lr, "wd": args.wd,
        "steps": args.steps, "seed": args.seed, "split_seed": args.split_seed, "batch_size": args.batch_size,
        "checkpoint_every": args.checkpoint_every, "optimizer": args.optimizer, "loss": args.loss,
        "grokfast_alpha": args.grokfast_alpha, "grokfast_lambda": args.grokfast_lambda,
        "checkpoint_dtype": args.checkpoint_dtype, "dropout": args.dropout, "update_noise": args.update_noise,
        "weight_noise": args.weight_noise, "group": _group_flag(args), "attention_rate": args.attention_rate,
    }.items() if v is not None}
    if args.full_batch:
        overrides["batch_size"] = None
    from .sequence_training import SEQUENCE_PRESETS

    if args.run in SEQUENCE_PRESETS:
        return _train_sequence(args)
    if args.run in PRESETS:
        base = preset(args.run)
    elif args.run and args.resume:
        from .runs import load_run

        existing = load_run(args.run, args.runs_dir)
        if existing.kind == "sequence":
            from .sequence_training import read_sequence_config

            # the folder's name, not the one in its config.json: a copied run is resumed where it is
            return _train_sequence(args, dataclasses.replace(read_sequence_config(existing.path), name=existing.name),
                                   existing.path.parent)
        base, args.runs_dir = existing.config.replace(name=existing.name), existing.path.parent
    elif args.run:
        raise UsageError(f"unknown preset {args.run!r}; choose one of {', '.join(PRESETS)}, or define a run with --task ... --name NAME")
    elif args.task or "group" in overrides:
        if not args.name:
            raise UsageError("a run defined by flags needs --name NAME")
        task = overrides.setdefault("task", "group_mul")
        base = RunConfig(name=args.name, task=task, group=overrides.get("group"), p=args.p or (97 if task in MODULAR_OPS else 0),
                         description="defined by flags")
    else:
        raise UsageError("say what to train: --run PRESET (see `grokinterp runs`) or --task TASK --name NAME")
    for flag, value, instead in (("--n-train", args.n_train, "its training set is --frac of the table"),
                                 ("--log-every", args.log_every, "it logs its metrics at every checkpoint: --checkpoint-every")):
        if value is not None:
            raise UsageError(f"{flag} is for sequence runs (add5, add5-finite, repeat-*), not for table run {base.name}; {instead}")
    if "group" in overrides and "task" not in overrides and base.task.startswith("s5_"):
        overrides["task"] = base.task.replace("s5_", "group_")  # a preset's S5 setup on another group
    cfg = base.replace(**overrides, **({"name": args.name} if args.name else {}))
    if args.run in PRESETS:
        cfg = cfg.replace(description=_changed_description(base, cfg))
    (run_dir,) = train([cfg], runs_dir=args.runs_dir, resume=args.resume, device=args.device, progress=not args.no_progress,
                       capture=False if args.no_cuda_graph else None, compile=args.compile,
                       background_writes=args.background_writes, from_weights=args.from_weights)
    from .runs import Run

    s = Run(run_dir).summary()
    print(f"{cfg.name}: {s['steps_done']} steps, train acc {s['train_acc']:.3f}, test acc {s['test_acc']:.3f} -> {run_dir}")
    return 0


def _changed_description(preset, cfg) -> str:
    """The preset's description, followed by the settings flags changed (a preset's description may
    state its settings, e.g. "400 fixed examples, wd 1", which the flags make untrue)."""
    skip = {"name", "description", "steps", "checkpoint_every", "checkpoint_dtype", "log_every"}  # steps: --resume may extend them
    changed = [f"{f.name} {getattr(cfg, f.name)}" for f in dataclasses.fields(cfg)
               if f.name not in skip and getattr(cfg, f.name) != getattr(preset, f.name)]
    return f"{preset.description}; changed by flags: {', '.join(changed)}" if changed and preset.description else preset.description


def _train_sequence(args, base=None, runs_dir=None) -> int:
    """Train (or resume) a sequence run: a sequence preset, or ``base`` (the config of a run to resume)."""
    if args.from_weights:
        raise UsageError("--from-weights is for table runs; a sequence run resumes from its resume state only")
    from .sequence_training import SEQUENCE_PRESETS, train_sequence

    if args.compile:
        raise UsageError("--compile compiles the table trainer's step; sequence runs (add5, repeat-*) train without it")
    changes = {k: v for k, v in {"steps": args.steps, "seed": args.seed, "wd": args.wd, "lr": args.lr, "batch_size": args.batch_size,
                                 "name": args.name, "n_train": args.n_train, "checkpoint_every": args.checkpoint_every,
                                 "log_every": args.log_every}.items() if v is not None}
    if args.full_batch:
        changes["batch_size"] = None
    cfg = dataclasses.replace(base or SEQUENCE_PRESETS[args.run], **changes)
    if base is None:
        cfg = dataclasses.replace(cfg, description=_changed_description(SEQUENCE_PRESETS[args.run], cfg))
    run_dir = train_sequence(cfg, runs_dir or args.runs_dir, progress=not args.no_progress,
                             command=" ".join(["grokinterp"] + sys.argv[1:]), resume=args.resume)
    print(f"{cfg.name}: {cfg.steps} steps -> {run_dir}")
    return 0


def cmd_phases(args) -> int:
    from .report import phases_report
    from .runs import load_run

    compare = load_run(args.compare, args.runs_dir).path if args.compare else None
    return _report_command(args, phases_report(_open_run(args).path, compare))


def cmd_runs(args) -> int:
    from .runs import list_runs, list_sweeps
    from .sequence_training import SEQUENCE_PRESETS
    from .store import RunError

    runs = []
    for r in list_runs(args.runs_dir):
        try:
            runs.append(r.summary())
        except RunError as e:  # one broken run must not hide the others
            runs.append({"name": r.name, "error": str(e)})
        except OSError as e:
            runs.append({"name": r.name, "error": _os_error_message(e, args.command)})
    presets = {k: v.description for k, v in PRESETS.items()}
    sequence_presets = {k: v.description for k, v in SEQUENCE_PRESETS.items()}
    lines = (["presets:"] + [f"  {k:<16} {d}" for k, d in presets.items()]
             + ["", "sequence presets (`grokinterp phases` analyses them):"] + [f"  {k:<16} {d}" for k, d in sequence_presets.items()]
             + ["", "trained runs:"])
    for s in runs:
        if "error" in s:
            lines.append(f"  {s['name']:<20} unreadable: {s['error']}")
            continue
        if "train_acc" in s:
            acc = f"train {s['train_acc']:.3f}  test {s['test_acc']:.3f}"
        else:
            acc = f"test loss {s['test_loss']:.3g}" if s.get("test_loss") is not None else "no metrics yet"
        lines.append(f"  {s['name']:<20} {s['task']:<22} {s['steps_done']:>6}/{s['steps_planned']:<6} steps  {acc}")
    if not runs:
        lines.append("  (none yet: `grokinterp train --run tiny23`)")
    sweeps = list_sweeps(args.runs_dir)
    if sweeps:
        lines += ["", "sweeps (a member opens as --run SWEEP/MEMBER; `grokinterp runs --json` lists the members):"]
        for sw in sweeps:
            example = f"e.g. --run {sw['name']}/{sw['members'][0]}" if sw["members"] else "no member trained yet"
            lines.append(f"  {sw['name']:<20} {len(sw['members']):>4} members  {example}")
    _emit(args, {"presets": presets, "sequence_presets": sequence_presets, "runs": runs, "sweeps": sweeps}, lines)
    return 0


def _group_flag(args) -> str | None:
    """The group of --group or --generators (the same RunConfig field)."""
    return args.group or args.generators


def cmd_table(args) -> int:
    from .tasks import Task, format_table

    group = _group_flag(args)
    if not args.task and not group:
        raise UsageError("say which table: --task TASK, or --group GROUP for x*y in a group")
    task = Task(args.task or "group_mul", args.p, group_spec=group)
    train_idx = None if args.frac is None else task.split(args.frac, args.seed)[0]
    table = format_table(task, train_idx, args.symbols, args.size)  # a bad --size stops before anything is printed
    print(f"{task.formula}: {len(task)} equations" + ("" if args.frac is None else f", {len(train_idx)} shown, the rest '?'"))
    print(table)
    return 0


def _report_command(args, report) -> int:
    try:
        written = _write_figures(args, _open_run(args), report.figures)
    except OSError:
        if not args.json:  # the report is computed: print it before the one-line error (--json gives only the error)
            print("\n".join(report.lines))
        raise
    if written and not args.json:
        report.lines.append(f"  figures: {len(written)} files in {Path(written[0]).parent}")
    _emit(args, {**report.payload, "figures": written}, report.lines)
    return 0


def cmd_fourier(args) -> int:
    from .api import fourier

    return _report_command(args, fourier(_open_run(args), args.step, args.threshold))


def cmd_progress(args) -> int:
    from .api import progress

    try:
        freqs = [int(k) for k in args.freqs.split(",")] if args.freqs else None
    except ValueError:
        raise UsageError(f"--freqs takes comma-separated integers such as 9,13,29, got {args.freqs!r}") from None
    return _report_command(args, progress(_open_run(args), freqs, progress=not args.json))


def cmd_tsne(args) -> int:
    from .api import tsne

    return _report_command(args, tsne(_open_run(args), args.step, args.seed, args.k))


def cmd_cosets(args) -> int:
    from .report import cosets_report

    return _report_command(args, cosets_report(_open_run(args), args.matrix, args.cluster))


def cmd_reps(args) -> int:
    from .report import reps_report

    return _report_command(args, reps_report(_open_run(args), args.step))


def cmd_figures(args) -> int:
    from .report import all_reports, index_page

    run = _open_run(args)
    out = Path(args.out) if args.out else run.path / "figures"
    from .figures import FigureWriter

    with FigureWriter(out, png=not args.no_png, quiet=args.json, self_contained=args.self_contained) as writer:
        reports = all_reports(run, on_report=lambda rep: writer.add(rep.figures))  # PNGs render meanwhile
    written = [str(p) for p in writer.written]
    (out / "index.html").write_text(index_page(run, reports, written))
    figs = {stem: fig for rep in reports.values() for stem, fig in rep.figures.items()}
    lines = [line for rep in reports.values() for line in rep.lines]
    lines.append(f"{len(figs)} figures ({len(written)} files) and index.html in {out}")
    _emit(args, {name: rep.payload for name, rep in reports.items()} | {"files": written}, lines)
    return 0


def cmd_explore(args) -> int:
    import time

    from .explore import explorer_html

    run = _open_run(args)
    start = time.perf_counter()
    page = explorer_html(run, progress=not args.json)
    out = Path(args.out) if args.out else run.path / "figures"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "explore.html"
    path.write_text(page, encoding="utf-8")
    payload = {"run": run.name, "path": str(path), "checkpoints": len(run.steps), "bytes": path.stat().st_size,
               "seconds": round(time.perf_counter() - start, 1)}
    _emit(args, payload, [f"{run.name}: explorer over {payload['checkpoints']} checkpoints, {payload['bytes'] / 1e6:.1f} MB, "
                          f"built in {payload['seconds']} s -> {path}"])
    return 0


def cmd_export(args) -> int:
    from .export import export_run

    try:
        steps = tuple(int(s) for s in args.full_precision.split(",")) if args.full_precision else ()
    except ValueError:
        raise UsageError(f"--full-precision takes comma-separated steps such as 0,10000, got {args.full_precision!r}") from None
    out = export_run(_open_run(args), Path(args.out), args.every, args.dtype, steps, args.thin_after, args.thin_every)
    print(f"exported {args.run} to {out}")
    return 0


def cmd_sweep(args) -> int:
    from .sweep import SweepSpec, parse_variants, read_results, run_sweep, write_results

    if args.from_results:
        if not args.out:
            raise UsageError("--from-results draws figures only: give --out FOLDER for them")
        try:
            rows = read_results(args.from_results)
        except OSError as e:
            raise UsageError(f"cannot read {args.from_results}: {e.strerror}") from None
        written = _sweep_figures(rows, args, Path(args.out))
        _emit(args, {"results": rows, "figures": written}, [f"{len(rows)} runs from {args.from_results}; figures: {len(written)} files in {args.out}"])
        return 0
    if not args.name:
        raise UsageError("--name is required (or --from-results CSV to redraw a sweep's figures)")

    def numbers(text: str, kind, flag: str) -> list:
        try:
            return [kind(v) for v in text.split(",")]
        except ValueError:
            raise UsageError(f"{flag} takes comma-separated numbers, got {text!r}") from None

    spec = SweepSpec(name=args.name, tasks=args.tasks.split(","), fracs=numbers(args.fracs, float, "--fracs"),
                     seeds=numbers(args.seeds, int, "--seeds"), wds=numbers(args.wds, float, "--wds"),
                     optimizers=args.optimizers.split(","),
                     batch_sizes=[None if b == "full" else int(b) for b in args.batch_sizes.split(",")],
                     attention_rates=numbers(args.attention_rates, float, "--attention-rates"),
                     p=args.p, model=args.model, lr=args.lr, steps=args.steps, checkpoint_every=args.checkpoint_every,
                     weights_every=args.weights_every, checkpoint_dtype=args.checkpoint_dtype,
                     variants=parse_variants(args.variants) if args.variants else [])
    for t in spec.tasks:
        if t not in TASKS:
            raise UsageError(f"unknown task {t!r}; choose from {', '.join(TASKS)}")
        if t.startswith("group_"):  # a sweep has no --group: its members name their group by their task
            raise UsageError(f"`sweep` takes tasks that name their group (s5_mul, s5_conj, ...); {t} needs --group, "
                             f"which only `train` takes: train each run with `grokinterp train --task {t} --group G ...`")
    spec.configs()  # validates every member before any training
    root = run_sweep(spec, args.runs_dir, args.max_ensemble, args.backend, args.device, args.ray_address, progress=not args.json,
                     workers=args.workers)
    rows = write_results(root, spec)
    written = [] if args.no_figures else _sweep_figures(rows, args, Path(args.out) if args.out else root / "figures")
    lines = [f"sweep {spec.name}: {len(rows)} runs in {root}; results in results.csv",
             f"  {'run':<36} {'train 99%':>9} {'test 99%':>9} {'best test':>9}"]
    never = lambda step: "never" if step is None else str(step)  # steps to 99%: None when not reached within the budget
    lines += [f"  {r['run']:<36} {never(r['memorised_step']):>9} {never(r['grokked_step']):>9} {r['best_test_acc']:>9.3f}" for r in rows]
    runs_dir = f" --runs-dir {args.runs_dir}" if args.runs_dir else ""
    first = next(c for c in spec.configs() if c.name == rows[0]["run"])
    lines.append(f"  open a member as --run {spec.name}/MEMBER, e.g. `grokinterp {_analysis_for(first.make_task())} "
                 f"--run {spec.name}/{rows[0]['run']}{runs_dir}`")
    if written:
        lines.append(f"  figures: {len(written)} files in {Path(written[0]).parent}")
    _emit(args, {"sweep": spec.name, "results": rows, "figures": written}, lines)
    return 0


def _analysis_for(task) -> str:
    """The command a hint suggests for a run of ``task``: fourier on a full modular table, cosets on a group, else figures."""
    if task.group is not None:
        return "cosets"
    return "fourier" if task.is_modular and len(task) == task.p * task.p and task.p % 2 else "figures"


def cmd_census(args) -> int:
    from tqdm.auto import tqdm

    from .census import census_report, census_table, members_of_sweep, write_csv
    from .runs import find_sweep
    from .store import RunError

    root = find_sweep(args.sweep, args.runs_dir)
    if root is None:
        raise RunError(f"no sweep named {args.sweep!r}; train one with `grokinterp sweep --name {args.sweep} --tasks s5_mul ...`")
    members, group, notes = members_of_sweep(root)
    with tqdm(total=len(members), unit="seed", desc="census", disable=args.json) as bar:
        rows = census_table(members, group, progress=bar.update)
    report = census_report(rows, f"census of {root.name}", notes)
    write_csv(rows, root / "census.csv")
    report.lines.append(f"  table: {root / 'census.csv'}")
    written = []
    if not args.no_figures:
        from .figures import save_figures

        written = [str(p) for p in save_figures(report.figures, Path(args.out) if args.out else root / "figures", quiet=args.json)]
    _emit(args, {**report.payload, "figures": written}, report.lines)
    return 0
def _sweep_figures(rows: list[dict], args, out: Path) -> list[str]:
    """Power et al. Fig. 1 (centre) and Fig. 2, one line per varied setting: Fig. 2 per regulariser
    where regularisers vary (and per operation too where tasks vary), else per operation."""
    from . import figures as F
    from .sweep import best_accuracy, median_steps_to_generalise, varied_settings

    label = f" ({args.label})" if args.label else ""
    varied = varied_settings(rows)
    regularisers = any(f != "task" for f in varied)
    stem, what = ("sweep_fig2_regularisers", "regulariser" + (" and operation" if "task" in varied else "")) if regularisers \
        else ("sweep_fig2_operations", "operation")
    figs = {"sweep_fig1_steps_vs_fraction": F.steps_vs_fraction(median_steps_to_generalise(rows), f"Steps until generalisation{label}"),
            stem: F.accuracy_vs_fraction(best_accuracy(rows), f"Best validation accuracy per {what}{label}")}
    return [str(p) for p in F.save_figures(figs, out, quiet=args.json)]


def cmd_algorithm(args) -> int:
    from .api import algorithm

    return _report_command(args, algorithm(_open_run(args), args.step, args.triples, args.seed))


COMMANDS = {"phases": cmd_phases, "sweep": cmd_sweep, "figures": cmd_figures, "export": cmd_export, "train": cmd_train, "runs": cmd_runs, "table": cmd_table, "fourier": cmd_fourier, "progress": cmd_progress,
            "tsne": cmd_tsne, "cosets": cmd_cosets, "reps": cmd_reps, "census": cmd_census,
            "algorithm": cmd_algorithm}


def cmd_import(args) -> int:
    from .importer import import_run

    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UsageError("--checkpoint-every must be positive")
    run_dir, s = import_run(args.source, args.name, args.runs_dir, args.task, args.p, args.frac, args.split_seed,
                            args.train_indices, args.model, args.checkpoint_every, progress=not (args.json or args.no_progress))
    lines = [f"imported {s['checkpoints']} checkpoints (steps {s['first_step']:,} to {s['last_step']:,}, {s['steps']}) of {s['model']} "
             f"from {args.source} ({s['layout']} layout) -> {run_dir}",
             f"  task {s['task']}: {s['n_train']} train / {s['n_test']} test pairs (split: {s['split']})"]
    if s["dropped_equals_output"]:
        lines.append("  the source's model has an output for '=' too; the run leaves it out (its logits cover the answers)")
    for k, c in s["loss_check"].items():
        lines.append(f"  last checkpoint: {k.replace('_', ' ')} recomputed {c['recomputed']:.6g}, recorded in the source "
                     f"{c['recorded']:.6g}, difference {c['difference']:+.2e}")
    if not s["loss_check"]:
        lines.append("  the source records no losses to check against")
    from .runs import Run

    lines.append(f"  analyse it: grokinterp {_analysis_for(Run(run_dir).task)} --run {s['run']}"
                 + (f" --runs-dir {args.runs_dir}" if args.runs_dir else ""))
    _emit(args, s, lines)
    return 0


COMMANDS["import"] = cmd_import
COMMANDS["explore"] = cmd_explore


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grokinterp", description="Train grokking models and take them apart.")
    parser.add_argument("--version", action="version", version=f"grokinterp {__import__('grokinterp').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a preset or a run defined by flags, with dense checkpoints")
    p.add_argument("--run", help=f"preset ({', '.join(PRESETS)}; sequence presets: add5, add5-finite, repeat-2l, "
                   "repeat-1l, repeat-2l-finite) or, with --resume, an existing run")
    p.add_argument("--name", help="run name (default: the preset's)")
    p.add_argument("--task", help=f"operation: {', '.join(TASKS)}")
    p.add_argument("--p", type=int, help="modulus for modular tasks (default 97 for flag-defined runs)")
    _add_group(p)
    p.add_argument("--frac", type=float, help="training fraction in (0, 1)")
    p.add_argument("--model", help=f"model: {', '.join(MODELS)}")
    p.add_argument("--lr", type=float)
    p.add_argument("--wd", type=float, help="AdamW weight decay")
    p.add_argument("--steps", type=int, help="total optimiser steps (with --resume: extend the run)")
    p.add_argument("--seed", type=int, help="model initialisation seed")
    p.add_argument("--split-seed", type=int, help="train/test split seed")
    p.add_argument("--batch-size", type=int, help="minibatch size (Power et al.: 512)")
    p.add_argument("--full-batch", action="store_true", help="train on the whole training set each step (sequence presets: finite data only)")
    p.add_argument("--n-train", type=int, help="sequence presets: size of the fixed training set (finite-data mode)")
    p.add_argument("--log-every", type=int, help="sequence presets: log the per-part losses to metrics.csv every N steps and at the "
                   "last (default: the preset's, 25 or 50); table runs log at every checkpoint (--checkpoint-every)")
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--checkpoint-dtype", choices=["float32", "float16"])
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="adamw-to-init: weight decay pulls toward the initial weights")
    p.add_argument("--grokfast-alpha", type=float)
    p.add_argument("--grokfast-lambda", type=float)
    p.add_argument("--loss", choices=["ce", "stablemax"])
    p.add_argument("--dropout", type=float, help="residual dropout while training (Power et al. Fig. 2: 0.1)")
    p.add_argument("--update-noise", type=float, help="std of Gaussian noise added to the weights after each update")
    p.add_argument("--weight-noise", type=float, help="std of Gaussian noise on the weights of each forward pass (Power et al.: 0.01)")
    p.add_argument("--attention-rate", type=float, help="alpha in [0, 1]: attention = alpha softmax + (1 - alpha) uniform "
                   "(Zhong et al. 2023; default 1, 0 = constant attention)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when present)")
    p.add_argument("--no-cuda-graph", action="store_true", help="on CUDA, run each step eagerly instead of replaying a captured CUDA graph")
    p.add_argument("--compile", action="store_true", help="compile the training step with torch.compile (fused kernels; "
                   "inside the CUDA graph on CUDA); compiling takes tens of seconds at the start")
    p.add_argument("--background-writes", action=argparse.BooleanOptionalAction, help="write checkpoints, metrics and resume state "
                   "on a background thread while training goes on, or between steps (default: in the background on CUDA only)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--from-weights", action="store_true", help="with --resume, for a table run without a resume state (state.safetensors; "
                   "e.g. a packed or copied run): continue from its last saved weights with AdamW's moments restarted at zero "
                   "(a run that has its state resumes from it)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_runs_dir(p)

    p = sub.add_parser("runs", help="list presets and trained runs")
    _add_runs_dir(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("table", help="print an operation table with held-out cells as '?' (Power et al. Fig. 1)")
    p.add_argument("--task", help=f"operation: {', '.join(TASKS)} (default with --group: group_mul)")
    p.add_argument("--p", type=int, default=97)
    _add_group(p)
    p.add_argument("--frac", type=float, help="show only this training fraction; the rest prints '?'")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--symbols", choices=["letters", "emoji", "numbers"], default="letters")
    p.add_argument("--size", type=int, default=12, help="show the top-left SIZE x SIZE corner (default 12)")

    p = sub.add_parser("fourier", help="key frequencies and Fourier spectra of a modular-arithmetic run (Nanda et al.)")
    _add_run(p)
    _add_output(p)
    p.add_argument("--threshold", type=float, default=0.85, help="neuron share needed to join a frequency cluster")

    p = sub.add_parser("progress", help="progress measures and phases over every checkpoint (Nanda et al.)")
    _add_run(p)
    _add_output(p, step=False)
    p.add_argument("--freqs", help="comma-separated key frequencies (default: found at the last checkpoint)")

    p = sub.add_parser("tsne", help="t-SNE of the output weights (Power et al. Fig. 3)")
    _add_run(p)
    _add_output(p)
    p.add_argument("--seed", type=int, default=0, help="t-SNE seed")
    p.add_argument("--k", type=int, default=8, help="modular runs: colour by x mod k, lines x -> x+k (1..p-1)")

    p = sub.add_parser("cosets", help="coset structure of a group run's embeddings over training")
    _add_run(p)
    _add_output(p, step=False)
    p.add_argument("--matrix", choices=["W_U", "W_E"], default="W_U", help="which embedding to score (default W_U)")
    p.add_argument("--cluster", choices=["kmeans", "agglomerative"], default="kmeans", help="direct clustering method")

    p = sub.add_parser("figures", help="every paper-style figure of a run, with an index page")
    _add_run(p)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a summary")
    p.add_argument("--out", help="folder for figures (default: <run>/figures)")
    p.add_argument("--self-contained", action="store_true", help="put plotly.js in every HTML figure (default: one shared plotly.min.js)")
    p.add_argument("--no-png", action="store_true", help="HTML only: skip the static PNGs (a few seconds faster)")

    p = sub.add_parser("export", help="copy a run with fewer, half-precision checkpoints (for shipping)")
    _add_run(p)
    p.add_argument("--out", required=True, help="the new run directory")
    p.add_argument("--every", type=int, required=True, help="keep every N-th step (plus early log-spaced ones and the last)")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    p.add_argument("--full-precision", help="comma-separated steps to keep in float32 too")
    p.add_argument("--thin-after", type=int, help="after this step keep only every --thin-every-th step")
    p.add_argument("--thin-every", type=int)

    p = sub.add_parser("sweep", help="train a grid of runs as ensembles; results table and Power et al. Fig. 1-2")
    p.add_argument("--name", help="sweep name (a folder in the runs dir)")
    p.add_argument("--tasks", default="add", help="comma-separated tasks")
    p.add_argument("--fracs", default="0.3,0.4,0.5,0.6,0.7,0.8", help="comma-separated training fractions")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--wds", default="1", help="comma-separated weight decays")
    p.add_argument("--optimizers", default="adamw", help=f"comma-separated: {', '.join(OPTIMIZERS)}")
    p.add_argument("--batch-sizes", default="full", help="comma-separated batch sizes or 'full'")
    p.add_argument("--attention-rates", default="1", help="comma-separated attention rates alpha in [0, 1] (Zhong et al. 2023; "
                   "0: constant attention, 1: standard); trained together as one ensemble")
    p.add_argument("--variants", help="';'-separated regularisers crossed with the grid, each 'key=value,...' over "
                   "wd, optimizer, batch_size, lr, dropout, update_noise, weight_noise, grokfast_alpha, grokfast_lambda, attention_rate "
                   "(e.g. 'wd=1; wd=0; wd=0,batch_size=full,update_noise=0.01; wd=0,dropout=0.1')")
    p.add_argument("--p", type=int, default=97)
    p.add_argument("--model", default="tiny-1l")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--checkpoint-every", type=int, default=100, help="evaluate (metrics) every N steps")
    p.add_argument("--weights-every", type=int, help="keep weights only every N steps and at the end (default: at every checkpoint)")
    p.add_argument("--checkpoint-dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--max-ensemble", type=int, default=32, help="largest ensemble trained in one process")
    p.add_argument("--workers", type=int, help="local processes training ensembles side by side (default: one per CPU core "
                   "on a CPU, 1 on a GPU)")
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--ray-address", help="Ray cluster address (default: start a local instance)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when present)")
    p.add_argument("--label", help="text added to figure titles (e.g. 'reduced CPU sweep')")
    p.add_argument("--from-results", metavar="CSV", help="train nothing: draw the figures of a sweep's results.csv into --out")
    p.add_argument("--out", help="folder for figures (default: <sweep>/figures)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-figures", action="store_true")
    _add_runs_dir(p)

    p = sub.add_parser("phases", help="phase changes of a sequence run (add5, repeat-2l, ...): per-group losses, induction heads")
    _add_run(p)
    _add_output(p, step=False)
    p.add_argument("--compare", help="a second run to draw beside it (e.g. add5-finite beside add5)")

    p = sub.add_parser("reps", help="irreducible-representation shares of a group run (Chughtai et al.)")
    _add_run(p)
    _add_output(p)

    p = sub.add_parser("census", help="per seed of a group sweep: the irrep W_U settles in, the coset class it predicts and shows")
    p.add_argument("--sweep", required=True, help="sweep name (see `grokinterp sweep`) or path to a sweep folder")
    _add_runs_dir(p)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a summary")
    p.add_argument("--no-figures", action="store_true", help="skip writing figures")
    p.add_argument("--out", help="folder for figures (default: <sweep>/figures)")
    p = sub.add_parser("import", help="turn other people's checkpoints (a file or a folder) into a run directory",
                       description="Read checkpoints safely (never unpickling code) and write an ordinary run directory. "
                       "SOURCE: a folder with one .safetensors/.pt/.pth per step, or one .pt/.pth holding a list of state "
                       "dicts or a dict with 'state_dicts'/'checkpoints' (Nanda's progress-measures run, TransformerLens' "
                       "grokking demo). See docs/bring-your-own-run.md.")
    p.add_argument("source", help="checkpoint file or folder")
    p.add_argument("--name", help="run name (default: the source's name without its suffix)")
    p.add_argument("--task", help=f"operation the model learned: {', '.join(TASKS)} (default: from the source's config)")
    p.add_argument("--p", type=int, help="modulus for modular tasks (default: from the source's config)")
    p.add_argument("--frac", type=float, help="training fraction of the split (with --split-seed; grokinterp's Task.split)")
    p.add_argument("--split-seed", type=int, help="seed of the split (with --frac)")
    p.add_argument("--train-indices", help="file of training pair indices (x * p + y for modular tasks): a JSON list, or numbers "
                   "separated by commas or spaces")
    p.add_argument("--model", help=f"model the weights fit (default: found from their shapes): {', '.join(MODELS)}")
    p.add_argument("--checkpoint-every", type=int, help="steps between the checkpoints of a list that gives no steps")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a summary")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_runs_dir(p)
    p = sub.add_parser("explore", help="a page with a slider over the checkpoints that moves every panel (open it in a browser)")
    _add_run(p)
    p.add_argument("--out", help="folder for explore.html (default: <run>/figures, beside `grokinterp figures`)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a summary")

    p = sub.add_parser("algorithm", help="clock or pizza (Zhong et al. 2023): gradient symmetricity and distance irrelevance per key frequency")
    _add_run(p)
    _add_output(p)
    p.add_argument("--triples", type=int, default=2000, help="random (a, b, c) triples for gradient symmetricity (default 2000, at least 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the triples")
    return parser


def main(argv: list[str] | None = None) -> int:
    from .store import RunError, RunNameError, RunsDirError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except (UsageError, ConfigError, TaskError, ModelError, RunNameError, RunsDirError) as e:
        return _fail(args, str(e), 2)
    except RunError as e:
        return _fail(args, str(e), 1)
    except KeyboardInterrupt:
        print(f"grokinterp {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as e:  # permission denied, read-only file system, disk full, ...
        return _fail(args, _os_error_message(e, args.command), 1)


def _fail(args, message: str, code: int) -> int:
    """One error line on stderr; with --json also {"error", "exit_code"} on stdout, for scripts that parse it."""
    print(f"grokinterp {args.command}: error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "exit_code": code}, indent=1))
    return code

if __name__ == "__main__":
    sys.exit(main())
