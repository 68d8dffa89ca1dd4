"""The PyTorch Profiler TensorBoard plugin (optional extra ``tb-profiler``) opens trace-mode runs.

The plugin's page needs the internet (Google Charts), so it is tested through its JSON API:
the runs it lists, a run's workers and spans, and the overview of a span.
"""

from __future__ import annotations

import pytest
import torch

import topoprof
from fixtures.models import MLP
from tbhelpers import TensorBoardServer, wait_until

pytest.importorskip("torch_tb_profiler", reason="the tb-profiler extra (torch-tb-profiler) is not installed")

PLUGIN = "/data/plugin/pytorch_profiler"


def _profile(path, mode):
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, path, steps=2, skip_first=1, mode=mode, tags={"batch_size": 4}) as prof:
        for _ in range(4):
            model(torch.randn(4, 8)).sum().backward()
            opt.step()
            opt.zero_grad()
            prof.step()
    return prof.run


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("logdir")
    _profile(logdir / "traced", "trace")
    _profile(logdir / "layers", "layers")
    srv = TensorBoardServer(logdir, logdir.parent / "tensorboard.log").start()
    try:
        yield srv
    finally:
        srv.stop()


def test_plugin_lists_the_trace_mode_run_and_answers_its_overview(server):
    def traced_listed():
        runs = (server.get(f"{PLUGIN}/runs") or {}).get("runs") or []
        return runs if "traced" in runs else None

    runs = wait_until(traced_listed, 60, "the profiler plugin to list the traced run")
    assert "traced" in runs and "layers" not in runs  # only trace mode writes Kineto traces
    views = server.get(f"{PLUGIN}/views", run="traced")
    assert "Overview" in views
    workers = server.get(f"{PLUGIN}/workers", run="traced", view="Overview")
    assert len(workers) == 1 and workers[0].endswith("_rank0")
    spans = server.get(f"{PLUGIN}/spans", run="traced", worker=workers[0])
    assert spans
    overview = server.get(f"{PLUGIN}/overview", run="traced", worker=workers[0], span=spans[0])
    steps = overview["steps"]["rows"]
    assert len(steps) == 2  # ProfilerStep#1 and #2: the profiled steps, not the warm-up


def test_both_runs_are_tensorboard_runs(server):
    runs = server.wait_for_runs({"traced", "layers"})
    assert {"traced", "layers"} <= set(runs)
