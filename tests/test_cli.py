import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from grokinterp.cli import main




def digest(folder):
    """Hashes of the run's files; the empty `.lock` that training holds while it runs is not run data."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_help_and_no_command(capsys):
    assert main([]) == 2
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "fourier" in capsys.readouterr().out


def test_table(capsys):
    code, out, _ = run_cli(capsys, "table", "--task", "s5_mul", "--frac", "0.3", "--size", "6")
    assert code == 0 and "?" in out and "showing 6 of 120" in out
    code, out, _ = run_cli(capsys, "table", "--task", "add", "--p", "5", "--symbols", "numbers", "--size", "5")
    assert code == 0 and out.splitlines()[2].split() == ["0", "0", "1", "2", "3", "4"]
    code, out, err = run_cli(capsys, "table", "--task", "add", "--p", "5", "--size", "0")
    assert code == 2 and out == "" and "--size" in err  # nothing printed before the error


def test_python_dash_m_grokinterp():
    out = subprocess.run([sys.executable, "-m", "grokinterp", "table", "--task", "add", "--p", "5", "--size", "2"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("x+y (mod 5): 25 equations"), out.stderr


def test_runs_lists_presets_and_trained_runs(capsys, tiny_run):
    code, out, _ = run_cli(capsys, "runs", "--runs-dir", str(tiny_run.path.parent), "--json")
    data = json.loads(out)
    assert code == 0 and "modadd113" in data["presets"] and "s5" in data["presets"]
    mine = [r for r in data["runs"] if r["name"] == "tiny23"][0]
    assert mine["steps_done"] == 1500 and mine["test_acc"] >= 0.95
    sequence = ["add5", "add5-finite", "repeat-2l", "repeat-1l", "repeat-2l-finite"]  # as `train --help` lists them
    assert list(data["sequence_presets"]) == sequence and all(data["sequence_presets"].values())
    code, out, _ = run_cli(capsys, "runs", "--runs-dir", str(tiny_run.path.parent))
    listed = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert all(name in listed and data["sequence_presets"][name] in listed[name] for name in sequence)


def test_train_by_flags(capsys, tmp_path):
    code, out, err = run_cli(capsys, "train", "--task", "sub", "--p", "11", "--model", "tiny-1l", "--frac", "0.5", "--steps", "30",
                             "--checkpoint-every", "10", "--name", "flags", "--runs-dir", str(tmp_path), "--no-progress")
    assert code == 0, err
    cfg = json.loads((tmp_path / "flags" / "config.json").read_text())
    assert cfg["config"]["task"] == "sub" and cfg["config"]["p"] == 11 and "--task sub" not in "" and cfg["command"]
    assert sorted(p.name for p in (tmp_path / "flags" / "checkpoints").iterdir())[-1] == "step_00000030.safetensors"
    code, _, err = run_cli(capsys, "train", "--task", "sub", "--p", "11", "--model", "tiny-1l", "--name", "flags", "--runs-dir", str(tmp_path))
    assert code == 2 and "already exists" in err
    assert cfg["config"]["description"] == "defined by flags"
    code, _, err = run_cli(capsys, "train", "--run", "tiny23", "--wd", "0", "--steps", "2", "--name", "wd0", "--runs-dir", str(tmp_path),
                           "--no-progress")
    assert code == 0, err
    assert json.loads((tmp_path / "wd0" / "config.json").read_text())["config"]["description"].endswith(
        "; changed by flags: wd 0.0")  # the settings that differ from the preset


def test_fourier_and_progress_commands(capsys, tiny_run, tmp_path):
    d = str(tiny_run.path.parent)
    code, out, _ = run_cli(capsys, "fourier", "--run", "tiny23", "--runs-dir", d, "--out", str(tmp_path / "f"))
    assert code == 0 and "key frequencies" in out
    assert (tmp_path / "f" / "fourier_embedding.html").exists()
    code, out, _ = run_cli(capsys, "fourier", "--run", "tiny23", "--runs-dir", d, "--json", "--no-figures", "--step", "50")
    data = json.loads(out)
    assert data["step"] == 50 and "key_frequencies" in data
    code, out, _ = run_cli(capsys, "progress", "--run", "tiny23", "--runs-dir", d, "--json", "--no-figures")
    data = json.loads(out)
    assert code == 0 and data["phases"]["grokked_step"] is not None
    assert len(data["measures"]["restricted_loss"]) == len(tiny_run.steps)


def test_without_a_browser_html_is_written_and_one_note_printed(capsys, monkeypatch, tiny_run, tmp_path):
    """No Chrome/Chromium (simulated: kaleido's browser lookup finds none, whatever this machine has):
    the HTML files are written, the command succeeds, and the note on PNGs prints once per process."""
    from choreographer.browsers.chromium import Chromium

    from grokinterp import figures

    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setattr(Chromium, "find_browser", classmethod(lambda cls, **kwargs: None))
    monkeypatch.setattr(figures, "_png_warned", False)  # as in a fresh process
    d = str(tiny_run.path.parent)
    for command, notes in (["progress"], 1), (["fourier", "--step", "1000"], 0):
        out_dir = tmp_path / command[0]
        code, out, _ = run_cli(capsys, *command, "--run", "tiny23", "--runs-dir", d, "--out", str(out_dir))
        assert code == 0 and out.count("PNG export skipped") == notes
        assert len(list(out_dir.glob("*.html"))) >= 2 and not list(out_dir.glob("*.png"))


def test_png_figures_are_written_when_a_browser_exists(capsys, tiny_run, tmp_path):
    from choreographer.browsers.chromium import Chromium

    if Chromium.find_browser(skip_local=False) is None:
        pytest.skip("no Chrome/Chromium on this machine: PNG export untested here (.ci/run installs Chromium)")
    code, out, _ = run_cli(capsys, "progress", "--run", "tiny23", "--runs-dir", str(tiny_run.path.parent), "--out", str(tmp_path))
    assert code == 0 and "PNG export skipped" not in out
    png = tmp_path / "progress_measures.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_writes_every_figure_and_pngs_while_analysing(capsys, tiny_run, tmp_path):
    """`figures` hands each report's figures to the writer as it is done (PNGs render on a thread
    meanwhile): every figure has its HTML, and its PNG where a browser exists; --no-png writes none."""
    from choreographer.browsers.chromium import Chromium

    d = str(tiny_run.path.parent)
    code, out, _ = run_cli(capsys, "figures", "--run", "tiny23", "--runs-dir", d, "--out", str(tmp_path / "all"), "--json")
    files = [Path(f) for f in json.loads(out)["files"]]
    stems = {f.stem for f in files if f.suffix == ".html"}
    assert code == 0 and {"progress_measures", "tsne_output_weights", "loss_curves", "fourier_embedding"} <= stems
    assert {p.stem for p in (tmp_path / "all").glob("*.html")} == stems | {"index"}
    if Chromium.find_browser(skip_local=False) is not None:
        assert {f.stem for f in files if f.suffix == ".png"} == {p.stem for p in (tmp_path / "all").glob("*.png")} == stems
        assert all(p.read_bytes()[:4] == b"\x89PNG" for p in (tmp_path / "all").glob("*.png"))
    code, _, _ = run_cli(capsys, "figures", "--run", "tiny23", "--runs-dir", d, "--out", str(tmp_path / "html"), "--no-png")
    assert code == 0 and not list((tmp_path / "html").glob("*.png")) and len(list((tmp_path / "html").glob("*.html"))) == len(stems) + 1


@pytest.mark.parametrize("argv,code,needle", [
    (["train", "--run", "nope"], 2, "unknown preset"),
    (["train", "--task", "nope", "--name", "x"], 2, "unknown task"),
    (["train", "--run", "tiny23", "--frac", "1.5"], 2, "fraction"),
    (["train", "--task", "div", "--p", "12", "--name", "x"], 2, "prime"),
    (["train", "--run", "tiny23", "--model", "gpt"], 2, "unknown model"),
    (["table", "--task", "div", "--p", "9"], 2, "prime"),
    (["fourier", "--run", "does-not-exist"], 1, "no run named"),
])
def test_bad_input_is_one_line(capsys, tmp_path, argv, code, needle):
    got, out, err = run_cli(capsys, *argv, *(["--runs-dir", str(tmp_path)] if argv[0] != "table" else []))
    assert got == code and needle in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv,code", [(["fourier", "--run", "does-not-exist"], 1), (["tsne", "--run", "tiny23", "--k", "0"], 2)])
def test_json_errors_are_json(capsys, tiny_run, argv, code):
    """With --json a script reads the error from stdout too; the one line on stderr stays."""
    got, out, err = run_cli(capsys, *argv, "--runs-dir", str(tiny_run.path.parent), "--json")
    assert got == code and json.loads(out) == {"error": err.strip().split(": error: ", 1)[1], "exit_code": code}
    got, out, _ = run_cli(capsys, *argv, "--runs-dir", str(tiny_run.path.parent))
    assert got == code and out == ""


@pytest.mark.parametrize("command,damage,needle", [
    ("train", lambda d: (d / "metrics.csv").unlink(), "metrics.csv is missing"),
    ("train", lambda d: (d / "metrics.csv").write_text("step,loss\n1,2\n"), "metrics.csv is corrupt"),
    ("train", lambda d: (d / "state.safetensors").write_bytes(b"\x00" * 50), "state.safetensors is corrupt"),
    ("progress", lambda d: (d / "config.json").write_text("{not json"), "config.json is corrupt"),
    ("progress", lambda d: (d / "split.json").write_text('{"n_pairs": 3, "train": [1]}'), "split.json is corrupt"),
    ("progress", lambda d: (d / "checkpoints" / "step_00001000.safetensors").write_bytes(b"garbage" * 10), "is corrupt"),
    ("progress", lambda d: (d / "config.json").write_text((d / "config.json").read_text().replace('"tiny-1l"', '"nanda-1l"')),
     "does not match its config"),
])
def test_damaged_run_directory(capsys, run_copy, command, damage, needle):
    damage(run_copy)
    before = digest(run_copy)
    extra = ["--resume", "--steps", "1800", "--no-progress"] if command == "train" else ["--no-figures"]
    code, _, err = run_cli(capsys, command, "--run", "copy", "--runs-dir", str(run_copy.parent), *extra)
    assert code == 1 and needle in err and len(err.strip().splitlines()) == 1
    assert digest(run_copy) == before  # nothing touched


def test_step_that_does_not_exist(capsys, tiny_run):
    code, _, err = run_cli(capsys, "fourier", "--run", "tiny23", "--runs-dir", str(tiny_run.path.parent), "--step", "77")
    assert code == 1 and "nearest is" in err


def test_subprocess_errors_have_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "grokinterp.cli", "progress", "--run", "nothing", "--runs-dir", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" not in out.stderr and out.stderr.count("\n") == 1


def test_resume_without_state_keeps_the_run_and_continues_only_from_its_weights(capsys, run_copy, tiny_run):
    """A trained run whose resume state is gone is not restarted (which would delete its checkpoints);
    --from-weights continues it from the last checkpoint. (Runs killed before their first state write
    restart from step 0: tests/test_trainer_edges.py.)"""
    from grokinterp.runs import load_run

    (run_copy / "state.safetensors").unlink()
    last = tiny_run.steps[-1]
    args = ["train", "--run", "copy", "--resume", "--steps", str(last + 100), "--no-progress", "--runs-dir", str(run_copy.parent)]
    code, _, err = run_cli(capsys, *args)
    assert code == 1 and f"checkpoints up to step {last}:" in err and "--from-weights" in err
    assert load_run(run_copy).steps == tiny_run.steps
    code, _, err = run_cli(capsys, *args, "--from-weights")
    assert code == 0 and f"weights of step {last}" in err
    run = load_run(run_copy)
    assert run.steps[: len(tiny_run.steps)] == tiny_run.steps and run.steps[-1] == run.metrics["step"][-1] == last + 100
    n = len(tiny_run.metrics["step"])
    for k in tiny_run.metrics:  # what the run had before is kept
        assert (run.metrics[k][:n] == tiny_run.metrics[k]).all(), k


def test_an_exported_float16_run_continues_and_says_its_files_dtype(capsys, tiny_run, tmp_path):
    """--from-weights on a float16 export names the file's dtype, and the dtype new checkpoints get
    (the run's checkpoint dtype: float32 here), which they do get."""
    from safetensors import safe_open

    out, last = tmp_path / "half", tiny_run.steps[-1]
    assert run_cli(capsys, "export", "--run", str(tiny_run.path), "--out", str(out), "--every", "500")[0] == 0
    code, _, err = run_cli(capsys, "train", "--run", str(out), "--resume", "--from-weights", "--steps", str(last + 50), "--no-progress")
    assert code == 0 and f"weights of step {last} (stored as float16; trained in float32, new checkpoints written as float32" in err
    with safe_open(str(out / "checkpoints" / f"step_{last + 50:08d}.safetensors"), "pt") as f:
        assert f.get_tensor("embed.W_E").dtype == torch.float32


def test_a_run_in_a_folder_with_a_space_resumes_by_path(capsys, tiny_run, tmp_path):
    """A run opened by path is resumed where it is, whatever its folder is called; new names stay strict."""
    import shutil

    from grokinterp.runs import load_run

    d = tmp_path / "a b" / "run dir"
    shutil.copytree(tiny_run.path, d)
    last = tiny_run.steps[-1]
    code, _, err = run_cli(capsys, "train", "--run", str(d), "--resume", "--steps", str(last + 50), "--no-progress")
    assert code == 0, err
    assert load_run(d).steps[-1] == last + 50
    code, _, err = run_cli(capsys, "train", "--run", "tiny23", "--name", "new run", "--steps", "10", "--runs-dir", str(tmp_path))
    assert code == 2 and "bad run name 'new run'" in err


def test_relapse_counts_of_the_shipped_runs_as_docs_analyses_quotes_them():
    """docs/analyses.md (Phases) quotes the training report's relapse line of each shipped run; the
    shipped metrics fix these counts (s5-post keeps falling below 50% test accuracy after grokking)."""
    import grokinterp as gi

    lines = {name: "\n".join(gi.training_curves(name).lines) for name in ("s5-post", "s5", "modadd113")}
    assert "falls below 50% again at 65 of the 174 logged steps after it, the last at step 95,500" in lines["s5-post"]
    assert "falls below 50% again at 1 of the 31 logged steps after it, the last at step 8,750" in lines["s5"]
    assert "test acc >= 99% first logged at step 10,500" in lines["modadd113"] and "falls below" not in lines["modadd113"]
