"""The trainer's edges: resuming sequence runs, kills in the first moments, locks, shipped runs,
run names, bad settings, a loss that becomes NaN, and the thread count a run was trained with."""

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import grokinterp as gi
from grokinterp.cli import main
from grokinterp.config import ConfigError, RunConfig
from grokinterp.sequence_training import SEQUENCE_PRESETS, train_sequence
from grokinterp.store import (
    REPO_CHECKPOINTS, SHIPPED_RUNS, RunError, RunNameError, checkpoint_path, read_metrics, read_tensors, run_dir_to_write,
)

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "grokinterp.cli", "train", "--no-progress"]
SEQ = dataclasses.replace(SEQUENCE_PRESETS["add5-finite"], n_train=64, steps=30, checkpoint_every=10, log_every=10)
TABLE_ARGS = ["--run", "tiny23", "--steps", "40", "--checkpoint-every", "20"]


def cli(capsys, *argv):
    code = main(["train", "--no-progress", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def spawn(*argv) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's code, whatever is installed
    return subprocess.Popen([*CLI, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` is true; fail if it ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.01)
    assert proc.poll() is None, f"ended before the kill: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def state_step(run_dir: Path) -> int:
    try:
        return int(read_tensors(run_dir / "state.safetensors")[1]["step"])
    except RunError:
        return -1


def same_weights(a: Path, b: Path, steps) -> None:
    for step in steps:
        wa, _ = read_tensors(checkpoint_path(a, step))
        wb, _ = read_tensors(checkpoint_path(b, step))
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), (step, k)


def digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def tmp_files(run_dir: Path) -> list[Path]:
    return [f for d in (run_dir, run_dir / "checkpoints") for f in d.glob(".*.tmp")]


# ---- item 10: sequence runs resume, bit-identical ------------------------------------------------


def test_sequence_run_killed_mid_training_resumes_bit_identical(tmp_path, capsys):
    ref = train_sequence(dataclasses.replace(SEQ, name="ref", steps=100, log_every=50), tmp_path, progress=False)
    proc = spawn("--run", "add5-finite", "--n-train", "64", "--steps", "100", "--checkpoint-every", "10",
                 "--name", "k", "--runs-dir", str(tmp_path))
    kill_when(proc, lambda: state_step(tmp_path / "k") >= 10)
    assert 10 <= state_step(tmp_path / "k") < 100
    code, out, err = cli(capsys, "--run", "k", "--resume", "--runs-dir", str(tmp_path))  # looked up by name
    assert code == 0, err
    same_weights(ref, tmp_path / "k", range(0, 101, 10))
    assert (ref / "metrics.csv").read_text() == (tmp_path / "k" / "metrics.csv").read_text()


def test_sequence_resume_extends_a_repeat_run(tmp_path):
    """An induction (repeat) run trained to step 10, then resumed to 20, equals one trained to 20."""
    cfg = dataclasses.replace(SEQUENCE_PRESETS["repeat-1l"], steps=20, checkpoint_every=10, log_every=5, test_size=64, batch_size=16)
    ref = train_sequence(dataclasses.replace(cfg, name="ref"), tmp_path, progress=False)
    train_sequence(dataclasses.replace(cfg, name="cut", steps=10), tmp_path, progress=False)
    cut = train_sequence(dataclasses.replace(cfg, name="cut"), tmp_path, progress=False, resume=True)
    same_weights(ref, cut, [20])
    assert (ref / "metrics.csv").read_text() == (cut / "metrics.csv").read_text()
    assert json.loads((cut / "config.json").read_text())["resumed"][0]["from_step"] == 10
    with pytest.raises(ConfigError, match="different config"):
        train_sequence(dataclasses.replace(cfg, name="cut", lr=1e-2), tmp_path, progress=False, resume=True)


# ---- item 16: a kill in the first moments leaves a resumable run ---------------------------------


def _early_kill_states(run_dir: Path, fresh: Path) -> dict:
    """The partial run directories a kill leaves in the first moments, built from a fresh run's files."""
    def partial(files, tmp):
        def make():
            (run_dir / "checkpoints").mkdir(parents=True)
            for f in files:
                (run_dir / f).write_bytes((fresh / f).read_bytes())
            (run_dir / tmp).write_bytes(b"half a file")
        return make
    step0 = "checkpoints/step_00000000.safetensors"
    return {
        "before config.json": partial(["split.json"], ".config.json.x1.tmp"),
        "during the step-0 checkpoint": partial(["split.json", "config.json"], "checkpoints/.step_00000000.safetensors.x2.tmp"),
        "during the first metrics write": partial(["split.json", "config.json", step0], ".metrics.csv.x3.tmp"),
        "during the first state write": partial(["split.json", "config.json", step0, "metrics.csv"], ".state.safetensors.x4.tmp"),
    }


def test_resume_after_a_kill_in_the_first_moments_trains_from_scratch(tmp_path, capsys):
    code, _, err = cli(capsys, *TABLE_ARGS, "--name", "fresh", "--runs-dir", str(tmp_path / "ref"))
    assert code == 0, err
    fresh = tmp_path / "ref" / "fresh"
    for moment, make in _early_kill_states(tmp_path / "runs" / "r", fresh).items():
        make()
        code, _, err = cli(capsys, *TABLE_ARGS, "--name", "r", "--resume", "--runs-dir", str(tmp_path / "runs"))
        assert code == 0, (moment, err)
        assert "training from step 0" in err and len(err.strip().splitlines()) == 1, moment
        assert not tmp_files(tmp_path / "runs" / "r"), moment
        same_weights(fresh, tmp_path / "runs" / "r", [0, 20, 40])
        assert (fresh / "metrics.csv").read_text() == (tmp_path / "runs" / "r" / "metrics.csv").read_text()
        shutil.rmtree(tmp_path / "runs" / "r")


def test_real_kill_at_the_first_write_then_resume(tmp_path, capsys):
    """SIGKILL as soon as config.json appears (the step-0 checkpoint, metrics and state are being written)."""
    code, _, err = cli(capsys, *TABLE_ARGS, "--name", "fresh", "--runs-dir", str(tmp_path / "ref"))
    assert code == 0, err
    proc = spawn(*TABLE_ARGS, "--name", "r", "--runs-dir", str(tmp_path / "runs"))
    kill_when(proc, lambda: (tmp_path / "runs" / "r" / "config.json").exists())
    code, _, err = cli(capsys, *TABLE_ARGS, "--name", "r", "--resume", "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, err
    assert not tmp_files(tmp_path / "runs" / "r")
    same_weights(tmp_path / "ref" / "fresh", tmp_path / "runs" / "r", [0, 20, 40])


def test_sequence_run_without_state_resumes_from_scratch(tmp_path):
    ref = train_sequence(dataclasses.replace(SEQ, name="ref"), tmp_path, progress=False)
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text((ref / "config.json").read_text().replace('"ref"', '"r"'))
    (run / "checkpoints" / ".step_00000000.safetensors.x.tmp").write_bytes(b"half")
    with pytest.warns(RuntimeWarning, match="training from step 0"):
        train_sequence(dataclasses.replace(SEQ, name="r"), tmp_path, progress=False, resume=True)
    same_weights(ref, run, [0, 10, 20, 30])
    assert not tmp_files(run)


# ---- item 17: one process per run ------------------------------------------------------------------


@pytest.fixture
def held_lock(tmp_path):
    """Another process holding the lock of run 'busy' (as a trainer does while it trains)."""
    run = tmp_path / "busy"
    run.mkdir()
    code = (f"import fcntl, sys, time; f = open({str(run / '.lock')!r}, 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield run
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("argv", [TABLE_ARGS, ["--run", "add5-finite", "--steps", "5"]], ids=["table", "sequence"])
def test_a_run_being_trained_elsewhere_is_refused(held_lock, capsys, argv):
    code, _, err = cli(capsys, *argv, "--name", "busy", "--runs-dir", str(held_lock.parent))
    assert code == 1 and "being trained by another process" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in held_lock.iterdir()) == [".lock"]  # nothing written
    code, _, err = cli(capsys, *argv, "--name", "busy", "--resume", "--runs-dir", str(held_lock.parent))
    assert code == 1 and "being trained by another process" in err


def test_two_trainings_started_together_do_not_mix(tmp_path):
    """Two processes train one name with different learning rates: one trains, the other stops with one line."""
    procs = {lr: spawn(*TABLE_ARGS, "--lr", lr, "--name", "same", "--runs-dir", str(tmp_path / "runs")) for lr in ("0.003", "0.01")}
    results = {lr: (p.wait(timeout=300), p.stderr.read()) for lr, p in procs.items()}
    winners = [lr for lr, (code, _) in results.items() if code == 0]
    assert len(winners) == 1, results
    code, err = results[[lr for lr in results if lr not in winners][0]]
    assert code in (1, 2) and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    run = tmp_path / "runs" / "same"
    assert json.loads((run / "config.json").read_text())["config"]["lr"] == float(winners[0])
    gi.train(gi.preset("tiny23").replace(name="same", steps=40, checkpoint_every=20, lr=float(winners[0])),
             runs_dir=tmp_path / "ref", progress=False)
    same_weights(tmp_path / "ref" / "same", run, [0, 20, 40])


# ---- item 11: shipped runs are read-only -----------------------------------------------------------


@pytest.mark.parametrize("resume", [False, True])
def test_shipped_runs_are_never_written(capsys, monkeypatch, tmp_path, resume):
    monkeypatch.delenv("GROKINTERP_RUNS", raising=False)
    before = {name: digest(REPO_CHECKPOINTS / name) for name in SHIPPED_RUNS}
    for cwd in (ROOT, tmp_path):  # the repository root; a folder without checkpoints/ (resume looks the run up)
        monkeypatch.chdir(cwd)
        for name in SHIPPED_RUNS:
            if cwd == tmp_path and not resume:
                continue  # a new run from elsewhere goes to ./checkpoints: not shipped
            code, _, err = cli(capsys, "--run", name, "--steps", "1", *(["--resume"] if resume else []))
            assert code == 2 and "shipped read-only reference run" in err, err
            assert f"grokinterp train --run {name} --name my-{name}" in err and "delete" not in err.lower()
            assert len(err.strip().splitlines()) == 1
    assert before == {name: digest(REPO_CHECKPOINTS / name) for name in SHIPPED_RUNS}
    monkeypatch.chdir(ROOT)
    assert run_dir_to_write("my-modadd113") == ROOT / "checkpoints" / "my-modadd113"  # the tour's command is not refused


# ---- item 19: names stay inside the runs folder ------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "ABSOLUTE", "a/b", ".hidden", "x" * 300, "with space"])
@pytest.mark.parametrize("preset", ["tiny23", "add5"])
def test_run_names_cannot_leave_the_runs_folder(tmp_path, capsys, name, preset):
    name = str(tmp_path / "abs") if name == "ABSOLUTE" else name
    code, _, err = cli(capsys, "--run", preset, "--steps", "1", "--name", name, "--runs-dir", str(tmp_path / "a" / "runs"))
    assert code == 2 and "name" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.rglob("*")) == []  # nothing written, inside the runs folder or out of it


def test_api_writers_validate_names(tmp_path):
    with pytest.raises(RunNameError):
        gi.train(gi.preset("tiny23").replace(name="../x"), runs_dir=tmp_path, progress=False)
    with pytest.raises(RunNameError):
        train_sequence(dataclasses.replace(SEQ, name="../x"), tmp_path, progress=False)
    assert list(tmp_path.parent.glob("x")) == [] and list(tmp_path.iterdir()) == []


# ---- item 20: settings refused up front, a loss that becomes NaN ------------------------------------


@pytest.mark.parametrize("argv,message", [
    (["--run", "tiny23", "--lr", "inf"], "finite"),
    (["--run", "tiny23", "--lr", "nan"], "finite"),
    (["--run", "tiny23", "--wd", "inf"], "finite"),
    (["--run", "tiny23", "--optimizer", "grokfast", "--grokfast-lambda", "nan"], "finite"),
    (["--run", "tiny23", "--grokfast-alpha", "1.5"], "grokfast_alpha"),
    (["--run", "tiny23", "--dropout", "nan"], "finite"),
    (["--run", "tiny23", "--split-seed", "-1"], "seeds"),
    (["--run", "tiny23", "--seed", "-1"], "seeds"),
    (["--task", "add", "--p", "100003", "--name", "big"], "p <= 2048"),
    (["--run", "tiny23", "--device", "tpu9"], "unknown device"),
    (["--run", "tiny23", "--device", "cpu:3"], "unknown device"),
    (["--run", "add5", "--lr", "inf"], "learning rate"),
    (["--run", "add5", "--seed", "-1"], "seed"),
])
def test_bad_settings_are_one_line_usage_errors(tmp_path, capsys, argv, message):
    code, _, err = cli(capsys, *argv, "--runs-dir", str(tmp_path))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_p_is_bounded_by_what_training_can_hold():
    RunConfig("ok", p=2039)  # the largest prime allowed: no table is built to check it
    with pytest.raises(ConfigError, match=r"all p\*p = 4,214,809 equations"):
        RunConfig("big", p=2053)


def test_a_diverging_run_stops_and_names_the_step(tmp_path, capsys):
    code, _, err = cli(capsys, *TABLE_ARGS, "--lr", "1e30", "--runs-dir", str(tmp_path))
    assert code == 1 and "training stopped at step 1" in err and "finite at step 0" in err, err
    run = gi.load_run("tiny23", tmp_path)
    assert run.steps == [0] and list(run.metrics["step"]) == [0]  # nothing non-finite was written
    with pytest.raises(RunError, match=r"training stopped at step \d+: the training loss is not finite in run nan"):
        train_sequence(dataclasses.replace(SEQ, name="nan", lr=1e30), tmp_path, progress=False)


def test_device_names():
    from grokinterp.training import pick_device

    assert pick_device("cpu").type == "cpu" and pick_device("auto").type in ("cpu", "cuda")
    for bad in ("tpu9", "mps", "cpu:1", "", "cuda:x"):
        with pytest.raises(ConfigError):
            pick_device(bad)


# ---- item 21: the thread count is recorded; resuming with another one warns ------------------------


def test_thread_count_is_recorded_and_checked_on_resume(tmp_path, capsys):
    code, _, err = cli(capsys, *TABLE_ARGS, "--runs-dir", str(tmp_path))
    assert code == 0, err
    record = json.loads((tmp_path / "tiny23" / "config.json").read_text())
    threads = torch.get_num_threads() if "OMP_NUM_THREADS" in os.environ else 1  # tiny23's step is small (test_training)
    assert record["device"] == "cpu" and record["torch_threads"] == threads
    record["torch_threads"] += 1
    (tmp_path / "tiny23" / "config.json").write_text(json.dumps(record))
    code, _, err = cli(capsys, "--run", "tiny23", "--steps", "60", "--checkpoint-every", "20", "--resume", "--runs-dir", str(tmp_path))
    assert code == 0 and err.startswith("grokinterp train: warning:") and "bit-identical" in err, err
    assert len(err.strip().splitlines()) == 1
    seq = train_sequence(dataclasses.replace(SEQ, name="s", steps=10), tmp_path, progress=False)
    assert json.loads((seq / "config.json").read_text())["torch_threads"] == torch.get_num_threads()


# ---- issue 16: checkpoints written on a background thread -------------------------------------------


def test_kill_during_heavy_checkpoint_writing_then_resume(tmp_path, capsys):
    """Checkpoint, metrics and resume state at every step, written by the background writer; SIGKILL
    mid-run: every checkpoint on disk is complete, the state claims only what is on disk, and
    --resume ends bit-identical to an uninterrupted run."""
    cfg = "gi.preset('tiny23').replace(name='k', steps=40, checkpoint_every=1)"
    gi.train(eval(cfg).replace(name="ref"), runs_dir=tmp_path, progress=False)
    code = f"import grokinterp as gi; gi.train({cfg}, runs_dir={str(tmp_path)!r}, progress=False, state_every_s=0, background_writes=True)"
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    run = tmp_path / "k"
    kill_when(proc, lambda: state_step(run) >= 8)
    on_disk = sorted(int(f.stem[5:]) for f in (run / "checkpoints").glob("step_*.safetensors"))
    for step in on_disk:  # complete and loadable (a half-written one would be a .tmp file)
        tensors, meta = read_tensors(checkpoint_path(run, step))
        assert int(meta["step"]) == step and "embed.W_E" in tensors
    saved = state_step(run)
    assert 8 <= saved < 40 and on_disk[: saved + 1] == list(range(saved + 1))  # the state comes after its checkpoints
    assert gi.load_run("k", tmp_path).steps == on_disk  # leftover .tmp files are not taken for checkpoints
    code, _, err = cli(capsys, "--run", "k", "--resume", "--runs-dir", str(tmp_path))
    assert code == 0, err
    assert not tmp_files(run)
    same_weights(tmp_path / "ref", run, range(41))
    assert (tmp_path / "ref" / "metrics.csv").read_text() == (run / "metrics.csv").read_text()


@pytest.mark.parametrize("writes", ["--background-writes", "--no-background-writes"])
def test_a_failed_write_stops_training_with_one_line(tmp_path, capsys, monkeypatch, writes):
    import grokinterp.training as training

    calls, write = [], training.atomic_write_tensors

    def full_disk(path, *args, **kwargs):
        calls.append(path.name)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        write(path, *args, **kwargs)

    monkeypatch.setattr(training, "atomic_write_tensors", full_disk)
    code, _, err = cli(capsys, *TABLE_ARGS, "--checkpoint-every", "1", writes, "--runs-dir", str(tmp_path))
    assert code == 1 and "could not write" in err and "No space left on device" in err and len(err.strip().splitlines()) == 1, err
    failed = calls[3]  # the 4th tensor file: step 0's checkpoint and state, step 1's checkpoint, then step 2's
    assert failed == "step_00000002.safetensors"
    run = tmp_path / "tiny23"
    assert [r["step"] for r in read_metrics(run / "metrics.csv")] == [0, 1]  # nothing after the failed write
    assert not [t for t in threading.enumerate() if t.name == "grokinterp-writer"]


def test_background_writer_keeps_order_and_bounds_its_queue():
    from grokinterp.training import _Writer

    release, done = threading.Event(), []

    def write(path, wait=False):
        if wait:
            release.wait(10)
        done.append(path)

    writer = _Writer(max_pending=2)
    writer.put(write, 0, wait=True)  # taken by the thread, which then waits
    while writer.jobs.qsize():
        time.sleep(0.001)
    writer.put(write, 1)
    writer.put(write, 2)  # the queue is full now
    blocked = threading.Thread(target=writer.put, args=(write, 3))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive() and done == []  # back-pressure: the 4th put waits
    release.set()
    blocked.join(10)
    for i in range(4, 20):
        writer.put(write, i)
    writer.close()
    assert done == list(range(20)) and not writer.thread.is_alive()


# ---- a run without a resume state (removed, or a packed or copied run) ---------------------------


def file_digests(run_dir: Path) -> dict:
    return {f.relative_to(run_dir).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(run_dir.rglob("*")) if f.is_file() and f.name != ".lock"}


def test_resume_without_state_refuses_to_delete_progress_and_continues_from_weights(tmp_path, capsys):
    args = ["--run", "tiny23", "--steps", "200", "--checkpoint-every", "50", "--name", "r", "--runs-dir", str(tmp_path)]
    assert cli(capsys, *args)[0] == 0
    run = tmp_path / "r"
    (run / "state.safetensors").unlink()
    before = file_digests(run)
    code, _, err = cli(capsys, *args[:2], "--steps", "300", *args[6:], "--resume")
    assert code != 0 and "--from-weights" in err and "step 200" in err
    assert file_digests(run) == before  # nothing deleted, nothing restarted
    code, _, err = cli(capsys, *args[:2], "--steps", "300", *args[6:], "--from-weights")
    assert code == 2 and "--resume" in err

    code, _, err = cli(capsys, *args[:2], "--steps", "300", *args[6:], "--resume", "--from-weights")
    assert code == 0, err
    assert "weights of step 200" in err and "moments restarted at zero" in err
    after = file_digests(run)
    assert all(after[k] == v for k, v in before.items() if k.startswith("checkpoints/"))  # the trained checkpoints kept as they were
    assert sorted(set(after) - set(before)) == ["checkpoints/step_00000250.safetensors", "checkpoints/step_00000300.safetensors",
                                                "state.safetensors"]  # and a resume state again
    steps = [r["step"] for r in read_metrics(run / "metrics.csv")]
    assert steps[-3:] == [200, 250, 300] and steps == sorted(set(steps))
    resumed = json.loads((run / "config.json").read_text())["resumed"][-1]
    assert (resumed["from_step"], resumed["steps"], resumed["from_weights"]) == (200, 300, "optimiser moments restarted at zero")
    # it went on from the trained weights (a restart would be near step 0's): 9 against 29 when written
    w = {step: read_tensors(checkpoint_path(run, step))[0] for step in (0, 200, 250)}
    dist = lambda a, b: sum((w[a][k].double() - w[b][k].double()).pow(2).sum() for k in w[a]).sqrt()  # noqa: E731
    assert dist(250, 200) < 0.5 * dist(0, 200)


def test_sequence_resume_without_state_refuses_to_delete_progress(tmp_path, capsys):
    ref = train_sequence(dataclasses.replace(SEQ, name="s"), tmp_path, progress=False)
    (ref / "state.safetensors").unlink()
    before = file_digests(ref)
    with pytest.raises(RunError, match="checkpoints up to step 30"):
        train_sequence(dataclasses.replace(SEQ, name="s", steps=40), tmp_path, progress=False, resume=True)
    assert file_digests(ref) == before
    code, _, err = cli(capsys, "--run", "s", "--resume", "--from-weights", "--runs-dir", str(tmp_path))
    assert code == 2 and "table runs" in err


def test_a_copied_sequence_run_resumes_in_its_own_folder(tmp_path, capsys):
    """Resumed by path, a sequence run continues where it is, not in the folder named in its config.json."""
    ref = train_sequence(dataclasses.replace(SEQ, name="s"), tmp_path / "runs", progress=False)
    before = file_digests(ref)
    shutil.copytree(ref, tmp_path / "other" / "x")
    code, out, err = cli(capsys, "--run", str(tmp_path / "other" / "x"), "--resume", "--steps", "40")
    assert code == 0, err
    assert state_step(tmp_path / "other" / "x") == 40 and "x: 40 steps" in out
    assert file_digests(ref) == before
