"""`evalmap plan ... --executor ray --gpus N`: the planner's estimates packed onto GPUs (no Ray needed).

A packing is checked as a schedule: every replica on as many GPUs as its model needs, on one node, no GPU
busy twice at once, the wall time between the lower bounds (the longest replica, the GPU-seconds spread
over every GPU) and running everything one after another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import combinations

import pytest

import evalmap
from evalmap.catalog.loader import load_catalog
from evalmap.executors.packing import pack_plan
from evalmap.executors.resources import Resources, default_replicas, replica_resources

CLI = [sys.executable, "-c", "from evalmap.cli import main; main()"]
MODELS = ["wizardmath_70b", "qwen25_7b", "qwen3_8b", "qwen25_0_5b"]  # tensor parallel 4, then 1 each


@pytest.fixture(scope="module")
def estimate(tmp_path_factory):
    store = tmp_path_factory.mktemp("none") / "store.sqlite"  # no measurements: reference profiles only
    return evalmap.plan(MODELS, ["gsm8k", "arc_challenge"], backend="vllm", store=store, gpu=True)


def check_schedule(packing, gpus: int) -> None:
    per_node = packing.gpus_per_node
    slots = []
    for m in packing.models:
        assert len(m.placements) == m.replicas
        for node, ids, start, end in m.placements:
            assert len(ids) == m.gpus and all(g // per_node == node for g in ids) and all(g < gpus for g in ids)
            assert end - start == pytest.approx(m.unit_seconds)
            slots += [(g, start, end) for g in ids]
    for (g1, s1, e1), (g2, s2, e2) in combinations(slots, 2):
        assert g1 != g2 or e1 <= s2 + 1e-9 or e2 <= s1 + 1e-9, "a GPU runs two replicas at once"
    units = [m.unit_seconds for m in packing.models for _ in range(m.replicas)]
    assert packing.wall_seconds == pytest.approx(max(end for _, _, end in slots))
    assert packing.wall_seconds >= max(units) - 1e-9
    assert packing.wall_seconds >= packing.gpu_seconds / gpus - 1e-9
    assert packing.wall_seconds <= sum(m.work_seconds + m.load_seconds * m.replicas for m in packing.models)


def test_eight_gpus_hold_the_tensor_parallel_model_on_one_node(estimate):
    packing = pack_plan(load_catalog(), estimate, 8, backend="vllm")
    widths = {m.model: m.gpus for m in packing.models}
    assert widths == {"wizardmath_70b": 4, "qwen25_7b": 1, "qwen3_8b": 1, "qwen25_0_5b": 1}
    check_schedule(packing, 8)
    assert 0 < packing.utilization <= 1 and not packing.skipped
    assert sum(m.jobs for m in packing.models) == 8
    assert any("0 of 8 jobs measured" in n for n in packing.notes)
    serial = sum(j.estimate_seconds for j in estimate.jobs) + sum(load.seconds or 0 for load in estimate.loads)
    assert packing.wall_seconds < serial  # the point of a cluster: GPUs work (and load models) side by side


def test_two_node_cluster_and_a_model_wider_than_a_node(estimate):
    two_nodes = pack_plan(load_catalog(), estimate, 16, gpus_per_node=8, backend="vllm")
    check_schedule(two_nodes, 16)
    narrow = pack_plan(load_catalog(), estimate, 2, backend="vllm")
    check_schedule(narrow, 2)
    assert [m.model for m in narrow.models] == ["qwen25_7b", "qwen3_8b", "qwen25_0_5b"]
    assert narrow.skipped == ["wizardmath_70b: a replica needs 4 GPUs on one node, a node has 2"]


def test_replica_resources_follow_engine_and_tensor_parallel():
    cat = load_catalog()
    big, small = cat.model("wizardmath_70b"), cat.model("smollm2_135m")
    assert replica_resources(big, "vllm", True) == Resources(4)
    assert Resources(4).bundles() == [{"GPU": 4.0, "CPU": 1.0}] and Resources(4).placement_group
    assert not Resources(1).placement_group
    assert replica_resources(big, "vllm", True, tensor_parallel=8).gpus == 8
    assert replica_resources(small, "llamacpp", True) == Resources(0)  # a CPU actor even beside GPUs
    assert replica_resources(small, "transformers", False) == Resources(0)
    assert replica_resources(small, "transformers", True, device="cpu") == Resources(0)
    assert replica_resources(small, "transformers", True) == Resources(1)
    assert default_replicas({"a": 4, "b": 1, "c": 0}, free_gpus=16) == {"a": 3, "b": 3, "c": 1}
    assert default_replicas({"a": 4}, free_gpus=2) == {"a": 1}


def test_measured_speed_is_used_and_said(tmp_path, shared_data, embedded_on_llamacpp):
    """A llama.cpp job measured on this machine: its plan packs a CPU actor timed by that measurement."""
    store = tmp_path / "s.sqlite"
    evalmap.evaluate("smollm2_135m", "arc_challenge", 4, "llamacpp", data_dir=str(shared_data), store=store,
                     quiet=True)
    est = evalmap.plan("smollm2_135m", "arc_challenge", 40, backend="llamacpp", store=store, gpu=True,
                       data_dir=str(shared_data))
    packing = pack_plan(load_catalog(), est, 8, backend="llamacpp")
    (m,) = packing.models
    assert (m.gpus, m.replicas, m.speed) == (0, 1, "1/1 measured")
    assert m.work_seconds == pytest.approx(est.jobs[0].estimate_seconds)
    assert packing.wall_seconds == pytest.approx(m.unit_seconds) and packing.utilization is None
    assert any("1 of 1 jobs measured on this machine" in n for n in packing.notes)


def test_cli_plan_on_gpus(tmp_path):
    env = {**os.environ, "EVALMAP_HOME": str(tmp_path)}
    done = subprocess.run([*CLI, "plan", "plan_b", "--executor", "ray", "--gpus", "8", "--format", "json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    ray = json.loads(done.stdout)["ray"]
    assert ray["gpus"] == 8 and ray["wall_seconds"] > 0 and ray["models"]
    assert sum(m["jobs"] for m in ray["models"]) + len(ray["skipped"]) >= 1
    alone = subprocess.run([*CLI, "plan", "plan_b", "--gpus", "8"], capture_output=True, text=True, env=env,
                           timeout=300)
    assert alone.returncode == 2
    assert alone.stderr.strip() == ("error: --executor ray and --gpus N go together: "
                                    "`evalmap plan B --executor ray --gpus 8`.")
