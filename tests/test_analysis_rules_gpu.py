"""The gpu rules over hand-built device facts (:class:`DeviceActivity`): no GPU is needed.

Runs record per-step device busy time and kernels (trace mode on CUDA) and the DDP backend; the
other device facts (pageable copies, synchronising CUDA calls, idle split, peak memory) are not
in runs yet, so these tests build them by hand.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from analysis_builders import linear, make_rank, make_run, simple_run
from topoprof import analyze
from topoprof.analysis import DeviceActivity, DeviceStep
from topoprof.analysis.device import device_activity_from_rank, device_activity_from_trace


def _device(**step_kw):
    kw = dict(duration_us=10000.0, busy_us=9000.0)
    kw.update(step_kw)
    return DeviceActivity(steps=tuple(DeviceStep(index=i, **kw) for i in range(5)), source="hand-built")


def _run():
    return simple_run([linear("fc", 1024, 1024, 1024)])


def _ids(analysis):
    return set(analysis.finding_ids)


def test_gpu_idle_fires_below_half_busy_and_names_the_largest_cause():
    dev = _device(busy_us=3000.0, idle_host_wait_us=6000.0, idle_kernel_wait_us=1000.0)
    f = analyze(_run(), device=dev).finding("gpu-idle")
    assert f is not None
    assert f.evidence_value("device busy share") == pytest.approx(0.3)
    assert f.evidence_value("idle: host wait") == 6000.0
    assert f.saving.frac == pytest.approx(0.7)
    assert "input-bound" in f.recommendation.text


def test_gpu_idle_control_busy_device_and_no_device_data():
    assert "gpu-idle" not in _ids(analyze(_run(), device=_device(busy_us=8000.0)))
    assert "gpu-idle" not in _ids(analyze(_run()))


def test_pageable_memcpy_fires_on_pageable_copies():
    dev = _device(pageable_h2d_copies=2, pageable_h2d_bytes=50_000_000, pageable_h2d_us=800.0)
    f = analyze(_run(), device=dev).finding("pageable-memcpy")
    assert f is not None
    assert f.evidence_value("pageable bytes per step") == 50_000_000
    assert f.saving.frac == pytest.approx(0.08)
    assert "pin_memory=True" in f.recommendation.code


def test_pageable_memcpy_control_pinned_copies():
    assert "pageable-memcpy" not in _ids(analyze(_run(), device=_device()))


def test_host_sync_gpu_form_counts_synchronising_cuda_calls():
    dev = _device(sync_calls={"cudaStreamSynchronize": 3}, sync_idle_us=450.0)
    f = analyze(_run(), device=dev).finding("host-sync")
    assert f is not None
    assert f.evidence_value("cudaStreamSynchronize per step (trace)") == 3
    assert f.saving.frac == pytest.approx(450.0 / 10000.0)
    assert "measured device idle" in f.saving.how


def test_host_sync_gpu_form_control():
    assert "host-sync" not in _ids(analyze(_run(), device=_device(sync_calls={"cudaStreamSynchronize": 0})))


def test_launch_bound_gpu_form_from_measured_kernels():
    dev = _device(kernels=500, median_kernel_us=4.0)  # 500 x 10 us of launches in a 10 ms step
    f = analyze(_run(), "dgx-h100", device=dev).finding("launch-bound")
    assert f is not None and f.evidence_value("measured median kernel") == 4.0
    assert "launch-bound" not in _ids(analyze(_run(), "dgx-h100", device=_device(kernels=50, median_kernel_us=150.0)))


def test_memory_at_limit_measured_form():
    dev = _device(peak_memory_bytes=int(76e9))
    f = analyze(_run(), "dgx-a100", device=dev).finding("memory-at-limit")
    assert f is not None and f.evidence_value("measured peak") == 76e9
    assert "memory-at-limit" not in _ids(analyze(_run(), "dgx-a100", device=_device(peak_memory_bytes=int(30e9))))


def test_ddp_backend_fires_on_gloo_over_cuda():
    rank = make_rank([linear("fc", 64, 64, 64)], device="cuda")
    rank.ddp = {"backend": "gloo", "bucket_cap_bytes": 26214400}
    f = analyze(make_run(rank)).finding("ddp-backend")
    assert f is not None and f.severity == "high" and f.evidence_value("backend") == "gloo"
    assert 'backend="nccl"' in f.recommendation.code


def test_ddp_backend_controls_nccl_and_cpu():
    rank = make_rank([linear("fc", 64, 64, 64)], device="cuda")
    rank.ddp = {"backend": "nccl"}
    assert "ddp-backend" not in _ids(analyze(make_run(rank)))
    cpu = make_rank([linear("fc", 64, 64, 64)], device="cpu")
    cpu.ddp = {"backend": "gloo"}
    assert "ddp-backend" not in _ids(analyze(make_run(cpu)))


def test_device_activity_from_a_trace_mode_run():
    rank = make_rank([linear("fc", 64, 64, 64)], device="cuda")
    rank.trace_steps = [{"step": s.index, "ops": 10, "kernels": 40, "device_us": 2000.0, "device_busy_us": 2500.0,
                         "device_idle_us": s.duration_us - 2500.0} for s in rank.steps]
    dev = device_activity_from_rank(rank)
    assert dev is not None and len(dev.steps) == len(rank.steps)
    assert dev.steps[0].busy_us == 2500.0 and dev.steps[0].duration_us == rank.steps[0].duration_us
    f = analyze(make_run(rank)).finding("gpu-idle")  # 2500 of 10000 us busy
    assert f is not None and f.evidence_value("device busy share") == pytest.approx(0.25)
    assert device_activity_from_rank(make_rank([linear("fc", 64, 64, 64)])) is None


def test_device_activity_from_a_trace_summary_by_duck_typing():
    steps = {3: SimpleNamespace(dur_us=1000.0, device_busy_us=400.0, kernels=12),
             4: SimpleNamespace(dur_us=1000.0, device_busy_us=300.0, kernels=12)}
    ops = (SimpleNamespace(name="cudaStreamSynchronize", calls=4), SimpleNamespace(name="aten::mm", calls=24))
    summary = SimpleNamespace(steps=steps, ops=ops, has_device=True, path="w.pt.trace.json",
                              metadata={"distributedInfo": {"backend": "nccl"}})
    dev = device_activity_from_trace(summary)
    assert [s.busy_us for s in dev.steps] == [400.0, 300.0]
    assert dict(dev.steps[0].sync_calls) == {"cudaStreamSynchronize": 2}
    assert dev.distributed_backend == "nccl" and dev.notes
