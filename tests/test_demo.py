"""``topoprof demo``: the bundled example trains, the run is saved, the summary printed."""

from __future__ import annotations

import subprocess
import sys

import pytest

import topoprof


@pytest.mark.parametrize("runner", [["topoprof"], [sys.executable, "-m", "topoprof"]])
def test_demo_saves_the_run_and_prints_breakdown_and_top_layers(tmp_path, runner):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [*runner, "demo", "--out", str(out), "--steps", "3", "--skip-first", "1", "--batch-size", "8"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert "Step breakdown by phase" in text
    for phase in ("data", "forward", "backward", "optimizer", "other"):
        assert f"│ {phase} " in text
    assert "Top layers by self time" in text and "Conv2d" in text
    assert f"run saved in {out}" in text
    assert "Top findings on DGX A100" in text
    report = out / "report.html"
    assert f"report: {report}" in text
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>") and "layer1.0.conv1" in html
    run = topoprof.load(out)
    assert len(run.rank().steps) == 3 and run.manifest.status == "complete"
    assert run.manifest.tags["model"] == "ResNetSmall"
    g = run.graph()
    assert g.nodes["layer1.0.conv1"]["flops_fwd"] == 2 * 8 * 32 * 32 * 32 * 32 * 9  # 2*N*C_out*H*W*C_in*k*k
    assert ("layer1.0.relu", "layer1.1.relu") in g.edges  # the identity skip of block layer1.1
