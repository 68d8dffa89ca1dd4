"""Roofline and DGX projection against hand-computed figures (hardware.md §1, §5, §6)."""

from __future__ import annotations

import pytest

from analysis_builders import linear, make_rank, make_run, module, pointwise, simple_run
from topoprof import analyze
from topoprof.analysis import AnalysisOptions
from topoprof.analysis.projection import ddp_buckets, memory_footprint
from topoprof.hardware import get_target

GB = 1e9
US = 1e6
LAUNCH_US = 10.0  # hardware.md §6.4


def _layer(analysis, name):
    return next(r for r in analysis.roofline if r.name == name)


def test_large_bf16_gemm_on_h100_is_flop_over_achievable_peak():
    n = 8192
    run = simple_run([linear("gemm", n, n, n, dtype="bfloat16")])
    r = _layer(analyze(run, "h100"), "gemm")
    flop_fwd = 2 * n**3
    # hardware.md §1.1: H100 SXM BF16 989.4 TFLOPS dense; §6.1: MAMF 794.5 of 989 = 80.3 %.
    achievable = 989.4e12 * 0.803
    assert r.precision == "bf16-fp16" and r.bound == "compute"
    assert r.fwd_us == pytest.approx(flop_fwd / achievable * US + LAUNCH_US, rel=1e-3)
    # backward: twice the FLOPs, two kernels (input and weight gradients)
    assert r.bwd_us == pytest.approx(2 * flop_fwd / achievable * US + 2 * LAUNCH_US, rel=1e-3)
    # by precision: fp8 (70.9 % of 1978.9 TFLOPS) beats bf16, which beats tf32 and fp32
    times = {p: pt.time_us for p, pt in r.by_precision.items()}
    assert times["fp8"] < times["bf16-fp16"] < times["tf32"] < times["fp32"]
    assert r.by_precision["fp8"].compute_us == pytest.approx(3 * flop_fwd / (1978.9e12 * 1402.6 / 1979) * US, rel=1e-3)


def test_elementwise_layer_is_memory_bound_at_hbm_bandwidth():
    shape = [4096, 65536]  # 1.07 GB of fp32
    nbytes = 4096 * 65536 * 4
    run = simple_run([pointwise("act", "GELU", "gelu", shape)])
    r = _layer(analyze(run, "a100"), "act")
    bw = 2039e9 * 0.88  # hardware.md §1.1 A100 80 GB; §6.2: 88 % of HBM
    assert r.bound == "memory" and r.flop == 0
    assert r.fwd_us == pytest.approx(2 * nbytes / bw * US + LAUNCH_US, rel=1e-6)  # read input, write output
    assert r.bwd_us == pytest.approx(3 * nbytes / bw * US + LAUNCH_US, rel=1e-6)  # grad out, saved input, grad in
    assert r.intensity_flop_per_byte == 0.0


def test_tiny_layer_is_launch_bound():
    run = simple_run([linear("tiny", 8, 8, 4)])
    r = _layer(analyze(run, "dgx-a100"), "tiny")
    assert r.bound == "launch"
    assert r.launch_us == pytest.approx(3 * LAUNCH_US)


def test_fp32_matmul_uses_tf32_only_when_allowed():
    layers = [linear("fc", 1024, 1024, 1024)]
    strict = analyze(simple_run(layers), "dgx-a100")
    assert _layer(strict, "fc").precision == "fp32"
    rank = make_rank([linear("fc", 1024, 1024, 1024)])
    rank.settings["float32_matmul_precision"] = "high"
    assert _layer(analyze(make_run(rank), "dgx-a100"), "fc").precision == "tf32"


def test_bf16_falls_back_to_fp16_on_v100():
    r = _layer(analyze(simple_run([linear("fc", 4096, 4096, 4096, dtype="bfloat16")]), "dgx-1"), "fc")
    point = r.by_precision["bf16-fp16"]
    assert point.peak_key == "fp16"
    assert "tf32" not in r.by_precision and "fp8" not in r.by_precision
    assert any("no BF16" in a for a in r.assumptions)


def _grad_run(param_bytes: int):
    big = module("big", "Linear", params=param_bytes // 4, in_shapes=[[1, 8]], out_shapes=[[1, 8]], flops_fwd=128,
                 ops={"linear": 1})
    return simple_run([big], optimizer=False)


def test_100mb_allreduce_dgx1_vs_dgx_a100_in_the_ratio_of_bus_bandwidths():
    size = 100_000_000
    opts = AnalysisOptions(ddp_bucket_cap_bytes=2 * size, ddp_first_bucket_bytes=2 * size)  # one bucket
    by_target = {}
    for target in ("dgx-1", "dgx-a100"):
        sp = analyze(_grad_run(size), target, opts).projection.at(8)
        assert sp.buckets == 1
        by_target[target] = sp
    # ring all-reduce bandwidth term 2(n-1)/n · S / busbw (hardware.md §5.1): DGX-1 busbw 6 rings x 20 GB/s
    # (NCCL SM70 model) = 120 GB/s; DGX A100 12 links x 20 GB/s = 240 GB/s (hardware.md §5.2).
    assert by_target["dgx-1"].allreduce_bandwidth_us == pytest.approx(2 * 7 / 8 * size / 120e9 * US)
    assert by_target["dgx-a100"].allreduce_bandwidth_us == pytest.approx(2 * 7 / 8 * size / 240e9 * US)
    ratio = by_target["dgx-1"].allreduce_bandwidth_us / by_target["dgx-a100"].allreduce_bandwidth_us
    busbw = {t: get_target(t).ring_busbw_bytes_per_s() for t in by_target}
    assert ratio == pytest.approx(busbw["dgx-a100"] / busbw["dgx-1"]) == pytest.approx(2.0)
    assert by_target["dgx-1"].comm_bound == by_target["dgx-a100"].comm_bound == "nvlink"


def test_ddp_buckets_follow_reverse_parameter_order_and_caps():
    layers = [linear(f"l{i}", 1250, 2000, 64, bias=False) for i in range(10)]  # 10 MB of fp32 each
    run = simple_run(layers)
    analysis = analyze(run, "dgx-1")
    buckets = analysis.projection.bucket_list
    # first bucket closes at 1 MiB (one layer), then 25 MiB caps: 3 layers each
    assert [round(b.bytes / 10e6) for b in buckets] == [1, 3, 3, 3]
    assert sum(b.bytes for b in buckets) == pytest.approx(analysis.projection.gradient_bytes)
    ready = [b.ready_us for b in buckets]
    assert ready == sorted(ready)
    assert ready[-1] == pytest.approx(analysis.projection.single.backward_us)
    # the last bucket is ready when backward ends: at least its all-reduce is exposed
    sp = analysis.projection.at(8)
    assert sp.exposed_comm_us > 0 and sp.exposed_comm_us < sp.allreduce_us
    assert ddp_buckets(run.rank(), analysis.roofline, AnalysisOptions(ddp_first_bucket_bytes=10**9,
                                                                      ddp_bucket_cap_bytes=10**9))[0].bytes == \
        pytest.approx(100e6)


def test_scaling_lists_gpu_counts_and_nodes_with_bounds():
    analysis = analyze(simple_run([linear("fc", 1024, 1024, 4096)]), "dgx-a100")
    labels = [s.label for s in analysis.projection.scaling]
    assert labels == ["1 GPU", "2 GPUs", "4 GPUs", "8 GPUs", "2 nodes x 8 GPUs", "4 nodes x 8 GPUs"]
    for s in analysis.projection.scaling:
        assert s.bound in ("host", "compute", "memory", "launch", "communication")
        assert 0 < s.efficiency_frac <= 1.0
        assert s.assumptions and any("carried over" in a for a in s.assumptions)
    assert analysis.projection.at(8, 2).comm_bound == "network"
    single = analyze(simple_run([linear("fc", 64, 64, 64)]), "h100").projection
    assert [s.label for s in single.scaling] == ["1 GPU"]


def test_host_phases_are_carried_over_and_say_so():
    phases = {"data": 1234.0, "forward": 5000.0, "backward": 9000.0, "optimizer": 100.0, "other": 321.0}
    proj = analyze(simple_run([linear("fc", 256, 256, 256)], phases=phases), "dgx-h100").projection
    by = {p.phase: p for p in proj.phases}
    for name in ("data", "other"):
        assert by[name].projected_us == by[name].measured_us == phases[name]
        assert by[name].bound == "host" and "carried over unchanged" in by[name].assumptions[0]
    assert proj.single.host_us == pytest.approx(1234.0 + 321.0)
    assert proj.single.step_us == pytest.approx(sum(p.projected_us for p in proj.phases))


def test_memory_footprint_by_optimizer_kind():
    params = 1_000_000_000
    big = module("big", "Linear", params=params, in_shapes=[[1, 8]], out_shapes=[[1, 8]], ops={"linear": 1})
    system = get_target("v100-16gb")
    opts = AnalysisOptions()
    rank = make_rank([big], optimizers=[{"kind": "Adam", "params": params, "param_tensors": 1}])
    mem = memory_footprint(rank, system, opts)
    assert (mem.params_bytes, mem.grads_bytes, mem.optimizer_bytes) == (4 * params, 4 * params, 8 * params)
    assert mem.bytes_per_param == pytest.approx(16.0)  # rules.md: Adam 16 B/param
    sgd = make_rank([module("big", "Linear", params=params, in_shapes=[[1, 8]], out_shapes=[[1, 8]])],
                    optimizers=[{"kind": "SGD", "params": params, "param_tensors": 1}])
    assert memory_footprint(sgd, system, opts).optimizer_bytes == 4 * params  # momentum: 4 B/param
    half = make_rank([module("big", "Linear", params=params, dtype="bfloat16", in_shapes=[[1, 8]],
                             out_shapes=[[1, 8]])],
                     optimizers=[{"kind": "AdamW", "params": params, "param_tensors": 1}])
    mixed = memory_footprint(half, system, opts)
    assert mixed.master_weights_bytes == 4 * params
    assert mixed.bytes_per_param == pytest.approx(16.0)  # 2 + 2 + 8 + 4 master weights
    assert mem.capacity_bytes == 16e9 and mem.used_frac > 1.0


def test_activation_memory_and_the_batch_that_fits():
    layers = [pointwise("act", "ReLU", "relu", [32, 1_000_000])]  # 128 MB of fp32 activations at batch 32
    proj = analyze(simple_run(layers, tags={"batch_size": 32}), "a100-80gb").projection
    mem = proj.memory
    assert mem.activations_bytes == 32 * 1_000_000 * 4
    per_sample = mem.activations_bytes / 32
    assert mem.fits_batch_size == int((80e9 * 0.9 - mem.static_bytes) // per_sample)


def test_topology_file_drives_the_chosen_set(tmp_path):
    from pathlib import Path

    topo = Path(__file__).parent / "data" / "topology" / "dgx1_v100.txt"
    run = _grad_run(100_000_000)
    bad = analyze(run, "dgx-1", AnalysisOptions(gpus=(0, 5)), topology=topo).projection
    good = analyze(run, "dgx-1", AnalysisOptions(gpus=(0, 3)), topology=topo).projection
    assert bad.chosen.comm_bound == "inter-socket" and good.chosen.comm_bound == "nvlink"
    assert bad.chosen.allreduce_us > 5 * good.chosen.allreduce_us
    assert bad.chosen_best.gpu_set == (0, 3)


def test_trace_mode_kernels_on_cuda_replace_the_estimate():
    fc = linear("fc", 64, 64, 64)
    fc.kernels, fc.device_fwd_us, fc.device_bwd_us = 7, 30.0, 60.0
    r = _layer(analyze(make_run(make_rank([fc], device="cuda")), "dgx-a100"), "fc")
    assert r.kernels == pytest.approx(7)
    assert r.launch_us == pytest.approx(70.0)
    assert r.cost.measured_device_us == 90.0
    cpu = linear("fc", 64, 64, 64)
    cpu.kernels = 33  # a CPU trace counts aten ops: not kernels
    assert _layer(analyze(make_run(make_rank([cpu])), "dgx-a100"), "fc").kernels == 3


def test_no_sync_accumulation_all_reduces_once_per_step_in_the_projection():
    # three micro-batches per step; the DDP run measured one gradient all-reduce per step
    from analysis_builders import linear, simple_run

    import topoprof

    def run_with(measured_passes):
        run = simple_run([linear(f"fc{i}", 4096, 4096, 64) for i in range(4)], forward_passes=3)
        rank = run.rank(0)
        grad = rank.modules[0].param_bytes
        for s in rank.steps:
            s.comm_us, s.comm_exposed_us = 1000.0, 100.0
            s.comm_bytes, s.comm_buckets = grad * measured_passes, 3 * measured_passes
        return topoprof.analyze(run, target="dgx-1")

    def allreduce_8(analysis):
        (row,) = [s for s in analysis.projection.scaling if s.gpus == 8 and s.nodes == 1]
        return row.allreduce_us

    once, every = allreduce_8(run_with(1)), allreduce_8(run_with(3))
    assert every == pytest.approx(3 * once)
