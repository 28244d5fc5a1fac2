import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import grokinterp as gi
from grokinterp.config import ConfigError
from grokinterp.store import checkpoint_path, read_tensors


def test_tiny_run_memorises_then_generalises(tiny_run):
    m = tiny_run.metrics
    memorised = np.flatnonzero(m["train_acc"] >= 0.99)[0]
    generalised = np.flatnonzero(m["test_acc"] >= 0.95)[0]
    assert m["test_acc"][memorised] < 0.8  # memorised first ...
    assert m["step"][generalised] >= 5 * m["step"][memorised]  # ... generalised much later
    assert m["test_acc"][-1] >= 0.95
    assert m["train_loss"][-1] < m["train_loss"][0]
    assert tiny_run.steps[:4] == [0, 1, 2, 3] and tiny_run.steps[-1] == 1500  # log-spaced, then every 50


def test_loaded_model_is_a_hooked_transformer(tiny_run):
    from transformer_lens import HookedTransformer

    model = tiny_run.model()
    assert isinstance(model, HookedTransformer)
    inputs = tiny_run.task.all_inputs()
    logits, cache = model.run_with_cache(inputs)
    acc = (logits[:, -1].argmax(-1) == tiny_run.task.all_labels()).double()
    assert abs(acc[tiny_run.test_idx].mean().item() - tiny_run.metrics["test_acc"][-1]) < 1e-9
    assert cache["blocks.0.mlp.hook_post"].shape == (len(inputs), 3, 256)
    # a HookedTransformer enters the analyses through as_stacked: the batched forward gives its logits and neurons
    from grokinterp.analysis.batched import as_stacked, logits_and_neurons

    ours, acts = logits_and_neurons(as_stacked(model), tiny_run.task, tiny_run.config.spec)
    assert ours.shape[0] == 1 and torch.allclose(ours[0], logits[:, -1].float(), atol=1e-4)
    assert torch.allclose(acts[0], cache["blocks.0.mlp.hook_post"][:, -1].float(), atol=1e-4)


def small(name, **kw):
    return gi.preset("tiny23").replace(name=name, steps=120, checkpoint_every=20, **kw)


def test_post_ln_run_trains_with_fixed_positions(tmp_path):
    """power-2l-post trains; its sinusoidal positions stay put; run.model() is its hooked post-LN module."""
    cfg = small("post", model="power-2l-post").replace(steps=40)
    gi.train(cfg, runs_dir=tmp_path, progress=False)
    run = gi.load_run("post", tmp_path)
    first, last = run.weights(0), run.weights()
    assert torch.equal(first["pos_embed.W_pos"], last["pos_embed.W_pos"])
    assert not torch.equal(first["embed.W_E"], last["embed.W_E"]) and not torch.equal(first["blocks.1.ln2.w"], last["blocks.1.ln2.w"])
    assert run.metrics["train_loss"][-1] < run.metrics["train_loss"][0]
    model = run.model()
    assert type(model).__name__ == "PostLNTransformer" and "blocks.1.hook_resid_post" in model.hook_dict


def test_same_config_gives_identical_metrics(tmp_path):
    gi.train(small("a"), runs_dir=tmp_path, progress=False)
    gi.train(small("b"), runs_dir=tmp_path, progress=False)
    a, b = gi.load_run("a", tmp_path).metrics, gi.load_run("b", tmp_path).metrics
    for k in a:
        assert (a[k] == b[k]).all()


def test_ensemble_member_equals_run_alone(tmp_path):
    cfgs = [small("e1"), small("e2", seed=5, wd=0.3, frac=0.5, lr=3e-3), small("e3", optimizer="grokfast", split_seed=4),
            small("e4", optimizer="perpendicular", seed=2), small("e5", optimizer="adamw-to-init", seed=3)]
    gi.train(cfgs, runs_dir=tmp_path / "ens", progress=False)
    for c in cfgs:
        gi.train(c, runs_dir=tmp_path / "alone", progress=False)
        ens, alone = (gi.load_run(c.name, tmp_path / d) for d in ("ens", "alone"))
        w1, w2 = ens.weights(), alone.weights()
        for k in w1:  # float32 sums in another order drift apart by a few 1e-5 over the run (torch 2.13 CPU: 4.3e-5)
            torch.testing.assert_close(w1[k], w2[k], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ens.metrics["test_loss"], alone.metrics["test_loss"], rtol=1e-4)


def test_ensemble_members_must_share_the_task(tmp_path):
    with pytest.raises(ConfigError):
        gi.train([small("x"), small("y", p=29)], runs_dir=tmp_path, progress=False)


@pytest.mark.parametrize("batch", [None, 64])
def test_kill_and_resume_equals_uninterrupted(tmp_path, batch):
    """SIGKILL a CLI training process mid-run, resume it, and compare with an uninterrupted run."""
    cfg = gi.preset("tiny23").replace(name="k", steps=400, checkpoint_every=20, batch_size=batch)
    gi.train(cfg.replace(name="ref"), runs_dir=tmp_path, progress=False)
    args = [sys.executable, "-m", "grokinterp.cli", "train", "--run", "tiny23", "--name", "k", "--steps", "400",
            "--checkpoint-every", "20", "--runs-dir", str(tmp_path), "--no-progress"]
    args += ["--batch-size", str(batch)] if batch else ["--full-batch"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = tmp_path / "k" / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) > 12:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = gi.load_run("k", tmp_path)
    assert 0 < run.metrics["step"][-1] < 400
    out = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    ref, res = gi.load_run("ref", tmp_path), gi.load_run("k", tmp_path)
    assert res.steps == ref.steps
    a, _ = read_tensors(checkpoint_path(ref.path, 400))
    b, _ = read_tensors(checkpoint_path(res.path, 400))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (res.metrics["test_loss"] == ref.metrics["test_loss"]).all()


def test_weights_every_keeps_metrics_at_every_checkpoint(tmp_path):
    cfg = small("w", weights_every=60)
    gi.train(cfg, runs_dir=tmp_path, progress=False)
    run = gi.load_run("w", tmp_path)
    assert run.steps == [0, 60, 120]
    assert list(run.metrics["step"]) == cfg.checkpoint_steps() and len(cfg.checkpoint_steps()) > 3


def test_cuda_graph_capture_needs_a_gpu(tmp_path):
    with pytest.raises(ConfigError, match="CUDA"):
        gi.train(small("g"), runs_dir=tmp_path, device="cpu", capture=True, progress=False)


def test_resume_state_is_written_first_and_last_when_rarely_due(tmp_path):
    gi.train(small("s"), runs_dir=tmp_path, progress=False, state_every_s=1e9)
    _, meta = read_tensors(tmp_path / "s" / "state.safetensors")
    assert meta["step"] == "120"


def test_decay_to_init_pulls_weights_back_to_init(tmp_path):
    """Training with weight decay toward init stays nearer the initial weights than plain AdamW."""
    gi.train([small("zero", wd=3.0), small("init", wd=3.0, optimizer="adamw-to-init")], runs_dir=tmp_path, progress=False)
    dist = {}
    for name in ("zero", "init"):
        run = gi.load_run(name, tmp_path)
        w0, w1 = run.weights(0), run.weights()
        dist[name] = sum(((w1[k] - w0[k]) ** 2).sum().item() for k in w0 if "W_" in k)
    assert dist["init"] < 0.5 * dist["zero"]


def test_noisy_runs_are_reproducible_in_ensembles_and_after_resume(tmp_path):
    """Dropout, weight and update noise are drawn per member from (seed, step): a noisy member trained
    in an ensemble, or killed and resumed, equals the run trained alone in one go."""
    cfgs = [small("clean", batch_size=32), small("drop", dropout=0.1, batch_size=32, seed=2),
            small("wn", weight_noise=0.01, frac=0.1, batch_size=32), small("un", update_noise=0.003, batch_size=32, split_seed=3)]
    gi.train(cfgs, runs_dir=tmp_path / "ens", progress=False)
    for c in cfgs:
        gi.train(c, runs_dir=tmp_path / "alone", progress=False)
        gi.train(c.replace(steps=60), runs_dir=tmp_path / "resumed", progress=False)
        gi.train(c, runs_dir=tmp_path / "resumed", resume=True, progress=False)
        runs = [gi.load_run(c.name, tmp_path / d) for d in ("ens", "alone", "resumed")]
        w = [r.weights() for r in runs]
        for k in w[0]:
            torch.testing.assert_close(w[0][k], w[1][k], rtol=1e-4, atol=1e-5)
            assert torch.equal(w[1][k], w[2][k]), (c.name, k)
    quiet = gi.load_run("clean", tmp_path / "alone").weights()
    gi.train(small("noisy", batch_size=32, dropout=0.1), runs_dir=tmp_path / "alone", progress=False)
    noisy = gi.load_run("noisy", tmp_path / "alone").weights()
    assert not torch.equal(quiet["embed.W_E"], noisy["embed.W_E"])


def test_residual_dropout_drops_only_each_members_own_rows():
    from grokinterp.config import RunConfig
    from grokinterp.noise import Noise

    noise = Noise([RunConfig("a", dropout=0.25), RunConfig("b")], rows=[300, 200], device=torch.device("cpu"))
    noise.start(0)
    x = torch.ones(2, 400, 3, 8)
    y = noise.dropout(x)
    kept = y[0, :300] != 0
    assert abs(kept.double().mean().item() - 0.75) < 0.02
    torch.testing.assert_close(y[0, :300][kept], torch.full_like(y[0, :300][kept], 1 / 0.75))
    assert torch.equal(y[0, 300:], x[0, 300:]) and torch.equal(y[1], x[1])


def test_background_writes_write_the_same_files(tmp_path, monkeypatch):
    """Checkpoints, metrics and resume state at every step, from a lagging background writer and
    between steps: the same bytes (the writer gets copies, so the steps after a checkpoint do not change it)."""
    import grokinterp.training as training

    cfg = small("w").replace(steps=30, checkpoint_every=1)
    gi.train(cfg, runs_dir=tmp_path / "False", progress=False, state_every_s=0, background_writes=False)
    write = training.atomic_write_tensors
    monkeypatch.setattr(training, "atomic_write_tensors", lambda *a, **kw: (time.sleep(0.02), write(*a, **kw)))
    gi.train(cfg, runs_dir=tmp_path / "True", progress=False, state_every_s=0, background_writes=True)
    files = lambda d: {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file() and p.name != "config.json"}  # noqa: E731
    a, b = files(tmp_path / "True" / "w"), files(tmp_path / "False" / "w")
    assert a.keys() == b.keys() and len(a) > 30
    assert [k for k in a if a[k] != b[k]] == []


def test_compiled_step_equals_eager(tmp_path):
    """--compile (torch.compile of forward, float64 loss, backward and AdamW) trains as the eager step does."""
    cfg = small("c").replace(steps=4, checkpoint_every=2)
    gi.train(cfg, runs_dir=tmp_path / "compiled", compile=True, progress=False)
    gi.train(cfg, runs_dir=tmp_path / "eager", progress=False)
    a, b = gi.load_run("c", tmp_path / "compiled"), gi.load_run("c", tmp_path / "eager")
    assert a.steps == b.steps == [0, 1, 2, 4]
    for step in a.steps:  # inductor reorders float32 sums: measured up to ~1e-6 here
        wa, wb = a.weights(step), b.weights(step)
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=f"{step} {k}")
    np.testing.assert_allclose(a.metrics["train_loss"], b.metrics["train_loss"], rtol=1e-6)


def test_compile_failure_is_one_line(tmp_path, capsys, monkeypatch):
    from grokinterp.cli import main

    def no_compiler(fn):
        def compiled(*args, **kwargs):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found in torch._inductor.config.cpp.cxx\nmore")
        return compiled

    monkeypatch.setattr(torch, "compile", no_compiler)
    code = main(["train", "--run", "tiny23", "--steps", "2", "--compile", "--no-progress", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "torch.compile failed" in err and "No working C++ compiler" in err and "without --compile" in err, err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="--compile"):
        gi.train(small("n", dropout=0.1), runs_dir=tmp_path, compile=True, progress=False)


def test_small_cpu_runs_train_on_one_thread_unless_omp_num_threads_says(tmp_path, monkeypatch):
    """tiny23's step is below SMALL_CPU_STEP: one torch thread while training (recorded in config.json),
    the caller's count restored after; OMP_NUM_THREADS, when set, decides instead."""
    import json

    from grokinterp.training import SMALL_CPU_STEP, step_work

    cfg = gi.preset("tiny23").replace(steps=3, checkpoint_every=3)
    assert step_work([cfg]) < SMALL_CPU_STEP < step_work([gi.preset("modadd113")])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        (d,) = gi.train([cfg.replace(name="one")], runs_dir=tmp_path, progress=False)
        assert json.loads((d / "config.json").read_text())["torch_threads"] == 1 and torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        (d,) = gi.train([cfg.replace(name="two")], runs_dir=tmp_path, progress=False)
        assert json.loads((d / "config.json").read_text())["torch_threads"] == 2
    finally:
        torch.set_num_threads(before)
