"""topoprof.analyze as an API: its parts, options, registry, critical path, JSON, CLI, and no torch."""

from __future__ import annotations

import ast
import inspect
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import networkx as nx
import orjson
import pytest

import topoprof
from analysis_builders import DEFAULT_PHASES, linear, make_rank, make_run, pointwise, simple_run
from topoprof.analysis import Analysis, AnalysisOptions, analyze, critical_path
from topoprof.analysis import options as options_module
from topoprof.analysis.findings import SEVERITIES
from topoprof.analysis.rules import REGISTRY, RULE_IDS
from topoprof.cli import main
from topoprof.errors import AnalysisInputError, RunNotFoundError, UnknownTargetError
from topoprof.report.json_report import analysis_to_dict, dumps, write_json
from topoprof.report.terminal_analysis import render_analysis
from topoprof.run import EdgeRecord

TESTS = Path(__file__).parent
TOPOLOGY = TESTS / "data" / "topology"

#: The rule ids of reference/rules.md, in its order.
CATALOGUE = (
    "input-bound", "host-sync", "step-variance", "launch-bound", "gpu-idle", "pageable-memcpy",
    "hot-layers", "fp32-matmul", "tensor-core-alignment", "memory-bound-layers", "channels-last",
    "cudnn-benchmark", "optimizer-unfused", "compile-candidate",
    "memory-at-limit", "model-exceeds-gpu", "memory-underused",
    "dataparallel", "ddp-backend", "comm-exposed", "straggler-rank", "nvlink-placement", "scaling",
)


def _busy_run():
    """A run on which several rules fire: slow data, fp32 GEMMs, a misaligned layer, syncs."""
    phases = dict(DEFAULT_PHASES, data=3000.0)
    layers = [linear("fc1", 4096, 1001, 8192, fwd_us=2000, bwd_us=4000), pointwise("act", "GELU", "gelu", [8192, 1001]),
              linear("fc2", 1001, 4096, 8192, fwd_us=1000, bwd_us=2000)]
    return simple_run(layers, phases=phases, host_syncs=[{"op": "item", "where": "<outside model>", "count": 1}])


# --- the API -----------------------------------------------------------------------------------


def test_analyze_is_public_and_lazy():
    assert topoprof.analyze is analyze
    assert "analyze" in topoprof.__all__ and topoprof.AnalysisOptions is AnalysisOptions


def test_analysis_holds_every_part_and_ranks_findings_by_saving():
    a = analyze(_busy_run())
    assert isinstance(a, Analysis)
    assert a.target == "dgx-a100" and a.target_display == "DGX A100 640 GB"  # the default target
    assert a.breakdown.step_us == pytest.approx(sum(DEFAULT_PHASES.values()) + 2900.0)
    assert [s.name for s in a.layers] == ["", "fc1", "act", "fc2"]
    assert {r.name for r in a.roofline} == {"fc1", "act", "fc2"}
    assert a.critical_path.nodes == ("input", "fc1", "act", "fc2", "output")
    assert a.projection.target == "dgx-a100" and a.projection.single.step_us > 0
    assert {"input-bound", "fp32-matmul", "tensor-core-alignment", "host-sync", "hot-layers"} <= set(a.finding_ids)
    savings = [f.saving.frac for f in a.findings]
    estimated = [s for s in savings if s is not None]
    assert estimated == sorted(estimated, reverse=True)
    assert savings[: len(estimated)] == estimated  # findings without an estimate come last
    for f in a.findings:
        assert f.severity in SEVERITIES and f.id in REGISTRY
        assert f.saving.how and f.recommendation.text and f.title
        assert all(e.name and isinstance(e.unit, str) for e in f.evidence)
        assert "<" not in f.title and "**" not in f.title  # data, not markup


def test_analyze_accepts_a_run_directory(tmp_path):
    run = _busy_run()
    run.save(tmp_path / "r")
    assert analyze(tmp_path / "r").finding_ids == analyze(run).finding_ids
    with pytest.raises(RunNotFoundError):
        analyze(tmp_path / "missing")


def test_unknown_target_and_rule_ids_are_bad_input():
    with pytest.raises(UnknownTargetError, match="dgx-9"):
        analyze(_busy_run(), "dgx-9")
    with pytest.raises(AnalysisInputError, match="no-such-rule"):
        analyze(_busy_run(), options=AnalysisOptions(rules=("no-such-rule",)))


def test_rules_can_be_selected_and_suppressed():
    only = analyze(_busy_run(), options=AnalysisOptions(rules=("input-bound", "hot-layers")))
    assert set(only.finding_ids) == {"input-bound", "hot-layers"}
    without = analyze(_busy_run(), options=AnalysisOptions(disabled_rules=("input-bound",)))
    assert "input-bound" not in without.finding_ids and "fp32-matmul" in without.finding_ids


def test_the_registry_is_the_rules_md_catalogue():
    assert RULE_IDS == CATALOGUE and set(REGISTRY) == set(CATALOGUE)
    for spec in REGISTRY.values():
        assert spec.where and set(spec.where) <= {"cpu", "gpu", "proj"}
        assert spec.origin and inspect.getdoc(spec.func)
    assert REGISTRY["gpu-idle"].where == ("gpu",) and REGISTRY["nvlink-placement"].where == ("proj",)


_UNIT_SUFFIXES = ("_frac", "_us", "_bytes", "_elements", "_per_step", "_sigmas", "_steps", "_multiple",
                  "_channels", "_speedup", "_counts", "_nodes", "_params", "_rules", "_size", "gpus", "rules")
_SOURCES = ("TB", "HTA", "NSYS", "DLP", "SMD", "PTG", "hardware.md", "topoprof", "roofline", "PyTorch", "NVIDIA",
            "rules.md", "None:", "torch.distributed")


def test_every_option_has_a_unit_in_its_name_and_a_documented_source():
    tree = ast.parse(inspect.getsource(options_module.AnalysisOptions))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = nxt.value.value
    fields = [f for f in AnalysisOptions.__dataclass_fields__]
    assert set(docs) == set(fields), f"options without a docstring: {set(fields) - set(docs)}"
    for name, doc in docs.items():
        assert name.endswith(_UNIT_SUFFIXES) or name.startswith("master_weights"), name
        assert any(src in doc for src in _SOURCES), f"{name}: no source in {doc!r}"


def test_options_reject_fractions_out_of_range():
    with pytest.raises(ValueError, match="input_bound_min_frac"):
        AnalysisOptions(input_bound_min_frac=5.0)
    assert AnalysisOptions(gpus=[5, 0, 5]).gpus == (0, 5)


def test_a_run_with_several_ranks_is_analysed_on_the_lowest():
    ranks = [make_rank([linear("fc", 64, 64, 64)], rank=r) for r in (2, 1)]
    a = analyze(make_run(*ranks))
    assert a.rank == 1 and a.ranks == (1, 2)
    assert any("rank 1" in n for n in a.notes)


# --- critical path -------------------------------------------------------------------------------


def test_critical_path_survives_self_loops_and_cycles():
    g = nx.DiGraph(input_node="input", output_node="output")
    weights = {"input": 0, "cell": 5, "b": 10, "c": 1, "side": 3, "output": 0}
    for v, w in weights.items():
        g.add_node(v, self_us=w)
    g.add_edges_from([("input", "cell"), ("cell", "cell"),  # a module called in a loop feeds itself
                      ("cell", "b"), ("b", "c"), ("c", "b"),  # shared weights: a longer cycle
                      ("c", "output"), ("cell", "side"), ("side", "output")])
    path = critical_path(g)
    assert path.nodes == ("input", "cell", "b", "c", "output")
    assert path.time_us == 16 and path.total_us == 19 and path.share == pytest.approx(16 / 19)
    assert path.cycles == (("b", "c"),)


def test_critical_path_of_a_hand_built_run_with_a_self_loop():
    layers = [linear("cell", 64, 64, 64, fwd_us=300, bwd_us=300, calls=3), linear("head", 64, 1, 64)]
    edges = [EdgeRecord(a, b, [1], "float32", 4) for a, b in
             [("input", "cell"), ("cell", "cell"), ("cell", "head"), ("head", "output")]]
    a = analyze(simple_run(layers, edges=edges))
    assert a.critical_path.nodes == ("input", "cell", "head", "output")
    assert a.critical_path.time_us == pytest.approx(630.0)


# --- JSON ----------------------------------------------------------------------------------------


def test_json_has_stable_keys_and_null_for_nan():
    a = analyze(_busy_run(), "dgx-1")
    d = analysis_to_dict(a)
    assert list(d) == ["format", "format_version", "run", "target", "findings", "breakdown", "layers", "roofline",
                       "critical_path", "projection", "notes", "options"]
    for f in d["findings"]:
        assert list(f) == ["id", "severity", "title", "evidence", "recommendation", "saving", "layers"]
        assert list(f["saving"]) == ["frac", "how"] and list(f["recommendation"]) == ["text", "code"]
    assert {"single", "scaling", "memory", "by_precision", "phases"} <= set(d["projection"])
    assert all("bound" in s and "assumptions" in s for s in d["projection"]["scaling"])
    assert d["projection"]["memory"]["bound"] and d["projection"]["memory"]["assumptions"]
    idle = analyze(simple_run([linear("fc", 64, 64, 64, fwd_us=0, bwd_us=0)]))  # no time: achieved FLOP/s is NaN
    fc = next(layer for layer in analysis_to_dict(idle)["layers"] if layer["name"] == "fc")
    assert math.isnan(idle.layers[1].achieved_flop_per_s) and fc["achieved_flop_per_s"] is None
    text = dumps(a)
    assert b"NaN" not in text and b"Infinity" not in text
    assert orjson.loads(text) == json.loads(text.decode())
    assert dumps(a) == dumps(analyze(_busy_run(), "dgx-1"))  # deterministic


def test_write_json(tmp_path):
    write_json(analyze(_busy_run()), tmp_path / "out" / "a.json")
    d = json.loads((tmp_path / "out" / "a.json").read_text())
    assert d["format"] == "topoprof.analysis" and d["findings"]


def test_terminal_rendering_is_compact_text(tmp_path):
    out = tmp_path / "a.txt"
    with open(out, "w") as fh:
        render_analysis(analyze(_busy_run(), "dgx-1"), file=fh)
    text = out.read_text()
    for word in ("input-bound", "fp32-matmul", "8 GPUs", "memory on one", "critical path"):
        assert word in text


# --- CLI -----------------------------------------------------------------------------------------


@pytest.fixture()
def run_dir(tmp_path):
    return _busy_run().save(tmp_path / "busy")


def test_cli_analyze_json_to_stdout(run_dir, capsys):
    assert main(["analyze", str(run_dir), "--target", "dgx-h100", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["target"]["name"] == "dgx-h100"
    assert {"findings", "breakdown", "layers", "critical_path", "projection"} <= set(d)


def test_cli_analyze_to_files_by_extension(run_dir, tmp_path):
    assert main(["analyze", str(run_dir), "-o", str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["findings"]
    assert main(["analyze", str(run_dir), "-o", str(tmp_path / "a.txt"), "--gpus", "0,5", "--target", "dgx-1"]) == 0
    assert "GPUs 0,5" in (tmp_path / "a.txt").read_text()


def test_cli_analyze_text_with_topology(run_dir, capsys):
    assert main(["analyze", str(run_dir), "--target", "dgx-1", "--topology", str(TOPOLOGY / "dgx1_v100.txt"),
                 "--gpus", "0,5"]) == 0
    out = capsys.readouterr().out
    assert "nvlink-placement" in out and "GPUs 0,5" in out


def test_cli_targets_and_topology(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "dgx-a100" in out and "dgx-1" in out and "h100" in out
    assert main(["topology", str(TOPOLOGY / "dgx1_v100.txt")]) == 0
    out = capsys.readouterr().out
    assert "0-3" in out and "NV2" in out and "ring all-reduce" in out and "120.0 GB/s" in out
    assert main(["topology", str(TOPOLOGY / "dgx_a100_nv12.txt"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["nvswitch"] is True


@pytest.mark.parametrize("argv, message", [
    (["analyze", "{run}", "--target", "dgx-9"], "unknown hardware target 'dgx-9'"),
    (["analyze", "{run}", "--topology", "{missing}"], "cannot read"),
    (["analyze", "{missing}"], "no such run directory"),
    (["analyze", "{run}", "--gpus", "0,x"], "--gpus"),
    (["analyze", "{run}", "--gpus", "0,9", "--target", "dgx-1"], "not all in dgx-1"),
    (["analyze", "{run}", "-o", "{run}/a.pdf"], "cannot tell the format"),
    (["topology", "{missing}"], "cannot read"),
    (["topology", "{bad}"], ""),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, message, run_dir, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("this is not a topology matrix\n")
    args = [a.format(run=run_dir, missing=tmp_path / "missing", bad=bad) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("topoprof: error:") and message in err and "\n" not in err


# --- no torch ----------------------------------------------------------------------------------


def test_analysis_imports_no_torch(run_dir, tmp_path):
    code = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        sys.modules["torch"] = None            # any `import torch` now raises ImportError
        sys.path.insert(0, {str(TESTS)!r})
        import topoprof, topoprof.analysis
        for mod in pkgutil.walk_packages(topoprof.analysis.__path__, "topoprof.analysis."):
            importlib.import_module(mod.name)
        import topoprof.report.json_report, topoprof.report.terminal_analysis, topoprof.commands.analysis
        from analysis_builders import linear, simple_run
        a = topoprof.analyze(simple_run([linear("fc", 1001, 64, 64)]), "dgx-1")
        assert "tensor-core-alignment" in a.finding_ids
        topoprof.report.json_report.dumps(a)
        from topoprof.cli import main
        assert main(["analyze", {str(run_dir)!r}, "-o", {str(tmp_path / "nt.json")!r}]) == 0
        assert main(["targets"]) == 0
        assert sys.modules["torch"] is None
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_a_run_without_layer_costs_says_so():
    layers = [linear("fc", 64, 64, 64)]
    layers[0].ops, layers[0].flops_fwd, layers[0].flops_bwd = {}, 0, 0  # as with capture_graph=False
    a = analyze(simple_run(layers))
    assert a.roofline == () and any("capture_graph=False" in n for n in a.notes)


def test_a_run_without_a_layer_graph_skips_the_projection_rules(tmp_path):
    import torch
    from torch import nn

    import topoprof

    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, tmp_path / "r", steps=3, skip_first=1, capture_graph=False, tensorboard=False) as prof:
        for _ in range(4):
            model(torch.randn(4, 8)).sum().backward()
            opt.step()
            prof.step()
    analysis = topoprof.analyze(prof.run, target="dgx-a100")
    assert not {"scaling", "comm-exposed", "fp32-matmul", "memory-underused"} & set(analysis.finding_ids)
    assert any("captured no layer graph" in n for n in analysis.notes)
