"""Capture of the layer graph from one real (eager) training step.

torch.fx cannot trace data-dependent control flow or Hugging Face models
(reference/environment.md), so the graph comes from a real forward pass: module hooks record
each call's shapes, and a ``TorchFunctionMode`` tracks which layer produced every tensor, also
through the functional ops between layers (residual adds, ``torch.cat``, attention matmuls,
views). An edge ``A -> B`` means a tensor produced by leaf module ``A`` (possibly transformed by
functional ops, listed in the edge's ``via``) entered leaf module ``B``. Containers get no
edges: they are the hierarchy (``parent``), the leaves are the data flow.

FLOPs come from the formulas of ``torch.utils.flop_counter`` (its ``flop_registry``, the same
counts ``FlopCounterMode`` gives), counted by a ``TorchDispatchMode`` of topoprof's own and
attributed by module identity, not by name: a forward op to every module call on the stack, a
backward op to the module call whose forward created the autograd node that runs it (autograd
sequence numbers, as for the timing). FlopCounterMode itself attributes by class-rooted names
(two instances of one class merge), puts hooks on leaf inputs (``torch.autograd.grad`` on
them then fails) and guesses the backward's module; so it is not used. Counted: the first
forward pass of the step that runs with gradients, and its backward.

All of this costs far more than timing (the mode alone adds about 3 us per op), so it runs on
one step that is never timed.
"""

from __future__ import annotations

import bisect
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry
from torch.utils.hooks import RemovableHandle

from ..run import EdgeRecord
from .modules import ModuleTable, dtype_name
from .timing import iter_tensors

__all__ = ["GraphCapture", "CapturedGraph"]

#: Functional ops remembered on an edge's ``via`` list (the first ones seen).
MAX_VIA_OPS = 8

#: Torch functions that make the host wait for the device (a device-to-host copy or a
#: data-dependent Python value). ``to``/``cpu`` count only when they move a CUDA tensor to the CPU.
SYNC_OPS = frozenset({"item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero", "_local_scalar_dense"})
DEVICE_TO_HOST_OPS = frozenset({"cpu", "to"})
OUTSIDE_MODEL = "<outside model>"

#: Tensor queries that launch no kernel (and that topoprof's own hooks make): not counted as
#: ops. Provenance still flows through them (``x.T`` is a ``__get__`` that returns a tensor).
METADATA_OPS = frozenset({
    "__get__", "__set__", "dim", "ndimension", "element_size", "numel", "nelement", "size",
    "stride", "storage_offset", "is_contiguous", "is_floating_point", "is_complex", "data_ptr",
    "register_hook", "get_device", "type", "__len__", "__repr__", "__format__", "__hash__",
    "requires_grad_", "retain_grad", "untyped_storage",
})


@dataclass
class CapturedGraph:
    """What one captured step yields, per module index and per (src, dst) name pair."""

    in_shapes: dict[int, list[list[int]]] = field(default_factory=dict)
    out_shapes: dict[int, list[list[int]]] = field(default_factory=dict)
    dtype: dict[int, str] = field(default_factory=dict)
    act_bytes: dict[int, int] = field(default_factory=dict)
    called: set[int] = field(default_factory=set)
    flops_fwd: dict[int, int] = field(default_factory=dict)
    flops_bwd: dict[int, int] = field(default_factory=dict)
    edges: dict[tuple[str, str], EdgeRecord] = field(default_factory=dict)
    ops: dict[int, dict[str, int]] = field(default_factory=dict)
    in_memory_format: dict[int, str] = field(default_factory=dict)
    host_syncs: dict[tuple[str, str, str], int] = field(default_factory=dict)
    autocast: dict[str, Any] = field(default_factory=dict)
    input_node: str = "input"
    output_node: str = "output"


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or str(func)
    return name.rstrip("_") if name.endswith("_") and not name.startswith("_") else name


class _Provenance(TorchFunctionMode):
    """Propagates "which layers produced this tensor" through every torch function call."""

    def __init__(self, capture: "GraphCapture") -> None:
        super().__init__()
        self.capture = capture

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        cap = self.capture
        op = _op_name(func)
        if op in SYNC_OPS or (op in DEVICE_TO_HOST_OPS and _moves_to_host(args, out)):
            cap.count_sync(op)
        if cap.depth == 0:  # outside the model's forward (loss, optimizer, data)
            return out
        if op not in METADATA_OPS:
            cap.count_op(op)
        operands = [src for t in iter_tensors((args, kwargs), 3) if (src := cap.producers(t))]
        if not operands:
            return out
        if len(operands) == 1:
            merged = operands[0]
        else:
            # Several operands (a residual add, cat, attention): from each operand keep the
            # producers that are not upstream of another producer of that same operand. A
            # residual stream then links each layer to the last layers that wrote to it instead
            # of to every layer before it (O(L^2) edges in a deep pre-norm transformer), while
            # parallel producers (q and k in q @ k^T) all stay.
            ancestors = cap.ancestors
            merged = {}
            for src in operands:
                for p, entry in src.items():
                    if p in merged:
                        continue
                    if len(src) > 1 and any(p in ancestors.get(o, ()) for o in src if o != p):
                        continue
                    merged[p] = entry
        result = {}
        for p, (order, via) in merged.items():
            if (not via or via[-1] != op) and len(via) < MAX_VIA_OPS:
                via = via + [op]
            result[p] = (order, via)
        for t in iter_tensors(out, 2):
            cap.set_producers(t, result)
        return out


class _FlopCount(TorchDispatchMode):
    """Counts FLOPs of every aten op with a formula in ``flop_registry``."""

    def __init__(self, capture: "GraphCapture") -> None:
        super().__init__()
        self.capture = capture

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.capture.count_flops(int(formula(*args, **kwargs, out_val=out)))
        return out


def _moves_to_host(args: Any, out: Any) -> bool:
    src = args[0] if args else None
    return (
        isinstance(src, torch.Tensor)
        and src.device.type != "cpu"
        and isinstance(out, torch.Tensor)
        and out.device.type == "cpu"
    )


def _memory_format(t: torch.Tensor) -> str:
    if t.is_contiguous():
        return "contiguous"
    if t.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    return "strided"


def _autocast_state(device_type: str) -> dict[str, Any]:
    try:
        enabled = torch.is_autocast_enabled(device_type)
        dtype = torch.get_autocast_dtype(device_type) if enabled else None
    except TypeError:  # torch < 2.4: no device_type argument
        enabled = torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()
        dtype = (torch.get_autocast_gpu_dtype() if device_type == "cuda" else torch.get_autocast_cpu_dtype()) if enabled else None
    return {"enabled": bool(enabled), "dtype": dtype_name(dtype) if dtype is not None else None}


class GraphCapture:
    """Hooks + provenance mode + FLOP counter, active for exactly one (untimed) step."""

    def __init__(self, table: ModuleTable, names_in_use: set[str], phase_of: Callable[[], str] = lambda: "other") -> None:
        self.table = table
        #: The step's current phase, so syncs inside ``optimizer.step()`` (Adam reading its
        #: CPU step counters) are told apart from the training loop's own.
        self.phase_of = phase_of
        self.result = CapturedGraph()
        # The input/output node names must not collide with a top-level module name.
        self.result.input_node = "input" if "input" not in names_in_use else "<input>"
        self.result.output_node = "output" if "output" not in names_in_use else "<output>"
        self.depth = 0
        # id(tensor) -> (weakref, {producer: (order, via ops)}); ``order`` is the producer's
        # position in the forward pass, so "most recent producer" is well defined.
        self._prov: dict[int, tuple[Any, dict[str, tuple[int, list[str]]]]] = {}
        self._order = 0
        #: producer -> every producer upstream of it (from the edges seen so far)
        self.ancestors: dict[str, set[str]] = {}
        self._handles: list[RemovableHandle] = []
        self._mode: _Provenance | None = None
        self._flops: _FlopCount | None = None
        self._stance: Any = None
        # Module calls of the capture step: [module index, parent call, seq0, seq1]; the
        # autograd nodes a call created have sequence numbers in [seq0, seq1).
        self._calls: list[list[int]] = []
        self._call_ids: list[int] = []
        self._seq0s: list[int] = []
        self._flop_root: int | None = None  # the root call whose FLOPs are counted
        self._counting_forward = False
        self._root_calls = 0
        self._stopped = False
        self._call_stack: list[int] = []

    # ------------------------------------------------------------- provenance
    def producers(self, t: torch.Tensor) -> dict[str, tuple[int, list[str]]] | None:
        entry = self._prov.get(id(t))
        if entry is None or entry[0]() is not t:
            return None
        return entry[1]

    def count_op(self, op: str) -> None:
        """A torch function ran in the innermost module call's own code."""
        if self._call_stack:
            counts = self.result.ops.setdefault(self._call_stack[-1], {})
            counts[op] = counts.get(op, 0) + 1

    def count_sync(self, op: str) -> None:
        """A device-to-host synchronisation: where (innermost module) and in which phase."""
        where = self.table.infos[self._call_stack[-1]].name if self._call_stack else OUTSIDE_MODEL
        key = (op, where, self.phase_of())
        self.result.host_syncs[key] = self.result.host_syncs.get(key, 0) + 1

    def set_producers(self, t: torch.Tensor, producers: dict[str, tuple[int, list[str]]]) -> None:
        try:
            ref = weakref.ref(t)
        except TypeError:
            return
        self._prov[id(t)] = (ref, producers)

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        for i, module in enumerate(self.table.modules):
            self._handles.append(module.register_forward_pre_hook(self._make_pre(i), with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._make_post(i), always_call=True))
        set_stance = getattr(getattr(torch, "compiler", None), "set_stance", None)
        if set_stance is not None:  # a torch.compile'd model runs eager here and stays compiled
            self._stance = set_stance("force_eager")
            self._stance.__enter__()
        self._flops = _FlopCount(self)
        self._flops.__enter__()
        self._mode = _Provenance(self)
        self._mode.__enter__()

    def stop(self) -> CapturedGraph:
        """Leave the modes and remove the hooks (idempotent); returns what was captured."""
        self._stopped = True
        if self._mode is not None:
            mode, self._mode = self._mode, None
            mode.__exit__(None, None, None)
        if self._flops is not None:
            flops, self._flops = self._flops, None
            flops.__exit__(None, None, None)
        if self._stance is not None:
            stance, self._stance = self._stance, None
            stance.__exit__(None, None, None)
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._prov.clear()
        return self.result

    # ------------------------------------------------------------- hooks
    def _make_pre(self, i: int):
        info = self.table.infos[i]
        name = info.name
        is_root = i == 0

        def pre(module: Any, args: Any, kwargs: Any = None) -> None:
            # ``kwargs`` has a default: a hook removed while torch iterates a snapshot of the
            # hooks is still called, without kwargs.
            if self._stopped or torch._C._current_graph_task_id() != -1:  # or recomputation in backward
                return
            self.depth += 1
            self._call_stack.append(i)
            self._open_call(i)
            tensors = list(iter_tensors(args)) + list(iter_tensors(kwargs))
            if is_root and self.depth == 1:
                self._enter_root(tensors)
            res = self.result
            if i not in res.called:
                res.called.add(i)
                res.in_shapes[i] = [list(t.shape) for t in tensors]
                four_d = [t for t in tensors if t.dim() == 4]
                if four_d:
                    res.in_memory_format[i] = _memory_format(four_d[0])
            if info.leaf:
                for t in tensors:
                    self._add_edges(t, name)

        return pre

    def _make_post(self, i: int):
        info = self.table.infos[i]
        name = info.name
        is_root = i == 0

        def post(module: Any, args: Any, output: Any) -> None:
            if self._stopped or torch._C._current_graph_task_id() != -1:
                return
            self.depth = max(self.depth - 1, 0)
            if self._call_stack:
                self._call_stack.pop()
            if self._call_ids:
                call = self._calls[self._call_ids.pop()]
                call[3] = torch._C._autograd._get_sequence_nr()
                if call[1] == -1 and self._flop_root is not None and call is self._calls[self._flop_root]:
                    self._counting_forward = False
            if output is None:
                return
            res = self.result
            outs = list(iter_tensors(output))
            if i not in res.out_shapes:
                res.out_shapes[i] = [list(t.shape) for t in outs]
                if outs:
                    res.dtype[i] = dtype_name(outs[0].dtype)
            if self._root_calls <= 1:
                res.act_bytes[i] = res.act_bytes.get(i, 0) + sum(t.numel() * t.element_size() for t in outs)
            if info.leaf:
                self._order += 1
                for t in outs:
                    self.set_producers(t, {name: (self._order, [])})
            if is_root and self.depth == 0:
                for t in outs:
                    self._add_edges(t, res.output_node)

        return post

    def _open_call(self, i: int) -> None:
        parent = self._call_ids[-1] if self._call_ids else -1
        self._call_ids.append(len(self._calls))
        seq0 = torch._C._autograd._get_sequence_nr()
        self._calls.append([i, parent, seq0, 2**63])
        self._seq0s.append(seq0)
        if parent == -1 and self._flop_root is None and torch.is_grad_enabled():
            self._flop_root = len(self._calls) - 1  # the first forward pass with gradients
            self._counting_forward = True

    def count_flops(self, flops: int) -> None:
        """Add ``flops`` of the op running now to the module calls it belongs to."""
        if not flops or self._flop_root is None:
            return
        res = self.result
        if torch._C._current_graph_task_id() == -1:
            if not self._counting_forward:
                return
            for i in set(self._call_stack):
                res.flops_fwd[i] = res.flops_fwd.get(i, 0) + flops
            return
        node = torch._C._current_autograd_node()
        if node is None:
            return
        k = self._owning_call(node._sequence_nr())
        if k is None:
            return
        seen = set()
        while k >= 0:  # the call and its ancestors (inclusive counts)
            m = self._calls[k][0]
            if m not in seen:
                seen.add(m)
                res.flops_bwd[m] = res.flops_bwd.get(m, 0) + flops
            k = self._calls[k][1]

    def _owning_call(self, seq: int) -> int | None:
        """The innermost call of the counted forward pass that created autograd node ``seq``."""
        root = self._flop_root
        calls = self._calls
        if root is None or not (calls[root][2] <= seq < calls[root][3]):
            return None
        # The last call that began at or before ``seq``, then up its parents to one that
        # contains it (calls nest, so the innermost containing call is on that chain).
        k = bisect.bisect_right(self._seq0s, seq) - 1
        while k >= root:
            c = calls[k]
            if c[2] <= seq < c[3]:
                return k
            k = c[1]
        return None

    def _enter_root(self, tensors: list[torch.Tensor]) -> None:
        self._root_calls += 1
        if self._root_calls == 1:
            device = tensors[0].device.type if tensors else "cpu"
            self.result.autocast = _autocast_state(device)
        for t in tensors:
            self.set_producers(t, {self.result.input_node: (0, [])})

    def enter_root_call(self, args: Any, kwargs: Any) -> None:
        """Capture started inside the root's forward pre-hook (a step boundary found there):
        do what the root's own capture pre-hook would have done for this call."""
        self.depth = 1
        self._call_stack = [0]
        self._open_call(0)
        tensors = list(iter_tensors(args)) + list(iter_tensors(kwargs))
        self._enter_root(tensors)
        res = self.result
        if 0 not in res.called:
            res.called.add(0)
            res.in_shapes[0] = [list(t.shape) for t in tensors]

    def _add_edges(self, t: torch.Tensor, dst: str) -> None:
        src = self.producers(t)
        if not src:
            return
        edges = self.result.edges
        upstream = self.ancestors.setdefault(dst, set())
        for p, (_, via) in src.items():
            upstream.add(p)
            upstream |= self.ancestors.get(p, set())
            key = (p, dst)
            e = edges.get(key)
            if e is None:
                edges[key] = EdgeRecord(
                    src=p,
                    dst=dst,
                    shape=list(t.shape),
                    dtype=dtype_name(t.dtype),
                    bytes=t.numel() * t.element_size(),
                    via=list(via),
                )
            else:
                e.count += 1
                for op in via:
                    if op not in e.via and len(e.via) < MAX_VIA_OPS:
                        e.via.append(op)
