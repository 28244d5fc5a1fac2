"""The S5 census in docs/: rows, summary and figure from what ``device_session.sh census`` brought back.

    python benchmarks/s5_census_table.py PACKED_DIR [PACKED_DIR ...] [--pool NAME] --out docs

Each PACKED_DIR holds ``census_meta.tgz`` (every member's config.json and metrics.csv) and
``embeddings_<sweep>.safetensors`` (W_U at every saved step). Writes
``docs/data/s5_census_<sweep>.csv`` and ``docs/figures/s5_census_<sweep>.png`` (HTML beside it; no
figure where no seed generalised),
and prints the summary that ``grokinterp census`` prints for a sweep folder. ``--pool NAME``: one
table of every member of every sweep given (a census trained in parts, one device session each),
under NAME; the parts must share their settings and not repeat a seed.
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from grokinterp.census import census_report, census_table, write_csv
from grokinterp.figures import save_figures
from grokinterp.tasks import Task

parser = argparse.ArgumentParser()
parser.add_argument("packed", nargs="+")
parser.add_argument("--pool", metavar="NAME", help="one table of the members of every sweep given")
parser.add_argument("--out", default="docs")
args = parser.parse_args()
out = Path(args.out)
group = Task("s5_mul", 0).group


def sweeps(packed: Path):
    """(sweep name, its members, its settings) for each sweep packed in one folder."""
    with tarfile.open(packed / "census_meta.tgz") as t:
        files = {m.name: t.extractfile(m).read().decode() for m in t.getmembers() if m.isfile()}
    for emb in sorted(packed.glob("embeddings_*.safetensors")):
        sweep = emb.stem.removeprefix("embeddings_")
        W = load_file(str(emb))
        members = []
        for name in sorted({k.split("/")[0] for k in W}):
            cfg = json.loads(files[f"{sweep}/{name}/config.json"])["config"]
            lines = files[f"{sweep}/{name}/metrics.csv"].splitlines()
            cols = lines[0].split(",")
            table = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
            steps = sorted(int(k.split("/")[1]) for k in W if k.startswith(f"{name}/") and k.endswith("/W_U"))
            members.append({"run": name, "seed": cfg["seed"], "frac": cfg["frac"], "steps": steps,
                            "X": torch.from_numpy(np.stack([W[f"{name}/{s}/W_U"].float().T.numpy() for s in steps])),
                            "metrics": {c: (table[:, i].astype(int) if c == "step" else table[:, i]) for i, c in enumerate(cols)}})
        yield sweep, members, cfg


def write(sweep: str, members: list[dict], cfg: dict) -> None:
    members.sort(key=lambda m: m["seed"])
    with tqdm(total=len(members), unit="seed", desc=sweep) as bar:
        rows = census_table(members, group, progress=bar.update)
    title = (f"S5 census, Power's block: {len(rows)} seeds, {cfg['frac']:.0%} data, wd {cfg['wd']:g}, "
             f"{rows[0]['steps']:,} steps")
    report = census_report(rows, title)
    write_csv(rows, out / "data" / f"s5_census_{sweep}.csv")
    save_figures({f"s5_census_{sweep}": fig for fig in report.figures.values()}, out / "figures")
    (out / "figures" / f"s5_census_{sweep}.html").unlink(missing_ok=True)  # the docs keep the PNG (the HTML carries 4.8 MB of plotly.js)
    print("\n".join(report.lines))


parts = [part for packed in args.packed for part in sweeps(Path(packed))]
if not args.pool:
    for part in parts:
        write(*part)
else:
    settings = {json.dumps({k: v for k, v in cfg.items() if k not in ("seed", "split_seed", "name")}, sort_keys=True) for _, _, cfg in parts}
    seeds = [m["seed"] for _, members, _ in parts for m in members]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if len(settings) > 1 or repeated:
        raise SystemExit(f"--pool: the parts must share their settings and not repeat a seed; here "
                         + (f"{len(settings)} different settings" if len(settings) > 1 else f"seeds {repeated} repeat"))
    write(args.pool, [m for _, members, _ in parts for m in members], parts[0][2])
