"""grokinterp: train grokking models with dense checkpoints and take them apart.

    import grokinterp as gi
    run = gi.load_run("modadd113")
    model = run.model(step=10_000)          # a TransformerLens HookedTransformer (post-LN runs: a HookedRootModule)
    logits, cache = model.run_with_cache(run.task.all_inputs())
    gi.fourier(run), gi.progress(run)       # one call per analysis; gi.from_models(...) makes a run in memory
"""

__version__ = "0.1.0"

from .config import PRESETS, RunConfig, preset  # noqa: E402
from .tasks import TASKS, Task  # noqa: E402


def load_run(name, runs_dir=None):
    """Open a run directory by name (see ``grokinterp.runs.load_run``)."""
    from .runs import load_run as _load_run

    return _load_run(name, runs_dir)


def train(configs, **kwargs):
    """Train one RunConfig or a list of them as an ensemble (see ``grokinterp.training.train``)."""
    from .training import train as _train

    return _train(configs if isinstance(configs, (list, tuple)) else [configs], **kwargs)


# imported on first use, so `import grokinterp` stays light (no torch, no TransformerLens)
_LAZY = {"fourier": "api", "progress": "api", "tsne": "api", "cosets": "api", "reps": "api", "algorithm": "api", "phases": "api",
         "training_curves": "api", "train_sequence": "api", "show": "api",
         "from_models": "importer", "import_run": "importer", "Run": "runs"}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'grokinterp' has no attribute {name!r}")


__all__ = ["PRESETS", "RunConfig", "preset", "TASKS", "Task", "load_run", "train", "__version__", *_LAZY]
