"""Training speed on modadd113: our engine vs a plain TransformerLens loop, ensembles, time to grok.

    python benchmarks/bench_training.py [--steps 30] [--ensembles 1,16,64] [--device cpu|cuda] [--to-grok] [--tf32]

(a) steps/s of the engine vs a plain HookedTransformer + torch.optim.AdamW loop with the same
    numerics (same initial weights, full batch, float64 loss, frozen biases, warm-up), measured in
    this process; on CUDA also the engine with the step captured as a CUDA graph;
(b) model-steps/s of ensembles of E seeds vs training them one at a time;
(c) with --to-grok: wall time of the engine to 99% test accuracy (evaluating every 100 steps, as
    a run does), and the plain loop's time for the same number of steps, from its measured step
    time (or measured to 99% itself with --plain-to-grok).
Prints ratios; numbers depend on the machine, so compare within one run only.
"""

from __future__ import annotations

import argparse
import time

import torch

import grokinterp as gi
from grokinterp.engine import AdamW, per_example_loss
from grokinterp.models import build_model, init_params, is_trainable, model_spec
from grokinterp.training import TrainStep, evaluate


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

    def engine(self, E: int, capture: bool) -> tuple[TrainStep, dict]:
        """Our training step for an ensemble of E seeds on the full training set."""
        c, t, dev = self.cfg, self.task, self.dev
        inits = [init_params(c.model, t.d_vocab, t.n, t.n_ctx, seed=s) for s in range(c.seed, c.seed + E)]
        params = {n: torch.stack([i[n] for i in inits]).to(dev) for n in inits[0]}
        train = {n: p.requires_grad_(True) for n, p in params.items() if is_trainable(n)}
        opt = AdamW(train, torch.full((E,), c.lr, device=dev), torch.full((E,), c.wd, device=dev), c.betas, warmup=c.warmup)
        idx = torch.from_numpy(self.train_idx).to(dev).expand(E, -1).contiguous()
        weight = torch.ones(idx.shape, dtype=torch.float64, device=dev)
        return TrainStep(params, train, opt, self.spec, self.inputs, self.labels, "ce", idx, weight, capture=capture), params

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--ensembles", default="1,16,64")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--to-grok", action="store_true", help="(c): train modadd113 to 99%% test accuracy")
    ap.add_argument("--plain-to-grok", action="store_true", help="(c): measure the plain loop to 99%% too (slow)")
    ap.add_argument("--max-steps", type=int, default=25_000)
    ap.add_argument("--tf32", action="store_true", help="CUDA: let float32 matrix products use TF32 tensor cores (~1e-3 relative error)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.set_flush_denormal(True)
    s = Setup(dev)
    cuda = dev.type == "cuda"
    print(f"device: {dev} ({torch.cuda.get_device_name(dev) if cuda else f'{torch.get_num_threads()} CPU threads'}), torch {torch.__version__}"
          f"{', TF32 matmuls' if args.tf32 and cuda else ''}")

    t_plain = timed(s.plain()[0], args.steps, dev)
    t_eager = timed(s.engine(1, capture=False)[0], args.steps, dev)
    print(f"(a) modadd113 full-batch step: plain TransformerLens {t_plain * 1e3:.2f} ms, grokinterp {t_eager * 1e3:.2f} ms "
          f"-> {t_plain / t_eager:.2f}x steps/s")
    t_one = t_eager
    if cuda:
        t_one = timed(s.engine(1, capture=True)[0], args.steps * 10, dev)
        print(f"    grokinterp with the step captured as a CUDA graph {t_one * 1e3:.3f} ms -> {t_plain / t_one:.2f}x steps/s")

    print("(b) ensembles (model-steps/s vs one model at a time with the engine):")
    for E in (int(e) for e in args.ensembles.split(",")):
        t = timed(s.engine(E, capture=cuda)[0], max(3, args.steps * (10 if cuda else 1) // max(1, E // 4)), dev)
        print(f"    E={E:4d}: {t / E * 1e3:.4f} ms per model-step -> {t_one * E / t:.2f}x vs one at a time, "
              f"{t_plain * E / t:.2f}x vs the plain loop")

    if args.to_grok:
        step, params = s.engine(1, capture=cuda)
        n, secs = time_to_grok(s, step, params, args.max_steps)
        where = f"step {n}" if n else f"not within {args.max_steps} steps"
        print(f"(c) modadd113 to 99% test accuracy: grokinterp {secs:.1f} s ({where}, evaluating every 100 steps)")
        if n and args.plain_to_grok:
            plain_step, ht = s.plain()
            params_ht = dict(ht.named_parameters())
            stacked = {k: v[None] for k, v in params_ht.items()}
            m, p_secs = time_to_grok(s, plain_step, stacked, args.max_steps)
            print(f"    plain TransformerLens loop: {p_secs:.1f} s (step {m}) -> {p_secs / secs:.1f}x")
        elif n:
            print(f"    plain TransformerLens loop, estimated from its step time: {n * t_plain:.1f} s -> {n * t_plain / secs:.1f}x")


if __name__ == "__main__":
    main()
