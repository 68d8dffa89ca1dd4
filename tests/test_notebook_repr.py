"""Runs, analyses and comparisons render in Jupyter through the HTML report's renderer."""

from __future__ import annotations

import html

import torch
from torch import nn

import topoprof


def _run(path, width):
    model = nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, path, steps=2, skip_first=1, tensorboard=False) as prof:
        for _ in range(3):
            model(torch.randn(4, 8)).sum().backward()
            opt.step()
            prof.step()
    return prof.run


def _document(frame: str) -> str:
    assert frame.startswith("<iframe srcdoc=\"") and 'sandbox="allow-scripts"' in frame
    return html.unescape(frame.split('srcdoc="', 1)[1].split('" style=', 1)[0])


def test_run_analysis_and_comparison_render_as_the_html_report(tmp_path):
    a, b = _run(tmp_path / "a", 16), _run(tmp_path / "b", 32)
    doc = _document(a._repr_html_())
    assert doc.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in doc and ">0<" not in doc[:0]
    analysis = topoprof.analyze(b, target="dgx-h100")
    assert analysis.run is b
    doc = _document(analysis._repr_html_())
    assert "DGX H100" in doc
    doc = _document(topoprof.compare(a, b)._repr_html_())
    assert doc.startswith("<!DOCTYPE html>")
