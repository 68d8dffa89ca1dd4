"""Memory rules on hand-built runs (no real allocation): each fires on its case and not on its control."""

from __future__ import annotations

import math

import pytest

from analysis_builders import linear, make_rank, make_run, module, pointwise, simple_run
from topoprof import analyze


def _ids(analysis):
    return set(analysis.finding_ids)


def _big_model(params: int, kind: str = "Adam", dtype: str = "float32"):
    """A model of ``params`` parameters (one record; nothing is allocated) with its optimizer."""
    big = module("big", "Linear", params=params, dtype=dtype, in_shapes=[[8, 1024]], out_shapes=[[8, 1024]],
                 flops_fwd=2 * 8 * params, ops={"linear": 1})
    rank = make_rank([big], optimizers=[{"kind": kind, "params": params, "param_tensors": 2, "fused": True}])
    return make_run(rank, tags={"batch_size": 8})


def test_model_exceeds_v100_16gb_with_adam():
    analysis = analyze(_big_model(1_500_000_000), "dgx-1")  # 1.5 B params x 16 B = 24 GB > 16 GB
    f = analysis.finding("model-exceeds-gpu")
    assert f is not None and f.severity == "high"
    assert f.evidence_value("static (params + grads + optimizer)") == pytest.approx(24e9)
    assert f.evidence_value("static bytes per parameter") == pytest.approx(16.0)
    assert f.evidence_value("optimizer state") == pytest.approx(12e9)
    # FSDP full sharding: 24 GB / (0.9 x 16 GB - activations) -> 2 GPUs, one node
    assert f.evidence_value("fewest GPUs with full sharding (FSDP / ZeRO-3)") == 2
    assert f.evidence_value("dgx-1 nodes needed") == 1
    assert "fully_shard" in f.recommendation.code
    assert "memory-at-limit" not in _ids(analysis)  # said once, by model-exceeds-gpu


def test_model_exceeds_gpu_control_fits_on_a100_80gb():
    analysis = analyze(_big_model(1_500_000_000), "dgx-a100")
    assert "model-exceeds-gpu" not in _ids(analysis)
    assert analysis.projection.memory.used_frac == pytest.approx(24e9 / 80e9, rel=1e-3)


def test_mixed_precision_adam_is_16_bytes_per_param():
    f = analyze(_big_model(1_500_000_000, "AdamW", "bfloat16"), "dgx-1").finding("model-exceeds-gpu")
    assert f is not None
    assert f.evidence_value("master weights") == pytest.approx(6e9)
    assert f.evidence_value("static bytes per parameter") == pytest.approx(16.0)


def _activations_run(act_gb: float):
    numel = int(act_gb * 1e9 / 4)
    layers = [pointwise("act", "ReLU", "relu", [64, numel // 64]), linear("head", 64, 64, 64)]
    return simple_run(layers, tags={"batch_size": 64})


def test_memory_at_limit_fires_above_90_percent():
    f = analyze(_activations_run(75.0), "dgx-a100").finding("memory-at-limit")
    assert f is not None and f.severity == "medium"
    assert f.evidence_value("projected peak share of GPU memory") > 0.9
    assert f.evidence_value("activations") == pytest.approx(75e9, rel=1e-3)
    over = analyze(_activations_run(90.0), "dgx-a100").finding("memory-at-limit")
    assert over is not None and over.severity == "high" and "does not fit" in over.title


def test_memory_at_limit_control_and_memory_underused():
    analysis = analyze(_activations_run(20.0), "dgx-a100")  # 25 % of 80 GB
    assert "memory-at-limit" not in _ids(analysis)
    f = analysis.finding("memory-underused")
    assert f is not None
    fits = f.evidence_value("batch size that fits")
    assert fits == int((80e9 * 0.9 - analysis.projection.memory.static_bytes) // (20e9 / 64))
    # saving at the largest whole multiple of the batch that fits (72 GB / 20 GB: 3x): time per sample drops
    assert fits // 64 == 3
    assert f.evidence_value("projected step at batch 192") > 0
    assert 0 < f.saving.frac < 1
    assert "(3x;" in f.saving.how and "batch_size=192" in f.recommendation.code


def test_memory_underused_control_when_memory_is_used():
    assert "memory-underused" not in _ids(analyze(_activations_run(40.0), "dgx-a100"))  # 50 %


def test_memory_underused_without_batch_size_has_no_saving():
    run = simple_run([linear("fc", 64, 64, 64)], tags={})
    f = analyze(run, "dgx-a100").finding("memory-underused")
    assert f is not None and f.saving.frac is None and "batch size is unknown" in f.saving.how
    assert not math.isnan(f.evidence_value("projected peak"))
