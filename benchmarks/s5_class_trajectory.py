"""How the coset structure of one group run's W_U changes over its saved steps, for chosen subgroup classes.

    python benchmarks/s5_class_trajectory.py RUN_DIR [--classes D5,D6] [--csv OUT.csv]

Per saved step: test accuracy, the largest irrep share of W_U, the best-ranked class (variance ratio
F, as `grokinterp cosets` and the census rank them), and for each chosen class its best partition's
score 1 - W / E[W] with the standard deviation of 200 random partitions of the same block sizes,
its ratio F, and the share of k-means clusters (as many as the class has cosets) that are its
cosets. Used for seed 18 of the S5 census, continued to step 100,000 (docs/s5-census.md).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from grokinterp.analysis.cosets import class_fraction, cluster_cosets, coset_scores, random_partition_scores
from grokinterp.analysis.representations import irrep_shares
from grokinterp.runs import load_run

parser = argparse.ArgumentParser()
parser.add_argument("run")
parser.add_argument("--classes", default="D5,D6", help="subgroup class names, comma-separated (see `grokinterp cosets`)")
parser.add_argument("--csv", help="write the table here too")
args = parser.parse_args()

run = load_run(Path(args.run))
group = run.task.group
X = run.output_vectors().double()  # (S, n, d): a row per element
cs = coset_scores(X, group)
class_of = np.array([group.subgroups[p.subgroup].class_id for p in cs.partitions])
class_ids = {s.name: s.class_id for s in group.subgroups}
names = {c: n for n, c in class_ids.items()}
wanted = args.classes.split(",")
if unknown := [n for n in wanted if n not in class_ids]:
    parser.error(f"unknown class {', '.join(unknown)}; the group has {', '.join(sorted(class_ids))}")
shares = irrep_shares(X, group).numpy()
steps, acc = run.metrics["step"], run.metrics["test_acc"]
rows = []
for s, step in enumerate(run.steps):
    top = int(np.argmax(shares[s]))
    row = {"step": step, "test_acc": float(acc[list(steps).index(step)]), "irrep": group.irrep_names[top],
           "irrep_share": float(shares[s, top]), "best_class": names[class_of[cs.best_index(s)]]}
    for name in wanted:
        idx = np.where(class_of == class_ids[name])[0]
        i = int(idx[np.argmax(cs.ratios[s, idx])])
        null = random_partition_scores(X[s : s + 1], cs.partitions[i].labels)[0]
        k = group.n // group.subgroups[cs.partitions[i].subgroup].order
        row |= {f"{name}_score": float(cs.scores[s, i]), f"{name}_null_sd": float(null.std()), f"{name}_F": float(cs.ratios[s, i]),
                f"{name}_kmeans_coset_fraction": class_fraction(cluster_cosets(X[s], group, k), class_ids[name])}
    rows.append(row)
    print(f"{step:>7}  test {row['test_acc']:.3f}  {row['irrep']} {row['irrep_share']:.2f}  best {row['best_class']:<4}" + "".join(
        f"  {n}: score {row[f'{n}_score']:.3f} (random sd {row[f'{n}_null_sd']:.3f}), F {row[f'{n}_F']:.2f}, "
        f"k-means {row[f'{n}_kmeans_coset_fraction']:.2f}" for n in wanted))
if args.csv:
    with open(args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows)
    print(f"table: {args.csv}")
