"""The GPU path of --executor ray on a machine without GPUs: an in-process Ray cluster that declares two
(logical) GPUs. A model run with tensor parallel 2 gets one worker holding both, reserved through a
STRICT_PACK placement group; transformers, finding no CUDA device, computes on the CPU, so the scores
must equal the local executor's.
"""

from __future__ import annotations

import pytest

import evalmap
from evalmap.store import Store

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'evalmap[ray]')")
pytest.importorskip("torch")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_gpu_cluster():
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False)
    yield ray
    ray.shutdown()


def run(store, data, **options):
    return evalmap.evaluate("smollm2_135m", "arc_challenge", 6, "transformers", data_dir=str(data), store=store,
                            quiet=True, tensor_parallel=2, **options)


def test_tensor_parallel_takes_a_strict_pack_group_of_two_gpus(two_gpu_cluster, tmp_path, shared_data):
    on_ray = run(tmp_path / "ray.sqlite", shared_data, executor="ray")
    (worker,) = on_ray.workers  # 2 free GPUs // 2 a replica = 1 replica
    assert worker["gpus"] == 2 and sorted(worker["gpu_ids"]) == ["0", "1"] and worker["status"] == "finished"
    groups = ray.util.placement_group_table()
    assert groups[worker["placement_group"]]["strategy"] == "STRICT_PACK"
    assert groups[worker["placement_group"]]["bundles"] == {0: {"GPU": 2.0, "CPU": 1.0}}
    local = run(tmp_path / "local.sqlite", shared_data)
    scores = [{s.name: (s.value, s.n) for s in r.jobs[0].scores} for r in (on_ray, local)]
    assert scores[0] == scores[1]


def test_a_replica_no_node_can_hold_is_one_sentence_before_a_run(two_gpu_cluster, tmp_path, shared_data):
    """Tensor parallel 4 on a cluster whose one node has 2 GPUs would wait forever: it fails at once."""
    with pytest.raises(evalmap.EvalmapError) as caught:
        evalmap.evaluate("smollm2_135m", "arc_challenge", 2, "transformers", data_dir=str(shared_data),
                         store=tmp_path / "s.sqlite", quiet=True, tensor_parallel=4, executor="ray")
    assert str(caught.value) == (
        "smollm2_135m needs 4 GPUs and 1 CPU on one node, and no node of the Ray cluster has that (the most GPUs "
        "on a node: 2); add such a node, or lower its tensor parallel in a catalog override."
    )
    assert Store(tmp_path / "s.sqlite").runs() == []
