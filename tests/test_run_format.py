"""The run directory: exact round trip, atomic files, clear errors for bad files."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import orjson
import pytest
import torch

import topoprof
from topoprof.errors import EmptyRunError, RunFormatError, RunNotFoundError
from topoprof.run import FORMAT_VERSION
from fixtures.models import MLP


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "mlp"
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with topoprof.profile(model, path, steps=3, skip_first=1, tags={"batch_size": 4, "note": "x"}, tensorboard=False) as prof:
        for _ in range(4):
            model(torch.randn(4, 8)).sum().backward()
            opt.step()
            prof.step()
    return prof.run


def test_round_trip_is_exact(saved_run):
    loaded = topoprof.load(saved_run.path)
    assert loaded.manifest == saved_run.manifest
    assert dataclasses.asdict(loaded.rank(0)) == dataclasses.asdict(saved_run.rank(0))
    assert loaded.manifest.tags == {"batch_size": 4, "note": "x"}
    g1, g2 = saved_run.graph(), loaded.graph()
    assert dict(g1.nodes(data=True)) == dict(g2.nodes(data=True))
    assert list(g1.edges(data=True)) == list(g2.edges(data=True))


def test_manifest_records_versions_device_and_settings(saved_run):
    m = topoprof.load(saved_run.path).manifest
    assert m.versions["torch"] == torch.__version__
    assert m.versions["topoprof"] == topoprof.__version__
    assert m.device["type"] == "cpu"
    assert (m.world_size, m.ranks, m.mode, m.steps_requested, m.skip_first) == (1, [0], "layers", 3, 1)
    raw = orjson.loads((saved_run.path / "run.json").read_bytes())
    assert raw["format"] == "topoprof.run" and raw["format_version"] == FORMAT_VERSION


def test_no_temporary_files_are_left(saved_run):
    names = sorted(p.name for p in saved_run.path.iterdir())
    assert names == ["rank0.json", "run.json"]


def test_loading_needs_no_torch(saved_run):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import topoprof\n"
        f"run = topoprof.load({str(saved_run.path)!r})\n"
        "g = run.graph()\n"
        "print(len(g), 'torch' in sys.modules and sys.modules['torch'] is not None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[1] == "False"


def _copy(saved_run, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(saved_run.path, dst)
    return dst


def test_missing_run_directory(tmp_path):
    with pytest.raises(RunNotFoundError, match="no such run directory"):
        topoprof.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunNotFoundError, match="no run.json"):
        topoprof.load(tmp_path / "empty")


def test_truncated_rank_file_names_the_file(saved_run, tmp_path):
    run_dir = _copy(saved_run, tmp_path)
    data = (run_dir / "rank0.json").read_bytes()
    (run_dir / "rank0.json").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunFormatError, match=r"rank0\.json: not valid JSON \(truncated or corrupt\)"):
        topoprof.load(run_dir)


def test_foreign_json_is_rejected(saved_run, tmp_path):
    run_dir = _copy(saved_run, tmp_path)
    (run_dir / "run.json").write_text('{"traceEvents": []}')
    with pytest.raises(RunFormatError, match=r"run\.json: not a topoprof.run file \(no 'format' field\)"):
        topoprof.load(run_dir)
    (run_dir / "run.json").write_text("[1, 2]")
    with pytest.raises(RunFormatError, match="top level is not an object"):
        topoprof.load(run_dir)


def test_newer_format_version_asks_for_an_upgrade(saved_run, tmp_path):
    run_dir = _copy(saved_run, tmp_path)
    raw = orjson.loads((run_dir / "rank0.json").read_bytes())
    raw["format_version"] = FORMAT_VERSION + 1
    (run_dir / "rank0.json").write_bytes(orjson.dumps(raw))
    with pytest.raises(RunFormatError, match=r"rank0\.json: format_version 2 is newer .* upgrade topoprof"):
        topoprof.load(run_dir)


def test_unexpected_fields_are_reported_not_ignored(saved_run, tmp_path):
    run_dir = _copy(saved_run, tmp_path)
    raw = orjson.loads((run_dir / "rank0.json").read_bytes())
    raw["modules"][0]["surprise"] = 1
    (run_dir / "rank0.json").write_bytes(orjson.dumps(raw))
    with pytest.raises(RunFormatError, match="rank0.json: unexpected content"):
        topoprof.load(run_dir)


def test_run_without_rank_files_is_empty(saved_run, tmp_path):
    run_dir = _copy(saved_run, tmp_path)
    (run_dir / "rank0.json").unlink()
    with pytest.raises(EmptyRunError, match="no rank<N>.json"):
        topoprof.load(run_dir)


def test_empty_file(saved_run, tmp_path):
    run_dir = _copy(saved_run, tmp_path)
    (run_dir / "run.json").write_bytes(b"")
    with pytest.raises(RunFormatError, match="run.json: file is empty"):
        topoprof.load(run_dir)


@pytest.mark.parametrize("runner", [["topoprof"], [sys.executable, "-m", "topoprof"]])
def test_cli_reports_bad_runs_in_one_line_with_exit_code_2(saved_run, tmp_path, runner):
    run_dir = _copy(saved_run, tmp_path)
    (run_dir / "rank0.json").write_text("{not json")
    proc = subprocess.run([*runner, "report", str(run_dir)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "rank0.json: not valid JSON" in lines[0]
    assert "Traceback" not in proc.stderr


def test_cli_report_prints_the_summary(saved_run):
    proc = subprocess.run(["topoprof", "report", str(saved_run.path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Step breakdown by phase" in proc.stdout and "body.0" in proc.stdout


def test_run_files_get_the_usual_permissions(saved_run):
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    for p in saved_run.path.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, p


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r["steps"][0].update(duration_us="12"), r"steps\[0\]: index must be an integer and duration_us a number"),
        (lambda r: r["steps"][0]["phases_us"].update(warmup=1.0), r"steps\[0\].phases_us must map the phases"),
        (lambda r: r["modules"][1].update(fwd_us=None), r"module 'body': fwd_us must hold one number per step"),
        (lambda r: r["modules"].append(dict(r["modules"][1])), r"module 'body' appears twice"),
        (lambda r: r["edges"].append({**r["edges"][0], "dst": "ghost"}), r"names a module that is not in the file"),
        (lambda r: r.update(world_size="2"), r"world_size must be a positive integer"),
    ],
)
def test_valid_json_with_wrong_content_is_a_format_error(saved_run, tmp_path, edit, message):
    run_dir = _copy(saved_run, tmp_path)
    raw = orjson.loads((run_dir / "rank0.json").read_bytes())
    edit(raw)
    (run_dir / "rank0.json").write_bytes(orjson.dumps(raw))
    with pytest.raises(RunFormatError, match=r"rank0\.json: .*" + message):
        topoprof.load(run_dir)


def test_cli_rejects_a_negative_count_in_one_line(saved_run):
    proc = subprocess.run(["topoprof", "report", str(saved_run.path), "--top", "-3"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "topoprof: error: topoprof report: argument --top: expected a number >= 0, got -3"
