"""What one replica of a model asks of a Ray cluster: stated once, for the executor and the packing planner.

A GPU engine gets `tensor_parallel` whole GPUs (vLLM's tensor_parallel_size; transformers spreads the
weights over them). With more than one, they are reserved as one STRICT_PACK placement group on one node
(the ranks talk over its NVLink) and the actor holds them all: vLLM then runs its ranks as processes on
the GPUs it sees (its "mp" executor). The actor does not hand the group to vLLM's Ray executor on purpose:
vLLM's engine core runs in a subprocess that loses the group (vllm-project/vllm#30016). A CPU engine
(llama.cpp, transformers on CPU) and an OpenAI-compatible client are CPU actors.
"""

from __future__ import annotations

from dataclasses import dataclass

from evalmap.catalog.schema import Model

GPU_ENGINES = ("vllm", "transformers")  # transformers only where the cluster has GPUs and --device is not cpu
CPUS_PER_REPLICA = 1


@dataclass(frozen=True)
class Resources:
    gpus: int  # whole GPUs of one replica (0: a CPU actor)
    cpus: int = CPUS_PER_REPLICA

    @property
    def placement_group(self) -> bool:
        """Tensor parallel: the GPUs are reserved together, on one node, before the actor starts."""
        return self.gpus > 1

    def bundles(self) -> list[dict[str, float]]:
        """The placement group: one bundle with every rank's GPU and the actor's CPU (one bundle is one node)."""
        return [{"GPU": float(self.gpus), "CPU": float(self.cpus)}]

    def describe(self) -> str:
        if not self.gpus:
            return f"{self.cpus} CPU"
        return f"{self.gpus} GPU" + (" (STRICT_PACK)" if self.placement_group else "")


def replica_resources(
    model: Model, engine: str, cluster_has_gpus: bool, tensor_parallel: int | None = None, device: str = "auto"
) -> Resources:
    """One replica's resources: `tensor_parallel` (the run's override, else the catalog's) GPUs for a GPU
    engine on a cluster with GPUs, else one CPU."""
    on_gpu = engine == "vllm" or (engine == "transformers" and cluster_has_gpus and device != "cpu")
    if not on_gpu:
        return Resources(0)
    return Resources(max(1, tensor_parallel or model.run.tensor_parallel))


def default_replicas(widths: dict[str, int], free_gpus: float) -> dict[str, int]:
    """Replicas per model when --replicas is not given: as many copies of every GPU model as the free GPUs
    hold side by side (at least one); one of every CPU model (a CPU engine already uses the node's cores)."""
    need = sum(w for w in widths.values() if w)
    copies = max(1, int(free_gpus // need)) if need else 1
    return {m: copies if w else 1 for m, w in widths.items()}
