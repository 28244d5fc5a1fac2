import json

import numpy as np
import pytest
import torch

from grokinterp.analysis.phase_changes import distinct_steps, induction_formation_step, phase_change_step
from grokinterp.cli import main
from grokinterp.sequences import Add5, Repeat, induction_scores, per_token_losses


def test_add5_sequences_are_correct_sums():
    task = Add5()
    seq = task.sample(np.random.default_rng(0), 50).numpy()
    num = lambda d: int("".join(map(str, d)))  # noqa: E731
    for s in seq:
        assert s[5] == 10 and s[11] == 11
        assert num(s[:5]) + num(s[6:11]) == num(s[12:])
    assert task.n_ctx == 18 and list(task.loss_positions) == [11, 12, 13, 14, 15, 16]


def test_repeat_sequences_contain_the_repeat():
    task = Repeat()
    batch = task.sample(np.random.default_rng(0), 40).numpy()
    for row in batch:
        seq, first, second = row[:85], row[85], row[86]
        assert second >= first + 16 and second + 16 <= 85
        assert (seq[first : first + 16] == seq[second : second + 16]).all()


@pytest.mark.parametrize("task", [Add5(), Repeat()])
def test_oracle_logits_have_near_zero_loss(task):
    batch = task.sample(np.random.default_rng(1), 8)
    tokens = batch[:, : task.n_ctx]
    logits = torch.full((8, task.n_ctx, task.d_vocab), -30.0)
    logits[:, :-1].scatter_(-1, tokens[:, 1:, None], 30.0)  # predict the next token perfectly
    losses = per_token_losses(task, logits, batch)
    assert losses.shape == (len(task.loss_names),) and losses.max() < 1e-10
    assert per_token_losses(task, torch.zeros_like(logits), batch).min() == pytest.approx(np.log(task.d_vocab))


def test_induction_score_of_a_perfect_induction_pattern():
    task = Repeat()
    batch = task.sample(np.random.default_rng(2), 6)
    pattern = torch.zeros(6, 2, 85, 85)
    first, second = batch[:, -2], batch[:, -1]
    for b in range(6):
        for q in range(85):
            pattern[b, 1, q, 0] = 1.0  # head 1: attends to BOS-like position 0
            d = q - second[b].item()
            k = first[b].item() + d + 1 if 0 <= d < 16 else 0
            pattern[b, 0, q, min(k, 84)] = 1.0  # head 0: an induction head
    s = induction_scores(pattern, batch, task)
    assert s[0] == pytest.approx(1.0) and s[1] < 0.1


def test_induction_offset_profile_finds_a_planted_offset():
    from grokinterp.sequences import induction_offset_profile

    task = Repeat()
    batch = task.sample(np.random.default_rng(3), 6)
    pattern = torch.zeros(6, 1, 85, 85)
    first, second = batch[:, -2], batch[:, -1]
    for b in range(6):
        for q in range(85):
            d = q - second[b].item()
            pattern[b, 0, q, min(first[b].item() + d + 5, q) if 0 <= d < 16 else 0] = 1.0
    profile = induction_offset_profile(pattern, batch, task)[0]
    assert int(profile.argmax()) + 1 == 5 and profile.max() == pytest.approx(1.0) and profile[0] < 0.1


def test_phase_change_helpers():
    steps = np.arange(0, 1000, 10)
    loss = np.where(steps < 400, 2.0, 0.05)
    assert phase_change_step(steps, loss) == 400 and phase_change_step(steps, np.full(100, 2.0)) is None
    assert distinct_steps([100, 105, 400, 900, None]) == 3
    m = {"step": steps, "induction_head0": np.where(steps > 600, 0.9, 0.1), "induction_head1": np.zeros(100)}
    assert induction_formation_step(m) == 610
    m["induction_best0"] = np.where(steps > 300, 0.4, 0.05)
    assert induction_formation_step(m, 0.3, prefix="induction_best") == 310


def test_sequence_training_and_phases_command(tmp_path, capsys):
    assert main(["train", "--run", "repeat-1l", "--steps", "20", "--runs-dir", str(tmp_path), "--no-progress"]) == 0
    assert main(["train", "--run", "add5-finite", "--steps", "20", "--runs-dir", str(tmp_path), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["phases", "--run", "add5-finite", "--compare", "repeat-1l", "--runs-dir", str(tmp_path), "--json", "--no-figures"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert set(data["test_phase_changes"]) == {"digit5", "digit4", "digit3", "digit2", "digit1", "digit0"}
    assert data["data"] == "400 training sequences"
    assert data["compare"] == "repeat-1l" and data["compare_task"] == "repeat"
    assert main(["phases", "--run", "add5-finite", "--compare", "repeat-1l", "--runs-dir", str(tmp_path), "--no-figures"]) == 0
    assert "another task (repeat, not add5)" in capsys.readouterr().out  # the text says the two runs are not like with like
    assert main(["phases", "--run", "repeat-1l", "--runs-dir", str(tmp_path), "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "induction" in out and "induction circuit at any offset" in out
    from grokinterp.store import read_metrics

    row = read_metrics(tmp_path / "repeat-1l" / "metrics.csv", fields=None)[-1]
    assert row["induction_best0"] >= row["induction_head0"] and 1 <= row["induction_offset0"] <= 16
    assert main(["fourier", "--run", "repeat-1l", "--runs-dir", str(tmp_path)]) == 1  # a sequence run is not a table run
    import grokinterp as gi
    from grokinterp.store import RunError

    run = gi.load_run("repeat-1l", tmp_path)  # its metrics read as its own columns, not as a corrupt table run's
    assert run.metrics["step"][-1] == 20 and "induction_best0" in run.metrics and "test_acc" not in run.metrics
    with pytest.raises(RunError, match="is a sequence run; use `grokinterp phases"):
        gi.training_curves(run)
    # compared with itself, with a run ending elsewhere, and an unfinished run: each said
    assert main(["phases", "--run", "repeat-1l", "--compare", "repeat-1l", "--runs-dir", str(tmp_path), "--no-figures"]) == 0
    assert "at step 20, against" in (out := capsys.readouterr().out) and "that is this run itself" in out
    assert main(["phases", "--run", "add5-finite", "--compare", "repeat-1l", "--runs-dir", str(tmp_path), "--no-figures"]) == 0
    assert "end at different steps" not in capsys.readouterr().out  # both at step 20
    record = json.loads((tmp_path / "repeat-1l" / "config.json").read_text())
    record["config"]["steps"] = 100  # as a run killed at step 20 of 100 reads
    (tmp_path / "repeat-1l" / "config.json").write_text(json.dumps(record))
    assert main(["phases", "--run", "repeat-1l", "--runs-dir", str(tmp_path), "--no-figures"]) == 0
    assert "20 of 100 steps (unfinished" in capsys.readouterr().out


def test_compared_runs_are_titled_by_their_settings_not_their_folders():
    from dataclasses import asdict

    from grokinterp.report import _sequence_labels
    from grokinterp.sequence_training import SEQUENCE_PRESETS

    add5, finite = asdict(SEQUENCE_PRESETS["add5"]), asdict(SEQUENCE_PRESETS["add5-finite"])
    assert _sequence_labels(finite, add5, ("a5_n400", "a5_inf")) == ("add5 on add5-1l, 400 training sequences, wd 1, batch 64",
                                                                     "add5 on add5-1l, infinite data, wd 0.1, batch 256")
    wd0 = finite | {"wd": 0.0}
    assert _sequence_labels(finite, wd0, ("a5_n500_wd1_b64", "a5_n500_wd0_b64")) == (
        "add5 on add5-1l, 400 training sequences, wd 1", "add5 on add5-1l, 400 training sequences, wd 0")
    a, b = _sequence_labels(finite, dict(finite), ("x", "y"))  # equal settings: only then the folders tell them apart
    assert a != b and a.endswith("(x)")


def test_full_batch_sequence_training_steps_on_the_whole_training_set(tmp_path, capsys):
    from grokinterp.models import build_model
    from grokinterp.sequence_training import SEQUENCE_PRESETS, load_sequence_model

    assert main(["train", "--run", "add5-finite", "--n-train", "48", "--full-batch", "--steps", "3", "--name", "fb",
                 "--runs-dir", str(tmp_path), "--no-progress"]) == 0
    cfg = SEQUENCE_PRESETS["add5-finite"]
    task = cfg.make_task()
    model = build_model(cfg.model, task.d_vocab, task.d_vocab, task.n_ctx, seed=cfg.seed)
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.wd, betas=(0.9, 0.98))
    train_set = task.sample(np.random.default_rng([cfg.seed, 1]), 48)
    for _ in range(3):
        opt.zero_grad()
        per_token_losses(task, model(train_set[:, : task.n_ctx]), train_set).mean().backward()
        opt.step()
    _, _, trained = load_sequence_model(tmp_path / "fb")
    description = json.loads((tmp_path / "fb" / "config.json").read_text())["config"]["description"]
    assert description == cfg.description + "; changed by flags: n_train 48, batch_size None"  # "400 examples" no longer true
    for (name, a), b in zip(model.named_parameters(), trained.parameters()):
        torch.testing.assert_close(a, b, msg=name)
    capsys.readouterr()
    assert main(["train", "--run", "add5", "--full-batch", "--steps", "3", "--runs-dir", str(tmp_path), "--no-progress"]) != 0
    assert "finite training set" in capsys.readouterr().err


def test_repeat_task_size_is_part_of_the_sequence_config():
    import dataclasses

    from grokinterp.config import ConfigError
    from grokinterp.sequence_training import SEQUENCE_PRESETS

    cfg = dataclasses.replace(SEQUENCE_PRESETS["repeat-2l"], repeat_length=40, repeat_sub_len=8)
    task = cfg.make_task()
    assert (task.n_ctx, task.sub_len) == (40, 8)
    row = task.sample(np.random.default_rng(0), 5).numpy()[0]
    assert row[41] >= row[40] + 8 and (row[row[40] : row[40] + 8] == row[row[41] : row[41] + 8]).all()
    assert SEQUENCE_PRESETS["repeat-2l"].make_task() == Repeat()  # the presets keep the 85-token task
    with pytest.raises(ConfigError, match="repeat_sub_len"):
        dataclasses.replace(cfg, repeat_sub_len=21)



def test_log_every_flag_sets_the_metric_interval_kept_on_resume(tmp_path, capsys):
    """--log-every N: rows every N steps and at the last, stored in the config; a resume keeps it, keeps the
    row of the step it resumes from (the old last step) once, and adds the new rows as an uninterrupted run does."""
    from grokinterp.explore import explorer_html
    from grokinterp.runs import load_run
    from grokinterp.store import read_metrics

    common = ["--n-train", "32", "--checkpoint-every", "1", "--log-every", "2", "--runs-dir", str(tmp_path), "--no-progress"]
    assert main(["train", "--run", "add5-finite", "--steps", "3", "--name", "le", *common]) == 0
    steps = lambda name: [r["step"] for r in read_metrics(tmp_path / name / "metrics.csv", fields=None)]  # noqa: E731
    assert steps("le") == [0, 2, 3]
    assert json.loads((tmp_path / "le" / "config.json").read_text())["config"]["log_every"] == 2
    # checkpoints (every step) denser than the rows: the explorer's label names the row its curve markers show
    page = explorer_html(load_run("le", tmp_path))
    data = json.loads(page.split('id="explorer-data">')[1].split("</script>")[0])
    assert data["steps"] == [0, 1, 2, 3] and data["logged"] == [0, 0, 2, 3] and "(the last logged before it)" in page
    capsys.readouterr()
    assert main(["train", "--run", "le", "--resume", "--steps", "5", "--runs-dir", str(tmp_path), "--no-progress"]) == 0
    assert steps("le") == [0, 2, 3, 4, 5]  # 3: the old last step, logged once, not dropped
    assert main(["train", "--run", "add5-finite", "--steps", "5", "--name", "ref", *common]) == 0
    ref = read_metrics(tmp_path / "ref" / "metrics.csv", fields=None)
    resumed = read_metrics(tmp_path / "le" / "metrics.csv", fields=None)
    assert [r for r in resumed if r["step"] != 3] == ref  # bit-identical to the uninterrupted run
    capsys.readouterr()
    for argv, message in ((["--run", "le", "--resume", "--log-every", "7"], "(log_every 2, not 7)"),
                          (["--run", "add5", "--log-every", "0"], "log_every must be positive, got 0"),
                          (["--run", "tiny23", "--log-every", "5"], "--log-every is for sequence runs"),
                          (["--run", "tiny23", "--n-train", "5"], "--n-train is for sequence runs")):
        assert main(["train", *argv, "--runs-dir", str(tmp_path), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert steps("le") == [0, 2, 3, 4, 5]  # the refused resume changed nothing


def test_train_sequence_takes_a_name_refuses_float_steps_before_writing_and_resumes(tmp_path):
    """`gi.train_sequence` names its run through ``name`` (the preset is positional), refuses 2.5 steps
    before any file is written (it used to leave a config.json and a lock behind), and resumes in Python."""
    import grokinterp as gi
    from grokinterp.config import ConfigError
    from grokinterp.store import RunNameError

    with pytest.raises(ConfigError, match="steps must be an integer, got 2.5"):
        gi.train_sequence("repeat-1l", runs_dir=tmp_path, steps=2.5, progress=False)
    assert not (tmp_path / "repeat-1l").exists()
    run = gi.train_sequence("repeat-1l", runs_dir=tmp_path, name="mine", steps=4, log_every=2, progress=False)
    assert run.path == tmp_path / "mine" and run.metrics["step"].tolist() == [0, 2, 4]
    with pytest.raises(RunNameError, match="in Python: resume=True, or name="):
        gi.train_sequence("repeat-1l", runs_dir=tmp_path, name="mine", steps=4, log_every=2, progress=False)
    run = gi.train_sequence("repeat-1l", runs_dir=tmp_path, name="mine", steps=6, log_every=2, progress=False, resume=True)
    assert run.metrics["step"].tolist() == [0, 2, 4, 6]
