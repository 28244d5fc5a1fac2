"""Pack an S5 census sweep (trained on a device machine) into a few files for the trip back.

    python benchmarks/s5_census_pack.py RUNS_DIR SWEEP [SWEEP ...] --out OUT

For every member run of each sweep: metrics.csv and config.json (one tgz), the output and input
embeddings at every saved step (one safetensors per sweep: ``<member>/<step>/W_U`` at every
saved step, ``<member>/<last step>/W_E``), and the full
run folders (checkpoints, no resume state) of the members whose final W_U lies mostly in an irrep
where D5 fixes a vector (the 5-dimensional ones), so such a seed can be shipped as ``s5-d5``.
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from grokinterp.analysis.representations import irrep_shares
from grokinterp.runs import Run

parser = argparse.ArgumentParser()
parser.add_argument("runs_dir")
parser.add_argument("sweeps", nargs="+")
parser.add_argument("--out", required=True)
parser.add_argument("--max-full", type=int, default=3, help="at most this many members packed whole")
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

summary, keep = {}, []
with tarfile.open(out / "census_meta.tgz", "w:gz") as meta:
    for sweep in args.sweeps:
        tensors, root = {}, Path(args.runs_dir) / sweep
        for d in sorted(p for p in root.iterdir() if (p / "config.json").is_file()):
            run = Run(d)
            meta.add(d / "config.json", f"{sweep}/{d.name}/config.json")
            if not (d / "metrics.csv").is_file() or not run.steps:  # stopped before its first checkpoint
                continue
            meta.add(d / "metrics.csv", f"{sweep}/{d.name}/metrics.csv")
            group = run.task.group
            for s in run.steps:  # W_U at every saved step, W_E at the last (16 MB a file comes back)
                w = run.weights(s, ["unembed.W_U", "embed.W_E"])
                tensors[f"{d.name}/{s}/W_U"] = w["unembed.W_U"].half()
            tensors[f"{d.name}/{s}/W_E"] = w["embed.W_E"][: group.n].half()
            X = run.weights(run.steps[-1], ["unembed.W_U"])["unembed.W_U"].T[None]
            shares = irrep_shares(X, group)[0]
            top = int(shares.argmax())
            name = group.irrep_names[top]
            summary[f"{sweep}/{d.name}"] = {"last_step": run.steps[-1], "top_irrep": name, "share": float(shares[top]),
                                           "test_acc": float(run.metrics["test_acc"][-1])}
            print(f"{sweep}/{d.name}: step {run.steps[-1]}, W_U {shares[top]:.0%} in {name}, test acc {run.metrics['test_acc'][-1]:.3f}")
            if name.startswith("dim5") and shares[top] > 0.5:
                keep.append(d)
        save_file(tensors, str(out / f"embeddings_{sweep}.safetensors"))
(out / "census_summary.json").write_text(json.dumps(summary, indent=1))
for d in keep[: args.max_full]:
    with tarfile.open(out / f"full_{d.name}.tar", "w") as t:
        t.add(d, d.name, filter=lambda i: None if i.name.endswith("state.safetensors") else i)
print(f"{len(summary)} members; {len(keep)} in a 5-dimensional irrep; packed whole: {[d.name for d in keep[: args.max_full]]}")
