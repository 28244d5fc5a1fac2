import csv
import json
from pathlib import Path

import pytest

from grokinterp.cli import main
from grokinterp.config import ConfigError
from grokinterp.sweep import SweepSpec, _operation, best_accuracy, median_steps_to_generalise, run_sweep

GRID = ["--tasks", "add,sub", "--p", "11", "--fracs", "0.5,0.8", "--seeds", "0,1", "--model", "tiny-1l", "--lr", "1e-2",
        "--steps", "150", "--checkpoint-every", "10"]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweeps")
    assert main(["sweep", "--name", "grid", *GRID, "--runs-dir", str(d), "--label", "reduced CPU sweep", "--json"]) == 0
    return d


def test_sweep_writes_results_and_figures(local_sweep):
    rows = list(csv.DictReader(open(local_sweep / "grid" / "results.csv")))
    assert len(rows) == 8 and {r["task"] for r in rows} == {"add", "sub"}
    assert all(r["memorised_step"] for r in rows)  # every member memorised within the budget
    assert all(0 <= float(r["best_test_acc"]) <= 1 for r in rows)
    figures = local_sweep / "grid" / "figures"
    for stem in ("sweep_fig1_steps_vs_fraction", "sweep_fig2_operations"):  # only tasks vary: Fig. 2 per operation
        assert (figures / f"{stem}.html").exists()
    assert not (figures / "sweep_fig2_regularisers.html").exists()
    nodes = json.loads((local_sweep / "grid" / "nodes.json").read_text())
    assert sorted(nodes) == sorted(r["run"] for r in rows) and len(set(nodes.values())) == 1  # one machine


def test_sweep_is_resumable_and_skips_finished_runs(local_sweep, capsys):
    before = {p: p.stat().st_mtime_ns for p in (local_sweep / "grid").rglob("step_00000150.safetensors")}
    assert main(["sweep", "--name", "grid", *GRID, "--runs-dir", str(local_sweep), "--json", "--no-figures"]) == 0
    after = {p: p.stat().st_mtime_ns for p in (local_sweep / "grid").rglob("step_00000150.safetensors")}
    assert before == after and len(before) == 8
    capsys.readouterr()
    assert main(["sweep", "--name", "grid", "--tasks", "add", "--runs-dir", str(local_sweep)]) == 2  # another grid, same name
    assert "another grid" in capsys.readouterr().err


def _row(task, variant, frac, grokked, best, steps=3000):
    wd, opt = (1.0, "adamw") if "wd=1" in variant else (0.0, "adamw")
    return {"task": task, "variant": variant, "wd": wd, "optimizer": opt, "batch": "full", "frac": frac, "steps": steps,
            "grokked_step": grokked, "best_test_acc": best}


def test_median_steps_group_by_every_varied_setting_and_mark_fractions_not_reached():
    # weight decay 0 never generalises: grouped by task only (the old way) every median was infinite and Fig. 1 empty
    rows = [_row("add", "adamw wd=0 full batch", f, None, 0.3) for f in (0.3, 0.5) for _ in range(3)]
    rows += [_row("add", "adamw wd=1 full batch", f, g, 1.0) for f, g in [(0.3, None), (0.3, None), (0.3, 500),
                                                                         (0.5, 100), (0.5, 300), (0.5, None)]]
    curves = median_steps_to_generalise(rows)
    assert list(curves) == ["adamw wd=0 full batch", "adamw wd=1 full batch"]
    wd1, wd0 = curves["adamw wd=1 full batch"], curves["adamw wd=0 full batch"]
    assert (wd1.fracs, wd1.values, wd1.reached, wd1.runs, wd1.budget) == ([0.3, 0.5], [None, 300.0], [1, 2], [3, 3], 3000)
    assert wd0.values == [None, None] and wd0.reached == [0, 0]
    # two seeds, one of which generalised: the median is not reached (half the seeds did not get there)
    assert median_steps_to_generalise([_row("add", "v", 0.5, 200, 1.0), _row("add", "v", 0.5, None, 0.5)])["x+y"].values == [None]
    # results.csv read back as strings give the same
    text = [{k: "" if v is None else str(v) for k, v in r.items()} for r in rows]
    assert median_steps_to_generalise(text)["adamw wd=1 full batch"].values == [None, 300.0]


def test_steps_figure_draws_every_fraction_and_marks_those_not_reached():
    from grokinterp import figures as F

    rows = [_row("add", "adamw wd=0 full batch", f, None, 0.3) for f in (0.3, 0.5)]
    rows += [_row("add", "adamw wd=1 full batch", 0.3, None, 0.5), _row("add", "adamw wd=1 full batch", 0.5, 400, 1.0)]
    fig = F.steps_vs_fraction(median_steps_to_generalise(rows), "t")
    drawn = {}
    for tr in fig.data:
        if tr.legendgroup:
            drawn.setdefault(tr.legendgroup, []).extend(zip(tr.x, tr.y))
    assert sorted(x for x, _ in drawn["adamw wd=1 full batch"]) == [0.3, 0.5]  # every fraction is drawn
    assert sorted(x for x, _ in drawn["adamw wd=0 full batch"]) == [0.3, 0.5]
    reached = dict(drawn["adamw wd=1 full batch"])
    assert reached[0.5] == 400 and reached[0.3] > 3000  # not reached: a marker above the budget line
    assert all(y > 3000 for _, y in drawn["adamw wd=0 full batch"])
    marks = [t for tr in fig.data if tr.text is not None for t in tr.text]
    assert sorted(marks) == ["0/1", "0/1", "0/1"]


def test_operations_and_regulariser_accuracy_are_split_by_every_varied_setting():
    rows = [_row(task, v, 0.5, None, acc) for task, v, acc in [("add", "adamw wd=1 full batch", 1.0), ("add", "adamw wd=0 full batch", 0.2),
                                                              ("sub", "adamw wd=1 full batch", 0.9), ("sub", "adamw wd=0 full batch", 0.1)]]
    acc = {k: c.values for k, c in best_accuracy(rows).items()}
    assert acc == {"x+y, adamw wd=0 full batch": [0.2], "x+y, adamw wd=1 full batch": [1.0],
                   "x-y, adamw wd=0 full batch": [0.1], "x-y, adamw wd=1 full batch": [0.9]}  # not x+y 0.6, x-y 0.5
    assert _operation("s5_conj") == "x*y*x^-1 in S5"


def test_figures_redrawn_from_a_results_csv(tmp_path, capsys):
    rows = [_row("add", v, f, g, a) for v, f, g, a in [("adamw wd=0 full batch", 0.5, None, 0.4), ("adamw wd=1 full batch", 0.5, 900, 1.0)]]
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    assert main(["sweep", "--from-results", str(path), "--out", str(tmp_path / "figs"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(Path(p).name for p in out["figures"] if p.endswith(".html")) == ["sweep_fig1_steps_vs_fraction.html",
                                                                                "sweep_fig2_regularisers.html"]
    assert main(["sweep", "--from-results", str(tmp_path / "figs" / "sweep_fig1_steps_vs_fraction.html"), "--out", str(tmp_path)]) == 2
    assert "not a sweep's results.csv" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../escape", "/abs/path", ".hidden", "a" * 300])
def test_sweep_name_is_validated_before_anything_is_written(tmp_path, capsys, name):
    runs = tmp_path / "runs"
    runs.mkdir()
    assert main(["sweep", "--name", name, "--tasks", "add", "--p", "11", "--fracs", "0.5", "--seeds", "0", "--steps", "10",
                 "--runs-dir", str(runs), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "sweep name" in err and "Traceback" not in err
    assert list(tmp_path.rglob("*")) == [runs] and not Path("/abs/path").exists()


def test_variants_cross_the_grid_and_label_the_regulariser_figure(tmp_path):
    from grokinterp.sweep import parse_variants

    variants = parse_variants("wd=1; wd=0,batch_size=full,update_noise=0.01; wd=0,dropout=0.1")
    assert variants[1] == {"wd": 0.0, "batch_size": None, "update_noise": 0.01}
    spec = SweepSpec(name="regs", tasks=["add"], p=11, fracs=[0.5], seeds=[0], model="tiny-1l", lr=1e-2, batch_sizes=[16],
                     steps=40, checkpoint_every=20, variants=variants)
    names = [c.name for c in spec.configs()]
    assert names == ["add_f0.5_s0_wd1_adamw_b16", "add_f0.5_s0_wd0_adamw_update_noise0.01", "add_f0.5_s0_wd0_adamw_b16_dropout0.1"]
    assert main(["sweep", "--name", "regs", "--tasks", "add", "--p", "11", "--fracs", "0.5", "--seeds", "0", "--model", "tiny-1l",
                 "--lr", "1e-2", "--batch-sizes", "16", "--steps", "40", "--checkpoint-every", "20", "--runs-dir", str(tmp_path),
                 "--variants", "wd=1; wd=0,batch_size=full,update_noise=0.01; wd=0,dropout=0.1", "--json", "--no-figures"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "regs" / "results.csv")))
    assert [r["variant"] for r in rows] == ["adamw wd=1 batch 16", "adamw wd=0 full batch update_noise0.01",
                                            "adamw wd=0 batch 16 dropout0.1"]
    with pytest.raises(ConfigError, match="key=value"):
        parse_variants("momentum=0.9")
    with pytest.raises(ConfigError, match="bad value"):
        parse_variants("wd=lots")
    with pytest.raises(ConfigError, match="twice"):
        SweepSpec(name="dup", tasks=["add"], fracs=[0.5], variants=parse_variants("wd=0; wd=0,optimizer=adamw")).configs()


def test_rerunning_a_sweep_resumes_a_member_killed_midway_with_one_bar_over_the_grid(local_sweep, tmp_path, capsys, request):
    """What a killed process or Ray node leaves: a member whose resume state is at step 100 of 150."""
    import shutil

    import torch

    from grokinterp.store import read_tensors
    from grokinterp.training import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a sweep's worker process trains (and fast on a busy CPU)
    request.addfinalizer(lambda: torch.set_num_threads(threads))

    spec = SweepSpec(name="grid", tasks=["add", "sub"], p=11, fracs=[0.5, 0.8], seeds=[0, 1], model="tiny-1l", lr=1e-2,
                     steps=150, checkpoint_every=10)
    configs, root = spec.configs(), tmp_path / "grid"
    for c in configs[1:]:
        shutil.copytree(local_sweep / "grid" / c.name, root / c.name)
    train([configs[0].replace(steps=100)], runs_dir=root, progress=False)
    killed = root / configs[0].name
    early = (killed / "checkpoints" / "step_00000050.safetensors").stat().st_mtime_ns
    run_sweep(spec, tmp_path, workers=1)
    err = capsys.readouterr().err
    assert "1150/1200" in err and "1200/1200" in err  # one bar over the grid's member-steps, the finished ones counted
    assert (killed / "checkpoints" / "step_00000050.safetensors").stat().st_mtime_ns == early  # resumed, not retrained
    ours = list(csv.DictReader(open(root / "results.csv")))
    local = list(csv.DictReader(open(local_sweep / "grid" / "results.csv")))
    assert ours[1:] == local[1:] and ours[0]["steps"] == "150"
    assert ours[0]["memorised_step"] == local[0]["memorised_step"] and ours[0]["grokked_step"] == local[0]["grokked_step"]
    a = read_tensors(killed / "checkpoints" / "step_00000150.safetensors")[0]
    b = read_tensors(local_sweep / "grid" / configs[0].name / "checkpoints" / "step_00000150.safetensors")[0]
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-3


def test_progress_bar_follows_member_checkpoints(tmp_path):
    import threading
    import time

    from grokinterp.sweep import _watch

    class Bar:
        n = 0

        def refresh(self):
            pass

    configs = SweepSpec(name="w", tasks=["add"], p=11, fracs=[0.5], seeds=[0, 1], steps=100).configs()
    for c, last in zip(configs, (30, 100)):
        (tmp_path / c.name).mkdir()
        (tmp_path / c.name / "metrics.csv").write_text("step,train_loss\n" + "".join(f"{s},0.5\n" for s in range(0, last + 1, 10)))
    bar, stop = Bar(), threading.Event()
    t = threading.Thread(target=_watch, args=(tmp_path, configs, bar, stop, 0.01))
    t.start()
    time.sleep(0.2)
    assert bar.n == 130
    (tmp_path / configs[0].name / "metrics.csv").write_text("step,train_loss\n0,1\n40,1\n")
    time.sleep(0.2)
    stop.set()
    t.join()
    assert bar.n == 140


def test_attention_rate_sweep_is_one_command_one_ensemble_and_its_figures_draw(tmp_path, capsys):
    """Zhong et al.'s alpha sweep: --attention-rates is a grid axis (attention_rate= a variant key); the
    members share one ensemble; the sweep figures split by rate; census says in one line it needs groups."""
    from grokinterp.runs import load_run
    from grokinterp.sweep import _jobs, parse_variants

    spec = SweepSpec(name="alpha", tasks=["add"], p=11, fracs=[0.5], seeds=[0], model="tiny-1l", attention_rates=[0.0, 0.5, 1.0])
    assert [c.attention_rate for c in spec.configs()] == [0.0, 0.5, 1.0] and len(_jobs(spec.configs(), 32)) == 1
    variants = SweepSpec(name="v", tasks=["add"], fracs=[0.5], variants=parse_variants("attention_rate=0; wd=0,attention_rate=0.25"))
    assert [(c.name, c.attention_rate) for c in variants.configs()] == [
        ("add_f0.5_s0_wd1_adamw_attention_rate0", 0.0), ("add_f0.5_s0_wd0_adamw_attention_rate0.25", 0.25)]
    grid = ["--name", "alpha", "--tasks", "add", "--p", "11", "--fracs", "0.5", "--seeds", "0", "--model", "tiny-1l", "--lr", "1e-2",
            "--steps", "20", "--checkpoint-every", "10", "--workers", "1", "--runs-dir", str(tmp_path)]
    assert main(["sweep", *grid, "--attention-rates", "0,0.5,1", "--json"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "alpha" / "results.csv")))
    assert [r["variant"] for r in rows] == ["adamw wd=1 full batch attention_rate0", "adamw wd=1 full batch attention_rate0.5",
                                            "adamw wd=1 full batch"]
    assert [load_run(tmp_path / "alpha" / r["run"]).config.attention_rate for r in rows] == [0.0, 0.5, 1.0]
    assert (tmp_path / "alpha" / "figures" / "sweep_fig2_regularisers.html").exists()  # one line per rate
    capsys.readouterr()
    assert main(["census", "--sweep", "alpha", "--runs-dir", str(tmp_path)]) == 1
    assert main(["sweep", *grid, "--attention-rates", "0,half"]) == 2
    err = capsys.readouterr().err
    assert "holds no group runs" in err and "--attention-rates takes comma-separated numbers" in err and "Traceback" not in err


def test_sweep_members_open_as_sweep_slash_member_and_runs_lists_sweeps(local_sweep, capsys, monkeypatch, tmp_path):
    import grokinterp as gi
    from grokinterp.store import RunError

    monkeypatch.chdir(tmp_path)  # no sw/... path here: the name is looked up in the runs folder
    member = "grid/add_f0.5_s0_wd1_adamw"
    assert gi.load_run(member, local_sweep).path == local_sweep / "grid" / "add_f0.5_s0_wd1_adamw"
    with pytest.raises(RunError, match="SWEEP/MEMBER"):
        gi.load_run("grid/no_such_member", local_sweep)
    capsys.readouterr()
    assert main(["progress", "--run", member, "--runs-dir", str(local_sweep), "--json", "--no-figures"]) == 0
    capsys.readouterr()
    assert main(["runs", "--runs-dir", str(local_sweep)]) == 0
    out = capsys.readouterr().out
    assert "--run SWEEP/MEMBER" in out and "grid" in out and "8 members" in out and "e.g. --run grid/add_f0.5_s0_wd1_adamw" in out
    assert main(["runs", "--runs-dir", str(local_sweep), "--json"]) == 0
    sweeps = json.loads(capsys.readouterr().out)["sweeps"]
    assert [(s["name"], len(s["members"])) for s in sweeps] == [("grid", 8)] and member.split("/")[1] in sweeps[0]["members"]


def test_sweep_table_says_never_where_99_percent_was_not_reached(tmp_path, capsys):
    grid = ["--tasks", "add", "--p", "11", "--fracs", "0.5", "--model", "tiny-1l", "--steps", "20", "--checkpoint-every", "10"]
    assert main(["sweep", "--name", "short", *grid, "--runs-dir", str(tmp_path), "--no-figures"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "add_f0.5_s0_wd1_adamw" in line and "--run" not in line)
    assert row.split()[1:3] == ["never", "never"] and "None" not in out  # 20 steps: neither 99% train nor test
    assert "grokinterp fourier --run short/add_f0.5_s0_wd1_adamw" in out


def test_run_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    import os
    import stat

    from grokinterp.store import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644  # readable by the other users of a shared folder
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600


def test_a_held_run_lock_names_the_process_that_holds_it(tmp_path):
    import os

    from grokinterp.store import RunError, run_lock

    with run_lock(tmp_path / "r"):
        assert (tmp_path / "r" / ".lock").read_text() == str(os.getpid())
        with pytest.raises(RunError, match=f"being trained by process {os.getpid()} right now"):
            with run_lock(tmp_path / "r", resume=True):
                pass
