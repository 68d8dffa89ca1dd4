"""GPU paths: CUDA-event timers, CUDA kernels in trace mode. Skipped without CUDA (CI has none)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import topoprof
from topoprof.examples.resnet import ResNetSmall

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _profile_cuda(tmp_path, mode="layers", steps=3):
    torch.manual_seed(0)
    model = ResNetSmall().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(16, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (16,), device="cuda")
    with topoprof.profile(model, tmp_path / mode, steps=steps, skip_first=2, mode=mode, tensorboard=False) as prof:
        for _ in range(steps + 2):
            F.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            prof.step()
    return prof.run


class TestCuda:
    def test_cuda_event_timers_give_consistent_layer_and_phase_times(self, tmp_path):
        run = _profile_cuda(tmp_path)
        rank = run.rank()
        assert rank.clock == "cuda_event" and rank.device == "cuda"
        for step in rank.steps:
            assert step.duration_us > 0
            assert step.duration_us == pytest.approx(sum(step.phases_us.values()), rel=1e-6)
        root = rank.module("")
        conv = rank.module("layer1.0.conv1")
        for s in range(len(rank.steps)):
            assert 0 < conv.fwd_us[s] <= root.fwd_us[s]
            assert 0 < conv.bwd_us[s] <= root.bwd_us[s]
            assert root.self_fwd_us[s] <= root.fwd_us[s]
        assert run.manifest.device["type"] == "cuda" and run.manifest.versions["cuda"]

    def test_trace_mode_attributes_cuda_kernels_to_layers(self, tmp_path):
        run = _profile_cuda(tmp_path, mode="trace", steps=2)
        conv = run.rank().module("layer1.0.conv1")
        assert conv.kernels and conv.kernels > 0
        assert conv.device_fwd_us > 0 and conv.device_bwd_us > 0
        assert all(s["device_busy_us"] is not None for s in run.rank().trace_steps)
