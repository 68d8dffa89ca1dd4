"""The TensorBoard renderer, checked through a real TensorBoard server and a headless browser.

Two synthetic runs (``baseline``: fp32, batch 32, one rank; ``amp``: bf16, batch 64, two ranks)
are saved into one logdir, as ``topoprof`` writes them; a TensorBoard subprocess serves it and
its HTTP API must show both runs' scalars, text and hparams with the values the runs hold.
Behaviours that need no server (rewrites, non-finite values, options) read the event file back.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tbhelpers
from topoprof.errors import EmptyRunError
from topoprof.report.tensorboard import (
    EVENT_FILE_SUFFIX,
    HPARAM_STEP_TIME_TAG,
    HPARAM_THROUGHPUT_TAG,
    SUMMARY_TEXT_TAG,
    write_tensorboard,
)
from topoprof.run import Manifest, ModuleRecord, RankData, Run, StepRecord, median

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT_COPY = Path("/tmp/tb_scalars.png")
#: A module name holding every character that means something in a Markdown table cell.
ODD_MODULE = "head.out_proj*[1]|<b>x</b>"
#: The layers of the synthetic model by (fwd, bwd) ms; ``features.pool`` ranks 4th.
LEAVES_MS = {
    "features.conv_1": (5.0, 8.0),
    ODD_MODULE: (2.0, 3.0),
    "features.relu": (0.5, 0.7),
    "features.pool": (0.3, 0.4),
}
TOP_LAYERS = 3
#: Step-to-step wiggle (ms) so the curves are not straight lines.
WIGGLE_MS = (0.0, 1.5, -0.5, 2.0, 0.5, -1.0, 1.0, 0.0)
FIXED_PHASES_MS = {"data": 2.0, "forward": 6.0, "optimizer": 3.0, "other": 0.5}


# ---------------------------------------------------------------------------------------------
# Synthetic runs


def make_rank(rank: int, base_ms: float, offset_ms: float = 0.0) -> RankData:
    """One rank of the synthetic model; the backward phase absorbs the wiggle so phases add up."""
    steps = []
    for i, wiggle in enumerate(WIGGLE_MS):
        step_ms = base_ms + wiggle + offset_ms
        phases_ms = dict(FIXED_PHASES_MS, backward=step_ms - sum(FIXED_PHASES_MS.values()))
        steps.append(
            StepRecord(
                index=i,
                duration_us=step_ms * 1e3,
                phases_us={k: v * 1e3 for k, v in phases_ms.items()},
                forward_passes=1,
                backward_passes=1,
                optimizer_steps=1,
            )
        )
    n = len(steps)
    modules = [
        ModuleRecord(name="", kind="Net", parent=None, leaf=False, params=1_234_567,
                     fwd_us=[9e3] * n, bwd_us=[13e3] * n),
        ModuleRecord(name="features", kind="Sequential", parent="", leaf=False,
                     fwd_us=[6e3] * n, bwd_us=[9e3] * n),
    ]  # fmt: skip
    for name, (fwd_ms, bwd_ms) in LEAVES_MS.items():
        modules.append(
            ModuleRecord(
                name=name,
                kind="Conv2d" if "conv" in name else "Linear",
                parent=name.rsplit(".", 1)[0],
                leaf=True,
                params=4_096,
                flops_fwd=2_000_000_000,
                flops_bwd=4_000_000_000,
                calls_per_step=[1] * n,
                fwd_us=[fwd_ms * 1e3 + 10.0 * i for i in range(n)],
                bwd_us=[bwd_ms * 1e3] * n,
            )
        )
    return RankData(rank=rank, host="node0", steps=steps, modules=modules)


def make_run(name: str, base_ms: float, batch_size: int, precision: str, world_size: int = 1) -> Run:
    ranks = {r: make_rank(r, base_ms, offset_ms=0.8 * r) for r in range(world_size)}
    manifest = Manifest(
        name=name,
        mode="layers",
        device={"type": "cpu"},
        world_size=world_size,
        ranks=list(ranks),
        steps_requested=len(WIGGLE_MS),
        tags={"batch_size": batch_size, "precision": precision, "workers": 4},
    )
    return Run(None, manifest, ranks)


RUNS = {
    "baseline": make_run("baseline", base_ms=20.0, batch_size=32, precision="fp32"),
    "amp": make_run("amp", base_ms=12.0, batch_size=64, precision="bf16", world_size=2),
}


def step_ms(run: Run, rank: int = 0) -> list[tuple[int, float]]:
    return [(s.index, s.duration_us / 1e3) for s in run.rank(rank).steps]


def points(answer: list[list[float]]) -> list[tuple[int, float]]:
    """``[[wall_time, step, value], ...]`` from the scalars API as ``[(step, value)]``."""
    return [(int(step), value) for _, step, value in answer]


def assert_points(actual: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [s for s, _ in actual] == [s for s, _ in expected]
    assert [v for _, v in actual] == pytest.approx([v for _, v in expected], rel=1e-12)


# ---------------------------------------------------------------------------------------------
# A real TensorBoard over a logdir with both runs


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tb_logdir")
    for name, run in RUNS.items():
        run.save(root / name)
        write_tensorboard(run, top_layers=TOP_LAYERS)
    return root


@pytest.fixture(scope="module")
def server(logdir: Path, tmp_path_factory: pytest.TempPathFactory):
    tb = tbhelpers.TensorBoardServer(logdir, tmp_path_factory.mktemp("tb_server") / "tensorboard.log")
    try:
        tb.start()
        tb.wait_for_runs(set(RUNS))
        yield tb
    finally:
        tb.stop()


def test_server_lists_both_runs(server: tbhelpers.TensorBoardServer) -> None:
    assert sorted(server.get("/data/runs")) == sorted(RUNS)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_step_time_scalars_hold_each_runs_step_times(server: tbhelpers.TensorBoardServer, name: str) -> None:
    answer = server.get("/data/plugin/scalars/scalars", run=name, tag="step/time_ms")
    assert_points(points(answer), step_ms(RUNS[name]))


@pytest.mark.parametrize("name", sorted(RUNS))
def test_phase_and_throughput_scalars_are_per_step(server: tbhelpers.TensorBoardServer, name: str) -> None:
    run = RUNS[name]
    steps = run.rank(0).steps
    for phase in ("data", "forward", "backward", "optimizer", "other"):
        answer = server.get("/data/plugin/scalars/scalars", run=name, tag=f"phase/{phase}_ms")
        assert_points(points(answer), [(s.index, s.phases_us[phase] / 1e3) for s in steps])
    answer = server.get("/data/plugin/scalars/scalars", run=name, tag="step/throughput_steps_per_s")
    assert_points(points(answer), [(s.index, 1e6 / s.duration_us) for s in steps])
    batch = run.manifest.tags["batch_size"]
    answer = server.get("/data/plugin/scalars/scalars", run=name, tag="step/throughput_samples_per_s")
    assert_points(points(answer), [(s.index, batch * 1e6 / s.duration_us) for s in steps])


def test_layer_scalars_cover_only_the_top_leaf_layers(server: tbhelpers.TensorBoardServer) -> None:
    tags = server.get("/data/plugin/scalars/tags")["baseline"]
    layer_tags = {t for t in tags if t.startswith("layer_")}
    top = list(LEAVES_MS)[:TOP_LAYERS]
    assert layer_tags == {f"layer_{d}_ms/{m}" for m in top for d in ("fwd", "bwd")}
    conv = RUNS["baseline"].rank(0).module("features.conv_1")
    answer = server.get("/data/plugin/scalars/scalars", run="baseline", tag="layer_fwd_ms/features.conv_1")
    assert_points(points(answer), [(i, us / 1e3) for i, us in enumerate(conv.fwd_us)])
    answer = server.get("/data/plugin/scalars/scalars", run="baseline", tag=f"layer_bwd_ms/{ODD_MODULE}")
    assert_points(points(answer), [(i, LEAVES_MS[ODD_MODULE][1]) for i in range(len(WIGGLE_MS))])


def test_multi_rank_run_has_rank0_under_the_run_and_each_ranks_step_time(
    server: tbhelpers.TensorBoardServer,
) -> None:
    amp = RUNS["amp"]
    for r in (0, 1):
        answer = server.get("/data/plugin/scalars/scalars", run="amp", tag=f"rank/{r}/step_time_ms")
        assert_points(points(answer), step_ms(amp, r))
    assert step_ms(amp, 1) != step_ms(amp, 0)  # the control: rank 1 differs, the run shows rank 0
    answer = server.get("/data/plugin/scalars/scalars", run="amp", tag="step/time_ms")
    assert_points(points(answer), step_ms(amp, 0))
    single = server.get("/data/plugin/scalars/tags")["baseline"]
    assert not [t for t in single if t.startswith("rank/")]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_hparam_metric_scalars_are_the_medians(server: tbhelpers.TensorBoardServer, name: str) -> None:
    steps = RUNS[name].rank(0).steps
    last = steps[-1].index
    answer = server.get("/data/plugin/scalars/scalars", run=name, tag=HPARAM_STEP_TIME_TAG)
    assert points(answer)[-1] == (last, pytest.approx(median(s.duration_us for s in steps) / 1e3))
    answer = server.get("/data/plugin/scalars/scalars", run=name, tag=HPARAM_THROUGHPUT_TAG)
    assert points(answer)[-1] == (last, pytest.approx(median(1e6 / s.duration_us for s in steps)))


def test_text_summary_renders_breakdown_and_layers_with_module_names_escaped(
    server: tbhelpers.TensorBoardServer,
) -> None:
    assert SUMMARY_TEXT_TAG in server.get("/data/plugin/text/tags")["baseline"]
    (entry,) = server.get("/data/plugin/text/text", run="baseline", tag=SUMMARY_TEXT_TAG)
    html = entry["text"]
    assert html.count("<table>") == 2
    steps = RUNS["baseline"].rank(0).steps
    step_median_ms = median(s.duration_us for s in steps) / 1e3
    assert f"<td><strong>{step_median_ms:.3f}</strong></td>" in html
    assert "<td>backward</td>" in html and "<td>data</td>" in html
    # The odd name shows literally: no markup, no split table cell, no HTML tag of its own.
    assert "<td>head.out_proj*[1]|&lt;b&gt;x&lt;/b&gt;</td>" in html
    assert "<b>" not in html and "<em>" not in html
    assert "<td>features.conv_1</td>" in html
    assert "features.pool" not in html  # 4th layer, beyond top_layers
    assert "6 GFLOP" in html and "batch_size = 32" in html


def test_hparams_experiment_declares_run_tags_and_metrics(server: tbhelpers.TensorBoardServer) -> None:
    experiment = server.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = {h["name"]: h["type"] for h in experiment["hparamInfos"]}
    assert hparams == {
        "batch_size": "DATA_TYPE_FLOAT64",
        "precision": "DATA_TYPE_STRING",
        "workers": "DATA_TYPE_FLOAT64",
        "mode": "DATA_TYPE_STRING",
        "device": "DATA_TYPE_STRING",
        "world_size": "DATA_TYPE_FLOAT64",
    }
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert metrics == {HPARAM_STEP_TIME_TAG, HPARAM_THROUGHPUT_TAG}


def test_hparams_session_groups_hold_each_runs_tags_and_median_metrics(
    server: tbhelpers.TensorBoardServer,
) -> None:
    request = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [
            {"hparam": "precision"},
            {"hparam": "batch_size"},
            {"metric": {"tag": HPARAM_STEP_TIME_TAG, "group": ""}},
            {"metric": {"tag": HPARAM_THROUGHPUT_TAG, "group": ""}},
        ],
        "startIndex": 0,
        "sliceSize": 10,
    }
    groups = {g["name"]: g for g in server.post("/data/plugin/hparams/session_groups", request)["sessionGroups"]}
    assert set(groups) == set(RUNS)
    for name, run in RUNS.items():
        group = groups[name]
        assert group["hparams"] == {
            "batch_size": float(run.manifest.tags["batch_size"]),
            "precision": run.manifest.tags["precision"],
            "workers": 4.0,
            "mode": "layers",
            "device": "cpu",
            "world_size": float(run.manifest.world_size),
        }
        steps = run.rank(0).steps
        metrics = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        assert metrics[HPARAM_STEP_TIME_TAG] == pytest.approx(median(s.duration_us for s in steps) / 1e3)
        assert metrics[HPARAM_THROUGHPUT_TAG] == pytest.approx(median(1e6 / s.duration_us for s in steps))
        assert group["sessions"][0]["status"] == "STATUS_SUCCESS"
    assert groups["amp"]["metricValues"] != groups["baseline"]["metricValues"]


@pytest.mark.skipif(tbhelpers.chromium_path() is None, reason="chromium is not installed (apt-get install chromium)")
def test_scalars_dashboard_screenshot_shows_both_runs(server: tbhelpers.TensorBoardServer, tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    url = f"{server.url}/#scalars&tagFilter=%5Estep%2F&_smoothingWeight=0"
    shot = tbhelpers.chromium_screenshot(url, tmp_path / "tb_scalars.png")
    shutil.copyfile(shot, SCREENSHOT_COPY)
    assert shot.stat().st_size > 20_000
    with Image.open(shot) as image:
        rgb = image.convert("RGB")
        assert rgb.size == (1400, 1000)
        colours = rgb.getcolors(maxcolors=1 << 24) or []
        stddev = ImageStat.Stat(rgb).stddev
    assert len(colours) > 100, "screenshot is (nearly) one colour"
    assert min(stddev) > 10.0, f"screenshot has almost no contrast (stddev {stddev})"


# ---------------------------------------------------------------------------------------------
# Without a server: the event file read back


def write(run: Run, directory: Path, **kwargs: Any) -> Path:
    run.save(directory)
    return write_tensorboard(run, **kwargs)


def topoprof_event_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"events.out.tfevents.*{EVENT_FILE_SUFFIX}"))


def test_rewriting_a_run_leaves_one_topoprof_file_and_foreign_event_files_alone(tmp_path: Path) -> None:
    run = make_run("r", 10.0, 32, "fp32")
    foreign = tmp_path / "r" / "events.out.tfevents.1700000000.host.1.0"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"")
    first = write(run, tmp_path / "r")
    second = write_tensorboard(run)
    assert topoprof_event_files(tmp_path / "r") == [second]
    assert not first.exists() or first == second
    assert foreign.exists()
    assert [p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".")] == []  # no temp left
    assert tbhelpers.read_scalars(second)["step/time_ms"] == step_ms(run)


def test_non_finite_values_are_left_out_and_never_crash(tmp_path: Path) -> None:
    run = make_run("nan", 10.0, 32, "fp32")
    data = run.rank(0)
    data.steps[1].duration_us = math.nan
    data.steps[2].phases_us["data"] = math.inf
    data.steps[3].duration_us = 0.0  # no throughput for a zero-length step
    data.module("features.conv_1").fwd_us[4] = math.nan
    data.module("features.relu").fwd_us[:] = [math.nan] * len(data.steps)
    data.module("features.relu").bwd_us[:] = [math.nan] * len(data.steps)
    run.manifest.tags.update(batch_size=math.nan, lr=math.inf, layers=[1, 2], note=None)
    path = write(run, tmp_path / "nan", top_layers=10)
    scalars = tbhelpers.read_scalars(path)
    assert [s for s, _ in scalars["step/time_ms"]] == [0, 2, 3, 4, 5, 6, 7]
    assert 2 not in [s for s, _ in scalars["phase/data_ms"]]
    assert 3 not in [s for s, _ in scalars["step/throughput_steps_per_s"]]
    assert 4 not in [s for s, _ in scalars["layer_fwd_ms/features.conv_1"]]
    assert "layer_fwd_ms/features.relu" not in scalars  # no finite time: not ranked at all
    assert "step/throughput_samples_per_s" not in scalars  # batch_size is NaN
    assert all(math.isfinite(v) for values in scalars.values() for _, v in values)
    text = tbhelpers.read_text(path, SUMMARY_TEXT_TAG)
    assert "| data | 2.000 |" in text  # the median over the finite values


def test_all_steps_non_finite_gives_n_a_and_no_metrics(tmp_path: Path) -> None:
    run = make_run("nan", 10.0, 32, "fp32")
    for step in run.rank(0).steps:
        step.duration_us = math.nan
    path = write(run, tmp_path / "nan")
    scalars = tbhelpers.read_scalars(path)
    assert HPARAM_STEP_TIME_TAG not in scalars and "step/time_ms" not in scalars
    assert "| **step** | **n/a** | n/a |" in tbhelpers.read_text(path, SUMMARY_TEXT_TAG)


def test_top_layers_option_sets_the_number_of_layer_series(tmp_path: Path) -> None:
    run = make_run("r", 10.0, 32, "fp32")
    for n, expected in ((0, 0), (1, 1), (10, len(LEAVES_MS))):
        path = write(run, tmp_path / f"top{n}", top_layers=n)
        fwd = {t for t in tbhelpers.read_scalars(path) if t.startswith("layer_fwd_ms/")}
        assert fwd == {f"layer_fwd_ms/{m}" for m in list(LEAVES_MS)[:expected]}
    with pytest.raises(ValueError, match="top_layers"):
        write_tensorboard(run, top_layers=-1)


def test_samples_per_second_needs_a_numeric_batch_size(tmp_path: Path) -> None:
    run = make_run("r", 10.0, 32, "fp32")
    del run.manifest.tags["batch_size"]
    scalars = tbhelpers.read_scalars(write(run, tmp_path / "r"))
    assert "step/throughput_samples_per_s" not in scalars
    assert "step/throughput_steps_per_s" in scalars


def test_single_module_model_is_its_own_root_layer(tmp_path: Path) -> None:
    run = make_run("r", 10.0, 32, "fp32")
    data = run.rank(0)
    data.modules = [ModuleRecord(name="", kind="Linear", parent=None, leaf=True, fwd_us=[1e3] * 8, bwd_us=[2e3] * 8)]
    scalars = tbhelpers.read_scalars(write(run, tmp_path / "r"))
    assert scalars["layer_fwd_ms/(root)"][0] == (0, 1.0)


def test_logdir_argument_and_run_without_path(tmp_path: Path) -> None:
    run = make_run("r", 10.0, 32, "fp32")
    with pytest.raises(ValueError, match="logdir"):
        write_tensorboard(run)
    path = write_tensorboard(run, logdir=tmp_path / "elsewhere")
    assert path.parent == tmp_path / "elsewhere"


def test_run_without_ranks_is_an_empty_run_error(tmp_path: Path) -> None:
    with pytest.raises(EmptyRunError):
        write_tensorboard(Run(tmp_path, Manifest(name="empty"), {}))


def test_run_without_steps_still_writes_text_and_hparams(tmp_path: Path) -> None:
    run = Run(None, Manifest(name="nosteps", status="interrupted"), {0: RankData()})
    path = write(run, tmp_path / "nosteps")
    tags = {v.tag for e in tbhelpers.read_events(path) for v in e.summary.value}
    assert {SUMMARY_TEXT_TAG, "_hparams_/session_start_info", "_hparams_/session_end_info"} <= tags
    assert not [t for t in tags if t.startswith("step/")]


def test_writer_works_without_torch(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['torch'] = None\n"  # any 'import torch' now fails
        "from topoprof.run import load\n"
        "from topoprof.report.tensorboard import write_tensorboard\n"
        f"print(write_tensorboard(load({str(tmp_path / 'r')!r})))\n"
    )
    make_run("r", 10.0, 32, "fp32").save(tmp_path / "r")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).exists()
