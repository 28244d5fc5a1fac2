"""Bring your own run: `grokinterp import` (folders, lists, Nanda's layout), safe loading, runs in memory,
and the public one-call analyses. Every source is built from the tiny23 run, so the imported run must
give the original's numbers exactly."""

import json
import os
import pickle

import numpy as np
import pytest
import torch

import grokinterp as gi
from grokinterp.cli import _json_default, main
from grokinterp.config import ConfigError
from grokinterp.store import RunError


def as_json(payload: dict) -> dict:
    return json.loads(json.dumps({k: v for k, v in payload.items() if k not in ("run", "figures")}, default=_json_default))


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def to_nanda_layout(w: dict, n_heads: int) -> dict:
    """Our TransformerLens weights in the layout of Nanda's model class (progress-measures-paper transformers.py):
    transposed W_E, W_Q/K/V, W_in, W_out; W_O as (d_model, heads * d_head); only the MLP's biases; the
    causal-mask buffer; an extra output column for '=' (his d_vocab_out is p + 1)."""
    d = w["embed.W_E"].shape[1]
    eq_column = torch.linspace(-1, 1, d)[:, None]
    out = {"embed.W_E": w["embed.W_E"].T.clone(), "pos_embed.W_pos": w["pos_embed.W_pos"].clone(),
           "blocks.0.attn.mask": torch.tril(torch.ones(3, 3)),
           "unembed.W_U": torch.cat([w["unembed.W_U"], eq_column], 1)}
    for n in "QKV":
        out[f"blocks.0.attn.W_{n}"] = w[f"blocks.0.attn.W_{n}"].transpose(1, 2).clone()
    out["blocks.0.attn.W_O"] = w["blocks.0.attn.W_O"].permute(2, 0, 1).reshape(d, -1).clone()  # (d_model, (heads d_head))
    out["blocks.0.mlp.W_in"] = w["blocks.0.mlp.W_in"].T.clone()
    out["blocks.0.mlp.W_out"] = w["blocks.0.mlp.W_out"].T.clone()
    out["blocks.0.mlp.b_in"], out["blocks.0.mlp.b_out"] = w["blocks.0.mlp.b_in"].clone(), w["blocks.0.mlp.b_out"].clone()
    assert w["blocks.0.attn.W_O"].shape[0] == n_heads
    return out


def full_output_losses(w: dict, run) -> tuple[float, float]:
    """Train and test loss of Nanda's model (softmax over p + 1 outputs, '=' included), written out plainly."""
    x = run.task.all_inputs()
    h = w["embed.W_E"][x] + w["pos_embed.W_pos"]
    q, k, v = (torch.einsum("btd,hdk->bhtk", h, w[f"blocks.0.attn.W_{n}"]) for n in "QKV")
    att = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(torch.ones(3, 3, dtype=torch.bool).triu(1), -torch.inf).softmax(-1)
    h = h + torch.einsum("bhtk,hkd->btd", att @ v, w["blocks.0.attn.W_O"])
    h = h + (h @ w["blocks.0.mlp.W_in"] + w["blocks.0.mlp.b_in"]).relu() @ w["blocks.0.mlp.W_out"] + w["blocks.0.mlp.b_out"]
    W_U = torch.cat([w["unembed.W_U"], torch.linspace(-1, 1, h.shape[-1])[:, None]], 1)
    nll = -(h[:, -1] @ W_U).double().log_softmax(-1).gather(-1, run.task.all_labels()[:, None])[:, 0]
    return nll[run.train_mask].mean().item(), nll[~run.train_mask].mean().item()


@pytest.fixture(scope="module")
def sources(tiny_run, tmp_path_factory):
    """tiny23 written in each layout grokinterp import reads."""
    root = tmp_path_factory.mktemp("sources")
    steps = tiny_run.steps
    weights = [tiny_run.weights(s) for s in steps]
    (root / "pt_folder").mkdir()
    for s, w in zip(steps, weights):
        torch.save(w, root / "pt_folder" / f"ckpt_{s}.pt")
    torch.save(weights, root / "list.pt")
    (root / "train.txt").write_text(" ".join(map(str, tiny_run.train_idx)))
    # Nanda's run as ARENA 1.5.2 loads it: losses per epoch (here: recorded at the checkpoint steps)
    train_losses, test_losses = [float("nan")] * (steps[-1] + 1), [float("nan")] * (steps[-1] + 1)
    train_losses[-1], test_losses[-1] = full_output_losses(weights[-1], tiny_run)
    cfg = tiny_run.config
    nanda = {"state_dicts": [to_nanda_layout(w, 4) for w in weights], "checkpoint_epochs": steps,
             "train_losses": train_losses, "test_losses": test_losses,
             "train_indices": torch.from_numpy(tiny_run.train_idx), "test_indices": torch.from_numpy(tiny_run.test_idx),
             "config": {"p": cfg.p, "fn_name": "add", "frac_train": cfg.frac, "d_model": 64, "device": torch.device("cpu")}}
    torch.save(nanda, root / "full_run_data.pth")
    return root


@pytest.fixture(scope="module")
def original(tiny_run):
    """The analyses of tiny23 itself, as JSON."""
    return {"fourier": as_json(gi.fourier(tiny_run).payload), "progress": as_json(gi.progress(tiny_run).payload)}


def imported(capsys, runs_dir, *argv):
    code, out, err = cli(capsys, "import", *argv, "--runs-dir", runs_dir, "--no-progress")
    assert code == 0, err
    return out


def test_nanda_layout_imports_with_identical_analyses(tiny_run, sources, original, tmp_path, capsys):
    out = imported(capsys, tmp_path, sources / "full_run_data.pth", "--name", "nanda")
    assert "nanda layout" in out and "output for '='" in out and f"{len(tiny_run.train_idx)} train" in out
    run = gi.load_run("nanda", tmp_path)
    check = run.record["import"]["loss_check"]
    assert set(check) == {"train_loss", "test_loss"} and all(abs(c["difference"]) < 1e-6 for c in check.values())
    assert run.steps == tiny_run.steps and np.array_equal(run.train_idx, tiny_run.train_idx)
    for s in (run.steps[0], run.steps[-1]):
        assert all(torch.equal(a, b) for a, b in zip(run.weights(s).values(), tiny_run.weights(s).values()))
    np.testing.assert_allclose(run.metrics["test_loss"], tiny_run.metrics["test_loss"], rtol=1e-6)
    assert as_json(gi.fourier(run).payload) == original["fourier"]
    # the CLI analyses read it like any run
    code, text, _ = cli(capsys, "progress", "--run", "nanda", "--runs-dir", tmp_path, "--json", "--no-figures")
    assert code == 0 and as_json(json.loads(text)) == original["progress"]
    code, _, err = cli(capsys, "explore", "--run", "nanda", "--runs-dir", tmp_path, "--out", tmp_path / "page", "--json")
    assert code == 0 and (tmp_path / "page" / "explore.html").stat().st_size > 1_000_000, err  # plotly.js inside


def test_a_wrong_conversion_shows_in_the_loss_check(tiny_run, sources, tmp_path, capsys):
    """W_O flattened (d_head, heads) instead of Nanda's (heads, d_head): the recomputed loss no longer matches."""
    data = torch.load(sources / "full_run_data.pth", weights_only=False)
    W_O = tiny_run.weights()["blocks.0.attn.W_O"]
    last = data["state_dicts"][-1]
    last["blocks.0.attn.W_O"] = W_O.permute(2, 1, 0).reshape(W_O.shape[2], -1)
    data.update(state_dicts=[last], checkpoint_epochs=[tiny_run.steps[-1]])
    torch.save(data, tmp_path / "bad.pth")
    imported(capsys, tmp_path / "runs", tmp_path / "bad.pth")
    check = gi.load_run("bad", tmp_path / "runs").record["import"]["loss_check"]
    assert check["test_loss"]["difference"] > 0.1


@pytest.mark.parametrize("route", ["safetensors_folder", "pt_folder", "list"])
def test_transformer_lens_state_dicts_import_with_identical_analyses(route, tiny_run, sources, original, tmp_path, capsys):
    src = {"safetensors_folder": tiny_run.path / "checkpoints", "pt_folder": sources / "pt_folder", "list": sources / "list.pt"}[route]
    split = ["--frac", tiny_run.config.frac, "--split-seed", tiny_run.config.split_seed] if route == "list" else \
        ["--train-indices", sources / "train.txt"]
    out = imported(capsys, tmp_path, src, "--name", "r", "--task", "add", "--p", 23, *split)
    assert "transformer_lens layout" in out and "records no losses" in out
    run = gi.load_run("r", tmp_path)
    assert run.config.model == "tiny-1l" and np.array_equal(run.train_idx, tiny_run.train_idx)
    if route == "list":  # a bare list gives no steps: numbered 0, 1, 2, ...
        assert run.steps == list(range(len(tiny_run.steps)))
        ours = as_json(gi.fourier(run).payload)
        assert ours.pop("step") == len(tiny_run.steps) - 1
        assert ours == {k: v for k, v in original["fourier"].items() if k != "step"}
    else:
        assert run.steps == tiny_run.steps
        analysis = "progress" if route == "safetensors_folder" else "fourier"
        assert as_json(getattr(gi, analysis)(run).payload) == original[analysis]


def payload(marker):
    """An object whose pickle would create ``marker`` when unpickled (os.system through __reduce__)."""

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    return {"state_dicts": [Payload()]}


@pytest.mark.parametrize("route", ["file", "folder"])
def test_malicious_pickle_is_refused_and_never_runs(route, tiny_run, sources, tmp_path, capsys):
    marker = tmp_path / "pwned"
    if route == "file":  # torch.save's zip format
        src = tmp_path / "evil.pth"
        torch.save(payload(marker), src)
    else:  # a plain pickle beside a good checkpoint
        src = tmp_path / "folder"
        src.mkdir()
        torch.save(tiny_run.weights(), src / "step_0.pt")
        (src / "step_50.pt").write_bytes(pickle.dumps(payload(marker)))
    runs = tmp_path / "runs"
    code, out, err = cli(capsys, "import", src, "--task", "add", "--p", 23, "--train-indices", sources / "train.txt", "--runs-dir", runs)
    assert code == 1 and not marker.exists()
    assert len(err.strip().splitlines()) == 1 and "refused" in err and "system" in err and ".pt" in err
    assert not runs.exists() or not any(runs.iterdir())  # nothing written, not even a temporary folder


def test_transformer_lens_config_in_a_file_is_allowed(tiny_run, sources, tmp_path, capsys):
    """TransformerLens' grokking demo saves its HookedTransformerConfig (with numpy scalars) beside the checkpoints."""
    from grokinterp.models import hooked_config

    t = tiny_run.task
    data = {"checkpoints": [tiny_run.weights()], "checkpoint_epochs": [tiny_run.steps[-1]],
            "config": hooked_config("tiny-1l", t.d_vocab, t.n, t.n_ctx, seed=0), "train_indices": tiny_run.train_idx}
    torch.save(data, tmp_path / "demo.pth")
    imported(capsys, tmp_path / "runs", tmp_path / "demo.pth", "--task", "add", "--p", 23)
    run = gi.load_run("demo", tmp_path / "runs")
    assert run.record["import"]["source_config"]["d_model"] == 64 and run.steps == [tiny_run.steps[-1]]


def test_refusals_write_nothing(tiny_run, sources, tmp_path, capsys):
    runs = tmp_path / "runs"
    base = ["import", tiny_run.path / "checkpoints", "--runs-dir", runs, "--no-progress"]
    code, _, err = cli(capsys, *base, "--task", "add", "--p", 29, "--frac", 0.5, "--split-seed", 0)
    assert code == 1 and "fit no known model on task add (p = 29)" in err
    code, _, err = cli(capsys, *base, "--task", "add", "--p", 23)
    assert code == 2 and "--frac" in err
    code, _, err = cli(capsys, *base, "--p", 23, "--frac", 0.5, "--split-seed", 0)
    assert code == 2 and "--task" in err
    code, _, err = cli(capsys, *base, "--name", "../x", "--task", "add", "--p", 23, "--frac", 0.5, "--split-seed", 0)
    assert code == 2 and "bad run name" in err
    assert not runs.exists() or not any(runs.iterdir())


def test_run_in_memory_equals_the_run_on_disk(tiny_run, original):
    steps = tiny_run.steps
    models = [tiny_run.model(s) for s in steps[:2]] + [tiny_run.weights(s) for s in steps[2:]]  # HookedTransformers, state dicts
    mem = gi.from_models(models, steps, "add", p=23, train_idx=tiny_run.train_idx, name="mem")
    assert mem.name == "mem" and mem.config.model == "tiny-1l" and mem.steps == steps
    with torch.no_grad():
        models[0].embed.W_E.zero_()  # the run holds copies: training the model on does not change it
    assert torch.equal(mem.weights(steps[0])["embed.W_E"], tiny_run.weights(steps[0])["embed.W_E"])
    for k in ("train_loss", "test_loss", "train_acc", "test_acc"):
        np.testing.assert_allclose(mem.metrics[k], tiny_run.metrics[k], rtol=1e-6, atol=1e-12)
    assert as_json(gi.fourier(mem).payload) == original["fourier"]
    progress = gi.progress(mem)  # the same, but where the grokking step was logged: in memory, not metrics.csv
    ours = as_json(progress.payload)
    assert ours["grokking"].pop("logged_in") == "the run's metrics, in memory"
    assert original["progress"]["grokking"]["logged_in"] == "metrics.csv"
    assert ours == {**original["progress"], "grokking": {k: v for k, v in original["progress"]["grokking"].items() if k != "logged_in"}}
    assert "(the run's metrics, in memory" in "\n".join(progress.lines) and "metrics.csv" not in "\n".join(progress.lines)
    assert as_json(gi.tsne(mem).payload) == as_json(gi.tsne(tiny_run).payload)
    with pytest.raises(ConfigError, match="one step per model"):
        gi.from_models([tiny_run.weights()], [0, 1], "add", p=23, frac=0.5, split_seed=0)


def test_public_calls_return_what_the_cli_writes(tiny_run, capsys):
    code, out, _ = cli(capsys, "fourier", "--run", tiny_run.path, "--json", "--no-figures")
    assert code == 0 and json.loads(out) == json.loads(json.dumps({**gi.fourier(tiny_run).payload, "figures": []}, default=_json_default))
    assert gi.fourier(str(tiny_run.path)).lines == gi.fourier(tiny_run).lines
    code, out, _ = cli(capsys, "algorithm", "--run", tiny_run.path, "--json", "--no-figures", "--triples", "200")
    got = gi.algorithm(tiny_run, triples=200).payload
    assert code == 0 and json.loads(out) == json.loads(json.dumps({**got, "figures": []}, default=_json_default))
    with pytest.raises(RunError, match="not a sequence run"):
        gi.phases(tiny_run)


def test_corrupt_and_misfit_files_say_what_is_wrong(tiny_run, sources, tmp_path, capsys):
    """A truncated file is called corrupt, not unsafe; a misfit names the tensors that differ from the
    closest model, the file's own p when --p differs from it, and no p for a group task."""
    runs = tmp_path / "runs"
    data = (sources / "full_run_data.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    code, _, err = cli(capsys, "import", tmp_path / "cut.pth", "--runs-dir", runs)
    assert code == 1 and "corrupt or truncated one (PytorchStreamReader failed reading zip archive: failed finding central directory)" in err
    assert "refused" not in err and "running code" not in err
    states = torch.load(sources / "list.pt", weights_only=True)
    for w in states:
        w["blocks.0.mlp.W_in"] = w["blocks.0.mlp.W_in"][:, :7].clone()
    torch.save(states, tmp_path / "narrow.pt")
    code, _, err = cli(capsys, "import", tmp_path / "narrow.pt", "--task", "add", "--p", 23, "--frac", 0.5, "--split-seed", 0,
                       "--runs-dir", runs)
    assert code == 1 and "closest is tiny-1l, where blocks.0.mlp.W_in (64, 7) (expected (64, 256));" in err
    code, _, err = cli(capsys, "import", sources / "full_run_data.pth", "--p", 29, "--runs-dir", runs)
    assert code == 1 and "embed.W_E (24, 64) (expected (30, 64))" in err and "the file's config says p = 23" in err
    code, _, err = cli(capsys, "import", sources / "full_run_data.pth", "--task", "s5_mul", "--runs-dir", runs)
    assert code == 1 and "task s5_mul (x*y in S5, 120 elements)" in err and "p =" not in err
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("steps, match", [
    ([1.5, 2.5, 3.5], r"integers 0 or more; got 1\.5, 2\.5, 3\.5"),  # once truncated to [1, 2, 3]
    ([-1, 0, 1], "integers 0 or more; got -1"),                    # -1 means 'the last' elsewhere
    ([0.0, 1, 2], r"got 0\.0"),
])
def test_from_models_refuses_steps_that_are_not_training_steps(tiny_run, steps, match):
    with pytest.raises(ConfigError, match=match):
        gi.from_models([tiny_run.weights()] * 3, steps, "add", p=23, frac=0.5, split_seed=0)


def test_from_models_names_its_own_split_arguments(tiny_run):
    """From Python the split is frac / split_seed / train_idx (the message once named the CLI's --frac FLAGS)."""
    w = [tiny_run.weights()]
    with pytest.raises(ConfigError, match=r"frac F and split_seed S \(got frac 0\.7, split_seed None\), or train_idx$"):
        gi.from_models(w, [0], "add", p=23, frac=0.7)
    with pytest.raises(ConfigError, match="give the split once: train_idx, or frac and split_seed"):
        gi.from_models(w, [0], "add", p=23, train_idx=[0, 1], frac=0.5)
    for frac in (0, 1.5):
        with pytest.raises(ValueError, match=f"training fraction must be in \\(0, 1\\), got {frac}"):
            gi.from_models(w, [0], "add", p=23, frac=frac, split_seed=0)
