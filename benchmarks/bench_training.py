"""Training speed on modadd113: our engine vs a plain TransformerLens loop, ensembles, time to grok.

    python benchmarks/bench_training.py [--steps 30] [--ensembles 1,16,64] [--device cpu|cuda] [--to-grok] [--tf32]
                                        [--compile] [--e2e] [--profile] [--skip a,b] [--quick]

(a) ms/step of the engine vs a plain HookedTransformer + torch.optim.AdamW loop with the same
    numerics (same initial weights, full batch, float64 loss, frozen biases, warm-up), measured in
    this process; on CUDA also the engine with the step captured as a CUDA graph; with --compile
    also the step compiled by torch.compile (inside the captured graph on CUDA);
(b) model-steps/s of ensembles of E seeds vs training them one at a time (captured and, with
    --compile, compiled);
(c) with --to-grok: wall time of the engine to 99% test accuracy (evaluating every 100 steps, as
    a run does; captured and, with --compile, compiled), and the plain loop's time for the same
    number of steps, from its measured step time (or measured to 99% itself with --plain-to-grok);
(d) with --e2e: wall time of `grokinterp train --run modadd113` (or --e2e-run) end to end (a new
    process, its checkpoints and metrics written) with checkpoints written between steps vs on the
    background writer (and compiled with the background writer, with --compile);
(e) with --profile: torch.profiler's top kernels of the captured step and of the compiled one.
--quick shrinks every part (a few steps, E = 2, 200-step runs) for a dry run on a CPU.
Each part that fails prints why and the others go on. Without TransformerLens installed the plain
loop is skipped (and its ratios with it). Prints ratios; numbers depend on the machine, so compare
within one run only.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

import grokinterp as gi
from grokinterp.engine import AdamW, per_example_loss
from grokinterp.models import build_model, init_params, is_trainable, model_spec
from grokinterp.training import TrainStep, evaluate

ROOT = Path(__file__).resolve().parent.parent


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(step, n: int, device) -> float:
    for _ in range(3):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return (time.perf_counter() - t) / n


class Setup:
    """modadd113's task, split and tensors on a device."""

    def __init__(self, device):
        self.dev, self.cfg = device, gi.preset("modadd113")
        self.task = self.cfg.make_task()
        self.train_idx, _ = self.task.split(self.cfg.frac, self.cfg.split_seed)
        self.spec = model_spec(self.cfg.model)
        self.inputs, self.labels = self.task.all_inputs().to(device), self.task.all_labels().to(device)
        self.train_mask = torch.zeros(1, len(self.task), dtype=torch.bool, device=device)
        self.train_mask[0, torch.from_numpy(self.train_idx).to(device)] = True

    def plain(self):
        """A plain TransformerLens loop step (the grokking demo's way), from the run's initial weights."""
        c, t = self.cfg, self.task
        ht = build_model(c.model, t.d_vocab, t.n, t.n_ctx, seed=c.seed).to(self.dev, print_details=False)
        opt = torch.optim.AdamW([p for p in ht.parameters() if p.requires_grad], lr=c.lr, weight_decay=c.wd, betas=c.betas)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / c.warmup, 1.0))
        x, y = self.inputs[self.train_idx], self.labels[self.train_idx]

        def step():
            loss = per_example_loss(ht(x)[:, -1], y).mean()
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)

        return step, ht

    def engine(self, E: int, capture: bool, compile: bool = False) -> tuple[TrainStep, dict]:
        """Our training step for an ensemble of E seeds on the full training set. Compiled, it is
        compiled afresh for its shapes (``torch._dynamo.reset``), as a new training process would."""
        c, t, dev = self.cfg, self.task, self.dev
        inits = [init_params(c.model, t.d_vocab, t.n, t.n_ctx, seed=s) for s in range(c.seed, c.seed + E)]
        params = {n: torch.stack([i[n] for i in inits]).to(dev) for n in inits[0]}
        train = {n: p.requires_grad_(True) for n, p in params.items() if is_trainable(n)}
        opt = AdamW(train, torch.full((E,), c.lr, device=dev), torch.full((E,), c.wd, device=dev), c.betas, warmup=c.warmup)
        idx = torch.from_numpy(self.train_idx).to(dev).expand(E, -1).contiguous()
        weight = torch.ones(idx.shape, dtype=torch.float64, device=dev)
        if compile:
            torch._dynamo.reset()
        step = TrainStep(params, train, opt, self.spec, self.inputs, self.labels, "ce", idx, weight, capture=capture, compile=compile)
        if capture and step.graph is None:
            print("    (capture failed: this engine runs without a CUDA graph)")
        return step, params

    def test_acc(self, params: dict) -> float:
        return evaluate(params, self.inputs, self.labels, self.train_mask, self.spec)[0]["test_acc"]


def time_to_grok(s: Setup, step, params, max_steps: int, every: int = 100) -> tuple[int | None, float]:
    """(first step with test accuracy >= 0.99, seconds of training and evaluation until then)."""
    sync(s.dev)
    t = time.perf_counter()
    for n in range(1, max_steps + 1):
        step()
        if n % every == 0 and s.test_acc(params) >= 0.99:
            return n, time.perf_counter() - t
    return None, time.perf_counter() - t


def variants(cuda: bool, compile: bool) -> list[tuple[str, bool, bool]]:
    """(label, capture, compile) of the engine's fastest steps on this device."""
    out = [("captured" if cuda else "eager", cuda, False)]
    if compile:
        out.append(("compiled+captured" if cuda else "compiled", cuda, True))
    return out


def built(s: Setup, E: int, capture: bool, compile: bool):
    t = time.perf_counter()
    step, params = s.engine(E, capture, compile)
    sync(s.dev)
    if compile:
        print(f"    (compiling{' and capturing' if capture else ''} the E={E} step took {time.perf_counter() - t:.1f} s)")
    return step, params


def part_a(s: Setup, args, cuda: bool) -> dict:
    """(a): ms per full-batch step of the plain loop, the eager engine, captured, compiled."""
    dev, times = s.dev, {}
    try:
        times["plain"] = timed(s.plain()[0], args.steps, dev)
    except ImportError as e:
        print(f"(a) plain TransformerLens loop skipped: {e} (ratios against it are left out)")
    times["eager"] = timed(s.engine(1, capture=False)[0], args.steps, dev)
    for label, capture, compile in variants(cuda, args.compile):
        if label != "eager":
            times[label] = timed(built(s, 1, capture, compile)[0], args.steps * (10 if cuda else 1), dev)
    base = times.get("plain")
    print("(a) modadd113 full-batch step (E = 1):" + (f" plain TransformerLens {base * 1e3:.3f} ms" if base else ""))
    for label, t in times.items():
        if label != "plain":
            vs = [f"{base / t:.2f}x vs the plain loop"] if base else []
            vs += [f"{times['eager'] / t:.2f}x vs eager"] if label != "eager" else []
            print(f"    grokinterp {label}: {t * 1e3:.3f} ms/step" + (f" -> {', '.join(vs)}" if vs else ""))
    return times


def part_b(s: Setup, args, cuda: bool, one: dict) -> None:
    """(b): ms per model-step of ensembles, captured (or eager on CPU) and compiled."""
    print("(b) ensembles, ms per model-step:")
    for E in (int(e) for e in args.ensembles.split(",")):
        per = {}
        for label, capture, compile in variants(cuda, args.compile):
            n = max(3, args.steps * (10 if cuda else 1) // max(1, E // 4))
            per[label] = timed(built(s, E, capture, compile)[0], n, s.dev) / E
        parts = []
        for label, t in per.items():
            ratio = f" ({one[label] / t:.2f}x vs one at a time)" if label in one else ""
            parts.append(f"{label} {t * 1e3:.4f} ms{ratio}")
        if len(per) == 2:
            (a, ta), (b, tb) = per.items()
            parts.append(f"{b} {ta / tb:.2f}x vs {a}")
        print(f"    E={E:4d}: " + "; ".join(parts))


def part_c(s: Setup, args, cuda: bool, one: dict) -> None:
    """(c): wall time to 99% test accuracy, evaluating every 100 steps."""
    secs = {}
    for label, capture, compile in variants(cuda, args.compile):
        step, params = built(s, 1, capture, compile)
        n, secs[label] = time_to_grok(s, step, params, args.max_steps)
        where = f"step {n}" if n else f"not within {args.max_steps} steps"
        print(f"(c) modadd113 to 99% test accuracy, {label}: {secs[label]:.2f} s ({where}, evaluating every 100 steps)")
        if n and not compile:
            if args.plain_to_grok:
                plain_step, ht = s.plain()
                stacked = {k: v[None] for k, v in ht.named_parameters()}
                m, p_secs = time_to_grok(s, plain_step, stacked, args.max_steps)
                print(f"    plain TransformerLens loop: {p_secs:.1f} s (step {m}) -> {p_secs / secs[label]:.1f}x")
            elif "plain" in one:
                print(f"    plain TransformerLens loop, estimated from its step time: {n * one['plain']:.1f} s "
                      f"-> {n * one['plain'] / secs[label]:.1f}x")
    if len(secs) == 2:
        (a, ta), (b, tb) = secs.items()
        print(f"    {b} vs {a}: {ta / tb:.2f}x (the step where 99% is reached differs between runs on a GPU)")


def part_e2e(args, dev) -> None:
    """(d): `grokinterp train --run PRESET` in a new process, writes between steps vs in the background,
    alternating ``--e2e-repeats`` times (the median wall time of each)."""
    runs = [("writes between steps", ["--no-background-writes"]), ("background writer", ["--background-writes"])]
    if args.compile:
        runs.append(("background writer, --compile", ["--background-writes", "--compile"]))
    extra = (["--steps", str(args.e2e_steps)] if args.e2e_steps else []) + \
            (["--checkpoint-every", str(args.e2e_checkpoint_every)] if args.e2e_checkpoint_every else [])
    walls = {label: [] for label, _ in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.e2e_repeats):
            for i, (label, flags) in enumerate(runs):
                name = f"e2e{r}-{i}"
                cmd = [sys.executable, "-m", "grokinterp.cli", "train", "--run", args.e2e_run, "--device", dev.type, *extra, *flags,
                       "--name", name, "--runs-dir", tmp]
                t = time.perf_counter()
                out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                wall = time.perf_counter() - t
                if out.returncode:
                    print(f"(d) {label}: failed ({out.returncode}): {out.stderr.strip().splitlines()[-1:]}")
                    continue
                walls[label].append(wall)
                ckpts = list((Path(tmp) / name / "checkpoints").glob("*.safetensors"))
                mb = sum(f.stat().st_size for f in ckpts) / 1e6
                print(f"(d) `grokinterp train --run {args.e2e_run} --device {dev.type} {' '.join(extra + flags)}`: "
                      f"{wall:.1f} s wall ({len(ckpts)} checkpoints, {mb:.0f} MB)", flush=True)
                shutil.rmtree(Path(tmp) / name)
    medians = {label: statistics.median(w) for label, w in walls.items() if w}
    base = medians.get("writes between steps")
    for label, w in medians.items():
        if base and label != "writes between steps":
            print(f"    {label}: median {w:.1f} s vs {base:.1f} s -> {base / w:.2f}x vs writes between steps")


def part_profile(s: Setup, args, cuda: bool) -> None:
    """(e): the top kernels (self time on the device; CPU time on a CPU) of the fastest steps."""
    from torch.profiler import ProfilerActivity, profile

    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    shown = variants(cuda, args.compile) + ([("compiled, not captured", False, True)] if cuda and args.compile else [])
    for label, capture, compile in shown:
        step, _ = built(s, 1, capture, compile)
        timed(step, 3, s.dev)
        n = 20 if cuda else 2
        with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
            for _ in range(n):
                step()
            sync(s.dev)
        print(f"(e) profile of {n} {label} steps (E = 1), top kernels by {sort}:")
        print(prof.key_averages().table(sort_by=sort, row_limit=args.profile_rows, max_name_column_width=70))


def run_part(name: str, fn, *args):
    """Run one part; a failure prints its reason and the last lines of its traceback, and the others go on."""
    try:
        return fn(*args)
    except Exception as e:  # fail soft: keep what the other parts print
        tail = "".join(traceback.format_exception(e)[-3:]).rstrip()
        print(f"part {name} failed: {type(e).__name__}: {e}\n{tail}", flush=True)
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--ensembles", default="1,16,64")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--to-grok", action="store_true", help="(c): train modadd113 to 99%% test accuracy")
    ap.add_argument("--plain-to-grok", action="store_true", help="(c): measure the plain loop to 99%% too (slow)")
    ap.add_argument("--max-steps", type=int, default=25_000)
    ap.add_argument("--tf32", action="store_true", help="CUDA: let float32 matrix products use TF32 tensor cores (~1e-3 relative error)")
    ap.add_argument("--compile", action="store_true", help="also time the step compiled by torch.compile (inside the graph on CUDA)")
    ap.add_argument("--e2e", action="store_true", help="(d): `grokinterp train --run modadd113` end to end, background writer on vs off")
    ap.add_argument("--e2e-run", default="modadd113", help="(d): the preset trained end to end")
    ap.add_argument("--e2e-steps", type=int, help="(d): train this many steps instead of the preset's")
    ap.add_argument("--e2e-checkpoint-every", type=int, help="(d): checkpoint every N steps instead of the preset's schedule")
    ap.add_argument("--e2e-repeats", type=int, default=1, help="(d): alternate the runs this many times")
    ap.add_argument("--profile", action="store_true", help="(e): torch.profiler's top kernels of the captured / compiled step")
    ap.add_argument("--profile-rows", type=int, default=15)
    ap.add_argument("--skip", default="", help="comma-separated parts not to run: a, b (e.g. --skip a,b --e2e runs only (d))")
    ap.add_argument("--quick", action="store_true", help="a dry run: 3 timed steps, E = 2, 200 steps to grok and end to end")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.ensembles, args.max_steps, args.e2e_steps = 3, "2", 200, args.e2e_steps or 200
    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.set_flush_denormal(True)
    cuda = dev.type == "cuda"
    print(f"device: {dev} ({torch.cuda.get_device_name(dev) if cuda else f'{torch.get_num_threads()} CPU threads'}), torch {torch.__version__}"
          f"{', TF32 matmuls' if args.tf32 and cuda else ''}", flush=True)
    s = Setup(dev)
    skip = set(args.skip.split(","))
    one = {} if "a" in skip else run_part("a", part_a, s, args, cuda) or {}
    if "b" not in skip:
        run_part("b", part_b, s, args, cuda, one)
    if args.to_grok:
        run_part("c", part_c, s, args, cuda, one)
    if args.e2e:
        run_part("d", part_e2e, args, dev)
    if args.profile:
        run_part("e", part_profile, s, args, cuda)


if __name__ == "__main__":
    main()
