"""Facts about the process being profiled: versions, device, host, rank (for the manifest)."""

from __future__ import annotations

import os
import platform
import socket
import sys
from typing import Any

import torch

from .._version import __version__

__all__ = ["versions", "device_info", "distributed_info", "backend_settings"]


def versions() -> dict[str, str | None]:
    """Versions of topoprof, torch, Python, CUDA and cuDNN (``None`` where absent)."""
    cudnn = None
    try:
        if torch.backends.cudnn.is_available():
            cudnn = str(torch.backends.cudnn.version())
    except Exception:  # noqa: BLE001 - a broken cuDNN install must not stop profiling
        cudnn = None
    try:
        import nvtx

        nvtx_version = getattr(nvtx, "__version__", None)
    except ImportError:  # pragma: no cover - nvtx is a dependency
        nvtx_version = None
    return {
        "topoprof": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "nvtx": nvtx_version,
        "platform": platform.platform(),
    }


def device_info(device_type: str) -> dict[str, Any]:
    """The device the model runs on: type, name, count, memory (bytes), capability."""
    info: dict[str, Any] = {"type": device_type}
    if device_type == "cuda" and torch.cuda.is_available():
        idx = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        info.update(
            name=props.name,
            index=idx,
            count=torch.cuda.device_count(),
            memory_bytes=int(props.total_memory),
            capability=f"{props.major}.{props.minor}",
            multiprocessors=props.multi_processor_count,
        )
    else:
        info.update(
            name=platform.processor() or platform.machine(),
            count=1,
            cpu_threads=torch.get_num_threads(),
            cpu_cores=os.cpu_count(),
        )
    return info


def distributed_info() -> dict[str, Any]:
    """Rank, world size and local rank from torch.distributed (or torchrun's environment)."""
    rank, world = 0, 1
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
    return {
        "rank": rank,
        "world_size": world,
        "local_rank": int(os.environ.get("LOCAL_RANK", 0)),
        "host": socket.gethostname(),
        "command": list(sys.argv),
    }


def backend_settings() -> dict[str, Any]:
    """Backend flags that decide kernel choice and precision (read by the analysis rules)."""
    return {
        "cudnn_enabled": bool(torch.backends.cudnn.enabled),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic": bool(torch.are_deterministic_algorithms_enabled()),
    }
