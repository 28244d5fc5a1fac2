"""One public call per analysis the CLI runs, on a ``Run`` (loaded, imported or made in memory).

    import grokinterp as gi
    rep = gi.fourier("modadd113")            # a run name or path, or a Run
    rep.payload                              # what `grokinterp fourier --json` writes (less the figure files)
    print("\\n".join(rep.lines))              # what `grokinterp fourier` prints
    rep.figures["fourier_embedding"].show()  # the plotly figures it saves

Each call returns the ``report.Report`` (payload, lines, figures) of the command of the same name.
"""

from __future__ import annotations

from numbers import Integral, Real
from pathlib import Path

from .config import ConfigError
from .runs import Run, load_run
from .store import RunError

# gradient symmetricity is a mean of cosines over triples that the verdict compares with 0.95 (clocks: 0.3-0.8);
# one cosine spreads by about 0.5, so the mean needs some 100 triples to be within 0.05
MIN_TRIPLES = 100


def _run(run: Run | str | Path, runs_dir=None) -> Run:
    return run if isinstance(run, Run) else load_run(run, runs_dir)


def _is_int(x) -> bool:
    return isinstance(x, Integral) and not isinstance(x, bool)


def _check_int(name: str, value, low: int, high: int | None = None, why: str = "") -> None:
    """``value`` an int (numpy ints too) in low..high (no upper bound when None), else one ConfigError naming it."""
    span = f"in {low}..{high}" if high is not None else f"at least {low}"
    if not _is_int(value) or value < low or (high is not None and value > high):
        raise ConfigError(f"{name} must be an integer {span}{why}, got {value!r}")


def _check_seed(seed: int, bits: int) -> None:
    if not _is_int(seed) or not 0 <= seed < 2**bits:
        raise ConfigError(f"seed must be an integer in [0, 2**{bits}), got {seed!r}")


def check_key_freqs(key_freqs, p: int) -> list[int]:
    """The key frequencies of Z_p as a list of distinct ints in 1..(p-1)/2 (k and p - k are the same
    frequency), else one ConfigError naming the bad value. Used by gi.progress and ``progress --freqs``."""
    top = (p - 1) // 2
    if isinstance(key_freqs, (str, bytes)) or not hasattr(key_freqs, "__iter__"):
        raise ConfigError(f"key_freqs must be a list of frequencies such as [9, 13], got {key_freqs!r}")
    ks = list(key_freqs)
    if not ks:
        raise ConfigError("no key frequencies given; pass None for those of the last checkpoint's neuron clusters")
    if bad := [k for k in ks if not _is_int(k) or not 1 <= k <= top]:
        raise ConfigError(f"key frequencies of p = {p} are 1..{top}, got {', '.join(map(repr, bad))}")
    if dup := sorted({int(k) for k in ks if ks.count(k) > 1}):
        raise ConfigError(f"key frequencies must be distinct; {', '.join(map(str, dup))} given more than once")
    return [int(k) for k in ks]


def fourier(run, step: int | None = None, threshold: float = 0.85, runs_dir=None):
    """Key frequencies and Fourier spectra at one checkpoint (``grokinterp fourier``; modular tasks).
    ``threshold``: the share of a neuron's variance one frequency must explain, in (0, 1]."""
    from .report import fourier_report

    if not isinstance(threshold, Real) or isinstance(threshold, bool) or not 0 < threshold <= 1:
        raise ConfigError(f"threshold is a share of a neuron's variance: it must be in (0, 1], got {threshold}")
    return fourier_report(_run(run, runs_dir), step=step, threshold=threshold)


def progress(run, key_freqs: list[int] | None = None, progress: bool = False, runs_dir=None):
    """Progress measures and phases over every checkpoint (``grokinterp progress``; modular tasks)."""
    from .report import progress_report

    run = _run(run, runs_dir)
    if key_freqs is not None and run.task.is_modular:
        key_freqs = check_key_freqs(key_freqs, run.task.p)
    return progress_report(run, key_freqs=key_freqs, progress=progress)


def tsne(run, step: int | None = None, seed: int = 0, k: int = 8, runs_dir=None):
    """t-SNE of the output weights, Power et al. Fig. 3 (``grokinterp tsne``); modular runs: points coloured by
    x mod ``k``, lines x -> x + k, with k in 1..p-1 (k = 1: one colour, the lines of the frequency-1 circle)."""
    from .report import tsne_report

    _check_seed(seed, 32)  # scikit-learn's TSNE random_state
    run = _run(run, runs_dir)
    if run.task.group is None:
        _check_int("k", k, 1, run.task.p - 1, f" for p = {run.task.p} (colours x mod k, lines x -> x+k)")
    return tsne_report(run, step=step, seed=seed, k=k)


def cosets(run, matrix: str = "W_U", clusters: str = "kmeans", runs_dir=None):
    """Coset structure of W_U or W_E over training (``grokinterp cosets``; group tasks)."""
    from .report import cosets_report

    if clusters not in ("kmeans", "agglomerative"):
        raise ConfigError(f"unknown clusters {clusters!r}; choose kmeans or agglomerative")
    return cosets_report(_run(run, runs_dir), matrix=matrix, clusters=clusters)


def reps(run, step: int | None = None, runs_dir=None):
    """Irrep shares of W_E, W_U and the logits (``grokinterp reps``; group tasks)."""
    from .report import reps_report

    return reps_report(_run(run, runs_dir), step=step)


def algorithm(run, step: int | None = None, triples: int = 2000, seed: int = 0, runs_dir=None):
    """Clock or pizza (Zhong et al. 2023): gradient symmetricity and distance irrelevance per key frequency
    (``grokinterp algorithm``; modular addition)."""
    from .algorithm_report import algorithm_report

    _check_seed(seed, 63)
    _check_int("triples", triples, MIN_TRIPLES, why=" (the verdict compares a mean over triples with 0.95: fewer leave "
               "it to noise)")
    return algorithm_report(_run(run, runs_dir), step=step, n_triples=triples, seed=seed)


def phases(run, compare=None, runs_dir=None):
    """Phase changes of a sequence run, optionally beside a second one (``grokinterp phases``)."""
    from .report import phases_report

    run = _run(run, runs_dir)
    if run.kind != "sequence":
        raise RunError(f"run {run.name} is not a sequence run; for modular runs use gi.progress")
    return phases_report(run.path, None if compare is None else _run(compare, runs_dir).path)


def training_curves(run, runs_dir=None):
    """Accuracy and validation loss over training, Power et al. Fig. 1 (left) and Fig. 4 (part of ``grokinterp figures``)."""
    from .report import training_report

    return training_report(_run(run, runs_dir))


def train_sequence(preset: str, /, runs_dir=None, progress: bool = True, resume: bool = False, **changes) -> Run:
    """Train a sequence preset (``add5``, ``repeat-2l``, ... as ``grokinterp train --run NAME``) and open it.

    ``changes`` replace fields of the preset (``steps``, ``batch_size``, ``lr``, ``name`` (the run's
    folder; the preset's name by default), ...; see ``grokinterp.sequence_training.SequenceConfig``).
    ``resume``: continue the run of that name (a killed one, or with more ``steps``). Returns the run,
    ready for ``gi.phases``.
    """
    import dataclasses

    from .sequence_training import SEQUENCE_PRESETS, train_sequence as _train_sequence

    if preset not in SEQUENCE_PRESETS:
        raise ConfigError(f"unknown sequence preset {preset!r}; choose one of: {', '.join(SEQUENCE_PRESETS)}")
    cfg = dataclasses.replace(SEQUENCE_PRESETS[preset], **changes)
    command = f"gi.train_sequence({preset!r}" + "".join(f", {k}={v!r}" for k, v in changes.items()) + (", resume=True" if resume else "") + ")"
    return Run(_train_sequence(cfg, runs_dir, progress=progress, command=command, resume=resume))


_show_note = False


def show(fig, width: int | None = None, height: int | None = None) -> None:
    """Show a plotly figure in Jupyter as a static PNG, which renders on GitHub and in any notebook viewer.

    The PNG needs kaleido and Chrome/Chromium; where they are missing the interactive figure is shown
    instead, with a one-line note (once per session).
    """
    global _show_note
    import warnings

    import plotly.graph_objects as go
    from IPython.display import Image, display

    if not isinstance(fig, go.Figure):
        raise TypeError(f"gi.show takes a plotly Figure (e.g. report.figures[NAME]), got {type(fig).__name__}")
    try:
        import kaleido

        if hasattr(kaleido, "start_sync_server"):  # one browser for every figure, not one per figure
            kaleido.start_sync_server(silence_warnings=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            png = fig.to_image("png", width=width or fig.layout.width or 800, height=height or fig.layout.height or 500)
    except Exception as e:  # no kaleido or no Chrome: the interactive figure still shows
        if not _show_note:
            _show_note = True
            print(f"note: no static PNG ({type(e).__name__}: {_first_line(e)}); showing interactive figures." + _png_hint(e))
        fig.show()
        return
    display(Image(png))


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def _png_hint(e: Exception) -> str:
    """What to install, only when that is what failed: kaleido itself, or the Chrome it drives."""
    if isinstance(e, ImportError):
        return " For PNGs install kaleido (pip install kaleido) and Chromium."
    if type(e).__name__ in ("ChromeNotFoundError", "BrowserDepsError"):  # kaleido's (choreographer's) errors
        return " For PNGs install Chromium (apt-get install chromium) or run `plotly_get_chrome`."
    return ""
