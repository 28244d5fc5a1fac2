"""A sweep killed while its worker processes train leaves no worker behind, and resumes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grokinterp.sweep import SweepSpec, _steps_done, run_sweep

SPEC = dict(name="k", tasks=["add"], fracs=[0.5, 0.8], p=11, model="tiny-1l", lr=1e-2, steps=600, checkpoint_every=20)
REPO = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _lock_holders(root: Path, names: list[str], timeout: float = 60) -> list[int]:
    """The PIDs written into the members' .lock files once every member has started training."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = [(root / n / ".lock").read_text().strip() if (root / n / ".lock").exists() else "" for n in names]
        if all(h.isdigit() for h in held) and all(_steps_done(root / n) > 0 for n in names):
            return [int(h) for h in held]
        time.sleep(0.1)
    pytest.fail("the sweep's workers did not start training in time")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker states from /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_killed_sweep_leaves_no_worker_training_and_resumes(tmp_path, sig):
    code = (f"from grokinterp.sweep import SweepSpec, run_sweep; "
            f"run_sweep(SweepSpec(**{SPEC!r}), {str(tmp_path)!r}, max_ensemble=1, progress=False, workers=2)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    spec = SweepSpec(**SPEC)
    names = [c.name for c in spec.configs()]
    root = tmp_path / "k"
    workers = _lock_holders(root, names)
    assert parent.pid not in workers and len(set(workers)) == 2  # two worker processes train the two members
    parent.send_signal(sig)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 5
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "a worker outlived the sweep process"
    if sig == signal.SIGTERM:  # stopped like Ctrl-C: a KeyboardInterrupt, not a SIGTERM death
        assert parent.returncode != -signal.SIGTERM and "KeyboardInterrupt" in parent.stderr.read()
    assert any(_steps_done(root / n) < spec.steps for n in names)  # the kill came mid-training
    run_sweep(spec, tmp_path, max_ensemble=1, progress=False, workers=1)  # the locks went with the workers
    assert all(_steps_done(root / n) == spec.steps for n in names) and (root / "results.csv").exists()
