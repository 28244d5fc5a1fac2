import csv
import json

import pytest

from grokinterp.cli import main
from grokinterp.config import ConfigError
from grokinterp.sweep import SweepSpec, median_steps_to_generalise, run_sweep

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
    for stem in ("sweep_fig1_steps_vs_fraction", "sweep_fig2_regularisers", "sweep_fig2_operations"):
        assert (local_sweep / "grid" / "figures" / f"{stem}.html").exists()


def test_sweep_is_resumable_and_skips_finished_runs(local_sweep, capsys):
    before = {p: p.stat().st_mtime_ns for p in (local_sweep / "grid").rglob("step_00000150.safetensors")}
    assert main(["sweep", "--name", "grid", *GRID, "--runs-dir", str(local_sweep), "--json", "--no-figures"]) == 0
    after = {p: p.stat().st_mtime_ns for p in (local_sweep / "grid").rglob("step_00000150.safetensors")}
    assert before == after and len(before) == 8
    capsys.readouterr()
    assert main(["sweep", "--name", "grid", "--tasks", "add", "--runs-dir", str(local_sweep)]) == 2  # another grid, same name
    assert "another grid" in capsys.readouterr().err


def test_median_steps_leave_out_fractions_that_never_generalise():
    rows = [{"task": "add", "frac": f, "grokked_step": g, "optimizer": "adamw", "wd": 1.0, "batch": "full"}
            for f, g in [(0.3, None), (0.3, None), (0.3, 500), (0.5, 100), (0.5, 300), (0.5, None)]]
    assert median_steps_to_generalise(rows) == {"add": ([0.5], [300.0])}


def test_ray_backend_matches_local(local_sweep, tmp_path):
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        spec = SweepSpec(name="grid", tasks=["add", "sub"], p=11, fracs=[0.5, 0.8], seeds=[0, 1], model="tiny-1l", lr=1e-2,
                         steps=150, checkpoint_every=10)
        root = run_sweep(spec, tmp_path, max_ensemble=4, backend="ray", progress=False)
    finally:
        ray.shutdown()
    ours = list(csv.DictReader(open(root / "results.csv")))
    local = list(csv.DictReader(open(local_sweep / "grid" / "results.csv")))
    assert [r["run"] for r in ours] == [r["run"] for r in local]
    for a, b in zip(ours, local):
        assert a["memorised_step"] == b["memorised_step"] and a["grokked_step"] == b["grokked_step"]
        assert float(a["best_test_acc"]) == pytest.approx(float(b["best_test_acc"]), abs=0.02)
    assert json.loads((root / "sweep.json").read_text())["tasks"] == ["add", "sub"]


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
