"""grokinterp: train grokking models with dense checkpoints and take them apart.

    import grokinterp as gi
    run = gi.load_run("modadd113")
    model = run.model(step=10_000)          # a TransformerLens HookedTransformer
    logits, cache = model.run_with_cache(run.task.all_inputs())
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


__all__ = ["PRESETS", "RunConfig", "preset", "TASKS", "Task", "load_run", "train", "__version__"]
