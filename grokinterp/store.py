"""The run directory: layout, atomic writes, and where run names are looked up.

    <runs dir>/<name>/config.json          RunConfig, the command that made it, versions
    <runs dir>/<name>/split.json           train indices into task.pairs (test = the rest)
    <runs dir>/<name>/metrics.csv          step, train/test loss and accuracy at every checkpoint
    <runs dir>/<name>/checkpoints/step_XXXXXXXX.safetensors   HookedTransformer parameters
    <runs dir>/<name>/state.safetensors    weights + optimiser state to resume (not shipped)
    <runs dir>/<name>/figures/             what the analysis commands draw
    <runs dir>/<name>/.lock                locked (flock) by the one process training the run

Nothing here unpickles: safetensors, JSON and CSV only. Every write goes to a temporary file in
the same folder and is renamed into place, so a kill never leaves half a file; the temporary
files a kill leaves behind (``.<name>.*.tmp``) are removed when training resumes.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import re
from pathlib import Path

REPO_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
METRIC_FIELDS = ["step", "train_loss", "train_acc", "test_loss", "test_acc"]


class RunError(Exception):
    """A run that cannot be found or read (missing or corrupt files, mismatched checkpoint)."""


class RunsDirError(ValueError):
    """A runs folder (--runs-dir or $GROKINTERP_RUNS) that exists but is not a folder (a usage error: exit code 2)."""


class RunNameError(ValueError):
    """A run or sweep name that cannot be written: not a plain folder name, a shipped run, or a run
    that exists already (a usage error: exit code 2)."""


SHIPPED_RUNS = ("modadd113", "s5", "s5-post")  # reference runs in the repository's checkpoints/: read-only
MAX_NAME_LENGTH = 100
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+=")


def validate_run_name(name: str, what: str = "run") -> str:
    """Return ``name`` if it is one plain folder name (letters, digits, ``. _ - + =``, at most
    MAX_NAME_LENGTH characters, not starting with '.'), else raise RunNameError. Every writer calls
    this, so no name can reach outside its runs folder."""
    if not isinstance(name, str) or not name:
        raise RunNameError(f"a {what} name must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise RunNameError(f"{what} name is {len(name)} characters long; use at most {MAX_NAME_LENGTH}")
    bad = sorted(set(name) - _NAME_CHARS)
    if bad or name.startswith("."):
        shown = "".join(bad) or "a leading '.'"
        raise RunNameError(f"bad {what} name {name!r} ({shown}): use letters, digits and . _ - + = only, not starting with '.'")
    return name


def is_shipped(run_dir: Path) -> bool:
    """True for the reference runs shipped in the repository's checkpoints/ (never written to)."""
    run_dir = Path(run_dir)
    return run_dir.name in SHIPPED_RUNS and run_dir.resolve().parent == REPO_CHECKPOINTS.resolve()


def shipped_run_message(name: str) -> str:
    return (f"{name!r} is a shipped read-only reference run; training never writes into it. "
            f"Train your own copy with: grokinterp train --run {name} --name my-{name}")


def run_dir_to_write(name: str, runs_dir: str | Path | None = None, resume: bool = False) -> Path:
    """The folder a trainer writes run ``name`` to, after the checks every trainer makes.

    ``name`` must pass ``validate_run_name`` and must not land on a shipped run. A new run goes
    to the first search folder and must not exist there yet (a folder without config.json, left
    by a kill, may be reused); a resumed run is looked up like any run and its folder must exist.
    """
    validate_run_name(name)
    run_dir = default_runs_dir(runs_dir) / name
    if resume and not run_dir.is_dir():
        run_dir = find_run_dir(name, runs_dir) or run_dir
    if is_shipped(run_dir):
        raise RunNameError(shipped_run_message(name))
    if resume and not run_dir.is_dir():
        where = ", ".join(str(d) for d in search_dirs(runs_dir))
        raise RunError(f"no run named {name!r} to resume in {where}; train it without --resume")
    if not resume and (run_dir / "config.json").exists():
        raise RunNameError(f"run {name!r} already exists in {run_dir.parent}; add --resume to continue it, or choose another --name (in Python: resume=True, or name=...)")
    return run_dir


@contextlib.contextmanager
def run_lock(run_dir: Path, resume: bool = False):
    """Hold an exclusive lock on ``run_dir`` (``fcntl.flock`` on ``<run_dir>/.lock``; the folder is
    created) while a trainer writes it: a second process gets a one-line RunError at once. The lock
    goes with the process, so a killed trainer never leaves it held; the holder writes its PID into
    the file, so the error names it. Under the lock, a new run
    (``resume=False``) must still have no config.json, and the temporary files of writes that a
    kill cut short (``.<file>.*.tmp``) are removed."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        f = open(run_dir / ".lock", "a")
    except OSError as e:
        raise RunError(f"cannot write run {run_dir.name} in {run_dir.parent}: {e.strerror}") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = (run_dir / ".lock").read_text().strip()
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise RunError(f"run {run_dir.name} in {run_dir.parent} is being trained by {who} right now; "
                           "wait for it to finish (or stop it), or train under another --name") from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        if not resume and (run_dir / "config.json").exists():
            raise RunNameError(f"run {run_dir.name!r} was just created in {run_dir.parent} by another process; choose another --name")
        for d in (run_dir, run_dir / "checkpoints"):
            for tmp in d.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
        yield  # closing the file releases the lock


def remove_outputs(run_dir: Path) -> None:
    """Delete what training writes besides config.json and split.json (metrics, checkpoints, resume
    state), so a run restarted from step 0 ends up as a fresh run would; only under ``run_lock``."""
    for f in [run_dir / "metrics.csv", run_dir / "state.safetensors", *(run_dir / "checkpoints").glob("step_*.safetensors")]:
        f.unlink(missing_ok=True)


def refuse_restart_over_progress(run_dir: Path, name: str, alternatives: str) -> None:
    """A run resumed without a resume state restarts from step 0, which deletes its outputs: fine for
    the step-0 files of a start that was killed before its first state write, refused (RunError) where
    checkpoints past step 0 would go (a run whose state.safetensors was removed, or a packed or copied
    run, which has none). ``alternatives``: what the user can do instead."""
    steps = checkpoint_steps_on_disk(run_dir)
    if steps and steps[-1] > 0:
        raise RunError(f"run {name} has no resume state ({run_dir / 'state.safetensors'}) but has checkpoints up to step "
                       f"{steps[-1]}: resuming would restart it from step 0 and delete them. {alternatives}")


def search_dirs(runs_dir: str | Path | None = None) -> list[Path]:
    """Where run names are looked up: --runs-dir / $GROKINTERP_RUNS, ./checkpoints, the repository's.

    A given runs folder that exists but is not a folder raises RunsDirError (it would otherwise be
    skipped without a word, and only the other folders searched)."""
    dirs = []
    if runs_dir is not None:
        dirs.append(Path(runs_dir))
        given = f"--runs-dir {runs_dir}"
    elif os.environ.get("GROKINTERP_RUNS"):
        dirs.append(Path(os.environ["GROKINTERP_RUNS"]))
        given = f"$GROKINTERP_RUNS={dirs[0]}"
    if dirs and dirs[0].exists() and not dirs[0].is_dir():
        raise RunsDirError(f"{given} is a file, not a folder of runs; give a folder (it is created when a run is trained)")
    dirs += [Path.cwd() / "checkpoints", REPO_CHECKPOINTS]
    unique = []
    for d in dirs:
        if d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def default_runs_dir(runs_dir: str | Path | None = None) -> Path:
    """Where a new run is written: the first of the search folders."""
    return search_dirs(runs_dir)[0]


def find_run_dir(name: str, runs_dir: str | Path | None = None) -> Path | None:
    """The first search folder's ``name`` that holds a config.json, or None; ``name`` must pass
    validate_run_name (RunNameError otherwise), so no lookup leaves the search folders."""
    validate_run_name(name)
    for d in search_dirs(runs_dir):
        if (d / name / "config.json").is_file():
            return d / name
    return None


def _new_temp_file(path: Path) -> tuple[int, Path]:
    """A new ``.<name>.<random>.tmp`` beside ``path``, opened for writing with mode 0666, which the
    kernel masks with the umask as for any ``open`` (``tempfile.mkstemp`` would make it 0600)."""
    while True:
        tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place. The file gets the
    mode an ordinary ``open`` would give (0666 & ~umask), not mkstemp's private 0600, so runs on shared
    storage are readable by the other users and nodes that the umask lets in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def atomic_write_tensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata))


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path} is missing; the run directory is incomplete (retrain it or restore the file)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is corrupt ({e.msg if hasattr(e, 'msg') else e}); restore it or retrain the run") from None


def read_tensors(path: Path, keys: list[str] | None = None) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file (only ``keys`` when given), with one-line errors.

    A checkpoint named ``step_N.safetensors`` whose metadata says another step is refused (a
    mislabelled file would be analysed as the wrong step); files without a "step" entry pass."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            _check_step_label(path, meta)
            names = f.keys() if keys is None else keys
            return {k: f.get_tensor(k) for k in names}, meta
    except (SafetensorError, OSError, ValueError) as e:
        try:  # safetensors reports an unreadable file as missing: ask the OS what is wrong
            with open(path, "rb"):
                pass
        except FileNotFoundError:
            raise RunError(f"{path} is missing; retrain the run or pick a step that exists") from None
        except OSError as os_error:  # permission denied and the like: the caller's one-line OSError
            raise os_error from None
        raise RunError(f"{path} is corrupt ({e}); {_repair_hint(path)}") from None


def _repair_hint(path: Path) -> str:
    """What to do about a damaged file: shipped runs are restored from the repository, never deleted."""
    run_dir = next((d for d in Path(path).parents if is_shipped(d)), None)
    if run_dir is not None:
        return f"it belongs to the shipped run {run_dir.name}: restore it with `git checkout -- checkpoints/{run_dir.name}`"
    return "delete it and resume or retrain the run"


def _check_step_label(path: Path, meta: dict) -> None:
    named = re.fullmatch(r"step_(\d+)\.safetensors", Path(path).name)
    if named is None or "step" not in meta:
        return
    stored = meta["step"]
    if not (stored.isdigit() and int(stored) == int(named[1])):
        raise RunError(f"{path} holds the weights of step {stored} (its metadata), not of step {int(named[1])} as its name says; "
                       "restore the right file or retrain the run")


def write_metrics(path: Path, rows: list[dict], fields: list[str] = METRIC_FIELDS) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (r[k] if k == "step" else f"{r[k]:.9g}") for k in fields})
    atomic_write_bytes(path, buf.getvalue().encode())


def read_metrics(path: Path, fields: list[str] = METRIC_FIELDS) -> list[dict]:
    """Rows of metrics.csv; ``fields=None`` accepts any columns that start with 'step'."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            names = reader.fieldnames or []
            if (fields is not None and names != fields) or (fields is None and names[:1] != ["step"]):
                raise RunError(f"{path} is corrupt (columns {names}); restore it or retrain the run")
            return [{k: (int(r[k]) if k == "step" else float(r[k])) for k in names} for r in reader]
    except FileNotFoundError:
        raise RunError(f"{path} is missing; the run directory is incomplete (retrain it or restore the file)") from None
    except (ValueError, TypeError) as e:
        raise RunError(f"{path} is corrupt ({e}); restore it or retrain the run") from None


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:08d}.safetensors"


def checkpoint_steps_on_disk(run_dir: Path) -> list[int]:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    steps = []
    for f in folder.glob("step_*.safetensors"):
        try:
            steps.append(int(f.stem.split("_")[1]))
        except (IndexError, ValueError):
            continue
    return sorted(steps)
