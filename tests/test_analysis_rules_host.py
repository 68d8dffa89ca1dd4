"""Input pipeline and host rules on hand-built runs: each fires on its case and not on its control."""

from __future__ import annotations

import pytest

from analysis_builders import DEFAULT_PHASES, adamw, linear, make_rank, make_run, simple_run
from topoprof import analyze
from topoprof.analysis import AnalysisOptions


def _ids(analysis):
    return set(analysis.finding_ids)


# --- input-bound -------------------------------------------------------------------------------


def test_input_bound_fires_when_data_exceeds_5_percent_of_the_step():
    phases = dict(DEFAULT_PHASES, data=2000.0)  # 2000 of 11900 us = 17 %
    analysis = analyze(simple_run([linear("fc", 256, 256, 256)], phases=phases,
                                  tags={"batch_size": 32, "num_workers": 0}), "dgx-a100")
    f = analysis.finding("input-bound")
    assert f is not None
    assert f.evidence_value("data phase") == 2000.0
    assert f.evidence_value("data share of step") == pytest.approx(2000 / 11900)
    assert f.evidence_value("loader num_workers") == 0
    assert f.saving.frac == pytest.approx(2000 / 11900)
    assert "num_workers" in f.recommendation.code


def test_input_bound_control_small_data_phase():
    phases = dict(DEFAULT_PHASES, data=500.0)  # 500 / 10400 = 4.8 %
    assert "input-bound" not in _ids(analyze(simple_run([linear("fc", 64, 64, 64)], phases=phases)))


# --- host-sync ---------------------------------------------------------------------------------


def test_host_sync_fires_with_call_sites_and_a_lower_bound_saving():
    syncs = [{"op": "item", "where": "<outside model>", "count": 1}, {"op": "__bool__", "where": "fc", "count": 2}]
    analysis = analyze(simple_run([linear("fc", 64, 64, 64)], host_syncs=syncs), "dgx-a100")
    f = analysis.finding("host-sync")
    assert f is not None
    assert f.evidence_value("host syncs per step (capture)") == 3
    assert f.evidence_value("__bool__ in fc") == 2
    assert f.evidence_value("item outside the model") == 1
    assert f.layers == ("fc",)
    assert f.saving.frac == pytest.approx(3 * 10.0 / analysis.projection.single.step_us)
    assert "lower bound" in f.saving.how


def test_host_sync_control_no_syncs():
    assert "host-sync" not in _ids(analyze(simple_run([linear("fc", 64, 64, 64)])))


def test_host_sync_discounts_adams_own_step_counter_items():
    # Adam/AdamW (single-tensor, on CPU) call .item() once per parameter tensor on a CPU step counter:
    # capture counts them, but they are not device syncs.
    rank = make_rank([linear("fc", 64, 64, 64)], host_syncs=[{"op": "item", "where": "<outside model>", "count": 2}])
    rank.optimizers = [adamw(rank, tensors=2)]
    assert "host-sync" not in _ids(analyze(make_run(rank)))
    rank.host_syncs = [{"op": "item", "where": "<outside model>", "count": 3}]  # one more: the user's .item()
    f = analyze(make_run(rank)).finding("host-sync")
    assert f is not None and f.evidence_value("host syncs per step (capture)") == 1


# --- step-variance ---------------------------------------------------------------------------------


def test_step_variance_fires_on_an_outlier_step():
    base = sum(DEFAULT_PHASES.values())
    durations = [base, base, base * 1.02, base, base * 3, base, base * 0.99, base]
    f = analyze(simple_run([linear("fc", 64, 64, 64)], durations=durations)).finding("step-variance")
    assert f is not None
    assert f.evidence_value("outlier steps") == 1
    assert f.evidence_value("step 7") == pytest.approx(base * 3)  # step indices start at 3 in the builder
    assert f.saving.frac == pytest.approx((0.02 * base + 2 * base) / sum(durations))


def test_step_variance_fires_on_a_high_coefficient_of_variation():
    durations = [5000, 15000, 5000, 15000, 5000, 15000]
    f = analyze(simple_run([linear("fc", 64, 64, 64)], durations=durations)).finding("step-variance")
    assert f is not None and f.evidence_value("coefficient of variation") == pytest.approx(0.5)


def test_step_variance_control_steady_steps():
    base = sum(DEFAULT_PHASES.values())
    durations = [base, base * 1.01, base * 0.99, base * 1.03, base]
    assert "step-variance" not in _ids(analyze(simple_run([linear("fc", 64, 64, 64)], durations=durations)))


def test_step_variance_needs_three_steps():
    assert "step-variance" not in _ids(analyze(simple_run([linear("fc", 64, 64, 64)], durations=[1000, 9000])))


# --- launch-bound -------------------------------------------------------------------------------


def test_launch_bound_fires_on_many_tiny_layers():
    layers = [linear(f"l{i}", 8, 8, 4) for i in range(20)]
    analysis = analyze(simple_run(layers), "dgx-a100")
    f = analysis.finding("launch-bound")
    assert f is not None
    assert f.evidence_value("projected kernels per step") == 60  # 20 x (1 forward + 2 backward)
    assert f.evidence_value("projected median kernel") < 10.0
    assert f.saving.frac == pytest.approx(600.0 / analysis.projection.single.step_us)
    assert len(f.layers) == 20


def test_launch_bound_control_large_gemms():
    layers = [linear(f"l{i}", 4096, 4096, 4096) for i in range(3)]
    assert "launch-bound" not in _ids(analyze(simple_run(layers), "dgx-a100"))


def test_launch_bound_threshold_is_an_option():
    layers = [linear(f"l{i}", 8, 8, 4) for i in range(20)]
    assert "launch-bound" not in _ids(analyze(simple_run(layers), "dgx-a100",
                                              AnalysisOptions(launch_bound_min_frac=0.9)))
