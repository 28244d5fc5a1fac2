"""Training speed on modadd113: our engine vs a plain TransformerLens loop, and ensembles.

    python benchmarks/bench_training.py [--steps 30] [--ensembles 1,16,64] [--device cpu]

(a) steps/s of the engine vs a plain HookedTransformer + torch.optim.AdamW loop with the same
    numerics (full batch, float64 loss, frozen biases), measured in this process;
(b) model-steps/s of ensembles of E seeds vs training them one at a time.
Prints ratios; numbers depend on the machine, so compare within one run only.
"""

from __future__ import annotations

import argparse
import time

import torch

import grokinterp as gi
from grokinterp.engine import AdamW, forward, per_example_loss
from grokinterp.models import build_model, is_trainable, model_spec


def timed(step, n: int, device) -> float:
    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--ensembles", default="1,16,64")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.set_flush_denormal(True)
    cfg = gi.preset("modadd113")
    task = cfg.make_task()
    train_idx, _ = task.split(cfg.frac, cfg.split_seed)
    x, y = task.all_inputs()[train_idx].to(dev), task.all_labels()[train_idx].to(dev)
    spec = model_spec(cfg.model)

    ht = build_model(cfg.model, task.d_vocab, task.n, task.n_ctx, seed=cfg.seed, device=str(dev))
    opt = torch.optim.AdamW([p for p in ht.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.wd, betas=cfg.betas)

    def plain():
        loss = per_example_loss(ht(x)[:, -1], y).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def engine_step(E: int):
        models = [build_model(cfg.model, task.d_vocab, task.n, task.n_ctx, seed=s) for s in range(E)]
        params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).to(dev) for n, _ in models[0].named_parameters()}
        train = {n: p.requires_grad_(True) for n, p in params.items() if is_trainable(n)}
        adam = AdamW(train, torch.full((E,), cfg.lr, device=dev), torch.full((E,), cfg.wd, device=dev), cfg.betas)
        xs, ys = x.expand(E, -1, -1), y.expand(E, -1)

        def step():
            loss = per_example_loss(forward(params, xs, spec), ys).mean(1).sum()
            for p in train.values():
                p.grad = None
            loss.backward()
            adam.step()

        return step

    t_plain = timed(plain, args.steps, dev)
    t_ours = timed(engine_step(1), args.steps, dev)
    print(f"device: {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{torch.get_num_threads()} CPU threads'})")
    print(f"(a) modadd113 full-batch step: plain TransformerLens {t_plain * 1e3:.1f} ms, grokinterp {t_ours * 1e3:.1f} ms "
          f"-> {t_plain / t_ours:.2f}x steps/s")
    print("(b) ensembles (model-steps/s vs one model at a time with the engine):")
    for E in (int(e) for e in args.ensembles.split(",")):
        t = timed(engine_step(E), max(3, args.steps // max(1, E // 4)), dev)
        print(f"    E={E:4d}: {t / E * 1e3:.2f} ms per model-step -> {t_ours * E / t:.2f}x vs one at a time, "
              f"{t_plain * E / t:.2f}x vs the plain loop")


if __name__ == "__main__":
    main()
