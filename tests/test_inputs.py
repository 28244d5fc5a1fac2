"""Bad inputs and broken surroundings on the read side: each gives one line, the right exit code, no traceback."""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import grokinterp
from conftest import run_cli

LONG_NAME = "x" * 300
REPO = str(Path(grokinterp.__file__).resolve().parent.parent)  # this checkout, for subprocesses




def ckpt(d, step):
    return d / "checkpoints" / f"step_{step:08d}.safetensors"


def _swap_labels(d):  # step 100's weights saved under the name of step 1500 (the metadata still says 100)
    shutil.copy(ckpt(d, 100), ckpt(d, 1500))


def _poison(d, value):
    tensors = load_file(ckpt(d, 1500))
    tensors["unembed.W_U"][0, 0] = value
    save_file(tensors, ckpt(d, 1500), metadata={"step": "1500"})


def _integer_weights(d):
    tensors = load_file(ckpt(d, 1500))
    tensors["embed.W_E"] = tensors["embed.W_E"].round().to(torch.int32)
    save_file(tensors, ckpt(d, 1500), metadata={"step": "1500"})


def _file_instead_of_folder(d):
    (d.parent.parent / "afile").write_text("not a folder")


def _fail_on(monkeypatch, target, name, err, match=None):
    """Make ``target.name`` raise OSError ``err`` as the OS would, for the file it reads or writes (a
    Path method: the path itself; a Figure method: its first argument) when that contains ``match``."""
    real = getattr(target, name)

    def fake(self, *a, **k):
        path = str(a[0] if a and not isinstance(self, Path) else self)
        if match is None or match in path:
            raise OSError(err, os.strerror(err), path)
        return real(self, *a, **k)

    monkeypatch.setattr(target, name, fake)


def _deny_config(monkeypatch):
    _fail_on(monkeypatch, Path, "read_text", errno.EACCES, "config.json")


def _figures_fail(monkeypatch, err):
    """Writing a figure fails: one self-contained file (Figure.write_html) or a set sharing plotly.min.js (Path.write_text)."""
    import plotly.graph_objects as go

    _fail_on(monkeypatch, go.Figure, "write_html", err)
    _fail_on(monkeypatch, Path, "write_text", err, "figures")


def _read_only_figures(monkeypatch):
    _figures_fail(monkeypatch, errno.EROFS)


def _full_disk_figures(monkeypatch):
    _figures_fail(monkeypatch, errno.ENOSPC)


# (id, damage to the run copy d, monkeypatch setup, argv with {d} = the runs folder, exit code, text in the one error line)
CASES = [
    ("runs-dir is a file: runs", _file_instead_of_folder, None, ["runs", "--runs-dir", "{d}/../afile"], 2, "is a file, not a folder"),
    ("runs-dir is a file: fourier", _file_instead_of_folder, None,
     ["fourier", "--run", "copy", "--runs-dir", "{d}/../afile", "--no-figures"], 2, "is a file, not a folder"),
    ("300-character name", None, None, ["fourier", "--run", LONG_NAME, "--runs-dir", "{d}"], 2, "300 characters long"),
    ("300-character --compare", None, None, ["phases", "--run", "copy", "--compare", LONG_NAME, "--runs-dir", "{d}"], 2,
     "300 characters long"),
    ("name with a space", None, None, ["fourier", "--run", "my run", "--runs-dir", "{d}"], 2, "bad run name 'my run'"),
    ("name with a path", None, None, ["fourier", "--run", "../copy-elsewhere", "--runs-dir", "{d}"], 1, "no run directory at ../copy-elsewhere"),
    ("missing run", None, None, ["progress", "--run", "nothing-here", "--runs-dir", "{d}"], 1, "no run named 'nothing-here'"),
    ("no checkpoints folder", lambda d: shutil.rmtree(d / "checkpoints"), None, ["progress", "--run", "copy", "--runs-dir", "{d}"], 1,
     "has no checkpoints yet"),
    ("empty checkpoints folder", lambda d: [p.unlink() for p in (d / "checkpoints").iterdir()], None,
     ["progress", "--run", "copy", "--runs-dir", "{d}"], 1, "has no checkpoints yet"),
    ("config.json is a list", lambda d: (d / "config.json").write_text("[1, 2, 3]"), None,
     ["fourier", "--run", "copy", "--runs-dir", "{d}"], 1, "config.json is corrupt"),
    ("config.json is null", lambda d: (d / "config.json").write_text("null"), None,
     ["progress", "--run", "copy", "--runs-dir", "{d}"], 1, "config.json is corrupt"),
    ("mislabelled checkpoint", _swap_labels, None, ["fourier", "--run", "copy", "--runs-dir", "{d}", "--no-figures"], 1,
     "holds the weights of step 100 (its metadata), not of step 1500"),
    ("mislabelled checkpoint: progress", _swap_labels, None, ["progress", "--run", "copy", "--runs-dir", "{d}", "--no-figures"], 1,
     "step_00001500.safetensors holds the weights of step 100"),
    ("NaN weight", lambda d: _poison(d, float("nan")), None, ["fourier", "--run", "copy", "--runs-dir", "{d}", "--no-figures"], 1,
     "tensor unembed.W_U holds NaN or infinite values"),
    ("inf weight", lambda d: _poison(d, float("inf")), None, ["tsne", "--run", "copy", "--runs-dir", "{d}", "--no-figures"], 1,
     "tensor unembed.W_U holds NaN or infinite values"),
    ("integer weights", _integer_weights, None, ["fourier", "--run", "copy", "--runs-dir", "{d}", "--no-figures"], 1,
     "tensor embed.W_E is int32, not floating point"),
    ("permission denied", None, _deny_config, ["fourier", "--run", "copy", "--runs-dir", "{d}"], 1, "Permission denied: "),
    ("read-only file system", None, _read_only_figures, ["fourier", "--run", "copy", "--runs-dir", "{d}"], 1, "Read-only file system"),
    ("disk full", None, _full_disk_figures, ["fourier", "--run", "copy", "--runs-dir", "{d}"], 1, "No space left on device"),
    ("table --size -3", None, None, ["table", "--task", "add", "--p", "5", "--size", "-3"], 2, "must be at least 1, got -3"),
    ("table --size 0", None, None, ["table", "--task", "add", "--p", "5", "--size", "0"], 2, "must be at least 1, got 0"),
    ("table --seed -1", None, None, ["table", "--task", "add", "--p", "5", "--frac", "0.5", "--seed", "-1"], 2, "split seed must be 0 or more, got -1"),
    ("tsne --seed -1", None, None, ["tsne", "--run", "copy", "--runs-dir", "{d}", "--no-figures", "--seed", "-1"], 2,
     "seed must be an integer in [0, 2**32), got -1"),
    ("tsne --seed 2**32", None, None, ["tsne", "--run", "copy", "--runs-dir", "{d}", "--no-figures", "--seed", str(2**32)], 2,
     "seed must be an integer in [0, 2**32)"),
    ("algorithm --seed -1", None, None, ["algorithm", "--run", "copy", "--runs-dir", "{d}", "--no-figures", "--seed", "-1"], 2,
     "seed must be an integer in [0, 2**63), got -1"),
    ("export --every 0", None, None, ["export", "--run", "copy", "--runs-dir", "{d}", "--out", "{d}/x", "--every", "0"], 2,
     "every keeps every N-th step: N must be at least 1, got 0"),
    ("export --every -5", None, None, ["export", "--run", "copy", "--runs-dir", "{d}", "--out", "{d}/x", "--every", "-5"], 2,
     "N must be at least 1, got -5"),
    ("export --thin-after alone", None, None, ["export", "--run", "copy", "--runs-dir", "{d}", "--out", "{d}/x", "--every", "100",
                                              "--thin-after", "500"], 2, "thin_after and thin_every go together"),
    ("export --full-precision x", None, None, ["export", "--run", "copy", "--runs-dir", "{d}", "--out", "{d}/x", "--every", "100",
                                               "--full-precision", "0,x"], 2, "--full-precision takes comma-separated steps"),
    ("export --thin-every 0", None, None, ["export", "--run", "copy", "--runs-dir", "{d}", "--out", "{d}/x", "--every", "100",
                                           "--thin-after", "500", "--thin-every", "0"], 2, "thin_every keeps every N-th step: N must be at least 1, got 0"),
    ("progress --freqs 99", None, None, ["progress", "--run", "copy", "--runs-dir", "{d}", "--freqs", "3,99"], 2,
     "key frequencies of p = 23 are 1..11, got 99"),
    ("progress --freqs 12", None, None, ["progress", "--run", "copy", "--runs-dir", "{d}", "--freqs", "12"], 2, "are 1..11, got 12"),
    ("progress --freqs 0", None, None, ["progress", "--run", "copy", "--runs-dir", "{d}", "--freqs", "0"], 2, "are 1..11, got 0"),
    ("fourier --threshold 1.5", None, None, ["fourier", "--run", "copy", "--runs-dir", "{d}", "--threshold", "1.5"], 2,
     "must be in (0, 1], got 1.5"),
    ("fourier --threshold -1", None, None, ["fourier", "--run", "copy", "--runs-dir", "{d}", "--threshold", "-1"], 2,
     "must be in (0, 1], got -1.0"),
    ("fourier --threshold 0", None, None, ["fourier", "--run", "copy", "--runs-dir", "{d}", "--threshold", "0"], 2,
     "must be in (0, 1], got 0.0"),
    ("census of a missing sweep", None, None, ["census", "--sweep", "nosuch", "--runs-dir", "{d}"], 1, "no sweep named 'nosuch'"),
]


@pytest.mark.parametrize("damage,patch,argv,code,needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(capsys, monkeypatch, run_copy, damage, patch, argv, code, needle):
    if damage:
        damage(run_copy)
    if patch:
        patch(monkeypatch)
    got, out, err = run_cli(capsys, *[a.replace("{d}", str(run_copy.parent)) for a in argv])
    assert (got, len(err.strip().splitlines())) == (code, 1), err
    assert needle in err and err.startswith(f"grokinterp {argv[0]}: error: ")


def test_report_is_printed_before_a_figure_write_error(capsys, monkeypatch, run_copy):
    """A read-only run folder: the computed report is not lost, then the one-line error (exit 1)."""
    _read_only_figures(monkeypatch)
    code, out, err = run_cli(capsys, "fourier", "--run", "copy", "--runs-dir", str(run_copy.parent))
    assert code == 1 and "key frequencies" in out and "Read-only file system" in err and len(err.strip().splitlines()) == 1


def test_runs_dir_in_the_environment_that_is_a_file(capsys, monkeypatch, tmp_path):
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("GROKINTERP_RUNS", str(tmp_path / "afile"))
    code, _, err = run_cli(capsys, "runs")
    assert code == 2 and "$GROKINTERP_RUNS=" in err and "is a file" in err


@pytest.mark.parametrize("content", ["[1, 2, 3]", "null", '{"kind": "sequence", "config": {}}'])
def test_one_broken_config_does_not_hide_the_other_runs(capsys, run_copy, content):
    shutil.copytree(run_copy, run_copy.parent / "good")
    (run_copy / "config.json").write_text(content)
    code, out, _ = run_cli(capsys, "runs", "--runs-dir", str(run_copy.parent), "--json")
    runs = {r["name"]: r for r in json.loads(out)["runs"]}
    assert code == 0 and "config.json is corrupt" in runs["copy"]["error"]
    assert runs["good"]["steps_done"] == 1500 and "error" not in runs["good"]


def test_a_run_opens_by_path_by_plain_name_here_and_as_dot(capsys, monkeypatch, run_copy):
    code, out, _ = run_cli(capsys, "fourier", "--run", str(run_copy), "--json", "--no-figures", "--step", "50")
    assert code == 0 and json.loads(out)["step"] == 50
    for folder, name in (run_copy.parent, "copy"), (run_copy, "."):
        monkeypatch.chdir(folder)
        code, out, _ = run_cli(capsys, "fourier", "--run", name, "--json", "--no-figures", "--step", "50")
        assert code == 0 and json.loads(out)["step"] == 50 and json.loads(out)["run"] == "copy"  # `.` is named by its folder


def test_disk_full_while_training_then_resume(capsys, monkeypatch, tmp_path):
    """The disk fills after the first checkpoint and resume state are written: one line; once there is
    room again, --resume finishes the run with the same weights as a run that was never interrupted."""
    flags = ["train", "--task", "add", "--p", "11", "--model", "tiny-1l", "--frac", "0.5", "--steps", "30",
             "--checkpoint-every", "10", "--runs-dir", str(tmp_path), "--no-progress"]
    calls, real_fsync = [], os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) > 5:  # split, config, checkpoint 0, metrics, state: then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code, _, err = run_cli(capsys, *flags, "--name", "full")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "No space left on device" in err and "--resume" in err
    monkeypatch.setattr(os, "fsync", real_fsync)
    code, _, err = run_cli(capsys, *flags, "--name", "full", "--resume")
    assert code == 0, err
    code, _, err = run_cli(capsys, *flags, "--name", "clean")
    assert code == 0, err
    resumed, clean = (load_file(ckpt(tmp_path / n, 30)) for n in ("full", "clean"))
    assert resumed.keys() == clean.keys() and all(torch.equal(resumed[k], clean[k]) for k in clean)


def _without_root_bypass():
    """Prefix that makes a command meet file permissions (root skips them unless its capabilities are dropped)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced here")
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]


def _as_a_user(argv):
    return subprocess.run([*_without_root_bypass(), sys.executable, "-m", "grokinterp", *argv], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": REPO})


def test_real_permission_denied(run_copy):
    """safetensors reports an unreadable file as missing: the error must say what the OS says. And an
    unreadable run folder is listed by `runs` with the reason, beside the readable runs."""
    shutil.copytree(run_copy, run_copy.parent / "good")
    ckpt(run_copy, 1500).chmod(0)
    out = _as_a_user(["fourier", "--run", "copy", "--runs-dir", str(run_copy.parent), "--no-figures"])
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "Permission denied: " in out.stderr and "missing" not in out.stderr and "corrupt" not in out.stderr
    run_copy.chmod(0)
    try:
        out = _as_a_user(["runs", "--runs-dir", str(run_copy.parent), "--json"])
    finally:
        run_copy.chmod(0o755)  # so that pytest can remove it
    runs = {r["name"]: r for r in json.loads(out.stdout)["runs"]}
    assert out.returncode == 0 and "Permission denied" in runs["copy"]["error"] and runs["good"]["steps_done"] == 1500


def test_the_api_refuses_what_the_cli_refuses(tiny_run):
    """gi.progress, gi.fourier, gi.tsne check their arguments too (the CLI goes through them)."""
    import grokinterp as gi
    from grokinterp.config import ConfigError

    for call, needle in ((lambda: gi.progress(tiny_run, key_freqs=[99]), "1..11"), (lambda: gi.fourier(tiny_run, threshold=1.5), "(0, 1]"),
                         (lambda: gi.tsne(tiny_run, seed=-1), "2**32")):
        with pytest.raises(ConfigError, match=re.escape(needle)):
            call()


@pytest.mark.parametrize("kwargs,needle", [({"every": 0}, "every keeps every N-th step: N must be at least 1, got 0"),
                                           ({"every": None}, "got None"), ({"every": 2.5}, "got 2.5"),
                                           ({"every": 100, "thin_after": 500, "thin_every": -1}, "thin_every keeps"),
                                           ({"every": 100, "thin_every": 50}, "go together")])
def test_export_run_checks_its_strides_before_writing(tiny_run, tmp_path, kwargs, needle):
    """The library refuses what `grokinterp export` refuses (one check: the CLI relies on it), writing nothing."""
    from grokinterp.export import export_run

    with pytest.raises(ValueError, match=re.escape(needle)):
        export_run(tiny_run, tmp_path / "x", **kwargs)
    assert list(tmp_path.iterdir()) == []


# ---- the Python API checks what the CLI checks, in one place (gi.* and the commands share it) ----------

from grokinterp import api  # noqa: E402
from grokinterp.config import ConfigError  # noqa: E402
from grokinterp.store import RunError  # noqa: E402


@pytest.mark.parametrize("freqs, match", [
    ([3, 3], "distinct; 3 given more than once"),      # once gave other losses than [3] (the sums counted 3 twice)
    ([], "pass None for those of the last checkpoint"),  # once read 'no key frequencies ... (None)'
    (14, "a list of frequencies such as"),             # once "'int' object is not iterable"
    ("3", "a list of frequencies such as"),
    ([14.5], r"are 1\.\.11, got 14\.5"),          # once '... not direction vectors'
    (["3"], r"got '3'"),                               # once a bare comparison TypeError
    ([True], "got True"),
    ([12], r"1\.\.11, got 12"),
])
def test_bad_key_frequencies_are_one_clear_error(tiny_run, freqs, match):
    with pytest.raises(ConfigError, match=match):
        grokinterp.progress(tiny_run, key_freqs=freqs)


def test_duplicate_freqs_on_the_command_line_are_a_usage_error(tiny_run, capsys):
    code, _, err = run_cli(capsys, "progress", "--run", str(tiny_run.path), "--freqs", "3,3", "--json")
    assert code == 2 and "3 given more than once" in err


@pytest.mark.parametrize("k", [0, -3, 23, 100, 2.5, "8"])
def test_tsne_k_must_make_sense_for_p(tiny_run, k):
    """p = 23: x -> x+k needs k in 1..22 (k = 0 divided by zero, 2.5 failed in the figure, 100 joined nothing);
    k = 1 stays: the report suggests it for the frequency-1 circle."""
    with pytest.raises(ConfigError, match=rf"k must be an integer in 1\.\.22 for p = 23 .*got {re.escape(repr(k))}"):
        grokinterp.tsne(tiny_run, k=k)


def test_tsne_k_on_the_command_line(tiny_run, capsys):
    code, _, err = run_cli(capsys, "tsne", "--run", str(tiny_run.path), "--k", "100", "--no-figures")
    assert code == 2 and "k must be an integer in 1..22 for p = 23" in err


@pytest.mark.parametrize("triples", [0, -5, 1, 99, 200.0])
def test_algorithm_needs_enough_triples(tiny_run, triples):
    with pytest.raises(ConfigError, match=rf"triples must be an integer at least 100 .*got {re.escape(repr(triples))}"):
        grokinterp.algorithm(tiny_run, triples=triples)


@pytest.mark.parametrize("threshold", ["0.9", None, True, 0, 1.5])
def test_fourier_threshold_is_a_share(tiny_run, threshold):
    with pytest.raises(ConfigError, match=r"in \(0, 1\], got"):
        grokinterp.fourier(tiny_run, threshold=threshold)


def test_whole_number_float_and_string_steps_are_refused_by_name(tiny_run):
    """step=1e4 once reached the file name's format (ValueError: Unknown format code 'd' for object of type 'float')."""
    import numpy as np

    last = tiny_run.steps[-1]
    for step in (float(last), "1000", 10.5, True):
        with pytest.raises(TypeError, match=rf"step must be an integer .*got {re.escape(repr(step))}"):
            tiny_run.weights(step=step)
    with pytest.raises(TypeError, match="step must be an integer"):
        grokinterp.fourier(tiny_run, step=float(last))
    assert tiny_run.resolve_step(np.int64(last)) == last and type(tiny_run.resolve_step(np.int64(last))) is int


@pytest.mark.parametrize("name", [None, 5, 2.0])
def test_load_run_names_its_bad_argument(name, tiny_run):
    with pytest.raises(TypeError, match=rf"a run is named by a string or a path, got {re.escape(repr(name))}"):
        grokinterp.load_run(name)


def test_phases_compare_of_the_wrong_type(tiny_run):
    with pytest.raises(TypeError, match="a run is named by a string or a path, got 5"):
        api._run(5)


def test_cosets_matrix_and_clusters_are_the_same_kind_of_error(tiny_run):
    with pytest.raises(ConfigError, match="unknown matrix 'W_X'"):
        grokinterp.cosets(tiny_run, matrix="W_X")
    with pytest.raises(ConfigError, match="unknown clusters 'dbscan'"):
        grokinterp.cosets(tiny_run, clusters="dbscan")


def test_a_sweep_name_alone_hints_at_its_members(tmp_path):
    (tmp_path / "gs" / "add_s0").mkdir(parents=True)
    (tmp_path / "gs" / "sweep.json").write_text("{}")
    (tmp_path / "gs" / "add_s0" / "config.json").write_text("{}")
    with pytest.raises(RunError, match=r"gs is a sweep: open one of its runs as SWEEP/MEMBER, e\.g\. gs/add_s0"):
        grokinterp.load_run("gs", tmp_path)
    with pytest.raises(RunError, match="see `grokinterp runs` for what exists"):
        grokinterp.load_run("nosuch", tmp_path)


def test_report_repr_is_its_summary(tiny_run):
    """A notebook cell ending in gi.fourier(run) once printed the whole dataclass (16.8k characters)."""
    rep = grokinterp.fourier(tiny_run)
    text = repr(rep)
    assert text.startswith(rep.lines[0]) and len(text) < 3000
    assert "figures: " + ", ".join(rep.figures) in text and "payload keys: " + ", ".join(rep.payload) in text
    IPython = pytest.importorskip("IPython.lib.pretty")
    assert IPython.pretty(rep) == text


def test_show_refuses_what_is_not_a_figure_and_hints_at_chromium_only_when_missing(monkeypatch, capsys):
    import plotly.graph_objects as go

    with pytest.raises(TypeError, match="gi.show takes a plotly Figure .*got str"):
        grokinterp.show("hello")
    fig = go.Figure()
    monkeypatch.setattr(go.Figure, "show", lambda self, *a, **k: None)

    class ChromeNotFoundError(RuntimeError):
        pass

    for err, hint in ((RuntimeError("page crashed"), False), (ChromeNotFoundError("no chrome"), True)):
        monkeypatch.setattr(grokinterp.api, "_show_note", False)
        monkeypatch.setattr(go.Figure, "to_image", lambda self, *a, e=err, **k: (_ for _ in ()).throw(e))
        grokinterp.show(fig)
        out = capsys.readouterr().out
        assert f"no static PNG ({type(err).__name__}: {err})" in out and ("install Chromium" in out) == hint
