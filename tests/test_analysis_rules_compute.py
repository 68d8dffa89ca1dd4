"""Compute rules on hand-built runs: each fires on its case and not on its control."""

from __future__ import annotations

import pytest

from analysis_builders import DEFAULT_PHASES, adamw, conv2d, linear, make_rank, make_run, module, pointwise, simple_run
from topoprof import analyze


def _ids(analysis):
    return set(analysis.finding_ids)


# --- hot-layers ----------------------------------------------------------------------------------


def test_hot_layers_lists_the_layers_making_half_the_step():
    layers = [linear("a", 64, 64, 64, fwd_us=3000, bwd_us=3000), linear("b", 64, 64, 64, fwd_us=100, bwd_us=100),
              linear("c", 64, 64, 64, fwd_us=1000, bwd_us=1000)]
    f = analyze(simple_run(layers)).finding("hot-layers")
    assert f is not None and f.severity == "info" and f.saving.frac is None
    assert f.layers == ("a",)  # 6000 of 10000 us
    assert f.evidence_value("a share of step") == pytest.approx(0.6)
    assert f.evidence_value("a bound on dgx-a100") == "launch"


def test_hot_layers_control_no_measured_layer_time():
    layers = [linear("a", 64, 64, 64, fwd_us=0, bwd_us=0)]
    assert "hot-layers" not in _ids(analyze(simple_run(layers)))


# --- fp32-matmul ---------------------------------------------------------------------------------


def test_fp32_matmul_fires_with_projected_bf16_saving():
    layers = [linear(f"l{i}", 4096, 4096, 8192) for i in range(4)]
    analysis = analyze(simple_run(layers), "dgx-a100")
    f = analysis.finding("fp32-matmul")
    assert f is not None
    assert f.evidence_value("fp32 share of FLOPs") == 1.0
    bf16 = f.evidence_value("projected step in bf16")
    assert bf16 < f.evidence_value("projected step as run")
    assert f.saving.frac == pytest.approx(1 - bf16 / analysis.projection.single.step_us)
    assert f.saving.frac > 0.5 and f.severity == "high"  # 19.5 vs 312 TFLOPS
    assert "bfloat16" in f.recommendation.code


def test_fp32_matmul_recommends_fp16_with_grad_scaler_on_v100():
    f = analyze(simple_run([linear("l", 4096, 4096, 8192)]), "dgx-1").finding("fp32-matmul")
    assert f is not None and "GradScaler" in f.recommendation.code
    assert f.evidence_value("projected step in fp16") > 0


def test_fp32_matmul_control_bf16_model():
    layers = [linear(f"l{i}", 4096, 4096, 8192, dtype="bfloat16") for i in range(4)]
    assert "fp32-matmul" not in _ids(analyze(simple_run(layers), "dgx-a100"))


def test_fp32_matmul_control_gpu_without_tensor_cores():
    assert "fp32-matmul" not in _ids(analyze(simple_run([linear("l", 4096, 4096, 8192)]), "dgx-1-p100"))


# --- tensor-core-alignment -----------------------------------------------------------------------


def test_tensor_core_alignment_fires_on_1001_wide_bf16_layers():
    layers = [linear("a", 1024, 1001, 8192, dtype="bfloat16"), linear("b", 1001, 1024, 8192, dtype="bfloat16")]
    analysis = analyze(simple_run(layers), "dgx-a100")
    f = analysis.finding("tensor-core-alignment")
    assert f is not None
    assert set(f.layers) == {"a", "b"}
    assert f.evidence_value("a out_features") == 1001
    assert f.evidence_value("a out_features padded to a multiple of 8") == 1008
    assert f.evidence_value("b in_features") == 1001
    assert f.saving.frac > 0 and "upper bound" in f.saving.how
    assert "1008" in f.recommendation.code


def test_tensor_core_alignment_uses_4_for_tf32_and_exempts_rgb_inputs():
    rank = make_rank([linear("a", 1024, 1002, 256)])  # fp32: TF32 multiple is 4; 1002 % 4 != 0
    f = analyze(make_run(rank), "dgx-a100").finding("tensor-core-alignment")
    assert f is not None and f.evidence_value("a out_features padded to a multiple of 4") == 1004
    stem = conv2d("stem", 3, 64, 32, 56, dtype="bfloat16")
    assert "tensor-core-alignment" not in _ids(analyze(simple_run([stem]), "dgx-a100"))


def test_tensor_core_alignment_control_aligned_dims():
    layers = [linear("a", 1024, 1024, 8192, dtype="bfloat16"), conv2d("c", 64, 128, 8, 28, dtype="bfloat16")]
    assert "tensor-core-alignment" not in _ids(analyze(simple_run(layers), "dgx-a100"))


# --- memory-bound-layers -------------------------------------------------------------------------


def _transformer_mlp(dtype="bfloat16"):
    shape = [8192, 4096]
    return [pointwise("ln", "LayerNorm", "layer_norm", shape, dtype=dtype, params=8192),
            linear("fc1", 4096, 4096, 8192, dtype=dtype),
            pointwise("act", "GELU", "gelu", shape, dtype=dtype),
            pointwise("drop", "Dropout", "dropout", shape, dtype=dtype),
            linear("fc2", 4096, 4096, 8192, dtype=dtype)]


def test_memory_bound_layers_fire_with_fusion_saving():
    analysis = analyze(simple_run(_transformer_mlp()), "dgx-h100")
    f = analysis.finding("memory-bound-layers")
    assert f is not None
    assert set(f.layers) == {"ln", "act", "drop"}
    ridge = f.evidence_value("act ridge point")
    assert ridge == pytest.approx(989e12 / 3.35e12)  # hardware.md §1.2: H100 bf16 ≈ 295 FLOP/byte
    assert f.evidence_value("act intensity") == 0.0
    assert f.evidence_value("memory-bound share of projected step") > 0.1
    assert 0 < f.saving.frac < f.evidence_value("memory-bound share of projected step")


def test_memory_bound_layers_control_gemms_only():
    layers = [linear(f"l{i}", 4096, 4096, 8192, dtype="bfloat16") for i in range(2)]
    assert "memory-bound-layers" not in _ids(analyze(simple_run(layers), "dgx-h100"))


# --- channels-last -------------------------------------------------------------------------------


def _convs(dtype="bfloat16", fmt="contiguous"):
    return [conv2d(f"c{i}", 64, 64, 64, 56, dtype=dtype, memory_format=fmt) for i in range(3)]


def test_channels_last_fires_on_reduced_precision_nchw_convs():
    analysis = analyze(simple_run(_convs()), "dgx-a100")
    f = analysis.finding("channels-last")
    assert f is not None and set(f.layers) == {"c0", "c1", "c2"}
    share = f.evidence_value("NCHW conv share of projected step")
    assert f.saving.frac == pytest.approx(share * (1 - 1 / 1.5))
    assert "channels_last" in f.recommendation.code


def test_channels_last_controls_nhwc_and_fp32():
    assert "channels-last" not in _ids(analyze(simple_run(_convs(fmt="channels_last")), "dgx-a100"))
    assert "channels-last" not in _ids(analyze(simple_run(_convs(dtype="float32")), "dgx-a100"))


# --- cudnn-benchmark -----------------------------------------------------------------------------


def test_cudnn_benchmark_fires_on_convs_with_benchmark_off():
    f = analyze(simple_run(_convs())).finding("cudnn-benchmark")
    assert f is not None and f.saving.frac is None and f.severity == "low"
    assert f.recommendation.code == "torch.backends.cudnn.benchmark = True"


def test_cudnn_benchmark_controls_benchmark_on_and_no_convs():
    rank = make_rank(_convs())
    rank.settings["cudnn_benchmark"] = True
    assert "cudnn-benchmark" not in _ids(analyze(make_run(rank)))
    assert "cudnn-benchmark" not in _ids(analyze(simple_run([linear("fc", 64, 64, 64)])))


# --- optimizer-unfused ---------------------------------------------------------------------------


def _optimizer_run(**flags):
    phases = dict(DEFAULT_PHASES, optimizer=3000.0)  # 3000 of 12600 us = 24 %
    layers = [linear(f"l{i}", 512, 512, 512) for i in range(50)]
    rank = make_rank(layers, phases=phases)
    rank.optimizers = [adamw(rank, tensors=100, **flags)]
    return make_run(rank)


def test_optimizer_unfused_fires_on_a_for_loop_adamw():
    analysis = analyze(_optimizer_run(), "dgx-a100")
    f = analysis.finding("optimizer-unfused")
    assert f is not None
    assert f.evidence_value("optimizer share of step") == pytest.approx(3000 / 12600)
    assert f.evidence_value("parameter tensors") == 100
    proj = analysis.projection.optimizer
    # foreach (PyTorch's CUDA default): 8 ops x ceil(100 / 36) launches; fused: ceil(100 / 36)
    assert proj.kernels == 8 * 3
    assert f.saving.frac == pytest.approx((proj.time_us - proj.fused_time_us) / analysis.projection.single.step_us)
    assert "fused=True" in f.recommendation.code


def test_optimizer_unfused_controls_fused_and_small_share():
    assert "optimizer-unfused" not in _ids(analyze(_optimizer_run(fused=True)))
    assert "optimizer-unfused" not in _ids(analyze(_optimizer_run(foreach=True)))
    rank = make_rank([linear("fc", 64, 64, 64)])  # optimizer phase 400 of 10000 us = 4 %
    rank.optimizers = [adamw(rank)]
    assert "optimizer-unfused" not in _ids(analyze(make_run(rank)))


# --- compile-candidate ---------------------------------------------------------------------------


def _pointwise_heavy():
    shape = [8192, 4096]
    layers = [linear("fc", 4096, 4096, 4096, dtype="bfloat16")]
    for i in range(6):
        layers.append(pointwise(f"p{i}", "GELU", "gelu", shape, dtype="bfloat16"))
    return layers


def test_compile_candidate_fires_on_pointwise_heavy_eager_model():
    analysis = analyze(simple_run(_pointwise_heavy()), "dgx-h100")
    f = analysis.finding("compile-candidate")
    assert f is not None
    assert f.evidence_value("pointwise share of projected step") > 0.3
    assert f.evidence_value("pointwise kernels per step") == 12  # 6 x (forward + backward)
    assert set(f.layers) == {f"p{i}" for i in range(6)}
    assert f.recommendation.code == "model = torch.compile(model)"


def test_compile_candidate_controls_compiled_model_and_gemm_model():
    assert "compile-candidate" not in _ids(analyze(simple_run(_pointwise_heavy(), root_kind="OptimizedModule"),
                                                   "dgx-h100"))
    layers = [linear(f"l{i}", 4096, 4096, 4096, dtype="bfloat16") for i in range(3)]
    assert "compile-candidate" not in _ids(analyze(simple_run(layers), "dgx-h100"))


def test_container_own_ops_are_projected_without_double_counting():
    # A block whose forward adds a residual: its own 'add' is work of its own, its children's are theirs.
    child = linear("block.fc", 1024, 1024, 1024, parent="block")
    block = module("block", "Block", params=child.params, in_shapes=[[1024, 1024]], out_shapes=[[1024, 1024]],
                   flops_fwd=child.flops_fwd, ops={"add": 1, "view": 2}, leaf=False)
    analysis = analyze(simple_run([block, child]), "dgx-a100")
    names = [r.name for r in analysis.roofline]
    assert names == ["block", "block.fc"]
    own = analysis.roofline[0]
    assert own.flop == 0 and own.kernels == 2  # one add forward, one backward; views launch nothing
