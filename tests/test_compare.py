"""topoprof.compare: step, phase, per-layer and per-finding deltas between two runs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import topoprof
from topoprof.analysis.compare import Comparison, Delta, compare
from topoprof.analysis.findings import Evidence, Finding, Recommendation, Saving
from topoprof.run import PHASES, Manifest, ModuleRecord, RankData, Run, StepRecord

_BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_report.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_report", _BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _module(name, parent, fwd, bwd, kind="Linear", leaf=True, flops=0):
    return ModuleRecord(name=name, kind=kind, parent=parent, leaf=leaf, flops_fwd=flops, flops_bwd=2 * flops,
                        calls_per_step=[1, 1], fwd_us=[fwd, fwd], bwd_us=[bwd, bwd], self_fwd_us=[fwd, fwd],
                        self_bwd_us=[bwd, bwd])


def _run(name, phases, modules, batch=8):
    steps = [StepRecord(i, sum(phases.values()), dict(phases), 1, 1, 1) for i in range(2)]
    m = Manifest(name=name, mode="layers", device={"type": "cpu"}, tags={"batch_size": batch} if batch else {})
    return Run(None, m, {0: RankData(steps=steps, modules=modules)})


@pytest.fixture
def two_runs():
    a = _run("fp32", {"data": 100.0, "forward": 400.0, "backward": 800.0, "optimizer": 100.0, "other": 0.0}, [
        _module("", None, 0.0, 0.0, kind="Net", leaf=False),
        _module("conv", "", 150.0, 300.0),
        _module("old", "", 50.0, 100.0),
    ])
    b = _run("bf16", {"data": 100.0, "forward": 200.0, "backward": 300.0, "optimizer": 100.0, "other": 0.0}, [
        _module("", None, 0.0, 0.0, kind="Net", leaf=False),
        _module("conv", "", 50.0, 100.0),
        _module("new", "", 10.0, 20.0, kind="GELU"),
    ])
    return a, b


def test_speedup_is_the_ratio_of_median_steps(two_runs):
    c = compare(*two_runs, analyze=False)
    assert c.step_us == Delta(1400.0, 700.0)
    assert c.speedup == pytest.approx(2.0)
    assert c.throughput_ratio == pytest.approx(2.0)  # same batch: samples/s double
    assert c.step_us.diff == -700.0 and c.step_us.rel == pytest.approx(-0.5)


def test_phase_deltas_in_phase_order(two_runs):
    c = compare(*two_runs, analyze=False)
    assert tuple(p.phase for p in c.phases) == PHASES
    fwd = next(p for p in c.phases if p.phase == "forward")
    assert (fwd.us.a, fwd.us.b, fwd.us.diff) == (400.0, 200.0, -200.0)
    data = next(p for p in c.phases if p.phase == "data")
    assert data.us.diff == 0.0 and data.us.ratio == 1.0


def test_layers_matched_by_name_and_one_sided_layers_listed(two_runs):
    c = compare(*two_runs, analyze=False)
    conv = c.layer("conv")
    assert conv.status == "both" and conv.self_us == Delta(450.0, 150.0)
    assert c.only_in_a == ("old",) and c.only_in_b == ("new",)
    assert c.layer("old").self_us == Delta(150.0, None) and c.layer("old").self_us.diff is None
    assert c.layer("new").kind == "GELU"
    # matched layers first, largest change of self time first; one-sided layers after
    assert [d.name for d in c.layers][:1] == ["conv"]
    assert [d.status for d in c.layers][-2:] == ["only_a", "only_b"]
    with pytest.raises(KeyError):
        c.layer("nope")


def test_a_module_of_another_class_under_the_same_name_is_flagged(two_runs):
    a, b = two_runs
    b.rank(0).modules[1].kind = "Conv2d"
    c = compare(a, b, analyze=False)
    assert c.layer("conv").kind == "Linear" and c.layer("conv").kind_b == "Conv2d"


def test_notes_say_when_batch_sizes_differ(two_runs):
    a, b = two_runs
    b.manifest.tags["batch_size"] = 16
    c = compare(a, b, analyze=False)
    assert any("batch sizes differ" in n for n in c.notes)
    assert c.throughput_ratio == pytest.approx(4.0)  # twice the samples in half the time


def _finding(rule_id, frac, severity="medium"):
    return Finding(rule_id, severity, f"{rule_id} title", (Evidence("x", 1.0, "us"),),
                   Recommendation("do it", "x = 1"), Saving(frac, "estimated"), ())


@dataclasses.dataclass
class _FakeAnalysis:
    run: Run
    findings: tuple
    target: str = "dgx-a100"


def test_findings_resolved_new_and_persisting(two_runs):
    a, b = two_runs
    fa = _FakeAnalysis(a, (_finding("fp32-matmul", 0.3, "high"), _finding("input-bound", 0.1)))
    fb = _FakeAnalysis(b, (_finding("input-bound", 0.12), _finding("compile-candidate", 0.05, "low")))
    c = compare(fa, fb)
    assert [(f.id, f.status) for f in c.findings] == [
        ("fp32-matmul", "resolved"), ("compile-candidate", "new"), ("input-bound", "persisting")]
    assert c.finding("fp32-matmul").severity_b is None
    assert c.finding("input-bound").saving_frac == Delta(0.1, 0.12)
    assert c.a.target == "dgx-a100"


def test_without_analysis_there_are_no_finding_deltas(two_runs):
    c = compare(*two_runs, analyze=False)
    assert c.findings is None
    with pytest.raises(KeyError):
        c.finding("fp32-matmul")


def test_runs_are_analysed_when_the_engine_is_there(tmp_path):
    bench = _bench()
    a = bench.synthetic_run(40, name="a")
    b = bench.synthetic_run(40, name="b", seed=1)
    c = topoprof.compare(a, b, target="dgx-h100")
    assert isinstance(c, Comparison)
    assert c.findings is not None and {f.status for f in c.findings} <= {"persisting", "resolved", "new"}
    assert c.a.target == "dgx-h100"


def test_analyses_of_saved_runs_are_compared_with_their_runs(tmp_path):
    bench = _bench()
    a = bench.synthetic_run(40, name="a")
    b = bench.synthetic_run(60, name="b")
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    c = compare(topoprof.analyze(tmp_path / "a"), topoprof.analyze(tmp_path / "b"))
    assert c.a.name == "a" and c.findings is not None
    assert "blocks.4.mlp.0" in c.only_in_b and not c.only_in_a


def test_paths_are_loaded(two_runs, tmp_path):
    a, b = two_runs
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    c = compare(tmp_path / "a", str(tmp_path / "b"), analyze=False)
    assert c.a.path == str(tmp_path / "a") and c.speedup == pytest.approx(2.0)


def test_runs_without_a_common_rank_are_refused(two_runs):
    a, b = two_runs
    b2 = Run(None, b.manifest, {1: b.rank(0)})
    with pytest.raises(ValueError, match="share no rank"):
        compare(a, b2, analyze=False)


def test_comparison_renders_to_json_and_markdown(two_runs, tmp_path):
    a, b = two_runs
    c = compare(a, b, analyze=False)
    out = topoprof.write_report(c, tmp_path / "diff.json")
    doc = json.loads(out.read_text())
    assert doc["format"] == "topoprof.comparison" and doc["summary"]["speedup"] == pytest.approx(2.0)
    assert doc["only_in_a"] == ["old"] and doc["only_in_b"] == ["new"]
    assert [p["phase"] for p in doc["phases"]] == list(PHASES)
    md = topoprof.write_report(c, tmp_path / "diff.md").read_text()
    assert "Speed-up (A step / B step): 2.00×" in md and "`old`" in md
    html = topoprof.write_report(c, tmp_path / "diff.html").read_text()
    assert 'id="report-data"' in html and "fp32" in html


def test_cli_compare_writes_html_and_prints_markdown(two_runs, tmp_path):
    a, b = two_runs
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    out = tmp_path / "diff.html"
    cli = [sys.executable, "-m", "topoprof", "compare", str(tmp_path / "a"), str(tmp_path / "b")]
    proc = subprocess.run([*cli, "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and "speed-up A/B: 2.00×" in proc.stdout
    proc = subprocess.run(cli, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# topoprof comparison: fp32 (A) vs bf16 (B)")
    proc = subprocess.run([*cli, "--format", "json", "--no-analysis"], capture_output=True, text=True)
    assert json.loads(proc.stdout)["findings"] is None
    proc = subprocess.run([*cli[:-1], str(tmp_path / "missing")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
