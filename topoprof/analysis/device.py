"""Device-side facts for the ``gpu`` rules, as plain data.

The ``gpu`` rules (``gpu-idle``, ``pageable-memcpy``, ``ddp-backend``, the GPU forms of
``host-sync``, ``launch-bound`` and ``memory-at-limit``) read a :class:`DeviceActivity`. A
trace-mode run on CUDA provides part of it (:func:`device_activity_from_rank`: per-step device
busy time and kernel counts from ``RankData.trace_steps``, the DDP backend from
``RankData.ddp``); a trace summary provides about the same (:func:`device_activity_from_trace`);
what no run records yet (pageable copies, the idle split, synchronising CUDA calls per step,
peak memory) can be passed in by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from ..run import RankData

__all__ = ["SYNC_APIS", "DeviceStep", "DeviceActivity", "device_activity_from_trace", "device_activity_from_rank"]

#: CUDA runtime calls that block the host until the device catches up (NSYS ``cuda_api_sync``).
SYNC_APIS: frozenset[str] = frozenset({
    "cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "cudaStreamWaitEvent",
    "cuCtxSynchronize", "cuStreamSynchronize", "cuEventSynchronize",
})


@dataclass(frozen=True)
class DeviceStep:
    """One training step seen from the device.

    Attributes:
        index: step number.
        duration_us: step wall time.
        busy_us: union of device activity (kernels, copies) inside the step.
        idle_host_wait_us / idle_kernel_wait_us: device idle time while the host was busy
            elsewhere (data, Python) / waiting between dependent kernels (launch gaps); None when
            not split.
        sync_calls: synchronising runtime calls in the step, by API name.
        sync_idle_us: device idle time right after those calls (the queue refilling), if known.
        kernels: kernels launched in the step.
        median_kernel_us: median kernel duration.
        pageable_h2d_copies / pageable_h2d_bytes / pageable_h2d_us: host-to-device copies from
            pageable (unpinned) memory: count, bytes, device time.
        peak_memory_bytes: peak allocated device memory in the step.
    """

    index: int
    duration_us: float
    busy_us: float
    idle_host_wait_us: float | None = None
    idle_kernel_wait_us: float | None = None
    sync_calls: Mapping[str, int] = field(default_factory=dict)
    sync_idle_us: float | None = None
    kernels: int | None = None
    median_kernel_us: float | None = None
    pageable_h2d_copies: int = 0
    pageable_h2d_bytes: int = 0
    pageable_h2d_us: float = 0.0
    peak_memory_bytes: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sync_calls", MappingProxyType(dict(self.sync_calls)))

    @property
    def idle_us(self) -> float:
        """``duration_us - busy_us`` (not below 0)."""
        return max(self.duration_us - self.busy_us, 0.0)


@dataclass(frozen=True)
class DeviceActivity:
    """Device facts of one rank over its profiled steps.

    Attributes:
        steps: per step.
        device: ``"cuda"`` or ``"cpu"``.
        distributed_backend: ``"nccl"``, ``"gloo"``... when the job was distributed.
        source: where the facts come from (a trace file, ``"hand-built"``).
        notes: what the source could not provide.
    """

    steps: tuple[DeviceStep, ...]
    device: str = "cuda"
    distributed_backend: str | None = None
    source: str = ""
    notes: tuple[str, ...] = ()


def device_activity_from_trace(summary: Any, *, distributed_backend: str | None = None) -> DeviceActivity:
    """Build a :class:`DeviceActivity` from a trace summary (:class:`topoprof.trace.TraceSummary`
    or anything with the same attributes; read by duck typing so no trace reader is imported).

    Taken: per step ``dur_us``, ``device_busy_us`` and ``kernels``; synchronising runtime calls
    from the op totals (``ops``: name and ``calls``), spread evenly over the steps. Not available
    from a summary, and noted: pageable copies, the idle split, peak memory.
    """
    steps_in = getattr(summary, "steps", {}) or {}
    n = max(len(steps_in), 1)
    syncs: dict[str, int] = {}
    for op in getattr(summary, "ops", ()) or ():
        name = str(getattr(op, "name", ""))
        if name in SYNC_APIS:
            syncs[name] = syncs.get(name, 0) + int(getattr(op, "calls", 0))
    per_step = {k: int(round(v / n)) for k, v in syncs.items() if v}
    steps = []
    for number, s in sorted(steps_in.items()):
        busy = getattr(s, "device_busy_us", None)
        steps.append(DeviceStep(
            index=int(number), duration_us=float(s.dur_us),
            busy_us=float(busy) if busy is not None else 0.0,
            sync_calls=per_step, kernels=int(getattr(s, "kernels", 0) or 0),
        ))
    has_device = bool(getattr(summary, "has_device", False))
    meta = getattr(summary, "metadata", {}) or {}
    backend = distributed_backend
    if backend is None and isinstance(meta, Mapping):
        info = meta.get("distributedInfo")
        if isinstance(info, Mapping):
            backend = info.get("backend")
    return DeviceActivity(
        steps=tuple(steps) if has_device else (),
        device="cuda" if has_device else "cpu",
        distributed_backend=backend,
        source=str(getattr(summary, "path", "trace")),
        notes=("pageable copies, idle split and peak memory are not in a trace summary",),
    )


def device_activity_from_rank(rank: RankData) -> DeviceActivity | None:
    """The device facts a saved run holds: trace-mode steps on CUDA (``trace_steps``: device busy
    time and kernels per step; the step's duration from the matching ``StepRecord``, else busy +
    idle) and the DDP backend (``ddp``). None when the run holds neither."""
    backend = rank.ddp.get("backend") if rank.ddp else None
    steps = []
    if rank.device == "cuda":
        durations = {s.index: s.duration_us for s in rank.steps}
        for t in rank.trace_steps:
            busy, idle = t.get("device_busy_us"), t.get("device_idle_us")
            if busy is None:
                continue
            number = int(t.get("step", -1))
            duration = durations.get(number)
            if duration is None:
                duration = float(busy) + float(idle or 0.0)
            steps.append(DeviceStep(index=number, duration_us=float(duration), busy_us=float(busy),
                                    kernels=int(t["kernels"]) if t.get("kernels") is not None else None))
    if not steps and backend is None:
        return None
    return DeviceActivity(
        steps=tuple(steps), device=rank.device, distributed_backend=backend,
        source="run (trace_steps, ddp)",
        notes=("the run holds no pageable-copy, idle-split, sync-call or peak-memory facts",) if steps else (),
    )
