"""Attribution of ops to layer, phase and step ranges on REAL torch.profiler traces (CPU).

A small model runs three training steps under ``torch.profiler``; its module calls are wrapped
in ``fwd <name>`` ranges by forward pre/post hooks and, like topoprof's capture, in
``bwd <name>`` ranges opened by a pre-hook on the output's autograd node and closed by a hook on
the input's gradient. The loop is wrapped in ``step N`` and phase ranges.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from topoprof.trace import BWD, FWD, attribute, load_trace, summarize, summarize_trace
from topoprof.trace.intervals import (
    enclosing_parent,
    innermost_containing,
    nearest_marked_ancestor,
    nest_intervals,
    sort_intervals,
    union_length_in_windows,
)

STEPS = 3
LAYERS = ["<root>", "conv", "act", "fc"]


def _profile(path: Path, mode: str) -> Path:
    """Profile STEPS training steps; ``mode``: "ranges" (fwd + bwd ranges), "fwd" (fwd ranges
    only) or "plain" (no topoprof ranges; the profiler's ProfilerStep#N marks steps)."""
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.profiler import ProfilerActivity, profile, record_function, schedule

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.act = nn.ReLU()
            self.fc = nn.Linear(4 * 6 * 6, 5)

        def forward(self, x: Any) -> Any:
            y = self.act(self.conv(x))
            y = y + y  # a functional op of the root module
            return self.fc(y.flatten(1))

    torch.manual_seed(0)
    model = Net()
    names = {m: (n or "<root>") for n, m in model.named_modules()}
    open_ranges: dict[Any, Any] = {}
    handles = []

    def pre(m: nn.Module, args: Any) -> None:
        rf = record_function("fwd " + names[m])
        rf.__enter__()
        open_ranges[("f", m)] = rf

    def post(m: nn.Module, args: Any, out: Any) -> None:
        open_ranges.pop(("f", m)).__exit__(None, None, None)
        ins = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        if mode != "ranges" or out.grad_fn is None or not ins:
            return

        def start(grads: Any, m: nn.Module = m) -> None:
            rf = record_function("bwd " + names[m])
            rf.__enter__()
            open_ranges[("b", m)] = rf

        def end(grad: Any, m: nn.Module = m) -> None:
            rf = open_ranges.pop(("b", m), None)
            if rf is not None:
                rf.__exit__(None, None, None)

        out.grad_fn.register_prehook(start)
        ins[0].register_hook(end)

    if mode != "plain":
        for m in model.modules():
            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    y = torch.randint(0, 5, (2,))

    def train_step() -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    try:
        if mode == "plain":
            sched = schedule(wait=0, warmup=1, active=STEPS, repeat=1)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True, schedule=sched,
                         on_trace_ready=lambda p: p.export_chrome_trace(str(path))) as prof:
                for _ in range(STEPS + 1):
                    train_step()
                    prof.step()
        else:
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                for i in range(STEPS):
                    with record_function(f"step {i}"):
                        with record_function("forward"):
                            loss = nn.functional.cross_entropy(model(x), y)
                        with record_function("backward"):
                            loss.backward()
                        with record_function("optimizer"):
                            opt.step()
                            opt.zero_grad()
            prof.export_chrome_trace(str(path))
    finally:
        for h in handles:
            h.remove()
    assert not open_ranges
    return path


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("traces")
    out = {mode: _profile(d / f"{mode}.json", mode) for mode in ("ranges", "fwd", "plain")}
    # the fwd-only trace without its fwdbwd flows: links must come from sequence numbers
    doc = orjson.loads(out["fwd"].read_bytes())
    doc["traceEvents"] = [e for e in doc["traceEvents"] if e.get("cat") != "fwdbwd"]
    out["noflows"] = d / "noflows.json"
    out["noflows"].write_bytes(orjson.dumps(doc))
    return out


def _placement(path: Path) -> dict[str, set[tuple[Any, ...]]]:
    """op name -> {(layer or None, "fwd"/"bwd"/None, linked)} over all its events."""
    a = attribute(load_trace(path))
    names = a.trace.names
    out: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    for i in np.flatnonzero(a.host_is_op).tolist():
        layer = a.layer_names[a.host_layer[i]] if a.host_layer[i] >= 0 else None
        direction = {FWD: "fwd", BWD: "bwd"}.get(int(a.host_dir[i]))
        out[names[a.trace.name[a.host_rows[i]]]].add((layer, direction, bool(a.host_linked[i])))
    return out


EVAL = "autograd::engine::evaluate_function: "
#: op -> the (layer, direction) of every instance of the op, whatever the mode
EXPECTED: dict[str, set[tuple[str | None, str | None]]] = {k: {v} for k, v in {
    "aten::conv2d": ("conv", "fwd"),
    "aten::mkldnn_convolution": ("conv", "fwd"),
    "aten::convolution_backward": ("conv", "bwd"),
    EVAL + "ConvolutionBackward0": ("conv", "bwd"),
    "aten::relu": ("act", "fwd"),
    "aten::threshold_backward": ("act", "bwd"),
    EVAL + "ReluBackward0": ("act", "bwd"),
    "aten::flatten": ("<root>", "fwd"),
    EVAL + "AddBackward0": ("<root>", "bwd"),
    EVAL + "ViewBackward0": ("<root>", "bwd"),
    "aten::addmm": ("fc", "fwd"),
    "aten::mm": ("fc", "bwd"),
    EVAL + "AddmmBackward0": ("fc", "bwd"),
    EVAL + "TBackward0": ("fc", "bwd"),
    "aten::log_softmax": (None, None),
    "aten::nll_loss_backward": (None, None),
}.items()}
# ``y + y`` in <root>'s forward; in backward the engine sums the two gradients of ``y`` (inside
# bwd <root>, or linked through AddBackward0's sequence number)
EXPECTED["aten::add"] = {("<root>", "fwd"), ("<root>", "bwd")}


@pytest.mark.parametrize("mode", ["ranges", "fwd", "noflows"])
def test_ops_land_on_their_layer_and_direction(traces: dict[str, Path], mode: str) -> None:
    placement = _placement(traces[mode])
    for op, want in EXPECTED.items():
        got = {(layer, d) for layer, d, _ in placement[op]}
        assert got == want, (mode, op, placement[op])
    linked = {op: {lk for _, _, lk in placement[op]} for op in EXPECTED}
    if mode == "ranges":  # every backward op above sits inside its bwd range
        assert linked["aten::mm"] == {False} and linked["aten::convolution_backward"] == {False}
    else:  # no bwd ranges: backward ops reach the layer through fwd/bwd links
        assert linked["aten::mm"] == {True} and linked["aten::convolution_backward"] == {True}


def test_layer_stats_count_ranges_and_ops(traces: dict[str, Path]) -> None:
    s = summarize_trace(traces["ranges"])
    assert list(s.layers) == LAYERS  # order of first appearance
    for name in LAYERS:
        layer = s.layers[name]
        assert (layer.fwd_calls, layer.bwd_calls) == (STEPS, STEPS)
        assert layer.fwd_ops > 0 and layer.bwd_ops > 0 and layer.bwd_ops_linked == 0
        assert layer.cpu_self_fwd_us > 0 and layer.cpu_self_bwd_us > 0
        assert layer.device_fwd_us == 0.0 and layer.kernels == 0
    conv = s.layers["conv"]
    assert {o.name for o in conv.top_ops} >= {"aten::mkldnn_convolution", "aten::convolution_backward"}
    assert [o.calls for o in conv.top_ops if o.name == "aten::conv2d"] in ([], [STEPS])
    fwd = summarize_trace(traces["fwd"])
    assert fwd.layers["fc"].bwd_calls == 0
    assert fwd.layers["fc"].bwd_ops == fwd.layers["fc"].bwd_ops_linked > 0
    assert fwd.layers["conv"].bwd_ops == s.layers["conv"].bwd_ops


def test_self_times_partition_the_top_level_op_time(traces: dict[str, Path]) -> None:
    a = attribute(load_trace(traces["ranges"]))
    ops = a.host_is_op
    top = ops & ((a.host_parent < 0) | ~a.host_is_op[np.maximum(a.host_parent, 0)])
    assert a.host_self_us[ops].sum() == pytest.approx(a.host_dur_us[top].sum(), rel=1e-9)
    assert (a.host_self_us[ops] >= 0).all()
    s = summarize(a)
    per_layer = sum(layer.cpu_self_fwd_us + layer.cpu_self_bwd_us for layer in s.layers.values())
    assert per_layer + s.unattributed.cpu_self_us == pytest.approx(s.total.cpu_self_us)
    assert sum(o.cpu_self_us for o in s.ops) == pytest.approx(s.total.cpu_self_us)


def test_steps_and_phases(traces: dict[str, Path]) -> None:
    s = summarize_trace(traces["ranges"])
    assert list(s.steps) == list(range(STEPS))
    assert set(s.phases) == {"forward", "backward", "optimizer", "other"}
    for name in ("forward", "backward", "optimizer"):
        assert s.phases[name].calls == STEPS and s.phases[name].ops > 0, name
    assert s.phases["other"].calls == 0
    assert sum(p.ops for p in s.phases.values()) == s.total.ops
    assert {o.name for o in s.phases["optimizer"].top_ops} & {"aten::add_", "aten::_foreach_add_", "aten::zero_"}
    for step in s.steps.values():
        assert step.ops > 0 and step.dur_us > 0
        assert sum(step.phases_us.values()) == pytest.approx(step.dur_us)
        assert step.device_busy_us is None and step.device_idle_us is None  # CPU-only trace
    assert sum(st.ops for st in s.steps.values()) == s.total.ops  # every op is inside a step
    a = attribute(load_trace(traces["ranges"]))
    phase_of = {n: a.host_phase[a.host_is_op & (a.trace.name[a.host_rows] == a.trace.names.index(n))]
                for n in ("aten::conv2d", "aten::convolution_backward", "aten::nll_loss_backward")}
    assert set(phase_of["aten::conv2d"].tolist()) == {1}  # PHASES.index("forward")
    assert set(phase_of["aten::convolution_backward"].tolist()) == {2}
    assert set(phase_of["aten::nll_loss_backward"].tolist()) == {2}


def test_plain_trace_gives_op_level_results(traces: dict[str, Path]) -> None:
    s = summarize_trace(traces["plain"])
    assert not s.has_layer_ranges and not s.has_device
    assert s.layers == {} and s.phases == {} and s.node_attributes() == {}
    ops = {o.name: o for o in s.ops}
    assert ops["aten::conv2d"].calls == STEPS
    assert ops["aten::addmm"].calls == STEPS and ops["aten::addmm"].cpu_self_us > 0
    assert s.unattributed.ops == s.total.ops > 0
    assert len(s.steps) == STEPS  # from ProfilerStep#N
    assert s.ops[0].cpu_self_us == max(o.cpu_self_us for o in s.ops)


# ---------------------------------------------------------------------------------------------
# interval helpers against brute force


def _random_intervals(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    start = rng.integers(0, 50, n).astype(float)
    return start, start + rng.integers(0, 20, n)


def test_enclosing_parent_and_innermost_containing_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        s, e = _random_intervals(rng, n)
        g = rng.integers(0, 3, n)
        o = sort_intervals(s, e, g)
        s, e, g = s[o], e[o], g[o]
        parent = enclosing_parent(s, e, g)
        for i in range(n):
            cands = [j for j in range(i) if g[j] == g[i] and e[j] >= e[i]]
            assert parent[i] == (cands[-1] if cands else -1)
        m = g == 0
        pts = rng.uniform(-1, 75, 20)
        got = innermost_containing(s[m], e[m], enclosing_parent(s[m], e[m]), pts)
        for p, k in zip(pts, got):
            cands = [j for j in range(int(m.sum())) if s[m][j] <= p <= e[m][j]]
            assert k == (cands[-1] if cands else -1)


def test_nest_intervals_makes_the_shorter_of_two_overlapping_ranges_the_child() -> None:
    # child opened just before its parent in the same hook (shared output tensor)
    s, e = nest_intervals(np.array([10.0, 12.0, 40.0]), np.array([30.0, 100.0, 50.0]))
    assert s.tolist() == [10.0, 10.0, 40.0] and e.tolist() == [30.0, 100.0, 50.0]
    s, e = nest_intervals(np.array([0.0, 8.0]), np.array([10.0, 12.0]))  # siblings interleaving
    assert s.tolist() == [0.0, 8.0] and e.tolist() == [12.0, 12.0]
    rng = np.random.default_rng(1)
    for _ in range(100):
        s, e = nest_intervals(*_random_intervals(rng, int(rng.integers(1, 25))))
        for i in range(s.size):  # properly nested afterwards
            for j in range(s.size):
                assert not (s[i] < s[j] <= e[i] < e[j])


def test_nearest_marked_ancestor_and_union_length() -> None:
    rng = np.random.default_rng(2)
    for _ in range(100):
        n = int(rng.integers(1, 30))
        parent = np.array([-1] + [int(rng.integers(-1, i)) for i in range(1, n)])
        marked = rng.random(n) < 0.3
        got = nearest_marked_ancestor(parent, marked)
        for i in range(n):
            j = i
            while j >= 0 and not marked[j]:
                j = parent[j]
            assert got[i] == j
    u = union_length_in_windows(np.array([0.0, 5.0, 20.0]), np.array([10.0, 12.0, 30.0]),
                                np.array([0.0, 11.0, 25.0]), np.array([40.0, 21.0, 26.0]))
    assert u.tolist() == [22.0, 2.0, 1.0]


@pytest.mark.parametrize(
    "events",
    [
        [],
        [{"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "x"}}],
        [{"ph": "X", "cat": "kernel", "name": "k", "pid": 0, "tid": 7, "ts": 1.0, "dur": 2.0, "args": {"correlation": 5}}],
        [{"ph": "X", "cat": "user_annotation", "name": "fwd a", "pid": 1, "tid": 1, "ts": 1.0, "dur": 2.0},
         {"ph": "X", "cat": "user_annotation", "name": "step 0", "pid": 1, "tid": 1, "ts": 0.0, "dur": 5.0}],
        [{"ph": "X", "cat": "cpu_op", "name": "aten::x", "pid": 1, "tid": 1, "ts": None, "dur": 2.0},
         {"ph": "X", "cat": "cpu_op", "name": "aten::y", "pid": 1, "tid": 1, "ts": 3.0},
         {"ph": "X", "cat": "user_annotation", "name": "fwd a", "pid": 1, "tid": 1, "ts": 1.0, "dur": -2.0}],
    ],
    ids=["empty", "metadata-only", "kernel-without-launcher", "ranges-without-ops", "missing-and-negative-times"],
)
def test_degenerate_traces_summarise(tmp_path: Path, events: list[dict[str, Any]]) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(orjson.dumps({"traceEvents": events}))
    s = summarize_trace(path)
    assert s.total.ops <= 1
    assert s.unattributed.device_us == s.total.device_us
    assert set(s.node_attributes()) == set(s.layers)
