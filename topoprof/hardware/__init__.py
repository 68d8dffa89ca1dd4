"""Hardware catalogue and GPU interconnect topology (pure Python; no torch).

- :mod:`~topoprof.hardware.gpus`: GPU models (peaks by dtype, HBM, NVLink, achievable
  fractions), every figure with its source in ``reference/hardware.md``.
- :mod:`~topoprof.hardware.systems`: DGX systems and single-GPU targets; :func:`get_target`.
- :mod:`~topoprof.hardware.topology`: interconnect graphs, the ``nvidia-smi topo -m`` parser,
  NVLink rings and all-reduce estimates.
"""

from __future__ import annotations

from .gpus import GPU, GPUS, Source, get_gpu, list_gpus
from .systems import (
    SYSTEMS,
    System,
    estimate_allreduce,
    get_target,
    list_targets,
    summary_rows,
)
from .topology import (
    CommEstimate,
    LinkModel,
    RingPlan,
    best_gpu_subset,
    describe_topology,
    gpu_nodes,
    missing_nvlinks,
    nvlink_connected,
    nvlink_graph,
    nvlink_pairs,
    parse_topology,
    read_topology,
    ring_allreduce,
    ring_allreduce_time_us,
    ring_plan,
)

__all__ = [
    "GPU",
    "GPUS",
    "Source",
    "get_gpu",
    "list_gpus",
    "System",
    "SYSTEMS",
    "get_target",
    "list_targets",
    "summary_rows",
    "estimate_allreduce",
    "CommEstimate",
    "LinkModel",
    "RingPlan",
    "parse_topology",
    "read_topology",
    "gpu_nodes",
    "nvlink_graph",
    "nvlink_pairs",
    "nvlink_connected",
    "missing_nvlinks",
    "ring_plan",
    "best_gpu_subset",
    "ring_allreduce",
    "ring_allreduce_time_us",
    "describe_topology",
]
