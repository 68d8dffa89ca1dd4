"""Attribution of trace events to topoprof's layer, phase and step ranges.

Ranges (``record_function`` scopes, category ``user_annotation``) that topoprof emits in trace
mode: ``step N``, the phases ``data``/``forward``/``backward``/``optimizer``, and per module
call ``fwd <qualified name>`` and ``bwd <qualified name>``. Without ``step N`` ranges the
profiler's own ``ProfilerStep#N`` ranges mark the steps.

Rules (all times in microseconds):

1. **Host events** are CPU ops (``cpu_op``) and CUDA runtime/driver calls (``cuda_runtime``,
   ``cuda_driver``). On each thread they are nested by their intervals; an op's *self time* is
   its duration minus the durations of its direct child ops.
2. **Layer**: a host event belongs to the innermost ``fwd X``/``bwd X`` range on the same thread
   that contains its midpoint. The midpoint (not the start) is used because ``bwd`` ranges open
   and close inside autograd hooks, i.e. a few microseconds into an
   ``autograd::engine::evaluate_function`` op; the op's work lies after the hook. For the same
   reason an ``evaluate_function: X`` op takes the layer of its child op ``X`` (the autograd
   node itself, which starts after the node's hooks ran). Ranges that overlap partially (a
   parent and a child module whose ``bwd`` ranges open in hooks of the same autograd node, the
   child's first) are first made to nest: the shorter becomes the child of the longer
   (:func:`~topoprof.trace.intervals.nest_intervals`).
3. **Backward ops outside any** ``bwd X`` **range** (the ``evaluate_function`` op and everything
   under it) reach their forward op through the forward/backward link, and count as backward of
   the forward op's layer. The link is the ``fwdbwd`` flow (start on the forward op, end on the
   ``evaluate_function`` op); failing that, the backward op's ``Sequence number`` and
   ``Fwd thread id`` matched to the forward op with the same sequence number on that thread,
   the latest-starting one (the op that created the autograd node; Kineto's own rule).
4. **Device events** (``kernel``, ``gpu_memcpy``, ``gpu_memset``) belong to the runtime call that
   launched them (``args.correlation``; else the ``ac2g`` flow; else ``External id`` to the op),
   and from there to that call's innermost enclosing op, layer, direction, phase and step.
5. **Phase and step** of a host event: the ``data``/``forward``/``backward``/``optimizer`` and
   step ranges containing its midpoint, on any thread (the autograd engine's threads run inside
   the main thread's ``backward`` range).

Only complete events (``ph: "X"``, which is all Kineto writes) are attributed; ``B``/``E`` pairs
from other tools are read but not paired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .intervals import (
    enclosing_parent,
    innermost_containing,
    nearest_marked_ancestor,
    nest_intervals,
    sort_intervals,
)
from .reader import PHASE_CODES, TraceEvents

__all__ = [
    "BWD",
    "CPU_OP_CATEGORIES",
    "EVALUATE_FUNCTION_PREFIX",
    "FWD",
    "KERNEL_CATEGORIES",
    "MEMCPY_CATEGORIES",
    "MEMSET_CATEGORIES",
    "PHASES",
    "RANGE_CATEGORIES",
    "RUNTIME_CATEGORIES",
    "Attribution",
    "attribute",
]

#: Phase ranges, in step order; their index is the phase code used in :class:`Attribution`.
PHASES: tuple[str, ...] = ("data", "forward", "backward", "optimizer")
#: Direction codes.
FWD, BWD = 0, 1
_LAYER_PREFIXES = {"fwd ": FWD, "bwd ": BWD}
_STEP_RE = re.compile(r"step (\d+)\Z")
_PROFILER_STEP_RE = re.compile(r"ProfilerStep#(\d+)\Z")

# Category names, lower case (Kineto's current names first, older Kineto names after).
CPU_OP_CATEGORIES: tuple[str, ...] = ("cpu_op", "operator")
RUNTIME_CATEGORIES: tuple[str, ...] = ("cuda_runtime", "cuda_driver", "runtime", "driver")
KERNEL_CATEGORIES: tuple[str, ...] = ("kernel",)
MEMCPY_CATEGORIES: tuple[str, ...] = ("gpu_memcpy", "memcpy")
MEMSET_CATEGORIES: tuple[str, ...] = ("gpu_memset", "memset")
#: Categories whose named events are topoprof's ranges (old Kineto used cpu_op for all scopes).
RANGE_CATEGORIES: tuple[str, ...] = ("user_annotation", "cpu_op")
FWDBWD_FLOW_CATEGORY = "fwdbwd"
LAUNCH_FLOW_CATEGORY = "ac2g"
EVALUATE_FUNCTION_PREFIX = "autograd::engine::evaluate_function: "

#: Bits of a composite (thread, sequence number) key given to the sequence number.
_SEQ_BITS = 40

_NO = -1


@dataclass
class Attribution:
    """Per-event attribution of one trace (arrays aligned as documented; -1 means none).

    Host arrays (``host_*``) hold CPU ops and runtime calls sorted by (thread, start);
    ``host_rows`` maps them to trace rows. Device arrays (``dev_*``) hold kernels, memcpys and
    memsets in file order.

    Attributes:
        trace: The trace the arrays refer to.
        layer_names: Layer (qualified module name) of each layer code, in order of first range.
        step_numbers: Step number ``N`` of each step code, ascending.
        step_start_us, step_end_us: Bounds of each step (union of its ranges), microseconds.
        layer_calls: int64 ``(n_layers, 2)``: number of fwd / bwd ranges per layer.
        phase_calls, phase_wall_us: Number and summed duration of each phase's ranges.
        step_phase_us: float64 ``(n_steps, len(PHASES))``: summed phase range time per step.
        host_rows, host_track: Trace row and thread code of each host event.
        host_is_op: True for CPU ops (False for runtime calls).
        host_start_us, host_dur_us: Interval of each host event.
        host_parent: Enclosing host event (nesting on its thread).
        host_op: Innermost CPU op at or above each host event (itself if it is an op).
        host_self_us: Self time of ops (duration minus direct child ops); runtime calls: 0.
        host_layer, host_dir: Layer code and direction (:data:`FWD`/:data:`BWD`).
        host_linked: True where the layer came through a forward/backward link (rule 3).
        host_phase, host_step: Phase code (index in :data:`PHASES`) and step code.
        dev_rows: Trace row of each device event.
        dev_kind: 0 kernel, 1 memcpy, 2 memset.
        dev_start_us, dev_dur_us: Interval of each device event.
        dev_host: Launching host event (runtime call, or the op when matched by External id).
        dev_op, dev_layer, dev_dir, dev_phase, dev_step: Inherited from the launching event.
    """

    trace: TraceEvents
    layer_names: list[str]
    step_numbers: np.ndarray
    step_start_us: np.ndarray
    step_end_us: np.ndarray
    layer_calls: np.ndarray
    phase_calls: np.ndarray
    phase_wall_us: np.ndarray
    step_phase_us: np.ndarray
    host_rows: np.ndarray
    host_track: np.ndarray
    host_is_op: np.ndarray
    host_start_us: np.ndarray
    host_dur_us: np.ndarray
    host_parent: np.ndarray
    host_op: np.ndarray
    host_self_us: np.ndarray
    host_layer: np.ndarray
    host_dir: np.ndarray
    host_linked: np.ndarray
    host_phase: np.ndarray
    host_step: np.ndarray
    dev_rows: np.ndarray
    dev_kind: np.ndarray
    dev_start_us: np.ndarray
    dev_dur_us: np.ndarray
    dev_host: np.ndarray
    dev_op: np.ndarray
    dev_layer: np.ndarray
    dev_dir: np.ndarray
    dev_phase: np.ndarray
    dev_step: np.ndarray

    @property
    def has_layer_ranges(self) -> bool:
        """Whether the trace holds topoprof's ``fwd``/``bwd`` ranges."""
        return bool(self.layer_names)

    @property
    def has_device(self) -> bool:
        """Whether the trace holds device activity (kernels, memcpys, memsets)."""
        return bool(self.dev_rows.size)


@dataclass
class _NameClasses:
    """Per-name lookups (indexed by name code)."""

    layer: np.ndarray  # layer code or -1
    direction: np.ndarray  # FWD/BWD or -1
    step: np.ndarray  # N of "step N" or -1
    profiler_step: np.ndarray  # N of "ProfilerStep#N" or -1
    phase: np.ndarray  # phase code or -1
    evaluate: np.ndarray  # bool: autograd::engine::evaluate_function
    layer_names: list[str]


def _classify_names(names: list[str], name_codes_in_ranges: np.ndarray) -> _NameClasses:
    n = len(names)
    layer = np.full(n, _NO, np.int64)
    direction = np.full(n, _NO, np.int8)
    step = np.full(n, _NO, np.int64)
    profiler_step = np.full(n, _NO, np.int64)
    phase = np.full(n, _NO, np.int8)
    evaluate = np.zeros(n, bool)
    layer_index: dict[str, int] = {}
    phase_index = {p: i for i, p in enumerate(PHASES)}
    in_ranges = np.zeros(n, bool)
    in_ranges[name_codes_in_ranges] = True
    for code, name in enumerate(names):
        if name.startswith(EVALUATE_FUNCTION_PREFIX):
            evaluate[code] = True
            continue
        if not in_ranges[code]:
            continue
        d = _LAYER_PREFIXES.get(name[:4])
        if d is not None and len(name) > 4:
            layer[code] = layer_index.setdefault(name[4:], len(layer_index))
            direction[code] = d
        elif (m := _STEP_RE.match(name)) is not None:
            step[code] = int(m.group(1))
        elif (m := _PROFILER_STEP_RE.match(name)) is not None:
            profiler_step[code] = int(m.group(1))
        elif name in phase_index:
            phase[code] = phase_index[name]
    return _NameClasses(layer, direction, step, profiler_step, phase, evaluate, list(layer_index))


def _node_op_names(names: list[str]) -> np.ndarray:
    """For each ``autograd::engine::evaluate_function: X`` name, the code of name ``X`` (-1
    for other names or when ``X`` does not occur)."""
    index = {n: i for i, n in enumerate(names)}
    out = np.full(len(names), _NO, np.int64)
    for code, name in enumerate(names):
        if name.startswith(EVALUATE_FUNCTION_PREFIX):
            out[code] = index.get(name[len(EVALUATE_FUNCTION_PREFIX):], _NO)
    return out


class _Tracks:
    """Dense codes of the (pid, tid) threads that hold host events."""

    def __init__(self, pid: np.ndarray, tid: np.ndarray) -> None:
        self.pid_u = np.unique(pid)
        self.tid_u = np.unique(tid)
        self.keys, codes = np.unique(self._key(pid, tid), return_inverse=True)
        self.codes = codes.reshape(-1).astype(np.int64)

    def _key(self, pid: np.ndarray, tid: np.ndarray) -> np.ndarray:
        pi = np.searchsorted(self.pid_u, pid)
        ti = np.searchsorted(self.tid_u, tid)
        ok = (pi < self.pid_u.size) & (ti < self.tid_u.size)
        ok[ok] &= (self.pid_u[pi[ok]] == pid[ok]) & (self.tid_u[ti[ok]] == tid[ok])
        return np.where(ok, pi * max(self.tid_u.size, 1) + ti, _NO)

    def __len__(self) -> int:
        return int(self.keys.size)

    def lookup(self, pid: np.ndarray, tid: np.ndarray) -> np.ndarray:
        """Thread codes of (pid, tid) pairs, -1 for threads without host events."""
        key = self._key(pid, tid)
        j = np.searchsorted(self.keys, key)
        jj = np.minimum(j, max(self.keys.size - 1, 0))
        found = (key >= 0) & (j < self.keys.size)
        found[found] &= self.keys[jj[found]] == key[found]
        return np.where(found, jj, _NO)


def _midpoints(start: np.ndarray, dur: np.ndarray) -> np.ndarray:
    return start + np.nan_to_num(dur, nan=0.0) * 0.5


def _take(values: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``values[k]`` where ``k >= 0``, else -1 (int64)."""
    if values.size == 0:
        return np.full(k.size, _NO, np.int64)
    return np.where(k >= 0, values[np.maximum(k, 0)], _NO).astype(np.int64)


def _lookup_ranges(r_start: np.ndarray, r_end: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Innermost range (index into the given ranges) containing each point, -1 if none."""
    order = sort_intervals(r_start, r_end)
    s, e = r_start[order], r_end[order]
    k = innermost_containing(s, e, enclosing_parent(s, e), points)
    return _take(order, k)


@dataclass
class _Host:
    """Host events (CPU ops and runtime calls) sorted by (thread, start, -end)."""

    rows: np.ndarray  # trace rows
    tracks: _Tracks
    track: np.ndarray  # thread code of each host event
    bounds: np.ndarray  # host events of thread t are bounds[t]:bounds[t + 1]
    start: np.ndarray
    dur: np.ndarray
    end: np.ndarray
    parent: np.ndarray
    is_op: np.ndarray

    @classmethod
    def build(cls, trace: TraceEvents, rows: np.ndarray, is_op: np.ndarray, dur: np.ndarray) -> _Host:
        tracks = _Tracks(trace.pid[rows], trace.tid[rows])
        track = tracks.codes
        start = trace.ts[rows]
        order = sort_intervals(start, start + dur[rows], track)
        rows, track = rows[order], track[order]
        start, d = trace.ts[rows], dur[rows]
        end = start + d
        bounds = np.searchsorted(track, np.arange(len(tracks) + 1))
        return cls(rows, tracks, track, bounds, start, d, end, enclosing_parent(start, end, track), is_op[rows])

    def __len__(self) -> int:
        return int(self.rows.size)

    def at(self, trace: TraceEvents, rows: np.ndarray) -> np.ndarray:
        """Innermost host event on the thread of event ``rows`` containing its timestamp."""
        out = np.full(rows.size, _NO, np.int64)
        p_track = self.tracks.lookup(trace.pid[rows], trace.tid[rows])
        p_ts = trace.ts[rows]
        for t in np.unique(p_track[p_track >= 0]).tolist():
            sel = np.flatnonzero(p_track == t)
            lo, hi = self.bounds[t], self.bounds[t + 1]
            k = innermost_containing(self.start[lo:hi], self.end[lo:hi], self.parent[lo:hi] - lo, p_ts[sel])
            out[sel] = np.where(k >= 0, k + lo, _NO)  # k indexes the thread's slice
        return out


def _flow_pairs(trace: TraceEvents, category: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of matching flow start (``s``) and finish (``f``) events of ``category``."""
    flow = trace.arg("id")
    if not len(flow):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    in_cat = np.isin(trace.cat[flow.rows], trace.category_codes(category))
    ph = trace.ph[flow.rows]
    is_s = in_cat & (ph == PHASE_CODES.index("s"))
    is_f = in_cat & (ph == PHASE_CODES.index("f"))
    s_ids, first = np.unique(flow.values[is_s], return_index=True)  # first start of each id
    s_rows = flow.rows[is_s][first]
    f_rows, f_ids = flow.rows[is_f], flow.values[is_f]
    if not s_ids.size:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    j = np.searchsorted(s_ids, f_ids)
    jj = np.minimum(j, s_ids.size - 1)
    ok = (j < s_ids.size) & (s_ids[jj] == f_ids)
    return s_rows[jj[ok]], f_rows[ok]


def attribute(trace: TraceEvents) -> Attribution:
    """Attribute every CPU op, runtime call and device event of ``trace`` (see module docs).

    Args:
        trace: A trace from :func:`~topoprof.trace.load_trace`.

    Returns:
        The per-event :class:`Attribution`.
    """
    is_x = (trace.ph == PHASE_CODES.index("X")) & np.isfinite(trace.ts)
    ts = trace.ts
    dur = np.nan_to_num(trace.dur, nan=0.0)
    cat_is = _category_lookup(trace)

    range_rows = np.flatnonzero(is_x & cat_is(RANGE_CATEGORIES))
    classes = _classify_names(trace.names, np.unique(trace.name[range_rows]))
    name_is_range = (classes.layer >= 0) | (classes.step >= 0) | (classes.profiler_step >= 0) | (classes.phase >= 0)

    # ---- host events, nested per thread -------------------------------------------------------
    is_op = is_x & cat_is(CPU_OP_CATEGORIES) & ~name_is_range[trace.name]
    is_rt = is_x & cat_is(RUNTIME_CATEGORIES)
    host = _Host.build(trace, np.flatnonzero(is_op | is_rt), is_op, dur)
    n_host = len(host)
    parent, h_is_op = host.parent, host.is_op
    child_of_op = np.flatnonzero(h_is_op & (parent >= 0))
    child_of_op = child_of_op[h_is_op[parent[child_of_op]]]
    children_us = np.bincount(parent[child_of_op], weights=host.dur[child_of_op], minlength=n_host)
    self_us = np.where(h_is_op, np.maximum(host.dur - children_us, 0.0), 0.0)
    host_op = nearest_marked_ancestor(parent, h_is_op)
    mid = _midpoints(host.start, host.dur)
    h_name = trace.name[host.rows]

    # ---- layer ranges on the same thread ------------------------------------------------------
    h_layer = np.full(n_host, _NO, np.int64)
    h_dir = np.full(n_host, _NO, np.int8)
    lr = range_rows[classes.layer[trace.name[range_rows]] >= 0]
    lr = lr[np.lexsort((lr, ts[lr]))]
    lr_layer = classes.layer[trace.name[lr]]
    lr_dir = classes.direction[trace.name[lr]]
    # renumber layers by their first range (forward execution order), not by name-table order
    n_layers = len(classes.layer_names)
    by_time = lr_layer[np.sort(np.unique(lr_layer, return_index=True)[1])]
    renumber = np.empty(n_layers, np.int64)
    renumber[by_time] = np.arange(n_layers)
    lr_layer = renumber[lr_layer]
    layer_names = [classes.layer_names[int(i)] for i in by_time]
    layer_calls = np.zeros((n_layers, 2), np.int64)
    np.add.at(layer_calls, (lr_layer, lr_dir.astype(np.int64)), 1)
    lr_track = host.tracks.lookup(trace.pid[lr], trace.tid[lr])
    for t in np.unique(lr_track[lr_track >= 0]).tolist():
        sel = lr_track == t
        lo, hi = host.bounds[t], host.bounds[t + 1]
        r_start, r_end = nest_intervals(ts[lr[sel]], ts[lr[sel]] + dur[lr[sel]])
        k = _lookup_ranges(r_start, r_end, mid[lo:hi])
        hit = k >= 0
        h_layer[lo:hi][hit] = lr_layer[sel][k[hit]]
        h_dir[lo:hi][hit] = lr_dir[sel][k[hit]]

    # An evaluate_function op takes the layer of its autograd node's op (its child of the same
    # name): that op starts after the node's hooks have opened and closed their ranges.
    node_name = _node_op_names(trace.names)
    c = np.flatnonzero(h_is_op & (parent >= 0))
    c = c[node_name[h_name[parent[c]]] == h_name[c]]
    h_layer[parent[c]] = h_layer[c]
    h_dir[parent[c]] = h_dir[c]

    # ---- steps and phases (any thread) --------------------------------------------------------
    step_code = classes.step if (classes.step[trace.name[range_rows]] >= 0).any() else classes.profiler_step
    sr = range_rows[step_code[trace.name[range_rows]] >= 0]
    step_numbers, sr_step = np.unique(step_code[trace.name[sr]], return_inverse=True)
    sr_step = sr_step.reshape(-1)
    n_steps = step_numbers.size
    step_start = np.full(n_steps, np.inf)
    step_end = np.full(n_steps, -np.inf)
    np.minimum.at(step_start, sr_step, ts[sr])
    np.maximum.at(step_end, sr_step, ts[sr] + dur[sr])
    h_step = _take(sr_step, _lookup_ranges(ts[sr], ts[sr] + dur[sr], mid))

    pr = range_rows[classes.phase[trace.name[range_rows]] >= 0]
    pr_phase = classes.phase[trace.name[pr]].astype(np.int64)
    phase_calls = np.bincount(pr_phase, minlength=len(PHASES)).astype(np.int64)
    phase_wall = np.bincount(pr_phase, weights=dur[pr], minlength=len(PHASES))
    h_phase = _take(pr_phase, _lookup_ranges(ts[pr], ts[pr] + dur[pr], mid)).astype(np.int8)
    step_phase = np.zeros((n_steps, len(PHASES)))
    if n_steps and pr.size:
        ks = _lookup_ranges(ts[sr], ts[sr] + dur[sr], _midpoints(ts[pr], dur[pr]))
        ok = ks >= 0
        np.add.at(step_phase, (sr_step[ks[ok]], pr_phase[ok]), dur[pr][ok])

    # ---- backward ops outside bwd ranges: forward/backward links -------------------------------
    h_linked = np.zeros(n_host, bool)
    is_eval = h_is_op & classes.evaluate[h_name]
    eval_anc = nearest_marked_ancestor(parent, is_eval)
    need = (h_layer < 0) & (eval_anc >= 0)
    if need.any():
        link = _backward_links(trace, host, is_eval, eval_anc)
        fwd_op = link[eval_anc[need]]
        ok = fwd_op >= 0
        ok[ok] = h_layer[fwd_op[ok]] >= 0
        idx = np.flatnonzero(need)[ok]
        h_layer[idx] = h_layer[fwd_op[ok]]
        h_dir[idx] = BWD
        h_linked[idx] = True

    # ---- device events ------------------------------------------------------------------------
    kind_mask = [is_x & cat_is(c) for c in (KERNEL_CATEGORIES, MEMCPY_CATEGORIES, MEMSET_CATEGORIES)]
    d_rows = np.flatnonzero(kind_mask[0] | kind_mask[1] | kind_mask[2])
    d_kind = np.select([m[d_rows] for m in kind_mask], [0, 1, 2], default=0).astype(np.int8)
    d_host = _launchers(trace, host, d_rows, is_rt[host.rows])
    launched = d_host >= 0
    li = np.maximum(d_host, 0)
    d_start, d_dur = ts[d_rows], dur[d_rows]

    def inherit(a: np.ndarray, dtype: type) -> np.ndarray:
        return np.where(launched, a[li] if n_host else _NO, _NO).astype(dtype)

    d_step = inherit(h_step, np.int64)
    if n_steps and (~launched).any():  # unmatched device work: step by its own time
        k = _lookup_ranges(ts[sr], ts[sr] + dur[sr], _midpoints(d_start[~launched], d_dur[~launched]))
        d_step[~launched] = _take(sr_step, k)

    return Attribution(
        trace=trace,
        layer_names=layer_names,
        step_numbers=step_numbers.astype(np.int64),
        step_start_us=step_start,
        step_end_us=step_end,
        layer_calls=layer_calls,
        phase_calls=phase_calls,
        phase_wall_us=phase_wall,
        step_phase_us=step_phase,
        host_rows=host.rows,
        host_track=host.track,
        host_is_op=h_is_op,
        host_start_us=host.start,
        host_dur_us=host.dur,
        host_parent=parent,
        host_op=host_op,
        host_self_us=self_us,
        host_layer=h_layer,
        host_dir=h_dir,
        host_linked=h_linked,
        host_phase=h_phase,
        host_step=h_step,
        dev_rows=d_rows,
        dev_kind=d_kind,
        dev_start_us=d_start,
        dev_dur_us=d_dur,
        dev_host=d_host,
        dev_op=inherit(host_op, np.int64),
        dev_layer=inherit(h_layer, np.int64),
        dev_dir=inherit(h_dir, np.int8),
        dev_phase=inherit(h_phase, np.int8),
        dev_step=d_step,
    )


def _category_lookup(trace: TraceEvents):
    """``cat_is(names)``: mask of events whose category is one of ``names`` (case-insensitive)."""
    lower = [c.lower() for c in trace.categories]

    def cat_is(names: tuple[str, ...]) -> np.ndarray:
        table = np.array([c in names for c in lower], dtype=bool)
        return table[trace.cat] if table.any() else np.zeros(trace.cat.size, bool)

    return cat_is


def _backward_links(trace: TraceEvents, host: _Host, is_eval: np.ndarray, eval_anc: np.ndarray) -> np.ndarray:
    """For each host event that is an ``evaluate_function`` op, its forward op (host index),
    else -1 (rule 3 of the module docstring)."""
    link = np.full(len(host), _NO, np.int64)

    # fwdbwd flows: start on the forward op, finish on the evaluate_function op
    s_rows, f_rows = _flow_pairs(trace, FWDBWD_FLOW_CATEGORY)
    if s_rows.size:
        s_host, f_host = host.at(trace, s_rows), host.at(trace, f_rows)
        ok = (s_host >= 0) & (f_host >= 0)
        e = eval_anc[f_host[ok]]
        link[e[e >= 0]] = s_host[ok][e >= 0]

    # sequence numbers: (forward thread, Sequence number) -> latest-starting forward op
    todo = np.flatnonzero(is_eval & (link < 0))
    if not todo.size:
        return link
    seq = trace.arg("Sequence number").take(host.rows)
    fwd_tid = trace.arg("Fwd thread id").take(host.rows, fill=0)
    fwd_cand = np.flatnonzero(host.is_op & (seq >= 0) & (fwd_tid <= 0) & (eval_anc < 0))
    if not fwd_cand.size:
        return link
    # Fwd thread id is RecordFunction's thread id, not the OS thread: learn the mapping from
    # the flow-linked pairs (the most frequent pairing wins), or use the only thread that runs
    # forward ops.
    thread_of: dict[int, int] = {}
    linked = np.flatnonzero(is_eval & (link >= 0))
    if linked.size:
        key = fwd_tid[linked] * max(len(host.tracks), 1) + host.track[link[linked]]
        uniq, counts = np.unique(key, return_counts=True)
        for k, _ in sorted(zip(uniq.tolist(), counts.tolist()), key=lambda p: p[1]):
            thread_of[k // max(len(host.tracks), 1)] = k % max(len(host.tracks), 1)
    fwd_tracks = np.unique(host.track[fwd_cand])
    default_track = int(fwd_tracks[0]) if fwd_tracks.size == 1 else _NO
    ftids, inv = np.unique(fwd_tid[todo], return_inverse=True)
    want_track = np.array([thread_of.get(int(t), default_track) for t in ftids.tolist()], np.int64)[inv.reshape(-1)]
    keep = (want_track >= 0) & (seq[todo] >= 0)
    todo, want_track = todo[keep], want_track[keep]
    if not todo.size:
        return link
    cand_key = (host.track[fwd_cand] << _SEQ_BITS) | seq[fwd_cand]
    order = np.lexsort((host.start[fwd_cand], cand_key))  # by key, then start: the last one wins
    cand_key, cand = cand_key[order], fwd_cand[order]
    last = np.ones(cand.size, bool)
    last[:-1] = cand_key[1:] != cand_key[:-1]
    cand_key, cand = cand_key[last], cand[last]
    want = (want_track << _SEQ_BITS) | seq[todo]
    j = np.searchsorted(cand_key, want)
    jj = np.minimum(j, cand.size - 1)
    ok = (j < cand.size) & (cand_key[jj] == want)
    ok &= host.start[cand[jj]] <= host.start[todo]
    link[todo[ok]] = cand[jj[ok]]
    return link


def _launchers(trace: TraceEvents, host: _Host, d_rows: np.ndarray, h_is_rt: np.ndarray) -> np.ndarray:
    """Host event (index) that launched each device event, -1 if unknown (rule 4)."""
    out = np.full(d_rows.size, _NO, np.int64)
    if not d_rows.size or not len(host):
        return out

    def match(keys: np.ndarray, cands: np.ndarray, cand_keys: np.ndarray, todo: np.ndarray) -> None:
        ok_c = cand_keys >= 0
        cands, cand_keys = cands[ok_c], cand_keys[ok_c]
        if not cands.size:
            return
        order = np.argsort(cand_keys, kind="stable")
        cands, cand_keys = cands[order], cand_keys[order]
        j = np.searchsorted(cand_keys, keys)
        jj = np.minimum(j, cands.size - 1)
        ok = (keys >= 0) & (j < cands.size) & (cand_keys[jj] == keys)
        out[todo[ok]] = cands[jj[ok]]

    # args.correlation: the runtime call with the same correlation id
    corr = trace.arg("correlation")
    rt = np.flatnonzero(h_is_rt)
    match(corr.take(d_rows), rt, corr.take(host.rows[rt]), np.arange(d_rows.size))

    # ac2g flows, for device events without a correlation match: the flow's finish is at the
    # device event's start on its stream, its start inside the runtime call
    todo = np.flatnonzero(out < 0)
    if todo.size:
        s_rows, f_rows = _flow_pairs(trace, LAUNCH_FLOW_CATEGORY)
        if s_rows.size:
            s_host = host.at(trace, s_rows)
            key = {(int(trace.pid[r]), int(trace.tid[r]), float(trace.ts[r])): int(h)
                   for r, h in zip(f_rows.tolist(), s_host.tolist()) if h >= 0}
            for i in todo.tolist():
                r = d_rows[i]
                h = key.get((int(trace.pid[r]), int(trace.tid[r]), float(trace.ts[r])))
                if h is not None:
                    out[i] = h

    # External id: the op that launched it
    todo = np.flatnonzero(out < 0)
    if todo.size and len(trace.arg("External id")):
        ext = trace.arg("External id")
        ops = np.flatnonzero(host.is_op)
        match(ext.take(d_rows[todo]), ops, ext.take(host.rows[ops]), todo)
    return out
