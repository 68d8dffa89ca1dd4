"""mode="trace": torch.profiler over the profiled steps, topoprof's ranges in the Kineto trace."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from torch import nn

import topoprof
from fixtures.models import MLP


def _train(model, prof, iters):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(iters):
        model(torch.randn(4, 8)).sum().backward()
        opt.step()
        opt.zero_grad()
        prof.step()


def _annotations(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        trace = json.load(f)
    events = [e for e in trace["traceEvents"] if e.get("cat") == "user_annotation" and e.get("ph") == "X"]
    return sorted(events, key=lambda e: (e["ts"], -e["dur"]))


@pytest.fixture(scope="module")
def trace_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "run"
    model = MLP(width=8, depth=1)
    with topoprof.profile(model, path, steps=2, skip_first=1, mode="trace", tensorboard=False) as prof:
        _train(model, prof, 5)
    return prof.run


def test_one_trace_file_per_worker_in_the_tensorboard_plugin_layout(trace_run):
    files = sorted(p.name for p in trace_run.path.glob("*.pt.trace.json"))
    assert len(files) == 1
    host = trace_run.rank().host
    assert files[0].startswith(f"{host}_rank0.") and files[0].endswith(".pt.trace.json")
    assert trace_run.manifest.mode == "trace"
    assert not list(trace_run.path.glob(".*tmp"))


def test_trace_holds_exactly_the_profiled_steps_with_topoprof_ranges(trace_run):
    (path,) = trace_run.path.glob("*.pt.trace.json")
    names = [e["name"] for e in _annotations(path) if not e["name"].startswith("Optimizer.")]
    step = lambda n: [
        f"ProfilerStep#{n}", f"step {n}", "forward", "fwd MLP", "fwd body", "fwd body.0", "fwd body.1",
        "fwd head", "backward", "bwd MLP", "bwd head", "bwd body", "bwd body.1", "bwd body.0", "optimizer",
    ]
    assert names == step(1) + step(2)  # the warm-up step 0 and the steps after 2 are not traced


def test_ranges_nest_in_time(trace_run):
    (path,) = trace_run.path.glob("*.pt.trace.json")
    events = {e["name"]: e for e in _annotations(path) if "#" not in e["name"] or e["name"].startswith("Profiler")}
    def inside(inner, outer):
        a, b = events[inner], events[outer]
        return b["ts"] <= a["ts"] and a["ts"] + a["dur"] <= b["ts"] + b["dur"]
    assert inside("fwd body.0", "fwd body") and inside("fwd body", "fwd MLP") and inside("fwd MLP", "forward")
    assert inside("bwd body.0", "bwd body") and inside("bwd MLP", "backward") and inside("backward", "step 2")


def test_trace_mode_leaves_no_profiler_running_and_no_hooks(tmp_path):
    model = MLP()
    with topoprof.profile(model, tmp_path / "r", steps=1, skip_first=1, mode="trace", tensorboard=False) as prof:
        _train(model, prof, 3)
    assert torch.autograd.profiler._is_profiler_enabled is False
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_exception_mid_trace_still_writes_the_trace(tmp_path):
    model = MLP()
    with pytest.raises(RuntimeError):
        with topoprof.profile(model, tmp_path / "r", steps=5, skip_first=1, mode="trace", tensorboard=False) as prof:
            _train(model, prof, 2)
            raise RuntimeError("stop")
    assert len(list((tmp_path / "r").glob("*.pt.trace.json"))) == 1
    assert torch.autograd.profiler._is_profiler_enabled is False


def test_trace_attribution_is_stored_on_the_layers(trace_run):
    rank = topoprof.load(trace_run.path).rank()
    assert rank.trace_file and (trace_run.path / rank.trace_file).exists()
    assert [s["step"] for s in rank.trace_steps] == [1, 2]
    lin = rank.module("body.0")
    # CPU run: the aten ops of the layer's own ranges (linear/addmm forward, mm/t backward)
    assert lin.kernels >= 2 and lin.device_fwd_us > 0 and lin.device_bwd_us > 0
    g = trace_run.graph()
    assert g.nodes["body.0"]["kernels"] == lin.kernels
    assert "device_fwd_us" in g.nodes["head"]


def test_layers_mode_has_no_trace_attributes(tmp_path):
    model = MLP()
    with topoprof.profile(model, tmp_path / "r", steps=1, skip_first=1, tensorboard=False) as prof:
        _train(model, prof, 2)
    assert prof.run.rank().module("body.0").kernels is None
    assert "kernels" not in prof.run.graph().nodes["body.0"]
    assert not list((tmp_path / "r").glob("*.pt.trace.json"))


def test_layer_ranges_stay_in_the_trace_after_a_backward_that_raised(tmp_path):
    class Fail(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            raise RuntimeError("no")

    model = MLP(width=8, depth=1)
    fail = {"now": False}
    # inside the model: the backward fails after topoprof's backward ranges have opened
    model.body[0].register_forward_hook(lambda m, a, out: Fail.apply(out) if fail["now"] else None)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, tmp_path / "r", steps=3, skip_first=1, mode="trace", tensorboard=False) as prof:
        for i in range(4):
            fail["now"] = i == 1
            out = model(torch.randn(4, 8)).sum()
            try:
                out.backward()
            except RuntimeError:
                fail["now"] = False
                model(torch.randn(4, 8)).sum().backward()  # the loop retries the batch
            opt.step()
            opt.zero_grad()
            prof.step()
    (path,) = (tmp_path / "r").glob("*.pt.trace.json")
    names = [e["name"] for e in _annotations(path)]
    # 3 steps plus the retried batch; the failed backward's ranges are closed, not dropped
    assert names.count("fwd body.0") == 4
    assert names.count("bwd body.0") == 4
