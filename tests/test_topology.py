"""The `nvidia-smi topo -m` parser (tests/data/topology/*) and graph queries on parsed matrices."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest

from topoprof.errors import TopologyFormatError
from topoprof.hardware import (
    best_gpu_subset,
    describe_topology,
    get_target,
    gpu_nodes,
    missing_nvlinks,
    nvlink_connected,
    nvlink_pairs,
    parse_topology,
    read_topology,
    ring_allreduce,
    ring_plan,
)

DATA = Path(__file__).parent / "data" / "topology"
GB = 1e9

# hardware.md §4.2: the DGX-1 (V100) NVLink pairs and their link counts.
DGX1_EDGES = {
    (0, 1): 1, (0, 2): 1, (0, 3): 2, (1, 2): 2, (1, 3): 1, (2, 3): 2,
    (4, 5): 1, (4, 6): 1, (4, 7): 2, (5, 6): 2, (5, 7): 1, (6, 7): 2,
    (0, 4): 2, (1, 5): 2, (2, 6): 1, (3, 7): 1,
}


def _gpu_edges(graph):  # type: ignore[no-untyped-def]
    gpus = set(gpu_nodes(graph))
    return {tuple(sorted((a, b))): (d["path"], d["links"], d["bandwidth_bytes_per_s"])
            for a, b, d in graph.edges(data=True) if a in gpus and b in gpus}


# --- DGX-1 (hardware.md §4.1) ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dgx1_v100.txt", "dgx1_v100_markdown.md"])
def test_parsed_dgx1_equals_the_catalogue_graph(name: str) -> None:
    parsed = read_topology(DATA / name)
    catalogue = get_target("dgx-1").interconnect_graph()
    assert gpu_nodes(parsed) == list(range(8))
    assert nvlink_pairs(parsed) == DGX1_EDGES == nvlink_pairs(catalogue)
    assert _gpu_edges(parsed) == _gpu_edges(catalogue)  # paths, links and bandwidths, SYS pairs too
    for v in range(8):
        assert parsed.nodes[v]["nvlink_links"] == catalogue.nodes[v]["nvlink_links"] == 6
    assert not parsed.graph["nvswitch"]
    assert ring_plan(parsed).busbw_bytes_per_s == pytest.approx(150 * GB)


def test_dgx1_nics_and_affinity() -> None:
    g = read_topology(DATA / "dgx1_v100.txt")
    nics = sorted(v for v, d in g.nodes(data=True) if d["kind"] == "nic")
    assert nics == ["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"]
    assert g["mlx5_0"][0]["path"] == g["mlx5_0"][1]["path"] == "PIX"
    assert g["mlx5_0"][2]["path"] == "PHB" and g["mlx5_0"][5]["path"] == "SYS"
    assert g["mlx5_2"][4]["path"] == "PIX" and g["mlx5_3"][7]["path"] == "PIX"
    assert g.nodes[0]["cpu_affinity"] == "0-19,40-59"
    assert g.nodes[0]["numa_affinity"] is None  # no such column in this old output
    d = describe_topology(g)
    assert {n["id"]: n["nearest_gpus"] for n in d["nics"]} == {
        "mlx5_0": [0, 1], "mlx5_1": [2, 3], "mlx5_2": [4, 5], "mlx5_3": [6, 7]}
    assert not nvlink_connected(g, [0, 5])
    assert best_gpu_subset(g, 4) in {(0, 1, 2, 3), (4, 5, 6, 7)}


# --- NVSwitch-like matrices -------------------------------------------------------------------


def test_nv12_dgx_a100_with_ansi_tabs_and_nic_legend() -> None:
    raw = (DATA / "dgx_a100_nv12.txt").read_text()
    assert "\x1b[" in raw and "\t" in raw
    g = parse_topology(raw, source="a100.txt", model=get_target("dgx-a100").link_model)
    assert gpu_nodes(g) == list(range(8))
    assert nvlink_pairs(g) == {p: 12 for p in combinations(range(8), 2)}
    assert g.graph["nvswitch"] and g.graph["name"] == "a100.txt"
    assert g.nodes[0]["nvlink_links"] == 12
    assert g.nodes[0]["nvlink_bandwidth_bytes_per_s"] == pytest.approx(300 * GB)
    assert g.nodes["NIC3"]["device"] == "mlx5_3"
    assert g.nodes[2]["numa_affinity"] == 1 and g.nodes[2]["cpu_affinity"] == "16-31,144-159"
    assert g.nodes[0]["gpu_numa_id"] is None
    assert g["NIC0"][0]["path"] == "PXB" and g["NIC8"]["NIC9"]["path"] == "PIX"
    plan = ring_plan(g)
    assert plan.busbw_bytes_per_s == pytest.approx(300 * GB)
    assert plan.effective_busbw_bytes_per_s == pytest.approx(240 * GB)
    # the parsed matrix and the catalogue give the same all-reduce
    parsed = ring_allreduce(g, 100e6)
    catalogue = ring_allreduce(get_target("dgx-a100").interconnect_graph(), 100e6)
    assert parsed.time_us == pytest.approx(catalogue.time_us)


def test_nv18_h100_with_gpu_numa_id_column() -> None:
    g = read_topology(DATA / "dgx_h100_nv18.txt", model=get_target("dgx-h100").link_model)
    assert nvlink_pairs(g) == {p: 18 for p in combinations(range(8), 2)}
    assert g.nodes[0]["nvlink_bandwidth_bytes_per_s"] == pytest.approx(450 * GB)
    assert g.nodes[5]["numa_affinity"] == 1 and g.nodes[5]["gpu_numa_id"] is None
    assert g.nodes[5]["cpu_affinity"] == "56-111,168-223"
    assert g["NIC5"][5]["path"] == "PIX" and g["NIC5"][4]["path"] == "NODE" and g["NIC5"][0]["path"] == "SYS"
    assert ring_plan(g).effective_busbw_bytes_per_s == pytest.approx(370.8 * GB)


def test_nv18_without_a_model_assumes_25_gbs_links_and_says_so() -> None:
    g = read_topology(DATA / "dgx_h100_nv18.txt")
    assert g.nodes[0]["nvlink_links"] == 18  # inferred: 7 x 18 links exceed any GPU's ports
    assert g.graph["nvswitch"]
    assert any("25 GB/s per NVLink" in a for a in g.graph["assumptions"])
    assert any("25 GB/s per NVLink" in a for a in ring_plan(g).assumptions)


def test_nv6_dgx2_sixteen_gpus_through_nvswitch() -> None:
    g = read_topology(DATA / "dgx2_nv6.txt")
    assert gpu_nodes(g) == list(range(16))
    assert nvlink_pairs(g) == {p: 6 for p in combinations(range(16), 2)}
    assert g.graph["nvswitch"] and g.nodes[15]["nvlink_links"] == 6
    assert g.nodes[15]["cpu_affinity"] == "24-47,72-95"
    assert g["mlx5_7"][14]["path"] == "PIX"
    plan = ring_plan(g)
    assert plan.busbw_bytes_per_s == pytest.approx(150 * GB)  # 6 links x 25 GB/s
    assert nvlink_connected(g, [0, 15])
    catalogue = get_target("dgx-2").interconnect_graph()
    assert nvlink_pairs(catalogue) == nvlink_pairs(g)


# --- PCIe only -----------------------------------------------------------------------------------


def test_pcie_only_matrix_falls_back_to_pcie_and_host() -> None:
    g = read_topology(DATA / "pcie_4gpu.txt")
    assert nvlink_pairs(g) == {}
    assert g[0][1]["path"] == "PIX" and g[0][2]["path"] == "PXB" and g[0][3]["path"] == "SYS"
    assert not nvlink_connected(g, [0, 1])
    assert missing_nvlinks(g) == list(combinations(range(4), 2))
    same_socket = ring_plan(g, [0, 1, 2])
    assert same_socket.bound == "pcie" and not same_socket.nvlink
    assert same_socket.busbw_bytes_per_s == pytest.approx(8e9 * 16 * 128 / 130 / 8)  # PCIe Gen3 x16
    everything = ring_plan(g)
    assert everything.bound == "inter-socket"
    assert everything.busbw_bytes_per_s == pytest.approx(6 * GB)
    assert any("falls back" in a for a in everything.assumptions)
    assert best_gpu_subset(g, 2) == (0, 1)
    assert g.nodes["NIC0"]["device"] == "mlx5_0"


def test_pcie_only_matrix_with_an_nvlink_model_shows_no_nvlink_ports() -> None:
    g = read_topology(DATA / "pcie_4gpu.txt", model=get_target("dgx-a100").link_model)
    assert all(g.nodes[v]["nvlink_links"] == 0 for v in gpu_nodes(g))
    assert g[0][1]["bandwidth_bytes_per_s"] == pytest.approx(31 * GB)  # PCIe Gen4 x16 (hardware.md §3.3)
    assert ring_plan(g, [0, 1]).bound == "pcie"


def test_sixteen_gpus_with_a_missing_link_pick_subsets_greedily() -> None:
    lines = []
    for line in (DATA / "dgx2_nv6.txt").read_text().splitlines():
        toks = line.split()
        if toks and toks[0] in ("GPU3", "GPU12"):
            toks[1 + (12 if toks[0] == "GPU3" else 3)] = "SYS"
            line = "  ".join(toks)
        lines.append(line)
    g = parse_topology("\n".join(lines))
    assert missing_nvlinks(g) == [(3, 12)]
    assert g.graph["nvswitch"] and g.nodes[3]["nvlink_links"] == 6
    assert ring_plan(g).busbw_bytes_per_s == pytest.approx(150 * GB)  # a ring avoids 3-12
    subset = best_gpu_subset(g, 8)  # C(16, 8) subsets: grown greedily
    assert len(subset) == 8 and not {3, 12} <= set(subset)
    assert ring_plan(g, [3, 12]).bound == "inter-socket"


def test_soc_is_the_old_name_of_sys() -> None:
    text = "\tGPU0\tGPU1\tCPU Affinity\nGPU0\t X \tSOC\t0-7\nGPU1\tSOC\t X \t8-15\n"
    g = parse_topology(text)
    assert g[0][1]["path"] == "SOC" and ring_plan(g).bound == "inter-socket"


def test_single_gpu_matrix() -> None:
    g = parse_topology("        GPU0    CPU Affinity    NUMA Affinity\nGPU0     X      0-63    N/A\n")
    assert gpu_nodes(g) == [0] and g.nodes[0]["numa_affinity"] is None
    assert ring_plan(g).bound == "none"


# --- Tolerance ---------------------------------------------------------------------------------


def test_tabs_spaces_and_ansi_give_the_same_graph() -> None:
    spaces = (DATA / "dgx1_v100.txt").read_text()
    tabs = "\n".join("\t".join(line.split()) if line.startswith(("GPU", "mlx")) else line
                     for line in spaces.splitlines())
    coloured = spaces.replace("GPU0    GPU1", "\x1b[1m\x1b[4mGPU0\x1b[0m    GPU1")
    reference = _gpu_edges(parse_topology(spaces))
    assert _gpu_edges(parse_topology(tabs)) == reference
    assert _gpu_edges(parse_topology(coloured)) == reference


def test_text_after_the_matrix_is_ignored() -> None:
    text = (DATA / "pcie_4gpu.txt").read_text() + "\nGPU0 is fine\nSome other tool output\n"
    assert gpu_nodes(parse_topology(text)) == [0, 1, 2, 3]


# --- Errors ------------------------------------------------------------------------------------

GOOD = (
    "\tGPU0\tGPU1\tGPU2\tCPU Affinity\n"
    "GPU0\t X \tNV1\tPIX\t0-7\n"
    "GPU1\tNV1\t X \tSYS\t0-7\n"
    "GPU2\tPIX\tSYS\t X \t8-15\n"
)


def test_the_good_example_parses() -> None:
    g = parse_topology(GOOD)
    assert nvlink_pairs(g) == {(0, 1): 1}


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("", 1, "empty"),
        ("   \n\n", 1, "empty"),
        ("hello\nworld\n", 1, "no matrix header"),
        (GOOD.replace("GPU1\tNV1\t X \tSYS", "GPU1\tNV1\t X \tFOO"), 3, "unknown connection 'FOO'"),
        (GOOD.replace("GPU1\tNV1\t X \tSYS", "GPU1\tNV2\t X \tSYS"), 3, "not symmetric"),
        (GOOD.replace("GPU2\tPIX\tSYS\t X ", "GPU2\tPIX\tSYS\tPIX"), 4, "diagonal"),
        (GOOD.replace("GPU0\t X \tNV1\tPIX", "GPU0\t X \tX\tPIX"), 2, "X off the diagonal"),
        (GOOD.replace("GPU1\tNV1\t X \tSYS\t0-7\n", "GPU1\tNV1\t X\n"), 3, "has 2 cells, expected 3"),
        (GOOD.replace("GPU2\tPIX\tSYS\t X \t8-15\n", ""), 3, "no row for GPU2"),
        (GOOD.replace("GPU2\tPIX\tSYS\t X \t8-15\n", "Legend:\n"), 4, "no row for GPU2"),
        (GOOD.replace("GPU2\tPIX", "bogus line\nGPU2\tPIX"), 4, "expected a matrix row for GPU2"),
        (GOOD + "GPU1\tNV1\t X \tSYS\t0-7\n", 5, None),  # rows complete: trailing text ignored
        (GOOD.replace("GPU1\tNV1\t X \tSYS\t0-7\n", "GPU1\tNV1\t X \tSYS\t0-7\tx\ty\n"), 3,
         "more than columns"),
        (GOOD.replace("NV1", "NV0"), 2, "unknown connection 'NV0'"),
        ("\tGPU0\tGPU0\nGPU0\t X \t X \n", 1, "appears twice"),
        ("\tGPU0\tNIC0\nGPU0\t X \tNV2\nNIC0\tNV2\t X \n", 2, "NVLink NV2 to a non-GPU"),
    ],
)
def test_bad_input_names_the_file_the_line_and_the_problem(text: str, line: int, what: str | None) -> None:
    if what is None:
        parse_topology(text, source="topo.txt")
        return
    with pytest.raises(TopologyFormatError) as info:
        parse_topology(text, source="topo.txt")
    message = str(info.value)
    assert message.startswith(f"topo.txt:{line}: "), message
    assert what in message
    assert "\n" not in message


def test_truncated_file_is_reported_with_its_path(tmp_path: Path) -> None:
    lines = (DATA / "dgx1_v100.txt").read_text().splitlines()
    path = tmp_path / "topo.txt"
    path.write_text("\n".join(lines[:8]) + "\n")  # header + GPU0..GPU4 rows
    with pytest.raises(TopologyFormatError, match=rf"{path}:8: no row for GPU5, GPU6, GPU7, mlx5_2"):
        read_topology(path)


def test_missing_file_is_a_topology_error(tmp_path: Path) -> None:
    with pytest.raises(TopologyFormatError, match="cannot read"):
        read_topology(tmp_path / "nope.txt")


def test_unknown_gpu_in_queries_is_rejected() -> None:
    g = read_topology(DATA / "pcie_4gpu.txt")
    with pytest.raises(ValueError, match="not in the graph"):
        ring_plan(g, [0, 9])
