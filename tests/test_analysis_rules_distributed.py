"""Distributed and DGX rules on hand-built runs: each fires on its case and not on its control."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis_builders import DEFAULT_PHASES, linear, make_rank, make_run, module, simple_run
from topoprof import analyze
from topoprof.analysis import AnalysisOptions
from topoprof.errors import AnalysisInputError

TOPOLOGY = Path(__file__).parent / "data" / "topology"


def _ids(analysis):
    return set(analysis.finding_ids)


# --- dataparallel --------------------------------------------------------------------------------


def test_dataparallel_fires_on_a_dataparallel_root():
    f = analyze(simple_run([linear("module.fc", 64, 64, 64)], root_kind="DataParallel")).finding("dataparallel")
    assert f is not None and f.layers == ("",) and "DistributedDataParallel" in f.recommendation.code


def test_dataparallel_control():
    assert "dataparallel" not in _ids(analyze(simple_run([linear("fc", 64, 64, 64)])))


# --- comm-exposed and scaling: gradients that dominate on DGX-1 but not on DGX H100 -----------------


def _comm_heavy():
    """64 MB of fp32 gradients, little compute, 3 ms of host time per step."""
    big = module("big", "Linear", params=16_000_000, in_shapes=[[8, 4000]], out_shapes=[[8, 4000]],
                 flops_fwd=2 * 8 * 16_000_000, ops={"linear": 1})
    phases = dict(DEFAULT_PHASES, data=2500.0, other=500.0)
    return simple_run([big], phases=phases)


def test_comm_exposed_fires_on_dgx1_not_on_dgx_h100():
    dgx1 = analyze(_comm_heavy(), "dgx-1")
    f = dgx1.finding("comm-exposed")
    assert f is not None
    sp = dgx1.projection.at(8)
    assert f.saving.frac == pytest.approx(sp.exposed_comm_us / sp.step_us)
    assert f.evidence_value("gradient bytes") == pytest.approx(64e6)
    # 64 MB ring all-reduce over 120 GB/s (hardware.md §5.2), barely overlapped by a short backward
    assert f.evidence_value("all-reduce per step") == pytest.approx(2 * 7 / 8 * 64e6 / 120e9 * 1e6 + 56.0, rel=1e-3)
    assert f.evidence_value("overlap with backward") < 0.1
    h100 = analyze(_comm_heavy(), "dgx-h100")
    assert "comm-exposed" not in _ids(h100)
    assert h100.projection.at(8).comm_bound == "nvls"  # NVLink SHARP at 480 GB/s


def test_comm_exposed_measured_under_ddp():
    rank = make_rank([linear("fc", 1024, 1024, 1024)])
    for s in rank.steps:
        s.comm_us, s.comm_exposed_us, s.comm_buckets, s.comm_bytes = 3000.0, 2000.0, 3, 4_200_000
    rank.ddp = {"backend": "gloo", "bucket_cap_bytes": 26214400}
    f = analyze(make_run(rank), "dgx-a100").finding("comm-exposed")
    assert f is not None and f.title.startswith("Measured")
    assert f.evidence_value("exposed all-reduce per step") == 2000.0
    assert f.evidence_value("overlap with backward") == pytest.approx(1 / 3)
    assert f.saving.frac == pytest.approx(2000.0 / sum(DEFAULT_PHASES.values()))
    for s in rank.steps:
        s.comm_exposed_us = 100.0  # 1 % of the step: control
    assert "comm-exposed" not in _ids(analyze(make_run(rank), "h100"))


def test_scaling_fires_when_8_gpu_efficiency_drops_below_80_percent():
    analysis = analyze(_comm_heavy(), "dgx-1")
    f = analysis.finding("scaling")
    assert f is not None
    assert f.evidence_value("8 GPUs efficiency") < 0.8
    assert f.evidence_value("8 GPUs bound") in ("communication", "host")
    assert f.evidence_value("1 GPU throughput") > 0
    assert "scaling" not in _ids(analyze(_comm_heavy(), "dgx-h100"))


def test_scaling_and_comm_rules_skip_single_gpu_targets():
    assert not {"scaling", "comm-exposed"} & _ids(analyze(_comm_heavy(), "v100-16gb"))


# --- straggler-rank ------------------------------------------------------------------------------


def _ranks(slow_data_us: float):
    ranks = []
    for r in range(4):
        phases = dict(DEFAULT_PHASES)
        if r == 3:
            phases["data"] += slow_data_us
        ranks.append(make_rank([linear("fc", 64, 64, 64)], rank=r, phases=phases))
    return make_run(*ranks)


def test_straggler_rank_names_the_slow_rank_and_phase():
    f = analyze(_ranks(3000.0)).finding("straggler-rank")
    assert f is not None
    assert f.evidence_value("rank 3 median step") == 13000.0
    assert f.evidence_value("median over ranks") == 10000.0
    assert f.evidence_value("rank 3 slow phase") == "data"
    assert f.evidence_value("rank 3 data excess") == 3000.0
    assert f.saving.frac == pytest.approx(3000.0 / 13000.0)


def test_straggler_rank_in_a_synchronised_job_shows_in_its_local_phases():
    # DDP evens the steps out: the others wait for rank 3 in backward, so all steps are equally long.
    ranks = []
    for r in range(4):
        phases = dict(DEFAULT_PHASES)
        if r == 3:
            phases["data"] += 3000.0
        else:
            phases["backward"] += 3000.0
        ranks.append(make_rank([linear("fc", 64, 64, 64)], rank=r, phases=phases))
    f = analyze(make_run(*ranks)).finding("straggler-rank")
    assert f is not None
    assert f.evidence_value("rank 3 median step") == f.evidence_value("median over ranks") == 13000.0
    assert f.evidence_value("rank 3 slow phase") == "data"
    assert f.evidence_value("slow ranks") == "3"
    assert f.saving.frac == pytest.approx(3000.0 / 13000.0)


def test_straggler_rank_controls_balanced_ranks_and_one_rank():
    assert "straggler-rank" not in _ids(analyze(_ranks(500.0)))  # 5 % slower: under the 10 % threshold
    assert "straggler-rank" not in _ids(analyze(simple_run([linear("fc", 64, 64, 64)])))


# --- nvlink-placement ----------------------------------------------------------------------------


def test_nvlink_placement_fires_on_dgx1_gpus_0_and_5():
    analysis = analyze(_comm_heavy(), "dgx-1", AnalysisOptions(gpus=(0, 5)))
    f = analysis.finding("nvlink-placement")
    assert f is not None
    assert f.evidence_value("GPU set") == "0,5"
    assert f.evidence_value("pairs without NVLink") == "0-5"
    assert f.evidence_value("ring bus bandwidth") == pytest.approx(6e9)  # QPI, NCCL's model (hardware.md §3.3)
    assert f.evidence_value("best set") == "0,3"  # joined by 2 NVLinks
    assert f.evidence_value("best set ring bus bandwidth") == pytest.approx(40e9)
    assert f.saving.frac > 0.5
    assert "CUDA_VISIBLE_DEVICES=0,3" in f.recommendation.code


def test_nvlink_placement_control_gpus_0_and_1():
    assert "nvlink-placement" not in _ids(analyze(_comm_heavy(), "dgx-1", AnalysisOptions(gpus=(0, 1))))


def test_nvlink_placement_control_nvswitch_system_and_no_set():
    assert "nvlink-placement" not in _ids(analyze(_comm_heavy(), "dgx-a100", AnalysisOptions(gpus=(0, 5))))
    assert "nvlink-placement" not in _ids(analyze(_comm_heavy(), "dgx-1"))


def test_nvlink_placement_from_a_topology_file():
    topo = TOPOLOGY / "dgx1_v100.txt"
    f = analyze(_comm_heavy(), "dgx-1", AnalysisOptions(gpus=(0, 5)), topology=topo).finding("nvlink-placement")
    assert f is not None and f.evidence_value("best set") == "0,3"
    # the whole node is not a placement problem
    assert "nvlink-placement" not in _ids(analyze(_comm_heavy(), "dgx-1", topology=topo))


def test_gpu_set_outside_the_target_is_bad_input():
    with pytest.raises(AnalysisInputError, match="not all in dgx-1"):
        analyze(_comm_heavy(), "dgx-1", AnalysisOptions(gpus=(0, 9)))
