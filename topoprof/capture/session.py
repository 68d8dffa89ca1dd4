"""The profiling session: ``topoprof.profile(model, run_dir, ...)``.

Lifecycle of a profile with ``skip_first=K`` and ``steps=N``:

* steps ``0 .. K-1`` are warm-up (timed but discarded); the last of them (or, with ``K == 0``,
  one extra first step) also captures the layer graph and FLOPs, which is far costlier than
  timing and therefore never timed;
* the next ``N`` steps are profiled; after them every hook is removed and the run is saved,
  and the loop goes on unprofiled;
* leaving the context early (the loop ended, an exception, KeyboardInterrupt) removes every
  hook and mode as well and saves the steps that finished.

A step ends at ``prof.step()``. A loop that never calls it (``topoprof run``, the decorator)
gets its steps from the optimizer: a step ends when the model's next forward pass begins after
an ``optimizer.step()``, or when the profile ends.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import torch
from torch import nn

from ..errors import ProfilerUsageError
from ..run import Manifest, ModuleRecord, RankData, Run, StepRecord
from .._jsonio import write_json_atomic
from .clock import Clock, CudaEventClock, HostClock
from .distributed import DDPCommTimer, ddp_facts, merge_manifest, run_id, unwrap_ddp
from .environment import backend_settings, device_info, distributed_info, versions
from .graph import CapturedGraph, GraphCapture
from .modules import ModuleTable
from .nvtx_ranges import PHASE_COLORS, NvtxRanges
from .timing import StepTimer, StepTiming, record_function_enter, rf_exit

__all__ = ["Profiler", "profile"]

#: ``layers``: hooks, NVTX ranges and timers (lowest overhead). ``trace``: adds torch.profiler
#: (Kineto) over the profiled steps, with topoprof's ranges as ``record_function`` ranges.
MODES = ("layers", "trace")
_F = TypeVar("_F", bound=Callable[..., Any])


class Profiler:
    """Profiles a model's training steps layer by layer; see :func:`profile`."""

    def __init__(
        self,
        model: nn.Module,
        run_dir: str | Path,
        *,
        steps: int = 10,
        skip_first: int = 3,
        mode: str = "layers",
        tags: dict[str, Any] | None = None,
        capture_graph: bool = True,
        clock: str | Clock = "auto",
        tensorboard: bool = True,
        step_on: str = "auto",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ProfilerUsageError(f"profile() needs a torch.nn.Module as model, got {type(model).__name__}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ProfilerUsageError(f"steps must be a positive integer, got {steps!r}")
        if isinstance(skip_first, bool) or not isinstance(skip_first, int) or skip_first < 0:
            raise ProfilerUsageError(f"skip_first must be a non-negative integer, got {skip_first!r}")
        if mode not in MODES:
            raise ProfilerUsageError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if not isinstance(clock, Clock) and clock not in ("auto", "host", "cuda"):
            raise ProfilerUsageError(f"clock must be 'auto', 'host', 'cuda' or a Clock; got {clock!r}")
        if tags is not None and not isinstance(tags, dict):
            raise ProfilerUsageError(f"tags must be a dict, got {type(tags).__name__}")
        self.model = model
        self.run_dir = Path(run_dir)
        self.steps = steps
        self.skip_first = skip_first
        self.mode = mode
        self.tags = dict(tags or {})
        self.capture_graph = capture_graph
        self.clock_choice = clock
        self.tensorboard = tensorboard
        if step_on not in ("auto", "manual"):
            raise ProfilerUsageError(f"step_on must be 'auto' or 'manual'; got {step_on!r}")
        self.step_on = step_on
        self.run: Run | None = None
        self._active = False
        self._finished = False

    # ------------------------------------------------------------------ public API
    def __enter__(self) -> "Profiler":
        if self._active:
            raise ProfilerUsageError("this profiler is already active (profiles do not nest)")
        self._start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._active:
            return
        if exc_type is None:
            if not self._manual_steps and self._timer.optimizer_steps > 0:
                self._end_step(self._clock.now())  # the open step is complete
            status = "complete" if self._finished else (
                f"incomplete: the loop ended after {len(self._records)} of {self.steps} profiled steps"
            )
        elif issubclass(exc_type, KeyboardInterrupt):
            status = f"interrupted: KeyboardInterrupt after {len(self._records)} profiled steps"
        else:
            status = f"failed: {exc_type.__name__} after {len(self._records)} profiled steps"
        if self._active:
            self._stop(status)

    def __call__(self, func: _F) -> _F:
        """Use the profiler as a decorator: the whole call is profiled (steps from the optimizer)."""

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def start_in_root_forward(self, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> "Profiler":
        """Start the profile from inside a forward pre-hook of ``model``, for the call in progress.

        For tools that find the model while it runs (``topoprof run``). Torch takes the list of
        forward pre-hooks when a call begins, so the hooks the profile installs during that call
        would miss it; this enters the profile and then calls the forward pre-hooks that
        entering added (global ones, then the model's), with the call's ``args``/``kwargs``, so
        that step 0 begins at this forward pass exactly like any later step (timed root call,
        forward phase, graph and FLOP capture). The forward hooks run as usual when the call
        returns. topoprof's pre-hooks never change the inputs; their return values are not
        used. End the profile with ``__exit__`` as usual.

        Args:
            args: the positional arguments of the model call in progress.
            kwargs: its keyword arguments (``None`` when the caller's hook does not see them).

        Returns:
            The profiler, now active.
        """
        global_before = set(_global_forward_pre_hooks())
        local_before = set(self.model._forward_pre_hooks)
        self.__enter__()
        _call_new_pre_hooks(self.model, args, {} if kwargs is None else kwargs, global_before, local_before)
        return self

    def step(self) -> None:
        """One training step ends here (call it once per iteration, after ``optimizer.step()``)."""
        if not self._active:
            return
        self._manual_steps = True
        self._end_step(self._clock.now())

    def data(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Iterate ``iterable`` and time each ``next()`` as the step's ``data`` phase."""
        it = iter(iterable)
        while True:
            timer = self._timer if self._active else None
            if timer is not None:
                timer.mark("data")
            try:
                item = next(it)
            except StopIteration:
                if timer is not None and self._active:
                    timer.mark("other")
                return
            if timer is not None and self._active:
                timer.mark("other")
            yield item

    @property
    def active(self) -> bool:
        """True while steps are being profiled."""
        return self._active

    @property
    def step_index(self) -> int:
        """Index of the step in progress (0-based, counted from the start of the profile)."""
        return self._timer.step_index if hasattr(self, "_timer") else 0

    # ------------------------------------------------------------------ internals
    def _start(self) -> None:
        inner, ddp = unwrap_ddp(self.model)  # layers are named as in the user's own module
        self._table = ModuleTable(inner)
        device = self._table.device_type()
        self._clock = self._make_clock(device)
        self._ddp_facts: dict[str, Any] = {}
        self._comm: DDPCommTimer | None = None
        if ddp is not None:
            self._ddp_facts = ddp_facts(ddp)
            self._comm = DDPCommTimer(ddp, self._clock)
            self._comm.install()
            self._ddp_facts["comm_hook"] = self._comm.status
        self._ranges = NvtxRanges()
        self._timer = StepTimer(self._table, self._clock, self._ranges)
        self._timer.before_root_forward = self._before_root_forward
        self._records: list[tuple[int, StepTiming]] = []
        self._graph: CapturedGraph | None = None
        self._capture: GraphCapture | None = None
        self._capture_step = (self.skip_first - 1) if self.skip_first > 0 else 0
        self._first_timed = max(self.skip_first, 1) if self.capture_graph else self.skip_first
        if not self.capture_graph:
            self._capture_step = -1
        # "manual": only prof.step() ends a step. "auto": the optimizer does until the first
        # prof.step() call (loops that never call it: the decorator, topoprof run).
        self._manual_steps = self.step_on == "manual"
        self._comm_steps: dict[int, dict[str, Any]] = {}
        self._optimizers: dict[int, dict[str, Any]] = {}
        self._optimizer_depth = 0
        self._handles: list[Any] = []
        self._step_range_open = False
        self._dist = distributed_info()
        self._run_id = run_id()
        self._settings = backend_settings()
        self._device = device
        self._started_at = _dt.datetime.now(_dt.timezone.utc)
        self._finished = False
        self._timer.install(record_functions=self.mode == "trace")
        self._torch_profiler: Any = None
        self._trace_files: list[Path] = []
        self._rf_step: Any = None
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        self._handles.append(register_optimizer_step_pre_hook(self._optimizer_pre_hook))
        self._handles.append(register_optimizer_step_post_hook(self._optimizer_post_hook))
        self._previous_sigterm = _install_sigterm_handler() if self._dist["world_size"] > 1 else None
        self._active = True
        self._begin_step(self._clock.now())

    def _make_clock(self, device: str) -> Clock:
        choice = self.clock_choice
        if isinstance(choice, Clock):  # an injected clock (deterministic tests)
            return choice
        if choice == "cuda" or (choice == "auto" and device == "cuda"):
            if not torch.cuda.is_available():
                raise ProfilerUsageError("clock='cuda' needs CUDA, which is not available")
            return CudaEventClock()
        return HostClock()

    def _begin_step(self, origin: Any, root_call: tuple[Any, Any] | None = None) -> None:
        idx = self._timer.step_index
        if self._optimizer_depth and not _optimizer_running():
            self._optimizer_depth = 0  # an optimizer.step() raised: its post-hook never ran
        if idx == self._capture_step:
            names = {info.name.split(".")[0] for info in self._table.infos if info.name}
            self._capture = GraphCapture(self._table, names, phase_of=lambda: self._timer.phase)
            global_before = set(_global_forward_pre_hooks())
            self._capture.start()
            if root_call is not None:
                self._capture.enter_root_call(*root_call)
                # The root call is in progress: the global pre-hooks capture just added (the
                # FLOP counter's module tracker) missed it; without it the tracker misnames
                # every submodule and their FLOPs are lost.
                _call_new_pre_hooks(self._table.model, root_call[0], root_call[1], global_before)
        if self.mode == "trace" and idx == self._first_timed and self._torch_profiler is None:
            self._start_torch_profiler()
        self._ranges.push(self._ranges.attributes(f"step {idx}", PHASE_COLORS["step"], payload=idx))
        self._step_range_open = True
        if self._timer.rf_active:
            # ``ProfilerStep#N`` is how the TensorBoard plugin and HTA find steps in a trace.
            self._rf_step = (record_function_enter(f"ProfilerStep#{idx}"), record_function_enter(f"step {idx}"))
        self._timer.begin_step(origin)

    def _close_step_ranges(self) -> None:
        self._timer.end_phase_range()
        if self._rf_step is not None:
            for rf in reversed(self._rf_step):
                rf_exit(rf)
            self._rf_step = None
        if self._step_range_open:
            self._ranges.pop()
            self._step_range_open = False

    # ------------------------------------------------------------------ trace mode
    def _worker_name(self) -> str:
        """Kineto worker name: one trace file per rank, as the TensorBoard plugin expects."""
        return f"{self._dist['host']}_rank{self._dist['rank']}"

    def _start_torch_profiler(self) -> None:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        activities = [ProfilerActivity.CPU]
        if self._device == "cuda" and torch.cuda.is_available():
            activities.append(ProfilerActivity.CUDA)
        self._torch_profiler = torch_profile(
            activities=activities,
            record_shapes=True,
            profile_memory=True,
            on_trace_ready=self._on_trace_ready,
        )
        self._torch_profiler.start()
        self._timer.rf_active = True

    def _stop_torch_profiler(self) -> None:
        if self._torch_profiler is None:
            return
        self._timer.rf_active = False
        profiler, self._torch_profiler = self._torch_profiler, None
        profiler.stop()  # calls _on_trace_ready

    def _on_trace_ready(self, profiler: Any) -> None:
        """Write the Kineto trace atomically as ``<worker>.<ns>.pt.trace.json`` in the run."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        worker = self._worker_name()
        for old in self.run_dir.glob(f"{worker}.*.pt.trace.json*"):
            old.unlink()  # a rerun into the same directory replaces this worker's trace
        path = self.run_dir / f"{worker}.{time.time_ns()}.pt.trace.json"
        tmp = self.run_dir / f".{path.name}.tmp"
        profiler.export_chrome_trace(str(tmp))
        os.replace(tmp, path)
        self._trace_files.append(path)

    def _end_step(self, t_end: Any, root_call: tuple[Any, Any] | None = None) -> None:
        timer = self._timer
        idx = timer.step_index
        self._close_step_ranges()
        if self._capture is not None:
            self._graph = self._capture.stop()
            self._capture = None
        comm = self._comm.drain() if self._comm is not None else []
        extra = [t for r in comm for t in (r[0], r[1])]
        timing = timer.finish_step(t_end, extra)
        if idx >= self._first_timed:
            self._records.append((idx, timing))
            if self._comm is not None and self._comm.active:
                self._comm_steps[idx] = _comm_summary(comm, timing)
        if len(self._records) >= self.steps:
            self._finished = True
            self._stop("complete")
            return
        self._begin_step(self._clock.now(), root_call)

    def _before_root_forward(self, args: Any, kwargs: Any) -> None:
        if self._optimizer_depth and not _optimizer_running():
            self._optimizer_depth = 0  # an optimizer.step() raised: its post-hook never ran
        # Steps delimited by the optimizer: a forward pass after an optimizer step starts a new step.
        if not self._manual_steps and self._timer.optimizer_steps > 0:
            self._end_step(self._clock.now(), (args, kwargs))

    def _optimizer_pre_hook(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        key = id(optimizer)
        if key not in self._optimizers:
            self._optimizers[key] = _describe_optimizer(optimizer)
        # A subclass whose step() calls super().step() fires the hooks twice, nested.
        self._optimizer_depth += 1
        if self._optimizer_depth == 1:
            self._timer.mark("optimizer")

    def _optimizer_post_hook(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._optimizer_depth = max(self._optimizer_depth - 1, 0)
        if self._optimizer_depth == 0:
            self._timer.optimizer_steps += 1
            self._timer.mark("other")

    def _stop(self, status: str) -> None:
        """Remove every hook and mode, close open ranges, save the run. Idempotent."""
        if not self._active:
            return
        self._active = False
        try:
            self._timer.abandon_open_ranges()
            self._close_step_ranges()
            self._stop_torch_profiler()
        finally:
            if self._capture is not None:
                captured = self._capture.stop()
                self._capture = None
                if self._graph is None and captured.called:
                    self._graph = captured
            self._timer.remove()
            if self._comm is not None:
                self._comm.stop()
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None
            for h in self._handles:
                h.remove()
            self._handles.clear()
        run = self._build_run(status)
        if self._trace_files:
            _attach_trace(run, self._trace_files[-1], self._table)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for r, data in run.ranks.items():
            write_json_atomic(self.run_dir / f"rank{r}.json", data.to_dict())
        manifest = merge_manifest(self.run_dir, run.manifest)
        self.run = Run(self.run_dir, manifest, run.ranks)
        if self.tensorboard:
            _write_tensorboard(self.run)

    def _build_run(self, status: str) -> Run:
        table = self._table
        records = self._records
        graph = self._graph or CapturedGraph()
        n_mod = len(table)
        called = set(graph.called)
        for _, t in records:
            called.update(m for m in range(n_mod) if t.calls[m])
        for m in list(called):  # containers never called themselves (ModuleList) keep the hierarchy
            p = table.infos[m].parent
            while p >= 0 and p not in called:
                called.add(p)
                p = table.infos[p].parent
        modules = []
        for m in sorted(called):
            info = table.infos[m]
            parent = table.infos[info.parent].name if info.parent >= 0 else None
            modules.append(
                ModuleRecord(
                    name=info.name,
                    kind=info.kind,
                    parent=parent,
                    leaf=info.leaf,
                    params=info.params,
                    param_bytes=info.param_bytes,
                    in_shapes=graph.in_shapes.get(m, []),
                    out_shapes=graph.out_shapes.get(m, []),
                    dtype=graph.dtype.get(m),
                    flops_fwd=graph.flops_fwd.get(m, 0),
                    flops_bwd=graph.flops_bwd.get(m, 0),
                    act_bytes=graph.act_bytes.get(m, 0),
                    ops=dict(sorted(graph.ops.get(m, {}).items())),
                    in_memory_format=graph.in_memory_format.get(m),
                    calls_per_step=[t.calls[m] for _, t in records],
                    fwd_us=[t.fwd_us[m] for _, t in records],
                    bwd_us=[t.bwd_us[m] for _, t in records],
                    self_fwd_us=[t.self_fwd_us[m] for _, t in records],
                    self_bwd_us=[t.self_bwd_us[m] for _, t in records],
                )
            )
        _fill_uncalled_containers(modules, table)
        edges = list(graph.edges.values())
        steps = [
            StepRecord(
                index=idx,
                duration_us=t.duration_us,
                phases_us=t.phases_us,
                forward_passes=t.forward_passes,
                backward_passes=t.backward_passes,
                optimizer_steps=t.optimizer_steps,
                **self._comm_steps.get(idx, {}),
            )
            for idx, t in records
        ]
        dist = self._dist
        rank = RankData(
            rank=dist["rank"],
            world_size=dist["world_size"],
            run_id=self._run_id,
            status=status,
            ddp=self._ddp_facts,
            local_rank=dist["local_rank"],
            host=dist["host"],
            device=self._device,
            clock=self._clock.name,
            steps=steps,
            modules=modules,
            edges=edges,
            optimizers=list(self._optimizers.values()),
            host_syncs=[
                {"op": op, "where": where, "phase": phase, "count": n}
                for (op, where, phase), n in sorted(graph.host_syncs.items())
            ],
            settings={**self._settings, "autocast": graph.autocast},
            graph_step=self._capture_step if self._graph is not None else None,
            input_node=graph.input_node,
            output_node=graph.output_node,
        )
        tags = dict(self.tags)
        if "batch_size" not in tags and graph.in_shapes.get(0):
            first = graph.in_shapes[0][0]
            if first:
                tags["batch_size"] = first[0]
        manifest = Manifest(
            name=self.run_dir.name,
            run_id=self._run_id,
            hosts=[dist["host"]],
            created=self._started_at.isoformat(timespec="seconds"),
            mode=self.mode,
            versions=versions(),
            device=device_info(self._device),
            host=dist["host"],
            world_size=dist["world_size"],
            ranks=[dist["rank"]],
            steps_requested=self.steps,
            skip_first=self.skip_first,
            command=dist["command"],
            tags=tags,
            status=status,
        )
        return Run(self.run_dir, manifest, {rank.rank: rank})


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM during a distributed profile.

    torchrun sends SIGTERM to the surviving ranks when one dies; turning it into an exception
    lets the profile save the steps those ranks finished. The previous handler is restored
    when the profile ends.
    """


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated(128 + signum)


def _install_sigterm_handler() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):  # the user handles SIGTERM: leave it alone
        return None
    signal.signal(signal.SIGTERM, _on_sigterm)
    return previous


def _fill_uncalled_containers(modules: list[ModuleRecord], table: ModuleTable) -> None:
    """Give containers that are never called (``nn.ModuleList``, ``nn.ModuleDict``) the sums of
    their children: inclusive times and FLOPs add up (the children run one after another inside
    the caller), self times and calls stay 0. The hierarchy then stays consistent: a parent's
    inclusive figures are never smaller than its children's."""
    children: dict[str, list[ModuleRecord]] = {}
    for m in modules:
        if m.parent is not None:
            children.setdefault(m.parent, []).append(m)
    depth = {info.name: info.name.count(".") + (1 if info.name else 0) for info in table.infos}
    for m in sorted(modules, key=lambda r: -depth.get(r.name, 0)):  # deepest first
        if any(m.calls_per_step) or not children.get(m.name):
            continue
        kids = children[m.name]
        n = len(m.calls_per_step)
        m.fwd_us = [sum(k.fwd_us[s] for k in kids) for s in range(n)]
        m.bwd_us = [sum(k.bwd_us[s] for k in kids) for s in range(n)]
        m.flops_fwd = sum(k.flops_fwd for k in kids)
        m.flops_bwd = sum(k.flops_bwd for k in kids)
        m.act_bytes = 0


def _optimizer_running() -> bool:
    """True when called (through any depth) from inside ``Optimizer.step`` (a closure's forward)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "step" and isinstance(frame.f_locals.get("self"), torch.optim.Optimizer):
            return True
        frame = frame.f_back
    return False


def _union_us(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def _comm_summary(records: list[list[Any]], timing: StepTiming) -> dict[str, Any]:
    """All-reduce time of a step (union of bucket intervals) and the part not under backward."""
    us = timing.extra_us
    intervals = [(us[2 * k], us[2 * k + 1]) for k in range(len(records))]
    comm = _union_us(intervals)
    compute = _union_us(timing.root_backward_us)
    total = sum(b - a for a, b in comm)
    overlapped = 0.0
    for a, b in comm:
        for c, d in compute:
            overlapped += max(0.0, min(b, d) - max(a, c))
    return {
        "comm_us": total,
        "comm_exposed_us": max(total - overlapped, 0.0),
        "comm_buckets": len(records),
        "comm_bytes": int(sum(r[2] for r in records)),
    }


def _global_forward_pre_hooks() -> dict[int, Callable[..., Any]]:
    """torch's global forward pre-hooks (``register_module_forward_pre_hook``), by handle id."""
    from torch.nn.modules import module as module_mod

    return module_mod._global_forward_pre_hooks


def _call_new_pre_hooks(
    model: nn.Module,
    args: Any,
    kwargs: Any,
    global_before: set[int],
    local_before: set[int] | None = None,
) -> None:
    """Call, for a call of ``model`` already in progress, the forward pre-hooks added since
    ``global_before``/``local_before`` were taken, in torch's order (global, then the module's
    own; the module's own only when ``local_before`` is given)."""
    for hook_id, hook in list(_global_forward_pre_hooks().items()):
        if hook_id not in global_before:
            hook(model, args)
    if local_before is None:
        return
    for hook_id, hook in list(model._forward_pre_hooks.items()):
        if hook_id in local_before:
            continue
        if hook_id in model._forward_pre_hooks_with_kwargs:
            hook(model, args, {} if kwargs is None else kwargs)
        else:
            hook(model, args)


def _attach_trace(run: Run, trace_path: Path, table: ModuleTable) -> None:
    """Attribute the trace's ops and kernels to the layers and store them in the run."""
    from ..trace import summarize_trace

    summary = summarize_trace(trace_path)
    if summary.has_device:
        by_label = summary.node_attributes()
    else:  # CPU training: the CPU is the device; its "kernels" are the aten ops it ran
        n_steps = max(len(summary.steps), 1)
        by_label = {
            name: {
                "device_fwd_us": layer.cpu_self_fwd_us / n_steps,
                "device_bwd_us": layer.cpu_self_bwd_us / n_steps,
                "kernels": round((layer.fwd_ops + layer.bwd_ops) / n_steps),
            }
            for name, layer in summary.layers.items()
        }
    for data in run.ranks.values():
        data.trace_file = trace_path.name
        for m in data.modules:
            label = m.name if m.name else table.infos[0].label
            attrs = by_label.get(label)
            if attrs is not None:
                m.device_fwd_us = float(attrs["device_fwd_us"])
                m.device_bwd_us = float(attrs["device_bwd_us"])
                m.kernels = int(attrs["kernels"])
        data.trace_steps = [
            {
                "step": s.step,
                "ops": s.ops,
                "kernels": s.kernels,
                "device_us": s.device_us,
                "device_busy_us": s.device_busy_us,
                "device_idle_us": s.device_idle_us,
            }
            for s in summary.steps.values()
        ]


def _describe_optimizer(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Plain facts about an optimizer for the rules (class, sizes, fused/foreach flags)."""
    tensors = 0
    params = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            tensors += 1
            params += p.numel()
    defaults = optimizer.defaults
    return {
        "kind": type(optimizer).__name__,
        "param_tensors": tensors,
        "params": params,
        "fused": defaults.get("fused"),
        "foreach": defaults.get("foreach"),
        "lr": defaults.get("lr") if isinstance(defaults.get("lr"), (int, float)) else None,
    }


def _write_tensorboard(run: Run) -> None:
    from ..report.tensorboard import write_tensorboard

    try:
        write_tensorboard(run)
    except ImportError as exc:  # tensorboard missing: the run itself is saved and complete
        warnings.warn(f"topoprof: TensorBoard summaries not written ({exc})", stacklevel=3)


def profile(
    model: nn.Module,
    run_dir: str | Path = "runs/profile",
    *,
    steps: int = 10,
    skip_first: int = 3,
    mode: str = "layers",
    tags: dict[str, Any] | None = None,
    capture_graph: bool = True,
    clock: str | Clock = "auto",
    tensorboard: bool = True,
    step_on: str = "auto",
) -> Profiler:
    """Profile the training steps of ``model`` and save the run in ``run_dir``.

    Use it as a context manager (call ``prof.step()`` at the end of each iteration) or as a
    decorator (steps are then delimited by ``optimizer.step()``)::

        with topoprof.profile(model, "runs/baseline", steps=10, skip_first=3) as prof:
            for x, y in prof.data(loader):
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                prof.step()

    Args:
        model: the module whose forward is the model (its submodules are the layers).
        run_dir: directory the run is written to (created; an existing run is overwritten).
        steps: number of steps to profile after the warm-up.
        skip_first: warm-up steps, timed but not kept; the last one captures the layer graph
            (with ``skip_first=0`` one extra first step does).
        mode: ``"layers"``: hooks, NVTX ranges and host/CUDA-event timers; ``"trace"`` also
            runs torch.profiler over the profiled steps and writes its Kineto trace into
            ``run_dir`` (one file per rank), with topoprof's step, phase and layer ranges in it.
        tags: user facts stored with the run (batch size, precision...) for comparisons.
        capture_graph: capture the layer graph and FLOPs (one untimed step).
        clock: ``"auto"`` (CUDA events for a CUDA model, else host), ``"host"``, ``"cuda"``, or
            a :class:`topoprof.capture.clock.Clock` instance (deterministic tests).
        tensorboard: also write TensorBoard summaries into ``run_dir``.
        step_on: ``"auto"``: steps end at ``prof.step()``, or, in a loop that has not called it
            yet, when the model's next forward begins after an ``optimizer.step()``;
            ``"manual"``: only ``prof.step()`` ends a step (a loop that steps several
            optimizers per iteration, e.g. a GAN).

    Returns:
        The :class:`Profiler`; after the context its ``run`` attribute holds the saved run.
    """
    return Profiler(
        model,
        run_dir,
        steps=steps,
        skip_first=skip_first,
        mode=mode,
        tags=tags,
        capture_graph=capture_graph,
        clock=clock,
        tensorboard=tensorboard,
        step_on=step_on,
    )
