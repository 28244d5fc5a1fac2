"""A sweep across a two-node Ray cluster started on this machine (ray.cluster_utils.Cluster)."""

import csv
import json

import pytest

from grokinterp.sweep import SweepSpec, run_sweep

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'grokinterp[ray]')")


def test_sweep_runs_on_both_nodes_of_a_two_node_cluster_and_matches_local(tmp_path):
    from ray.cluster_utils import Cluster

    spec = SweepSpec(name="two", tasks=["add", "sub"], p=11, fracs=[0.5], seeds=[0], model="tiny-1l", lr=1e-2, steps=60,
                     checkpoint_every=10)
    local = run_sweep(spec, tmp_path / "local", workers=1, progress=False)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, log_to_driver=False)
        cluster_nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(cluster_nodes) == 2
        root = run_sweep(spec, tmp_path / "shared", backend="ray", progress=False)  # add and sub: one task each
    finally:
        ray.shutdown()
        cluster.shutdown()
    nodes = json.loads((root / "nodes.json").read_text())
    assert set(nodes.values()) == cluster_nodes  # each node trained a member
    ours = list(csv.DictReader(open(root / "results.csv")))
    theirs = list(csv.DictReader(open(local / "results.csv")))
    assert [r["run"] for r in ours] == [r["run"] for r in theirs] == sorted(nodes)
    for a, b in zip(ours, theirs):
        assert a["memorised_step"] == b["memorised_step"] and a["grokked_step"] == b["grokked_step"]
        assert float(a["best_test_acc"]) == pytest.approx(float(b["best_test_acc"]), abs=0.02)
