"""The hardware catalogue: GPU figures, DGX systems, NVLink graphs and all-reduce estimates.

Expected numbers are typed in from reference/hardware.md (section noted per test), not read
from the code, so a wrong figure in the catalogue fails here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from itertools import combinations

import networkx as nx
import pytest

from topoprof.errors import TopoprofError, UnknownTargetError
from topoprof.hardware import (
    GPUS,
    SYSTEMS,
    best_gpu_subset,
    describe_topology,
    estimate_allreduce,
    get_gpu,
    get_target,
    list_targets,
    missing_nvlinks,
    nvlink_connected,
    nvlink_pairs,
    ring_allreduce,
    ring_allreduce_time_us,
    ring_plan,
    summary_rows,
)

GB = 1e9
T = 1e12

# hardware.md §9: the source keys of the reference page.
SOURCE_KEYS = {
    "a", "b", "c", "d", "e", "f", "g", "g2", "g3", "h", "i", "j", "k", "l", "m", "n", "n1", "n2", "n3",
    "n4", "n5", "n6", "n7", "n8", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "aa", "ab",
    "ac", "ad", "ae", "af", "ag", "ah", "ai", "aj", "ak", "al", "am", "an", "ao", "ap", "aq", "ar", "nt",
    "tg", "nc1", "nc2",
}

# hardware.md §4.2: the DGX-1 (V100) NVLink pairs and their link counts.
DGX1_EDGES = {
    (0, 1): 1, (0, 2): 1, (0, 3): 2, (1, 2): 2, (1, 3): 1, (2, 3): 2,
    (4, 5): 1, (4, 6): 1, (4, 7): 2, (5, 6): 2, (5, 7): 1, (6, 7): 2,
    (0, 4): 2, (1, 5): 2, (2, 6): 1, (3, 7): 1,
}
# hardware.md §4.2: the 12 pairs without NVLink.
DGX1_NO_NVLINK = {(0, 5), (0, 6), (0, 7), (1, 4), (1, 6), (1, 7), (2, 4), (2, 5), (2, 7), (3, 4), (3, 5),
                  (3, 6)}

REQUIRED_TARGETS = ["dgx-1-p100", "dgx-1", "dgx-2", "dgx-a100", "dgx-a100-40", "dgx-h100", "dgx-h200",
                    "dgx-b200"]


# --- GPUs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpu", "dtype", "flops"),
    [
        # hardware.md table 1.1, dense
        ("p100", "fp64", 5.3 * T), ("p100", "fp32", 10.6 * T), ("p100", "fp16", 21.2 * T),
        ("v100-16gb", "fp64", 7.8 * T), ("v100-16gb", "fp32", 15.7 * T), ("v100-32gb", "fp16", 125 * T),
        ("a100-40gb", "fp64", 9.7 * T), ("a100-40gb", "fp64_tc", 19.5 * T), ("a100-40gb", "fp32", 19.5 * T),
        ("a100-40gb", "tf32", 156 * T), ("a100-80gb", "bf16", 312 * T), ("a100-80gb", "fp16", 312 * T),
        ("a100-80gb", "int8", 624 * T),
        ("h100", "fp32", 67 * T), ("h100", "tf32", 494.5 * T), ("h100", "bf16", 989 * T),
        ("h100", "fp8", 1979 * T),
        ("h200", "bf16", 989 * T), ("h200", "fp8", 1979 * T),
        ("b200", "fp32", 80 * T), ("b200", "bf16", 2250 * T), ("b200", "fp8", 4500 * T),
        ("b200", "fp4", 9000 * T), ("b200", "fp64", 37 * T),
    ],
)
def test_gpu_dense_peaks_match_hardware_md(gpu: str, dtype: str, flops: float) -> None:
    assert get_gpu(gpu).peak(dtype) == pytest.approx(flops)


@pytest.mark.parametrize(
    ("gpu", "absent"),
    [("p100", "bf16"), ("p100", "tf32"), ("p100", "fp8"), ("v100-16gb", "bf16"), ("v100-32gb", "tf32"),
     ("v100-16gb", "fp8"), ("a100-80gb", "fp8"), ("h100", "fp4")],
)
def test_gpu_lacks_dtypes_it_does_not_have(gpu: str, absent: str) -> None:
    g = get_gpu(gpu)
    assert not g.has_dtype(absent)
    with pytest.raises(KeyError, match=absent):
        g.peak(absent)


@pytest.mark.parametrize(
    ("gpu", "hbm_bytes", "bw"),
    [
        ("p100", 16 * GB, 732 * GB), ("v100-16gb", 16 * GB, 900 * GB), ("v100-32gb", 32 * GB, 900 * GB),
        ("a100-40gb", 40 * GB, 1555 * GB), ("a100-80gb", 80 * GB, 2039 * GB), ("h100", 80 * GB, 3.35 * T),
        ("h200", 141 * GB, 4.8 * T), ("b200", 180 * GB, 8.0 * T),
    ],
)
def test_gpu_memory_and_bandwidth(gpu: str, hbm_bytes: float, bw: float) -> None:
    g = get_gpu(gpu)
    assert g.hbm_bytes == hbm_bytes
    assert g.hbm_bandwidth_bytes_per_s == pytest.approx(bw)


@pytest.mark.parametrize(
    ("gpu", "sms", "gen", "links", "nvlink_bw"),
    [  # hardware.md §1.1 (SMs) and §3.1 (NVLink per GPU, one direction)
        ("p100", 56, 1, 4, 80 * GB), ("v100-16gb", 80, 2, 6, 150 * GB), ("a100-80gb", 108, 3, 12, 300 * GB),
        ("h100", 132, 4, 18, 450 * GB), ("h200", 132, 4, 18, 450 * GB), ("b200", 148, 5, 18, 900 * GB),
    ],
)
def test_gpu_sm_count_and_nvlink(gpu: str, sms: int, gen: int, links: int, nvlink_bw: float) -> None:
    g = get_gpu(gpu)
    assert (g.sm_count, g.nvlink_generation, g.nvlink_links) == (sms, gen, links)
    assert g.nvlink_bandwidth_bytes_per_s == pytest.approx(nvlink_bw)


def test_l2_where_known() -> None:
    assert get_gpu("h100").l2_bytes == 50 * 2**20
    assert get_gpu("a100-80gb").l2_bytes == 40 * 2**20
    assert get_gpu("h200").l2_bytes is None  # hardware.md gives no figure
    assert get_gpu("b200").l2_bytes is None


def test_ridge_points_match_table_1_2() -> None:
    assert get_gpu("a100-40gb").ridge_point("bf16") == pytest.approx(200.6, abs=0.1)
    assert get_gpu("a100-80gb").ridge_point("bf16") == pytest.approx(153.0, abs=0.1)
    assert get_gpu("h100").ridge_point("bf16") == pytest.approx(295.3, abs=0.1)
    assert get_gpu("h100").ridge_point("fp8") == pytest.approx(590.7, abs=0.1)
    assert get_gpu("v100-16gb").ridge_point("fp16") == pytest.approx(138.9, abs=0.1)


def test_achievable_fractions_from_section_6() -> None:
    assert get_gpu("a100-80gb").achievable_flops_frac == pytest.approx(0.869, abs=1e-3)  # 271.2 / 312
    assert get_gpu("h100").achievable_flops_frac == pytest.approx(0.803, abs=1e-3)  # 794.5 / 989
    assert get_gpu("h100").achievable_frac("fp8") == pytest.approx(0.709, abs=1e-3)  # 1402.6 / 1979
    assert get_gpu("h200").achievable_frac("fp8") == pytest.approx(0.734, abs=1e-3)  # 1453.4 / 1979
    assert get_gpu("b200").achievable_flops_frac == pytest.approx(0.776, abs=1e-3)  # 1745 / 2250
    assert get_gpu("a100-80gb").achievable_hbm_frac == pytest.approx(0.88)
    assert get_gpu("h100").achievable_hbm_frac == pytest.approx(0.84)
    assert get_gpu("v100-16gb").achievable_hbm_frac == pytest.approx(785 / 900)
    assert get_gpu("a100-80gb").achievable_flops("bf16") == pytest.approx(271.2 * T)
    for g in GPUS.values():
        assert 0 < g.achievable_flops_frac <= 1 and 0 < g.achievable_hbm_frac <= 1
        assert 5 <= g.launch_overhead_us <= 20  # HTA: 5-20 us


def test_every_figure_has_a_source_key_from_hardware_md_and_a_confidence() -> None:
    for g in GPUS.values():
        for figure in g.sourced_fields():
            src = g.source(figure)
            assert src.confidence in {"stated", "derived", "unconfirmed"}
            assert src.note
            keys = re.findall(r"\[([a-z0-9]+)\]", src.key)
            assert keys or src.key.startswith("hardware.md §"), (g.name, figure, src.key)
            assert set(keys) <= SOURCE_KEYS, (g.name, figure, src.key)


@pytest.mark.parametrize(
    ("gpu", "figure", "confidence"),
    [
        ("a100-80gb", "peak_flops.bf16", "stated"),
        ("h100", "hbm_bandwidth_bytes_per_s", "stated"),
        ("h200", "peak_flops.fp64", "derived"),  # "same as H100 ⚠️"
        ("b200", "peak_flops.tf32", "unconfirmed"),  # 1125 vs 1100 ❓
        ("b200", "peak_flops.fp64", "derived"),  # 296 / 8 ⚠️
        ("p100", "l2_bytes", "unconfirmed"),
        ("v100-16gb", "boost_clock_mhz", "unconfirmed"),
        ("v100-sxm3-32gb", "hbm_bandwidth_bytes_per_s", "unconfirmed"),
        ("v100-sxm3-32gb", "peak_flops.fp16", "derived"),
    ],
)
def test_confidence_follows_the_marks_of_hardware_md(gpu: str, figure: str, confidence: str) -> None:
    assert get_gpu(gpu).confidence(figure) == confidence


def test_gpu_lookup_ignores_case_and_separators() -> None:
    assert get_gpu("A100_80GB") is get_gpu("a100-80gb")
    assert get_gpu("a100").name == "a100-80gb"
    with pytest.raises(KeyError, match="valid GPUs: p100"):
        get_gpu("k80")


# --- Systems -----------------------------------------------------------------------------------


def test_all_required_targets_are_listed_and_found_case_insensitively() -> None:
    names = list_targets()
    for name in REQUIRED_TARGETS:
        assert name in names
        assert get_target(name.upper()).name == name
    assert get_target("DGX_A100").name == "dgx-a100"
    assert get_target(" Dgx-H100 ").name == "dgx-h100"


def test_unknown_target_raises_a_typed_error_listing_valid_names() -> None:
    with pytest.raises(UnknownTargetError) as info:
        get_target("dgx-9000")
    message = str(info.value)
    assert "dgx-9000" in message
    for name in REQUIRED_TARGETS:
        assert name in message
    assert isinstance(info.value, TopoprofError) and isinstance(info.value, KeyError)
    assert "\n" not in message


def test_bare_gpu_name_is_a_single_gpu_target() -> None:
    t = get_target("h100")
    assert t.gpu.name == "h100" and t.gpu_count == 1 and not t.nvswitch and t.nic_count == 0
    assert t.interconnect_graph().number_of_nodes() == 1
    est = estimate_allreduce("h100", 100e6)
    assert est.time_us == 0 and est.algorithm == "none"
    assert get_target("a100").gpu.name == "a100-80gb"


@pytest.mark.parametrize(
    ("name", "gpu", "count", "nvswitch", "nvls", "nics", "gbit"),
    [  # hardware.md §2
        ("dgx-1-p100", "p100", 8, False, False, 4, 100),
        ("dgx-1", "v100-16gb", 8, False, False, 4, 100),
        ("dgx-2", "v100-sxm3-32gb", 16, True, False, 8, 100),
        ("dgx-a100", "a100-80gb", 8, True, False, 8, 200),
        ("dgx-a100-40", "a100-40gb", 8, True, False, 8, 200),
        ("dgx-h100", "h100", 8, True, True, 8, 400),
        ("dgx-h200", "h200", 8, True, True, 8, 400),
        ("dgx-b200", "b200", 8, True, True, 8, 400),
    ],
)
def test_system_facts(name: str, gpu: str, count: int, nvswitch: bool, nvls: bool, nics: int,
                      gbit: float) -> None:
    s = get_target(name)
    assert (s.gpu.name, s.gpu_count, s.nvswitch, s.nvls, s.nic_count, s.nic_gbit_per_s) == (
        gpu, count, nvswitch, nvls, nics, gbit)
    assert s.nic_bandwidth_bytes_per_s == pytest.approx(gbit * 1e9 / 8)
    for figure, src in s.sources.items():
        assert set(re.findall(r"\[([a-z0-9]+)\]", src.key)) <= SOURCE_KEYS, (name, figure)


def test_network_bandwidth_per_node() -> None:
    assert get_target("dgx-a100").network_bandwidth_bytes_per_s == pytest.approx(200 * GB)  # 8 x 200 Gb/s
    assert get_target("dgx-1").network_bandwidth_bytes_per_s == pytest.approx(50 * GB)  # 4 x 100 Gb/s
    assert get_target("dgx-h100").network_bandwidth_bytes_per_s == pytest.approx(400 * GB)


def test_dgx1_graph_is_the_hybrid_cube_mesh_of_hardware_md() -> None:
    g = get_target("dgx-1").interconnect_graph()
    assert nvlink_pairs(g) == DGX1_EDGES
    assert {e for e, _ in DGX1_EDGES.items()} | DGX1_NO_NVLINK == set(combinations(range(8), 2))
    for a, b in DGX1_NO_NVLINK:
        assert g[a][b]["path"] == "SYS" and g[a][b]["links"] == 0 and not g[a][b]["nvlink"]
    for (a, b), links in DGX1_EDGES.items():
        assert g[a][b]["path"] == f"NV{links}"
        assert g[a][b]["bandwidth_bytes_per_s"] == pytest.approx(links * 25 * GB)
    assert sum(DGX1_EDGES.values()) == 24
    for v in range(8):
        assert sum(d["links"] for _, _, d in g.edges(v, data=True)) == 6
        assert g.nodes[v]["nvlink_links"] == 6
    assert not g.graph["nvswitch"]
    # the 2-link edges form the ring 0-3-2-1-5-6-7-4-0 (hardware.md §4.2)
    two = nx.Graph([e for e, n in DGX1_EDGES.items() if n == 2])
    ring = [0, 3, 2, 1, 5, 6, 7, 4]
    ring_edges = {tuple(sorted((ring[i], ring[(i + 1) % 8]))) for i in range(8)}
    assert {tuple(sorted(e)) for e in two.edges()} == ring_edges


def test_dgx1_p100_has_the_same_pairs_with_one_20_gbs_link_each() -> None:
    g = get_target("dgx-1-p100").interconnect_graph()
    assert nvlink_pairs(g) == {e: 1 for e in DGX1_EDGES}
    assert all(g[a][b]["bandwidth_bytes_per_s"] == pytest.approx(20 * GB) for a, b in DGX1_EDGES)


@pytest.mark.parametrize(("name", "n", "links", "bw"),
                         [("dgx-2", 16, 6, 150 * GB), ("dgx-a100", 8, 12, 300 * GB),
                          ("dgx-h100", 8, 18, 450 * GB), ("dgx-b200", 8, 18, 900 * GB)])
def test_nvswitch_systems_are_all_to_all_at_the_per_gpu_bandwidth(name: str, n: int, links: int,
                                                                   bw: float) -> None:
    g = get_target(name).interconnect_graph()
    assert nvlink_pairs(g) == {p: links for p in combinations(range(n), 2)}
    assert all(d["bandwidth_bytes_per_s"] == pytest.approx(bw) for _, _, d in g.edges(data=True))
    assert all(g.nodes[v]["nvlink_bandwidth_bytes_per_s"] == pytest.approx(bw) for v in g)
    assert g.graph["nvswitch"]


def test_gpus_0_and_5_are_not_nvlink_connected_on_dgx1() -> None:
    g = get_target("dgx-1").interconnect_graph()
    assert not nvlink_connected(g, [0, 5])
    assert missing_nvlinks(g, [0, 5]) == [(0, 5)]
    assert nvlink_connected(g, [0, 1, 2, 3]) and missing_nvlinks(g, [0, 1, 2, 3]) == []
    assert nvlink_connected(g, [0, 1, 5])  # through GPU1, although 0-5 has no link
    assert missing_nvlinks(g, [0, 1, 5]) == [(0, 5)]
    assert nvlink_connected(g)
    assert nvlink_connected(get_target("dgx-a100").interconnect_graph(), [0, 5])


def test_best_connected_subsets_on_dgx1() -> None:
    g = get_target("dgx-1").interconnect_graph()
    assert best_gpu_subset(g, 4) in {(0, 1, 2, 3), (4, 5, 6, 7)}  # a fully connected quad
    pair = best_gpu_subset(g, 2)
    assert DGX1_EDGES[pair] == 2  # a pair bonded by two links
    assert best_gpu_subset(g, 8) == tuple(range(8))
    assert best_gpu_subset(g, 3, gpus=[0, 5, 6, 7]) == (5, 6, 7)
    with pytest.raises(ValueError):
        best_gpu_subset(g, 9)


# --- Rings and all-reduce ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "peak", "effective"),
    [  # spec busbw and NCCL's model (hardware.md §4.2, §4.3, §5.2)
        ("dgx-1", 150 * GB, 120 * GB),  # 3 rings x 2 directions x 25; 6 x 20
        ("dgx-1-p100", 80 * GB, 72 * GB),  # 4 directed rings x 20; 4 x 18
        ("dgx-a100", 300 * GB, 240 * GB),  # 12 x 25; 12 x 20
        ("dgx-h100", 450 * GB, 370.8 * GB),  # 18 x 25; 18 x 20.6
        ("dgx-b200", 900 * GB, 721.8 * GB),  # 18 x 50; 18 x 40.1
    ],
)
def test_ring_bus_bandwidth_of_the_full_node(name: str, peak: float, effective: float) -> None:
    plan = ring_plan(get_target(name).interconnect_graph())
    assert plan.nvlink and plan.bound == "nvlink"
    assert plan.busbw_bytes_per_s == pytest.approx(peak)
    assert plan.effective_busbw_bytes_per_s == pytest.approx(effective)


def test_dgx1_rings_are_the_two_hamiltonian_rings_of_hardware_md() -> None:
    plan = ring_plan(get_target("dgx-1").interconnect_graph())
    rings = {_canonical(r): rate for r, rate in zip(plan.rings, plan.ring_rates_bytes_per_s)}
    assert rings == {_canonical((0, 3, 2, 1, 5, 6, 7, 4)): pytest.approx(50 * GB),
                     _canonical((0, 1, 3, 7, 5, 4, 6, 2)): pytest.approx(25 * GB)}


def _canonical(ring: tuple[int, ...]) -> tuple[int, ...]:
    i = ring.index(min(ring))
    r = ring[i:] + ring[:i]
    return r if r[1] < r[-1] else (r[0], *reversed(r[1:]))


def test_ring_model_is_close_to_measured_busbw() -> None:
    # hardware.md §5.3: A100 234.89, H200 ring 367.61, B200 ring 682.2 GB/s
    for name, measured in (("dgx-a100", 234.89 * GB), ("dgx-h200", 367.61 * GB), ("dgx-b200", 682.2 * GB)):
        est = estimate_allreduce(name, 16 * 2**30, algorithm="ring")
        assert est.busbw_bytes_per_s == pytest.approx(measured, rel=0.07)


def test_100mb_allreduce_dgx1_vs_dgx_a100_scales_with_busbw() -> None:
    size = 100e6
    dgx1 = estimate_allreduce("dgx-1", size)
    a100 = estimate_allreduce("dgx-a100", size)
    # by hand: DGX-1 busbw 6 links x 20 GB/s = 120 GB/s; DGX A100 12 x 20 = 240 GB/s (§4.2, §5.2)
    assert dgx1.bandwidth_time_us / a100.bandwidth_time_us == pytest.approx(240 / 120)
    assert dgx1.bandwidth_time_us == pytest.approx(2 * 7 / 8 * size / (120 * GB) * 1e6)
    assert a100.bandwidth_time_us == pytest.approx(2 * 7 / 8 * size / (240 * GB) * 1e6)
    assert dgx1.latency_us == a100.latency_us > 0  # same NCCL ring latency for 8 GPUs over NVLink
    assert dgx1.time_us == pytest.approx(dgx1.bandwidth_time_us + dgx1.latency_us)
    assert dgx1.algorithm == a100.algorithm == "ring" and dgx1.bound == a100.bound == "nvlink"


def test_ring_time_formula() -> None:
    assert ring_allreduce_time_us(100e6, 8, 240e9) == pytest.approx(2 * 7 / 8 * 100e6 / 240e9 * 1e6)
    assert ring_allreduce_time_us(100e6, 1, 240e9) == 0
    assert ring_allreduce_time_us(100e6, 2, 50e9) == pytest.approx(100e6 / 50e9 * 1e6)


def test_allreduce_over_gpus_without_nvlink_falls_back_and_says_so() -> None:
    g = get_target("dgx-1").interconnect_graph()
    est = ring_allreduce(g, 100e6, [0, 5])
    assert est.bound == "inter-socket"
    assert est.busbw_bytes_per_s == pytest.approx(6 * GB)  # NCCL's Broadwell QPI model (§3.3)
    assert any("no NVLink ring" in a for a in est.assumptions)
    est3 = ring_allreduce(g, 100e6, [0, 1, 5])
    assert est3.bound == "inter-socket" and not ring_plan(g, [0, 1, 5]).nvlink
    # the NVLink quad is 100 / 6 times faster in bandwidth terms (2 rings x 2 directions x 25 GB/s)
    quad = ring_allreduce(g, 100e6, [0, 1, 2, 3])
    assert quad.peak_busbw_bytes_per_s == pytest.approx(100 * GB)


def test_nvls_where_the_system_has_it() -> None:
    est = estimate_allreduce("dgx-h100", 1e9)
    assert est.algorithm == "nvls" and est.bound == "nvls"
    assert est.busbw_bytes_per_s == pytest.approx(480 * GB)  # nccl-tests, hardware.md §5.3
    ring = estimate_allreduce("dgx-h100", 1e9, algorithm="ring")
    assert ring.busbw_bytes_per_s == pytest.approx(370.8 * GB)
    assert est.bandwidth_time_us < ring.bandwidth_time_us
    assert estimate_allreduce("dgx-b200", 1e9).busbw_bytes_per_s == pytest.approx(838 * GB)
    assert estimate_allreduce("dgx-h100", 1e9, gpus=4).algorithm == "ring"  # below NVLS's 5 GPUs
    assert estimate_allreduce("dgx-a100", 1e9).algorithm == "ring"
    with pytest.raises(ValueError, match="NVLS"):
        estimate_allreduce("dgx-a100", 1e9, algorithm="nvls")


def test_multinode_allreduce_is_bounded_by_the_nics() -> None:
    size = 1e9
    est = estimate_allreduce("dgx-a100", size, nodes=2)
    nic_busbw = 8 * 25 * GB * 12 / 12.5  # 8 HDR NICs at 96 % (hardware.md §3.3 [an])
    assert est.bound == "network" and est.nodes == 2 and est.ranks == 16
    assert est.busbw_bytes_per_s == pytest.approx(nic_busbw)
    assert est.bandwidth_time_us == pytest.approx(2 * 15 / 16 * size / nic_busbw * 1e6)
    # 4 x 8 B200 over 8 x 400 Gb/s: measured 381.8 GB/s busbw (hardware.md §5.3)
    b200 = estimate_allreduce("dgx-b200", 16 * 2**30, nodes=4)
    assert b200.busbw_bytes_per_s == pytest.approx(381.8 * GB, rel=0.02)
    assert estimate_allreduce("dgx-1", size, nodes=2).busbw_bytes_per_s == pytest.approx(48 * GB)
    with pytest.raises(ValueError):
        estimate_allreduce("h100", size, nodes=2)


def test_estimate_is_plain_data() -> None:
    data = estimate_allreduce("dgx-1", 25e6).to_dict()
    assert data["algorithm"] == "ring" and isinstance(data["gpus"], list) and data["assumptions"]


# --- Plain data for the CLI --------------------------------------------------------------------


def test_summary_rows_cover_every_target() -> None:
    rows = summary_rows()
    assert [r["name"] for r in rows] == list_targets()
    a100 = next(r for r in rows if r["name"] == "dgx-a100")
    assert a100["tensor_peak_flops"] == pytest.approx(312 * T)
    assert a100["ring_busbw_bytes_per_s"] == pytest.approx(240 * GB)
    assert a100["total_gpu_memory_bytes"] == 640 * GB
    v100 = next(r for r in rows if r["name"] == "dgx-1")
    assert v100["tensor_dtype"] == "fp16"


def test_describe_topology_of_dgx1() -> None:
    d = describe_topology(get_target("dgx-1").interconnect_graph())
    assert len(d["gpus"]) == 8 and d["nvlink_total_links"] == 24
    assert len(d["nvlink_pairs"]) == 16 and len(d["non_nvlink_pairs"]) == 12
    assert d["ring"]["peak_busbw_bytes_per_s"] == pytest.approx(150 * GB)
    assert set(d["best_subsets"][4]["gpus"]) in ({0, 1, 2, 3}, {4, 5, 6, 7})


def test_systems_are_immutable() -> None:
    s = SYSTEMS["dgx-1"]
    with pytest.raises(AttributeError):
        s.gpu_count = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.nvlinks[(0, 5)] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        GPUS["h100"].peak_flops["bf16"] = 1.0  # type: ignore[index]


def test_hardware_package_does_not_import_torch() -> None:
    code = "import sys, topoprof.hardware; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
