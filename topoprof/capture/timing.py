"""The timing hooks: per-module forward and backward time, and the step's phases.

This is the hot path of a profiled step, so it does as little as possible per module call:
two forward hooks (pre and post, ``always_call`` so that ranges stay balanced when ``forward``
raises), and autograd *node* hooks for backward (full backward hooks cost about 58 us per
module call and add autograd nodes; node hooks about 7 us, reference/environment.md).

Backward time of a module call (DESIGN.md section 6): from the moment the gradient reaches the
module's outputs (a pre-hook on the autograd node that produced an output) to the moment it
has passed the module's inputs (post-hooks on the module's "frontier": its own autograd nodes
whose successors all lie outside the module). Which nodes are the module's own is exact and
cheap: autograd gives every node a per-thread sequence number, so the nodes created during the
module's forward are those numbered from the counter's value at the forward pre-hook on. A
container treats each child call as one unit, so every node is walked once per step, not once
per level of nesting. A container's backward ends when its own frontier nodes and the child
calls at its frontier have finished.

Everything is recorded as raw timestamps in flat lists; :meth:`StepTimer.finish_step` turns
them into per-module microseconds once per step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import torch
from torch.utils.hooks import RemovableHandle

from .clock import Clock
from .modules import ModuleTable
from .nvtx_ranges import PHASE_COLORS, NvtxRanges

__all__ = ["StepTimer", "StepTiming", "iter_tensors"]

# Accumulate-grad nodes (parameters) carry the largest sequence number; they are never a
# module's own node.
_NO_SEQUENCE = 2**64 - 1
_get_sequence_nr: Callable[[], int] = torch._C._autograd._get_sequence_nr
_current_graph_task_id: Callable[[], int] = torch._C._current_graph_task_id
_Tensor = torch.Tensor

# Indices into a call record (a plain list: cheaper than an object on the hot path).
# _PEND0: the pending count a backward pass starts from; _TASK: the autograd graph task of the
# pass in progress; _PASSES: (start, end) of earlier passes over the same nodes (retain_graph,
# gradient penalties), or None.
_MOD, _PARENT, _F0, _F1, _B0, _B1, _PENDING, _SEQ, _NOTIFY, _EXITS, _RF, _PEND0, _TASK, _PASSES = range(14)

# ``torch.autograd.profiler.record_function``: its ranges are ``user_annotation`` events in the
# Kineto trace, which the TensorBoard plugin, HTA and topoprof's trace reader treat as the
# user's structure (the cheaper ``_RecordFunctionFast`` lands among the ``cpu_op`` events).
from torch.autograd.profiler import record_function as _RecordFunction  # noqa: E402


def record_function_enter(name: str) -> Any:
    """Open a ``record_function`` range (seen by torch.profiler); close it with ``rf_exit``."""
    rf = _RecordFunction(name)
    rf.__enter__()
    return rf


def rf_exit(rf: Any) -> None:
    rf.__exit__(None, None, None)


def iter_tensors(obj: Any, depth: int = 3):
    """Tensors in ``obj`` and in tuples, lists, dict values and dataclass fields nested up to
    ``depth`` levels (Hugging Face ``ModelOutput`` is a dict; many models return dataclasses)."""
    if isinstance(obj, _Tensor):
        yield obj
    elif depth > 0:
        if isinstance(obj, (tuple, list)):
            for o in obj:
                yield from iter_tensors(o, depth - 1)
        elif isinstance(obj, dict):
            for o in obj.values():
                yield from iter_tensors(o, depth - 1)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for f in dataclasses.fields(obj):
                yield from iter_tensors(getattr(obj, f.name, None), depth - 1)


@dataclass
class StepTiming:
    """One step resolved to microseconds (what :meth:`StepTimer.finish_step` returns)."""

    duration_us: float
    phases_us: dict[str, float]
    forward_passes: int
    backward_passes: int
    optimizer_steps: int
    calls: list[int] = field(default_factory=list)  # per module index
    fwd_us: list[float] = field(default_factory=list)
    bwd_us: list[float] = field(default_factory=list)
    self_fwd_us: list[float] = field(default_factory=list)
    self_bwd_us: list[float] = field(default_factory=list)
    #: The root module's backward intervals (us from the step's start), one per pass.
    root_backward_us: list[tuple[float, float]] = field(default_factory=list)
    #: ``extra`` timestamps handed to :meth:`StepTimer.finish_step`, resolved to us.
    extra_us: list[float] = field(default_factory=list)


class StepTimer:
    """Installs the timing hooks on a model and accumulates one step's raw timestamps."""

    def __init__(self, table: ModuleTable, clock: Clock, ranges: NvtxRanges) -> None:
        self.table = table
        self.clock = clock
        self.ranges = ranges
        #: Trace mode: while True, every NVTX range also opens a ``record_function`` range of
        #: the same name, so torch.profiler traces show the step, phases and layers. Only set
        #: while the profiler records (a range costs about 6 us otherwise).
        self.rf_active = False
        self._rf_names_fwd = [f"fwd {i.label}" for i in table.infos]
        self._rf_names_bwd = [f"bwd {i.label}" for i in table.infos]
        self._rf_stack: list[Any] = []
        self._rf_phase: Any = None
        self._handles: list[RemovableHandle] = []
        self._fwd_attrs = [ranges.attributes(f"fwd {i.label}", PHASE_COLORS["forward"]) for i in table.infos]
        self._bwd_attrs = [ranges.attributes(f"bwd {i.label}", PHASE_COLORS["backward"]) for i in table.infos]
        self.step_index = 0
        self.in_backward = False
        self._graph_task = -1  # autograd graph task of the backward pass in progress
        self._requeued = False
        self._bwd_open = 0  # backward ranges pushed and not yet popped
        self._phase_range: Any = None
        self.phase = "other"
        self.calls: list[list[Any]] = []
        self.stack: list[int] = []
        self.marks: list[tuple[Any, str]] = []
        self._reset(clock.now())
        #: Called with the root call's ``(args, kwargs)`` from the root's forward pre-hook before
        #: it records the call; the session ends a step there when the optimizer delimits steps.
        self.before_root_forward: Callable[[Any, Any], None] | None = None

    # ----------------------------------------------------------------- step state
    def _reset(self, origin: Any) -> None:
        # Lists are cleared in place: the hooks hold references to them.
        self.origin = origin
        self.calls.clear()
        self.stack.clear()
        self.marks.clear()
        self.end_phase_range()
        self._close_backward(None)  # a backward that raised never ran its end callback
        self.forward_passes = 0
        self.backward_passes = 0
        self.optimizer_steps = 0
        # Keys are (id(node), node._sequence_nr()) of autograd nodes.
        self._owner: dict[tuple[int, int], int] = {}  # node -> outermost call that outputs it
        self._starts: dict[tuple[int, int], list[int]] = {}  # node -> calls whose backward starts there
        self._ends: dict[tuple[int, int], list[int]] = {}  # node -> calls waiting for it to finish

    def mark(self, phase: str, t: Any = None) -> None:
        """The step enters ``phase`` now (phases are contiguous segments of the step).

        Phases other than ``other`` are NVTX start/end ranges with the step number as payload.
        """
        if phase == self.phase:
            return
        if t is None:
            t = self.clock.now()
        self.marks.append((t, phase))
        self.phase = phase
        if self._phase_range is not None:
            self.ranges.end(self._phase_range)
            self._phase_range = None
        if self._rf_phase is not None:
            rf_exit(self._rf_phase)
            self._rf_phase = None
        if phase != "other":
            attrs = self.ranges.attributes(phase, PHASE_COLORS[phase], payload=self.step_index)
            self._phase_range = self.ranges.start(attrs)
            if self.rf_active:
                self._rf_phase = record_function_enter(phase)

    def end_phase_range(self) -> None:
        """Close the open phase range (at the end of a step or of the profile)."""
        if self._phase_range is not None:
            self.ranges.end(self._phase_range)
            self._phase_range = None
        if self._rf_phase is not None:
            rf_exit(self._rf_phase)
            self._rf_phase = None
        self.phase = "other"

    # ----------------------------------------------------------------- install/remove
    def install(self, record_functions: bool = False) -> None:
        """Register the hooks; ``record_functions`` (trace mode) adds the record_function
        ranges, which the hooks open only while :attr:`rf_active` is set."""
        root_index = 0
        for i, module in enumerate(self.table.modules):
            pre = self._make_pre_hook(i, i == root_index)
            post = self._make_post_hook(i)
            if record_functions:
                pre, post = self._with_record_functions(i, pre, post)
            # The root's pre-hook gets kwargs: a step boundary found there hands the call's
            # inputs to the graph capture.
            self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=i == root_index))
            self._handles.append(module.register_forward_hook(post, always_call=True))

    def _with_record_functions(self, midx: int, pre: Callable[..., None], post: Callable[..., None]):
        name = self._rf_names_fwd[midx]
        rf_stack = self._rf_stack
        timer = self

        def pre_rf(module: Any, args: Any, kwargs: Any = None) -> None:
            pre(module, args, kwargs)
            # no range for a recomputation inside backward (the pre-hook skipped it too); the
            # graph-task check keeps a flag left by a backward that raised from hiding ranges
            recompute = timer.in_backward and _current_graph_task_id() != -1
            rf_stack.append(record_function_enter(name) if timer.rf_active and not recompute else None)

        def post_rf(module: Any, args: Any, output: Any) -> None:
            if rf_stack:
                rf = rf_stack.pop()
                if rf is not None:
                    rf_exit(rf)
            post(module, args, output)

        return pre_rf, post_rf

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def open_ranges(self) -> int:
        """NVTX module ranges this timer has pushed and not popped (forward and backward)."""
        return sum(1 for i in self.stack if i >= 0) + self._bwd_open

    # ----------------------------------------------------------------- forward hooks
    def _make_pre_hook(self, midx: int, is_root: bool) -> Callable[..., None]:
        calls = self.calls
        stack = self.stack
        now = self.clock.now
        push = self.ranges.push
        attrs = self._fwd_attrs[midx]
        timer = self

        def pre_hook(module: Any, args: Any, kwargs: Any = None) -> None:
            if timer.in_backward and _current_graph_task_id() != -1:
                stack.append(-1)  # recomputation inside backward (activation checkpointing)
                return
            if is_root and not stack:
                if timer.before_root_forward is not None:
                    timer.before_root_forward(args, kwargs)
                    if not timer._handles:  # the session stopped profiling at that boundary
                        return
                timer.forward_passes += 1
                timer.mark("forward")
            calls.append([midx, stack[-1] if stack else -1, now(), None, None, None, 0, _get_sequence_nr(),
                          None, None, None, 0, -1, None])
            stack.append(len(calls) - 1)
            push(attrs)

        return pre_hook

    def _make_post_hook(self, midx: int) -> Callable[..., None]:
        now = self.clock.now
        pop = self.ranges.pop
        timer = self
        st = self.stack
        calls = self.calls

        def post_hook(module: Any, args: Any, output: Any) -> None:
            if not st:  # hooks installed mid-forward: nothing to close
                return
            i = st.pop()
            if i < 0:
                return
            t = now()
            call = calls[i]
            call[_F1] = t
            pop()
            if output is not None and torch.is_grad_enabled():
                timer._register_backward(i, call, output)

        return post_hook

    # ----------------------------------------------------------------- backward hooks
    def _register_backward(self, i: int, call: list[Any], output: Any) -> None:
        seq0 = call[_SEQ]
        if _get_sequence_nr() == seq0:  # the call created no autograd node (no_grad, identity)
            return
        starts = self._starts
        owner = self._owner
        if isinstance(output, _Tensor):  # the common case, without the generator
            node = output.grad_fn
            if node is None or not (seq0 <= node._sequence_nr() < _NO_SEQUENCE):
                return
            roots = [node]
        else:
            roots = []
            for t in iter_tensors(output):
                node = t.grad_fn
                if node is not None and seq0 <= node._sequence_nr() < _NO_SEQUENCE:
                    roots.append(node)
            if not roots:
                return
        # Walk this call's own nodes; jump over child calls (units) through their exits.
        frontier: list[Any] = []
        child_units: list[int] = []
        exits: list[Any] = []
        seen: set[Any] = set()
        todo = list(roots)
        calls = self.calls
        while todo:
            node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            j = owner.get((id(node), node._sequence_nr()))
            if j is not None and j > i:  # a descendant call: one unit
                inner_exits = calls[j][_EXITS] or ()
                calls[j][_EXITS] = None  # consumed: only this walk reads a child's exits
                leads_inside = False
                for e in inner_exits:
                    if e._sequence_nr() >= seq0:
                        leads_inside = True
                        todo.append(e)
                    else:
                        exits.append(e)
                if not leads_inside:
                    child_units.append(j)
                continue
            inside = False
            for nxt, _ in node.next_functions:
                if nxt is None:
                    continue
                s = nxt._sequence_nr()
                if s >= _NO_SEQUENCE:
                    continue
                if s >= seq0:
                    inside = True
                    todo.append(nxt)
                else:
                    exits.append(nxt)
            if not inside:
                frontier.append(node)
        pending = len(frontier) + len(child_units)
        if pending == 0:
            return
        call[_PENDING] = call[_PEND0] = pending
        call[_EXITS] = exits
        for j in child_units:
            child = calls[j]
            if child[_NOTIFY] is None:
                child[_NOTIFY] = [i]
            else:
                child[_NOTIFY].append(i)
        # The maps are keyed by (id, sequence number), never by the node itself: holding nodes
        # would keep autograd graphs (and their saved activations) alive until the step ends,
        # e.g. for forward passes that never run backward.
        ends = self._ends
        for node in frontier:
            key = (id(node), node._sequence_nr())
            lst = ends.get(key)
            if lst is None:
                lst = ends[key] = [i]
                node.register_hook(partial(self._on_node_done_hook, lst))
            else:
                lst.append(i)
        for node in roots:
            key = (id(node), node._sequence_nr())
            lst = starts.get(key)
            if lst is None:
                lst = starts[key] = [i]
                node.register_prehook(partial(self._on_backward_start, lst))
            else:
                lst.append(i)
            owner[key] = i

    def _on_node_done_hook(self, waiting: list[int], grad_inputs: Any, grad_outputs: Any) -> None:
        self._on_node_done(waiting)

    def _on_backward_start(self, waiting: list[int], grad_outputs: Any = None) -> None:
        t = self.clock.now()
        task = _current_graph_task_id()
        if self.in_backward and task != self._graph_task:
            self._close_backward(t)  # the previous backward raised: its end callback never ran
        if not self.in_backward:
            self.in_backward = True
            self._graph_task = task
            self._requeued = False
            self.mark("backward", t)
            torch.autograd.Variable._execution_engine.queue_callback(self._on_backward_end)
        calls = self.calls
        push = self.ranges.push
        for i in sorted(waiting):  # outer calls first, so NVTX ranges nest
            call = calls[i]
            if call[_B0] is not None and call[_TASK] != task and call[_B1] is not None:
                # another backward pass over nodes that already ran (retain_graph=True, a
                # gradient penalty): keep the earlier pass and time this one as well
                if call[_PASSES] is None:
                    call[_PASSES] = []
                call[_PASSES].append((call[_B0], call[_B1]))
                call[_B0] = call[_B1] = None
                call[_PENDING] = call[_PEND0]
            if call[_B0] is None:
                call[_TASK] = task
                call[_B0] = t
                push(self._bwd_attrs[call[_MOD]])
                self._bwd_open += 1
                if self.rf_active:
                    call[_RF] = record_function_enter(self._rf_names_bwd[call[_MOD]])

    def _on_node_done(self, waiting: list[int]) -> None:
        t = self.clock.now()
        calls = self.calls
        for i in sorted(waiting, reverse=True):  # inner calls first
            self._decrement(i, t, calls)

    def _decrement(self, i: int, t: Any, calls: list[list[Any]]) -> None:
        call = calls[i]
        call[_PENDING] -= 1
        if call[_PENDING] == 0 and call[_B1] is None and call[_B0] is not None:
            call[_B1] = t
            self.ranges.pop()
            self._bwd_open -= 1
            if call[_RF] is not None:
                rf_exit(call[_RF])
                call[_RF] = None
            notify = call[_NOTIFY]
            if notify:
                for p in notify:
                    self._decrement(p, t, calls)

    def _on_backward_end(self) -> None:
        if not self._requeued:
            # Run again after the callbacks queued after ours (DDP's finalize, which waits for
            # the gradient all-reduces): that wait belongs to the backward phase.
            self._requeued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._on_backward_end)
            return
        t = self.clock.now()
        self._close_backward(t)
        self.backward_passes += 1
        self.mark("other", t)

    def _close_backward(self, t: Any) -> None:
        """End the backward pass in progress at ``t``.

        Calls whose backward started but whose frontier never ran (gradients pruned by
        ``torch.autograd.grad(inputs=...)``, or a backward that raised) end here, and their
        ranges are closed. With ``t=None`` (a step abandoned) they are closed without a time.
        """
        if not self.in_backward and not self._bwd_open:
            return
        calls = self.calls
        for i in range(len(calls) - 1, -1, -1):
            call = calls[i]
            if call[_B0] is not None and call[_B1] is None:
                call[_B1] = t if t is not None else call[_B0]
                if self._bwd_open:
                    self.ranges.pop()
                    self._bwd_open -= 1
                if call[_RF] is not None:
                    rf_exit(call[_RF])
                    call[_RF] = None
        self.ranges.pop_n(self._bwd_open)
        self._bwd_open = 0
        self.in_backward = False
        self._graph_task = -1
        # The next backward pass of this step registers fresh nodes.
        self._starts = {}
        self._ends = {}
        self._owner = {}

    # ----------------------------------------------------------------- step end
    def abandon_open_ranges(self) -> int:
        """Close the module ranges left open by an exception; returns how many were closed."""
        n = self.open_ranges()
        self.ranges.pop_n(n)
        self.stack.clear()
        self._bwd_open = 0
        while self._rf_stack:
            rf = self._rf_stack.pop()
            if rf is not None:
                rf_exit(rf)
        for call in self.calls:
            if call[_RF] is not None:
                rf_exit(call[_RF])
                call[_RF] = None
        return n

    def begin_step(self, origin: Any) -> None:
        """Start the next step at timestamp ``origin``."""
        self._reset(origin)

    def finish_step(self, end: Any, extra: list[Any] = ()) -> StepTiming:  # type: ignore[assignment]
        """Resolve the step that ends at timestamp ``end``; call :meth:`begin_step` next.

        ``extra`` timestamps (e.g. DDP all-reduce starts and ends) are resolved on the same
        clock and returned in :attr:`StepTiming.extra_us`.
        """
        calls = self.calls
        n_mod = len(self.table)
        stamps: list[Any] = [end]
        stamps.extend(extra)
        stamps.extend(t for t, _ in self.marks)
        for c in calls:
            stamps.append(c[_F0])
            stamps.append(c[_F1])
            stamps.append(c[_B0])
            stamps.append(c[_B1])
        earlier = [(k, b0, b1) for k, c in enumerate(calls) if c[_PASSES] for b0, b1 in c[_PASSES]]
        for _, b0, b1 in earlier:
            stamps.append(b0)
            stamps.append(b1)
        us = self.clock.resolve(self.origin, stamps)
        duration = us[0]
        n_extra = len(extra)
        extra_us = us[1 : 1 + n_extra]
        us = [us[0]] + us[1 + n_extra :]
        phases = {p: 0.0 for p in PHASE_COLORS if p != "step"}
        cur_phase, cur_t = "other", 0.0
        for k, (_, phase) in enumerate(self.marks):
            t = us[1 + k]
            phases[cur_phase] += t - cur_t
            cur_phase, cur_t = phase, t
        phases[cur_phase] += duration - cur_t
        base = 1 + len(self.marks)
        fwd = [0.0] * n_mod
        bwd = [0.0] * n_mod
        child_fwd = [0.0] * n_mod
        child_bwd = [0.0] * n_mod
        ncalls = [0] * n_mod
        root_backward: list[tuple[float, float]] = []
        extra_bwd = [0.0] * len(calls)
        for j, (k, _, _) in enumerate(earlier):
            b0, b1 = us[base + 4 * len(calls) + 2 * j : base + 4 * len(calls) + 2 * j + 2]
            extra_bwd[k] += b1 - b0
            if calls[k][_MOD] == 0:
                root_backward.append((b0, b1))
        for k, c in enumerate(calls):
            f0, f1, b0, b1 = us[base + 4 * k : base + 4 * k + 4]
            m = c[_MOD]
            if m == 0 and b0 is not None and b1 is not None:
                root_backward.append((b0, b1))
            ncalls[m] += 1
            f = (f1 - f0) if f1 is not None else (duration - f0)
            b = ((b1 - b0) if (b0 is not None and b1 is not None) else 0.0) + extra_bwd[k]
            fwd[m] += f
            bwd[m] += b
            p = c[_PARENT]
            if p >= 0:
                pm = calls[p][_MOD]
                child_fwd[pm] += f
                child_bwd[pm] += b
        self_fwd = [max(fwd[m] - child_fwd[m], 0.0) for m in range(n_mod)]
        self_bwd = [max(bwd[m] - child_bwd[m], 0.0) for m in range(n_mod)]
        result = StepTiming(
            duration_us=duration,
            phases_us=phases,
            forward_passes=self.forward_passes,
            backward_passes=self.backward_passes,
            optimizer_steps=self.optimizer_steps,
            calls=ncalls,
            fwd_us=fwd,
            bwd_us=bwd,
            self_fwd_us=self_fwd,
            self_bwd_us=self_bwd,
            root_backward_us=root_backward,
            extra_us=extra_us,
        )
        self.clock.recycle()
        self.step_index += 1
        return result
