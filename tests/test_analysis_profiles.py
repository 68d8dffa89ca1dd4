"""The rules on real captures (topoprof.profile on tiny CPU models): each fires on its case, not on
its control. Where the rule is about what capture records (a slow loader, .item(), odd widths,
fp32 matmuls, DataParallel, a looped cell), the run comes from a real profile."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import topoprof
from fixtures.models import MLP, LoopedCell
from topoprof.analysis import AnalysisOptions

STEPS = 4
SLOW_BATCH_S = 0.02


def _profile(model, tmp_path, *, batches=None, sync=False, autocast=False, opt=None, name="r"):
    """Train ``model`` for warm-up + STEPS steps under the profiler; return the saved run."""
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.01)
    first = next(p for p in model.parameters())
    width = getattr(model, "in_features", None) or first.shape[-1]
    batches = batches if batches is not None else [torch.randn(16, width) for _ in range(STEPS + 2)]
    with topoprof.profile(model, tmp_path / name, steps=STEPS, skip_first=1, tensorboard=False) as prof:
        for x in prof.data(batches):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model(x).float().pow(2).mean()
            loss.backward()
            if sync:
                loss.item()
            opt.step()
            opt.zero_grad()
            prof.step()
    return prof.run


class _SlowLoader:
    """A data loader whose every batch takes SLOW_BATCH_S to produce."""

    def __init__(self, n: int, width: int) -> None:
        self.n, self.width = n, width

    def __iter__(self):
        for _ in range(self.n):
            time.sleep(SLOW_BATCH_S)
            yield torch.randn(16, self.width)


def test_slow_data_loader_is_input_bound(tmp_path):
    run = _profile(MLP(), tmp_path, batches=_SlowLoader(STEPS + 2, 8))
    f = topoprof.analyze(run).finding("input-bound")
    assert f is not None
    assert f.evidence_value("data phase") >= SLOW_BATCH_S * 1e6 * 0.9
    assert f.evidence_value("data share of step") > 0.5


def test_fast_data_is_not_input_bound(tmp_path):
    assert topoprof.analyze(_profile(MLP(), tmp_path)).finding("input-bound") is None


def test_item_every_step_is_a_host_sync(tmp_path):
    f = topoprof.analyze(_profile(MLP(), tmp_path, sync=True)).finding("host-sync")
    assert f is not None
    assert f.evidence_value("item outside the model") == 1
    assert f.evidence_value("host syncs per step (capture)") == 1


def test_no_item_no_host_sync_even_with_adamw(tmp_path):
    model = MLP()
    run = _profile(model, tmp_path, opt=torch.optim.AdamW(model.parameters()))
    assert any(s["op"] == "item" for s in run.rank().host_syncs)  # AdamW's own step-counter reads
    assert topoprof.analyze(run).finding("host-sync") is None


def _wide(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(32, width), nn.ReLU(), nn.Linear(width, 32))


def test_1001_wide_linear_layers_are_misaligned(tmp_path):
    f = topoprof.analyze(_profile(_wide(1001), tmp_path)).finding("tensor-core-alignment")
    assert f is not None
    assert set(f.layers) == {"0", "2"}
    assert f.evidence_value("0 out_features") == 1001 and f.evidence_value("2 in_features") == 1001


def test_1024_wide_linear_layers_are_aligned(tmp_path):
    assert topoprof.analyze(_profile(_wide(1024), tmp_path)).finding("tensor-core-alignment") is None


def test_fp32_matmul_heavy_model_on_a100(tmp_path):
    run = _profile(MLP(width=256, depth=4), tmp_path)
    analysis = topoprof.analyze(run, "dgx-a100")
    f = analysis.finding("fp32-matmul")
    assert f is not None and f.evidence_value("fp32 share of FLOPs") == 1.0
    assert analysis.finding("fp32-matmul").layers  # the Linear layers
    assert topoprof.analyze(run, "dgx-1-p100").finding("fp32-matmul") is None  # no tensor cores


def test_bf16_autocast_model_is_not_fp32_matmul(tmp_path):
    run = _profile(MLP(width=256, depth=4), tmp_path, autocast=True)
    assert run.rank().settings["autocast"] == {"enabled": True, "dtype": "bfloat16"}
    assert topoprof.analyze(run, "dgx-a100").finding("fp32-matmul") is None


def test_dataparallel_wrapper_is_found(tmp_path):
    model = nn.DataParallel(MLP())
    f = topoprof.analyze(_profile(model, tmp_path)).finding("dataparallel")
    assert f is not None and f.layers == ("",)
    assert topoprof.analyze(_profile(MLP(), tmp_path, name="plain")).finding("dataparallel") is None


def test_looped_cell_critical_path_and_projection(tmp_path):
    model = LoopedCell(steps=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, tmp_path / "rnn", steps=STEPS, skip_first=1, tensorboard=False) as prof:
        for _ in range(STEPS + 2):
            model(torch.randn(2, 3, 4)).sum().backward()
            opt.step()
            opt.zero_grad()
            prof.step()
    graph = prof.run.graph()
    assert graph.has_edge("cell", "cell")  # the self-loop of a module called in a loop
    analysis = topoprof.analyze(prof.run, "dgx-h100")
    assert analysis.critical_path.nodes == ("input", "cell", "head", "output")
    cell = next(r for r in analysis.roofline if r.name == "cell")
    assert cell.cost.calls_per_pass == 3


def test_real_run_nvlink_placement_on_dgx1(tmp_path):
    run = _profile(MLP(width=512, depth=4), tmp_path)
    bad = topoprof.analyze(run, "dgx-1", AnalysisOptions(gpus=(0, 5)))
    assert bad.finding("nvlink-placement") is not None
    assert topoprof.analyze(run, "dgx-1", AnalysisOptions(gpus=(0, 1))).finding("nvlink-placement") is None


@pytest.mark.parametrize("target", ["dgx-1", "dgx-a100", "dgx-h100", "h100"])
def test_every_target_analyses_a_real_run(tmp_path, target):
    run = _profile(MLP(), tmp_path)
    analysis = topoprof.analyze(run, target)
    assert analysis.projection.single.step_us > 0
    assert analysis.finding("hot-layers") is not None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(sys.platform != "linux", reason="gloo multi-process runs on Linux")
def test_real_ddp_job_with_a_slow_rank(tmp_path):
    """Two gloo ranks (examples/ddp_train.py); rank 1 sleeps 30 ms in its data phase. DDP evens the
    steps out, so the straggler shows in its local phase; the run's DDP facts and measured
    all-reduce reach the analysis."""
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), str(repo / "examples" / "ddp_train.py"), "--out", "run",
           "--steps", "3", "--skip-first", "1", "--slow-rank", "1", "--slow-ms", "30"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    analysis = topoprof.analyze(tmp_path / "run", "dgx-1")
    f = analysis.finding("straggler-rank")
    assert f is not None and f.evidence_value("rank 1 slow phase") == "data"
    assert f.evidence_value("rank 1 data excess") > 20_000
    assert not any("no measured DDP communication" in n for n in analysis.notes)
    assert analysis.finding("ddp-backend") is None  # gloo on CPU is right


def test_trace_mode_run_is_analysed(tmp_path):
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with topoprof.profile(model, tmp_path / "t", steps=3, skip_first=1, mode="trace", tensorboard=False) as prof:
        for _ in range(5):
            model(torch.randn(4, 32)).sum().backward()
            opt.step()
            opt.zero_grad()
            prof.step()
    rank = prof.run.rank()
    assert rank.trace_steps and rank.modules[1].kernels is not None
    analysis = topoprof.analyze(prof.run, "dgx-h100")
    # on a CPU run the trace's "kernels" are aten ops: the roofline keeps its own kernel estimate
    fc = next(r for r in analysis.roofline if r.name == "0")
    assert fc.kernels == 3
    assert analysis.finding("gpu-idle") is None
