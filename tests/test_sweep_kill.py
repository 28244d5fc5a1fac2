"""A sweep killed while its worker processes train leaves no worker behind, and resumes."""

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grokinterp.cli import main
from grokinterp.sweep import SweepSpec, _steps_done

SPEC = dict(name="k", tasks=["add"], fracs=[0.5, 0.8], p=11, model="tiny-1l", lr=1e-2, steps=3000, checkpoint_every=100)
REPO = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _held(lock: Path) -> bool:
    """True while a process holds the flock on ``lock`` (as a trainer does while it trains its run)."""
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def _lock_holders(root: Path, names: list[str], timeout: float = 60) -> list[int]:
    """The PIDs in the members' .lock files once every member's lock is held at the same time."""
    deadline = time.monotonic() + timeout
    locks = [root / n / ".lock" for n in names]
    while time.monotonic() < deadline:
        if all(lock.exists() for lock in locks) and all(_held(lock) for lock in locks):
            return [int(lock.read_text()) for lock in locks]
        time.sleep(0.05)
    pytest.fail("the sweep's two workers did not train at the same time")


CLI = ["sweep", "--name", "k", "--tasks", "add", "--fracs", "0.5,0.8", "--seeds", "0", "--p", "11", "--model", "tiny-1l", "--lr", "1e-2", "--steps", "3000",
       "--checkpoint-every", "100", "--max-ensemble", "1", "--no-figures"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker states from /proc")
@pytest.mark.parametrize("victim", ["kill -9", "sigterm", "one worker killed"])
def test_a_killed_sweep_leaves_no_worker_training_and_resumes(tmp_path, victim):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-m", "grokinterp.cli", *CLI, "--workers", "2", "--runs-dir", str(tmp_path)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    spec = SweepSpec(**SPEC)
    names = [c.name for c in spec.configs()]
    root = tmp_path / "k"
    workers = _lock_holders(root, names)
    assert parent.pid not in workers and len(set(workers)) == 2  # two worker processes train the two members
    if victim == "one worker killed":  # the worker spawned last (PIDs rise): the one CPython's pool may not be watching yet
        os.kill(max(workers), signal.SIGKILL)
    else:
        parent.send_signal(signal.SIGKILL if victim == "kill -9" else signal.SIGTERM)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 5
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "a worker outlived the sweep"
    err = parent.stderr.read().strip().splitlines()
    if victim == "sigterm":  # stopped like Ctrl-C, one line
        assert parent.returncode == 130 and err[-1] == "grokinterp sweep: interrupted"
    if victim == "one worker killed":  # one line, no traceback; the sweep stopped the other worker, not waited for it to finish
        assert parent.returncode == 1 and "a worker process of the sweep died" in err[-1] and not any("Traceback" in e for e in err)
        assert all(_steps_done(root / n) < spec.steps for n in names)
    assert any(_steps_done(root / n) < spec.steps for n in names)  # the kill came mid-training
    if victim != "kill -9":
        return
    assert main([*CLI, "--workers", "2", "--runs-dir", str(tmp_path), "--json"]) == 0  # the same command resumes: no lock left held
    assert all(_steps_done(root / n) == spec.steps for n in names) and (root / "results.csv").exists()
