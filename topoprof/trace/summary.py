"""Per-layer, per-phase, per-step and per-op statistics of one Kineto trace.

Everything here is plain data computed from an :class:`~topoprof.trace.attribution.Attribution`.
Times are microseconds. "Device time" is the summed duration of device events (kernels,
memcpys, memsets; events on concurrent streams each count in full); "device busy" is the length
of their union inside a step. On a CPU-only trace device times are 0 and
:attr:`TraceSummary.has_device` is False.

Mapping to the layer graph's node attributes in trace mode (DESIGN.md section 5), given by
:meth:`TraceSummary.node_attributes`:

==================  ==========================================================================
node attribute      value
==================  ==========================================================================
``device_fwd_us``   median over the trace's steps of the layer's per-step
                    :attr:`LayerTraceStats.step_device_fwd_us` (device time of the kernels, memcpys
                    and memsets launched by the layer's forward ops, own ops only: a container's
                    children are separate nodes); the total when the trace has no steps
``device_bwd_us``   the same for backward (ops inside ``bwd <layer>`` ranges, plus backward ops
                    linked to the layer's forward ops)
``kernels``         median over steps of the number of kernels (category ``kernel`` only)
                    launched by the layer, forward plus backward, rounded to an int
==================  ==========================================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .attribution import BWD, FWD, PHASES, Attribution, attribute
from .intervals import union_length_in_windows
from .reader import TraceEvents, load_trace

__all__ = [
    "OTHER_PHASE",
    "TOP_OPS",
    "LayerTraceStats",
    "OpStats",
    "OpTotals",
    "PhaseTraceStats",
    "StepTraceStats",
    "TraceSummary",
    "summarize",
    "summarize_trace",
]

#: Ops kept in each ``top_ops`` list.
TOP_OPS = 5
#: Time in a step outside the phase ranges (DESIGN.md section 6: phases add up to the step).
OTHER_PHASE = "other"
_KERNEL = 0  # Attribution.dev_kind of kernels
#: Largest integer key space grouped with a dense bincount instead of a sort.
_DENSE_KEYS = 1 << 22


@dataclass(frozen=True)
class OpStats:
    """One op name's totals over a set of events.

    Attributes:
        name: Op name (``aten::addmm``).
        calls: Number of events.
        cpu_self_us: Summed self time (duration minus direct child ops).
        cpu_total_us: Summed duration (a nested call of the same op counts again).
        device_us: Device time of the kernels/memcpys/memsets it launched itself.
        kernels: Number of kernels it launched itself.
    """

    name: str
    calls: int
    cpu_self_us: float
    cpu_total_us: float
    device_us: float
    kernels: int


@dataclass(frozen=True)
class OpTotals:
    """Totals over a set of ops (e.g. the ops no layer range claims)."""

    ops: int
    cpu_self_us: float
    device_us: float
    kernels: int
    top_ops: tuple[OpStats, ...]


@dataclass(frozen=True)
class LayerTraceStats:
    """One layer (qualified module name) over the whole trace; only its own ops, not its
    children's.

    Attributes:
        name: Qualified module name as in the ``fwd``/``bwd`` ranges (``layer1.0.conv1``).
        fwd_calls, bwd_calls: Number of ``fwd <name>`` / ``bwd <name>`` ranges.
        fwd_ops, bwd_ops: CPU ops attributed to it (every nesting level counts).
        bwd_ops_linked: Of ``bwd_ops``, those attributed through forward/backward links
            (outside any ``bwd`` range).
        cpu_self_fwd_us, cpu_self_bwd_us: Summed op self time.
        device_fwd_us, device_bwd_us: Summed device time of what its ops launched.
        kernels_fwd, kernels_bwd: Kernels its ops launched.
        top_ops: Its most expensive ops (by device time on traces with device activity, else
            by self CPU time), at most :data:`TOP_OPS`.
        step_device_fwd_us, step_device_bwd_us, step_kernels: Per step, aligned with
            :attr:`TraceSummary.steps` (ascending step numbers); empty without steps.
    """

    name: str
    fwd_calls: int
    bwd_calls: int
    fwd_ops: int
    bwd_ops: int
    bwd_ops_linked: int
    cpu_self_fwd_us: float
    cpu_self_bwd_us: float
    device_fwd_us: float
    device_bwd_us: float
    kernels_fwd: int
    kernels_bwd: int
    top_ops: tuple[OpStats, ...]
    step_device_fwd_us: tuple[float, ...] = ()
    step_device_bwd_us: tuple[float, ...] = ()
    step_kernels: tuple[int, ...] = ()

    @property
    def kernels(self) -> int:
        """Kernels launched, forward plus backward."""
        return self.kernels_fwd + self.kernels_bwd


@dataclass(frozen=True)
class PhaseTraceStats:
    """One phase (``data``, ``forward``, ``backward``, ``optimizer``) over the trace, and
    ``other``: the rest of the steps (present when the trace has phase ranges and steps).

    Attributes:
        name: Phase name.
        calls: Number of its ranges (0 for ``other``).
        wall_us: Summed duration of its ranges.
        ops, cpu_self_us, device_us, kernels: Ops whose midpoint lies in its ranges (any
            thread) and what they launched.
        top_ops: Most expensive ops, at most :data:`TOP_OPS`.
    """

    name: str
    calls: int
    wall_us: float
    ops: int
    cpu_self_us: float
    device_us: float
    kernels: int
    top_ops: tuple[OpStats, ...]


@dataclass(frozen=True)
class StepTraceStats:
    """One training step (``step N`` range, else ``ProfilerStep#N``).

    Attributes:
        step: Step number N.
        start_us: Start, in the trace's clock (microseconds).
        dur_us: Duration.
        phases_us: Summed duration of each phase's ranges inside the step, and ``other``
            (the rest of the step), when the trace has phase ranges.
        ops, cpu_self_us, device_us, kernels: Ops in the step and what they launched.
        device_busy_us: Union of device activity inside the step window; None without device
            activity in the trace.
        device_idle_us: ``dur_us - device_busy_us`` (None without device activity).
    """

    step: int
    start_us: float
    dur_us: float
    phases_us: dict[str, float]
    ops: int
    cpu_self_us: float
    device_us: float
    kernels: int
    device_busy_us: float | None
    device_idle_us: float | None


@dataclass(frozen=True)
class TraceSummary:
    """Everything topoprof takes from one Kineto trace.

    Attributes:
        path: The trace file.
        span_us: From the first event's start to the last event's end.
        has_layer_ranges: The trace holds topoprof's ``fwd``/``bwd`` ranges.
        has_device: The trace holds device activity.
        layers: Per layer, in order of the first range.
        phases: Per phase present, in step order.
        steps: Per step number, ascending.
        ops: Every op name, most expensive first.
        total: All ops.
        unattributed: Ops no layer range claims (loss, optimizer, data loading, ...).
        metadata: The trace's top-level keys (``deviceProperties``, ``distributedInfo``,
            ``baseTimeNanoseconds``, ...).
    """

    path: str
    span_us: float
    has_layer_ranges: bool
    has_device: bool
    layers: dict[str, LayerTraceStats]
    phases: dict[str, PhaseTraceStats]
    steps: dict[int, StepTraceStats]
    ops: tuple[OpStats, ...]
    total: OpTotals
    unattributed: OpTotals
    metadata: dict[str, Any]

    def node_attributes(self) -> dict[str, dict[str, float | int]]:
        """Trace-mode node attributes per layer: ``device_fwd_us``, ``device_bwd_us`` and
        ``kernels`` (see the module docstring for their definition)."""
        out: dict[str, dict[str, float | int]] = {}
        for name, layer in self.layers.items():
            if layer.step_kernels:
                out[name] = {
                    "device_fwd_us": float(np.median(layer.step_device_fwd_us)),
                    "device_bwd_us": float(np.median(layer.step_device_bwd_us)),
                    "kernels": round(float(np.median(layer.step_kernels))),
                }
            else:
                out[name] = {"device_fwd_us": layer.device_fwd_us, "device_bwd_us": layer.device_bwd_us,
                             "kernels": layer.kernels}
        return out


class _OpTable:
    """Per-op arrays (CPU ops only) and per-device-event arrays with the op's name."""

    def __init__(self, a: Attribution) -> None:
        t = a.trace
        ops = np.flatnonzero(a.host_is_op)
        self.name = t.name[a.host_rows[ops]].astype(np.int64)
        self.self_us = a.host_self_us[ops]
        self.dur_us = a.host_dur_us[ops]
        self.layer = a.host_layer[ops]
        self.dir = a.host_dir[ops].astype(np.int64)
        self.linked = a.host_linked[ops]
        self.phase = a.host_phase[ops].astype(np.int64)
        self.step = a.host_step[ops]
        d_op = a.dev_op
        self.d_name = np.where(d_op >= 0, t.name[a.host_rows[np.maximum(d_op, 0)]] if a.host_rows.size else -1, -1)
        self.d_dur = a.dev_dur_us
        self.d_kernel = a.dev_kind == _KERNEL
        self.d_layer = a.dev_layer
        self.d_dir = a.dev_dir.astype(np.int64)
        self.d_phase = a.dev_phase.astype(np.int64)
        self.d_step = a.dev_step
        self.names = t.names


def _by_key(keys: np.ndarray, d_keys: np.ndarray, tab: _OpTable, op_sel: np.ndarray,
            dev_sel: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Group the selected ops and device events by non-negative integer keys (-1: skip).

    Returns:
        The keys present and, for each, the sums ``ops``, ``cpu_self_us``, ``cpu_total_us``,
        ``device_us`` and ``kernels``.
    """
    op_sel = op_sel & (keys >= 0)
    dev_sel = dev_sel & (d_keys >= 0)
    k_op, k_dev = keys[op_sel], d_keys[dev_sel]
    top = int(max(k_op.max(initial=-1), k_dev.max(initial=-1))) + 1
    if top <= _DENSE_KEYS:  # bincount over the key space: no sort
        i_op, i_dev, m = k_op, k_dev, top
    else:
        uniq, inv = np.unique(np.concatenate([k_op, k_dev]), return_inverse=True)
        inv = inv.reshape(-1)
        i_op, i_dev, m = inv[: k_op.size], inv[k_op.size:], uniq.size
    ops = np.bincount(i_op, minlength=m)
    n_dev = np.bincount(i_dev, minlength=m)
    present = np.flatnonzero((ops > 0) | (n_dev > 0))
    sums = {
        "ops": ops[present],
        "cpu_self_us": np.bincount(i_op, weights=tab.self_us[op_sel], minlength=m)[present],
        "cpu_total_us": np.bincount(i_op, weights=tab.dur_us[op_sel], minlength=m)[present],
        "device_us": np.bincount(i_dev, weights=tab.d_dur[dev_sel], minlength=m)[present],
        "kernels": np.bincount(i_dev, weights=tab.d_kernel[dev_sel], minlength=m)[present].astype(np.int64),
    }
    return (present if top <= _DENSE_KEYS else uniq[present]), sums


def _top_ops(tab: _OpTable, op_sel: np.ndarray, dev_sel: np.ndarray, by_device: bool,
             limit: int | None) -> tuple[OpStats, ...]:
    uniq, s = _by_key(tab.name, tab.d_name, tab, op_sel, dev_sel)
    primary = s["device_us"] if by_device else s["cpu_self_us"]
    order = np.lexsort((-s["cpu_self_us"], -primary))
    if limit is not None:
        order = order[:limit]
    return tuple(
        OpStats(tab.names[int(uniq[i])], int(s["ops"][i]), float(s["cpu_self_us"][i]), float(s["cpu_total_us"][i]),
                float(s["device_us"][i]), int(s["kernels"][i]))
        for i in order
    )


def _totals(tab: _OpTable, op_sel: np.ndarray, dev_sel: np.ndarray, by_device: bool) -> OpTotals:
    return OpTotals(
        ops=int(op_sel.sum()),
        cpu_self_us=float(tab.self_us[op_sel].sum()),
        device_us=float(tab.d_dur[dev_sel].sum()),
        kernels=int(tab.d_kernel[dev_sel].sum()),
        top_ops=_top_ops(tab, op_sel, dev_sel, by_device, TOP_OPS),
    )


def _layers(a: Attribution, tab: _OpTable, by_device: bool) -> dict[str, LayerTraceStats]:
    n_layers = len(a.layer_names)
    if not n_layers:
        return {}
    two = 2 * n_layers

    def per_layer_dir(layer: np.ndarray, direction: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        ok = layer >= 0
        key = layer[ok] * 2 + direction[ok]
        w = None if weights is None else weights[ok]
        return np.bincount(key, weights=w, minlength=two).reshape(n_layers, 2)

    ops = per_layer_dir(tab.layer, tab.dir, None).astype(np.int64)
    linked = per_layer_dir(tab.layer, tab.dir, tab.linked.astype(np.float64)).astype(np.int64)
    cpu = per_layer_dir(tab.layer, tab.dir, tab.self_us)
    dev = per_layer_dir(tab.d_layer, tab.d_dir, tab.d_dur)
    ker = per_layer_dir(tab.d_layer, tab.d_dir, tab.d_kernel.astype(np.float64)).astype(np.int64)

    # per (layer, step): dense (n_layers, n_steps) tables
    n_steps = a.step_numbers.size
    step_dev = np.zeros((n_layers, 2, n_steps))
    step_ker = np.zeros((n_layers, n_steps), np.int64)
    if n_steps:
        ok = (tab.d_layer >= 0) & (tab.d_step >= 0)
        key = (tab.d_layer[ok] * 2 + tab.d_dir[ok]) * n_steps + tab.d_step[ok]
        step_dev = np.bincount(key, weights=tab.d_dur[ok], minlength=two * n_steps).reshape(n_layers, 2, n_steps)
        k_ok = ok & tab.d_kernel
        key = tab.d_layer[k_ok] * n_steps + tab.d_step[k_ok]
        step_ker = np.bincount(key, minlength=n_layers * n_steps).reshape(n_layers, n_steps)

    # top ops per layer: group by (layer, name)
    n_names = max(len(tab.names), 1)
    uniq, s = _by_key(np.where(tab.layer >= 0, tab.layer * n_names + tab.name, -1),
                      np.where((tab.d_layer >= 0) & (tab.d_name >= 0), tab.d_layer * n_names + tab.d_name, -1),
                      tab, np.ones(tab.layer.size, bool), np.ones(tab.d_layer.size, bool))
    primary = s["device_us"] if by_device else s["cpu_self_us"]
    order = np.lexsort((-s["cpu_self_us"], -primary, uniq // n_names))
    tops: list[list[OpStats]] = [[] for _ in range(n_layers)]
    for i in order.tolist():
        layer = int(uniq[i]) // n_names
        if len(tops[layer]) < TOP_OPS:
            tops[layer].append(OpStats(tab.names[int(uniq[i]) % n_names], int(s["ops"][i]),
                                       float(s["cpu_self_us"][i]), float(s["cpu_total_us"][i]),
                                       float(s["device_us"][i]), int(s["kernels"][i])))

    out = {}
    for i, name in enumerate(a.layer_names):
        out[name] = LayerTraceStats(
            name=name,
            fwd_calls=int(a.layer_calls[i, FWD]),
            bwd_calls=int(a.layer_calls[i, BWD]),
            fwd_ops=int(ops[i, FWD]),
            bwd_ops=int(ops[i, BWD]),
            bwd_ops_linked=int(linked[i, BWD]),
            cpu_self_fwd_us=float(cpu[i, FWD]),
            cpu_self_bwd_us=float(cpu[i, BWD]),
            device_fwd_us=float(dev[i, FWD]),
            device_bwd_us=float(dev[i, BWD]),
            kernels_fwd=int(ker[i, FWD]),
            kernels_bwd=int(ker[i, BWD]),
            top_ops=tuple(tops[i]),
            step_device_fwd_us=tuple(step_dev[i, FWD].tolist()),
            step_device_bwd_us=tuple(step_dev[i, BWD].tolist()),
            step_kernels=tuple(step_ker[i].tolist()),
        )
    return out


def _phases(a: Attribution, tab: _OpTable, by_device: bool) -> dict[str, PhaseTraceStats]:
    out = {}
    for code, name in enumerate(PHASES):
        if not a.phase_calls[code]:
            continue
        op_sel, dev_sel = tab.phase == code, tab.d_phase == code
        t = _totals(tab, op_sel, dev_sel, by_device)
        out[name] = PhaseTraceStats(name, int(a.phase_calls[code]), float(a.phase_wall_us[code]), t.ops,
                                    t.cpu_self_us, t.device_us, t.kernels, t.top_ops)
    if out and a.step_numbers.size:
        # "other": inside a step but outside every phase range, so that phases add up to steps
        op_sel = (tab.step >= 0) & (tab.phase < 0)
        dev_sel = (tab.d_step >= 0) & (tab.d_phase < 0)
        t = _totals(tab, op_sel, dev_sel, by_device)
        wall = float(np.maximum(_step_other_us(a), 0.0).sum())
        out[OTHER_PHASE] = PhaseTraceStats(OTHER_PHASE, 0, wall, t.ops, t.cpu_self_us, t.device_us, t.kernels,
                                           t.top_ops)
    return out


def _step_other_us(a: Attribution) -> np.ndarray:
    """Per step: duration minus the phase ranges inside it (microseconds)."""
    return (a.step_end_us - a.step_start_us) - a.step_phase_us.sum(axis=1)


def _steps(a: Attribution, tab: _OpTable) -> dict[int, StepTraceStats]:
    n_steps = a.step_numbers.size
    if not n_steps:
        return {}
    ok = tab.step >= 0
    ops = np.bincount(tab.step[ok], minlength=n_steps)
    cpu = np.bincount(tab.step[ok], weights=tab.self_us[ok], minlength=n_steps)
    d_ok = tab.d_step >= 0
    dev = np.bincount(tab.d_step[d_ok], weights=tab.d_dur[d_ok], minlength=n_steps)
    ker = np.bincount(tab.d_step[d_ok], weights=tab.d_kernel[d_ok].astype(np.float64), minlength=n_steps)
    dur = a.step_end_us - a.step_start_us
    busy = None
    if a.has_device:
        busy = union_length_in_windows(a.dev_start_us, a.dev_start_us + a.dev_dur_us, a.step_start_us, a.step_end_us)
    other = _step_other_us(a)
    out = {}
    for i, number in enumerate(a.step_numbers.tolist()):
        phases = {p: float(a.step_phase_us[i, c]) for c, p in enumerate(PHASES) if a.phase_calls[c]}
        if phases:
            phases[OTHER_PHASE] = max(float(other[i]), 0.0)
        out[int(number)] = StepTraceStats(
            step=int(number),
            start_us=float(a.step_start_us[i]),
            dur_us=float(dur[i]),
            phases_us=phases,
            ops=int(ops[i]),
            cpu_self_us=float(cpu[i]),
            device_us=float(dev[i]),
            kernels=int(ker[i]),
            device_busy_us=None if busy is None else float(busy[i]),
            device_idle_us=None if busy is None else float(dur[i] - busy[i]),
        )
    return out


def summarize(attribution: Attribution) -> TraceSummary:
    """Aggregate an :class:`Attribution` into a :class:`TraceSummary`."""
    a = attribution
    t = a.trace
    tab = _OpTable(a)
    by_device = a.has_device
    all_ops = np.ones(tab.name.size, bool)
    all_dev = np.ones(tab.d_dur.size, bool)
    finite = np.isfinite(t.ts)
    if finite.any():
        ends = t.ts[finite] + np.nan_to_num(t.dur[finite], nan=0.0)
        span = float(ends.max() - t.ts[finite].min())
    else:
        span = 0.0
    return TraceSummary(
        path=t.path,
        span_us=span,
        has_layer_ranges=a.has_layer_ranges,
        has_device=by_device,
        layers=_layers(a, tab, by_device),
        phases=_phases(a, tab, by_device),
        steps=_steps(a, tab),
        ops=_top_ops(tab, all_ops, all_dev, by_device, None),
        total=_totals(tab, all_ops, all_dev, by_device),
        unattributed=_totals(tab, tab.layer < 0, tab.d_layer < 0, by_device),
        metadata=t.metadata,
    )


def summarize_trace(trace: str | os.PathLike[str] | TraceEvents) -> TraceSummary:
    """Read (if given a path), attribute and summarise a Kineto trace.

    Args:
        trace: A trace file (``.json`` / ``.json.gz``) or a loaded :class:`TraceEvents`.

    Returns:
        The :class:`TraceSummary`.

    Raises:
        TraceFormatError: The file is missing, truncated, corrupt or not a trace.
    """
    events = trace if isinstance(trace, TraceEvents) else load_trace(trace, input_dims=False)
    return summarize(attribute(events))
