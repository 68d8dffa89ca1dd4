"""TensorBoard renderer: every topoprof run is a TensorBoard run.

:func:`write_tensorboard` writes one ``events.out.tfevents.*.topoprof`` file into the run
directory, so a logdir that holds several run directories is a TensorBoard logdir in which the
runs overlay (DESIGN.md sections 4 and 9). What it writes, by tag:

- per profiled step (global step = ``StepRecord.index``), of rank 0:
  ``step/time_ms``, ``phase/<phase>_ms`` for every phase, ``step/throughput_steps_per_s`` and,
  when the run's tags hold a numeric ``batch_size``, ``step/throughput_samples_per_s``;
- for the top N layers by median forward + backward time: ``layer_fwd_ms/<module>`` and
  ``layer_bwd_ms/<module>`` per step;
- for runs with more than one rank: ``rank/<r>/step_time_ms`` per step, for every rank;
- ``topoprof/summary``: a Markdown text with the step-time breakdown by phase and the top layers
  (time, share of step, FLOP, parameters);
- hparams: the run's tags plus ``mode``, ``device`` and ``world_size`` against the metrics
  ``hparam/step_time_ms`` and ``hparam/throughput_steps_per_s`` (medians over steps of rank 0,
  written at the first and last profiled step).

Only the ``tensorboard`` package is needed (its protos and record writer), not torch and not
TensorFlow; it is imported when :func:`write_tensorboard` is called, so importing this module
costs nothing. Values that are not finite (NaN, inf) are left out of scalars and metrics and
shown as ``n/a`` in the text, never an error.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .._jsonio import write_bytes_atomic
from ..errors import EmptyRunError
from ..run import PHASES, ModuleRecord, RankData, Run, StepRecord, median

if TYPE_CHECKING:  # pragma: no cover - typing only
    from tensorboard.compat.proto import event_pb2, summary_pb2

__all__ = [
    "DEFAULT_TOP_LAYERS",
    "EVENT_FILE_SUFFIX",
    "SUMMARY_TEXT_TAG",
    "HPARAM_STEP_TIME_TAG",
    "HPARAM_THROUGHPUT_TAG",
    "ROOT_MODULE_LABEL",
    "write_tensorboard",
]

#: Layers that get per-step scalars and a row in the summary text, by default.
DEFAULT_TOP_LAYERS = 10

#: Appended to the names of the event files topoprof writes (TensorBoard reads any file with
#: ``tfevents`` in its name), so a rewrite removes our previous file and nothing else.
EVENT_FILE_SUFFIX = ".topoprof"

#: Tag of the Markdown summary in TensorBoard's text dashboard.
SUMMARY_TEXT_TAG = "topoprof/summary"

#: The hparams dashboard's metrics: median step time (ms) and median steps per second.
HPARAM_STEP_TIME_TAG = "hparam/step_time_ms"
HPARAM_THROUGHPUT_TAG = "hparam/throughput_steps_per_s"

#: How the root module (qualified name ``""``) is named in tags and text.
ROOT_MODULE_LABEL = "(root)"

_US_PER_MS = 1e3
_US_PER_S = 1e6
_EVENT_FILE_PREFIX = "events.out.tfevents."
_FILE_VERSION = "brain.Event:2"
_NOT_AVAILABLE = "n/a"
# Characters that change the meaning of Markdown inside a table cell (Python-Markdown with the
# tables extension, as TensorBoard's text plugin renders it); each is backslash-escaped.
_MARKDOWN_ESCAPED = "\\`*_[]|"
_SI_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
# Manifest.status -> the hparams plugin's session status; any other status is STATUS_UNKNOWN.
_STATUS_BY_RUN_STATUS = {
    "complete": "STATUS_SUCCESS",
    "running": "STATUS_RUNNING",
    "failed": "STATUS_FAILURE",
    "error": "STATUS_FAILURE",
}


def write_tensorboard(run: Run, logdir: str | Path | None = None, top_layers: int = DEFAULT_TOP_LAYERS) -> Path:
    """Write the run's TensorBoard summaries into its run directory.

    The file is written atomically and named ``events.out.tfevents.<time>.<host>.<pid>.<n>.topoprof``;
    event files that an earlier call wrote there (same suffix) are removed afterwards, so writing
    a run twice leaves one file. Event files of other writers are left alone.

    Args:
        run: the measured run (plain data).
        logdir: directory to write into; defaults to ``run.path``, the run directory, so that
            the parent of several run directories is a TensorBoard logdir.
        top_layers: how many layers, ranked by median forward + backward time per step, get
            per-step scalars and a row in the summary text; 0 writes none.

    Returns:
        The path of the event file written.

    Raises:
        ValueError: no ``logdir`` and the run has no path, or ``top_layers`` is negative.
        EmptyRunError: the run holds no rank.
        ModuleNotFoundError: the ``tensorboard`` package is not installed.
    """
    target = Path(logdir) if logdir is not None else run.path
    if target is None:
        raise ValueError("write_tensorboard() needs a logdir for a run that has no path")
    if top_layers < 0:
        raise ValueError(f"top_layers must be >= 0, got {top_layers}")
    if not run.ranks:
        raise EmptyRunError(f"{target}: run has no rank data, nothing to write to TensorBoard")

    from tensorboard.summary.writer.record_writer import RecordWriter

    wall_time_s = time.time()
    buffer = io.BytesIO()
    records = RecordWriter(buffer)
    for event in _events(run, top_layers, wall_time_s):
        records.write(event.SerializeToString())

    target.mkdir(parents=True, exist_ok=True)
    path = target / _event_file_name(target, wall_time_s)
    # The temporary name has no "tfevents" in it: a TensorBoard watching the directory would
    # otherwise start reading the half-written file.
    write_bytes_atomic(path, buffer.getvalue(), tmp_prefix=".topoprof-tb-")
    # Removed only once the new file is complete, so an interrupted rewrite keeps the old one.
    for old in target.glob(f"{_EVENT_FILE_PREFIX}*{EVENT_FILE_SUFFIX}"):
        if old != path:
            old.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------------------------------------
# Events


def _events(run: Run, top_layers: int, wall_time_s: float) -> list[event_pb2.Event]:
    """All events of the file, in order: file version, text, hparams, then scalars by step."""
    from tensorboard.compat.proto import event_pb2

    main = _main_rank(run)
    layers = _top_layers(main, top_layers)
    scalars = _Scalars()
    batch_size = _batch_size(run.manifest.tags)
    phase_names = _phase_names(main.steps)

    for step in main.steps:
        scalars.add(step.index, "step/time_ms", step.duration_us / _US_PER_MS)
        for phase in phase_names:
            if phase in step.phases_us:
                scalars.add(step.index, f"phase/{phase}_ms", step.phases_us[phase] / _US_PER_MS)
        steps_per_s = _per_second(step.duration_us)
        scalars.add(step.index, "step/throughput_steps_per_s", steps_per_s)
        if batch_size is not None:
            scalars.add(step.index, "step/throughput_samples_per_s", batch_size * steps_per_s)
    for module in layers:
        label = _module_label(module.name)
        for step, fwd_us in zip(main.steps, module.fwd_us):
            scalars.add(step.index, f"layer_fwd_ms/{label}", fwd_us / _US_PER_MS)
        for step, bwd_us in zip(main.steps, module.bwd_us):
            scalars.add(step.index, f"layer_bwd_ms/{label}", bwd_us / _US_PER_MS)
    if len(run.ranks) > 1:
        for r, data in run.ranks.items():
            for step in data.steps:
                scalars.add(step.index, f"rank/{r}/step_time_ms", step.duration_us / _US_PER_MS)

    # The hparams dashboard reads a metric's last value; writing it at the first step too draws
    # it as a flat median line in the scalars dashboard (a single point is invisible there).
    step_time_ms = _finite_median(s.duration_us for s in main.steps) / _US_PER_MS
    throughput = _finite_median(_per_second(s.duration_us) for s in main.steps)
    for metric_step in sorted({main.steps[0].index, main.steps[-1].index} if main.steps else {0}):
        scalars.add(metric_step, HPARAM_STEP_TIME_TAG, step_time_ms)
        scalars.add(metric_step, HPARAM_THROUGHPUT_TAG, throughput)

    # Steps never go backwards in the file: text and hparams first, at the first step.
    first_step = main.steps[0].index if main.steps else 0
    summaries = [(first_step, _text_summary(_summary_markdown(run, main, layers)))]
    summaries += [(first_step, s) for s in _hparams_summaries(run, main, wall_time_s)]
    summaries += list(scalars.summaries())
    events = [event_pb2.Event(wall_time=wall_time_s, file_version=_FILE_VERSION)]
    events += [event_pb2.Event(wall_time=wall_time_s, step=i, summary=s) for i, s in summaries]
    return events


class _Scalars:
    """Scalar values grouped by step, as float64 tensors with scalar-plugin metadata.

    The metadata goes on the first value of each tag only, as TensorFlow's own writers do.
    Non-finite values are dropped: a missing point, not a crash or a spike to infinity.
    """

    def __init__(self) -> None:
        self._by_step: dict[int, list[tuple[str, float]]] = {}

    def add(self, step: int, tag: str, value: float) -> None:
        if _is_finite(value):
            self._by_step.setdefault(int(step), []).append((tag, float(value)))

    def summaries(self) -> Iterable[tuple[int, summary_pb2.Summary]]:
        from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorboard.plugins.scalar import metadata as scalar_metadata

        seen: set[str] = set()
        for step in sorted(self._by_step):
            values = []
            for tag, value in self._by_step[step]:
                tensor = tensor_pb2.TensorProto(
                    dtype=types_pb2.DT_DOUBLE, tensor_shape=tensor_shape_pb2.TensorShapeProto(), double_val=[value]
                )
                entry = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
                if tag not in seen:
                    seen.add(tag)
                    entry.metadata.CopyFrom(scalar_metadata.create_summary_metadata(display_name=tag, description=""))
                values.append(entry)
            yield step, summary_pb2.Summary(value=values)


def _text_summary(markdown: str) -> summary_pb2.Summary:
    from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorboard.plugins.text import metadata as text_metadata

    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(),
        string_val=[markdown.encode("utf-8")],
    )
    meta = text_metadata.create_summary_metadata(display_name="topoprof summary", description="")
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=SUMMARY_TEXT_TAG, metadata=meta, tensor=tensor)])


def _hparams_summaries(run: Run, main: RankData, wall_time_s: float) -> list[summary_pb2.Summary]:
    """The hparams plugin's experiment, session-start and session-end summaries.

    Every run writes an experiment, and TensorBoard shows the first it finds for the whole
    logdir, so it declares names and types only: a discrete domain would hold this run's
    values alone and the dashboard's filter would hide the other runs.
    """
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
    from tensorboard.plugins.hparams import metadata as hp_metadata

    values = _hparam_values(run, main)
    infos = []
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=wall_time_s)
    for name, value in values.items():
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
            infos.append(api_pb2.HParamInfo(name=name, type=api_pb2.DATA_TYPE_BOOL))
        elif isinstance(value, float):
            start.hparams[name].number_value = value
            infos.append(api_pb2.HParamInfo(name=name, type=api_pb2.DATA_TYPE_FLOAT64))
        else:
            start.hparams[name].string_value = value
            infos.append(api_pb2.HParamInfo(name=name, type=api_pb2.DATA_TYPE_STRING))
    metrics = [
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=HPARAM_STEP_TIME_TAG), display_name="step time (ms)"),
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=HPARAM_THROUGHPUT_TAG), display_name="throughput (steps/s)"),
    ]
    experiment = api_pb2.Experiment(time_created_secs=wall_time_s, hparam_infos=infos, metric_infos=metrics)
    status = getattr(api_pb2, _STATUS_BY_RUN_STATUS.get(run.manifest.status, "STATUS_UNKNOWN"))
    end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=wall_time_s)

    summaries = []
    for tag, data in (
        (hp_metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)),
        (hp_metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
        (hp_metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)),
    ):
        meta = hp_metadata.create_summary_metadata(data)
        value = summary_pb2.Summary.Value(tag=tag, metadata=meta, tensor=hp_metadata.NULL_TENSOR)
        summaries.append(summary_pb2.Summary(value=[value]))
    return summaries


def _hparam_values(run: Run, main: RankData) -> dict[str, bool | float | str]:
    """The run's tags as hparams values, plus mode, device and world size unless a tag has the name.

    Numbers become floats (the plugin's only number type); non-finite numbers and anything
    that is not a bool, number or string become their text.
    """
    values: dict[str, bool | float | str] = {str(k): _hparam_value(v) for k, v in run.manifest.tags.items()}
    values.setdefault("mode", run.manifest.mode)
    values.setdefault("device", _device_label(run, main))
    values.setdefault("world_size", float(run.manifest.world_size))
    return values


def _hparam_value(value: Any) -> bool | float | str:
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return str(value)
        return number if math.isfinite(number) else str(value)
    if value is None:
        return "None"
    return json.dumps(value, sort_keys=True, default=str)


# ---------------------------------------------------------------------------------------------
# Text


def _summary_markdown(run: Run, main: RankData, layers: list[ModuleRecord]) -> str:
    """The run's summary as Markdown: header, step breakdown, top layers, ranks."""
    manifest = run.manifest
    name = manifest.name or (run.path.name if run.path is not None else "")
    step_us = _finite_median(s.duration_us for s in main.steps)
    lines = [
        f"## topoprof run {_md(name)}",
        "",
        f"mode **{_md(manifest.mode)}**, device **{_md(_device_label(run, main))}**, "
        f"world size **{manifest.world_size}**, {len(main.steps)} profiled steps (rank {main.rank}), "
        f"status **{_md(manifest.status)}**",
        "",
    ]
    if manifest.tags:
        tags = ", ".join(f"{_md(str(k))} = {_md(_text_value(v))}" for k, v in manifest.tags.items())
        lines += [f"tags: {tags}", ""]

    lines += [
        f"### Step time by phase (median over {len(main.steps)} steps, rank {main.rank})",
        "",
        "| phase | median ms | share of step |",
        "|---|---|---|",
    ]
    for phase in _phase_names(main.steps):
        phase_us = _finite_median(s.phases_us[phase] for s in main.steps if phase in s.phases_us)
        lines.append(f"| {_md(phase)} | {_ms(phase_us)} | {_share(phase_us, step_us)} |")
    lines += [f"| **step** | **{_ms(step_us)}** | {_share(step_us, step_us)} |", ""]

    if layers:
        lines += [
            f"### Top {len(layers)} layers by forward + backward time (median per step)",
            "",
            "| # | layer | kind | fwd ms | bwd ms | share of step | FLOP fwd+bwd | params |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for i, m in enumerate(layers, start=1):
            total_us = _layer_total_us(m)
            lines.append(
                f"| {i} | {_md(_module_label(m.name))} | {_md(m.kind)} | {_ms(_finite_median(m.fwd_us))} "
                f"| {_ms(_finite_median(m.bwd_us))} | {_share(total_us, step_us)} "
                f"| {_si(m.flops_fwd + m.flops_bwd, 'FLOP')} | {_si(m.params, '')} |"
            )
        lines.append("")

    if len(run.ranks) > 1:
        lines += [
            "### Step time by rank",
            "",
            "| rank | host | median ms | min ms | max ms |",
            "|---|---|---|---|---|",
        ]
        for r, data in run.ranks.items():
            durations = [s.duration_us for s in data.steps if _is_finite(s.duration_us)]
            low = min(durations) if durations else math.nan
            high = max(durations) if durations else math.nan
            lines.append(
                f"| {r} | {_md(data.host)} | {_ms(_finite_median(durations))} | {_ms(low)} | {_ms(high)} |"
            )
        lines.append("")
    return "\n".join(lines)


def _md(text: str) -> str:
    """``text`` as literal Markdown inside a table cell: special characters escaped.

    ``<`` and ``&`` become entities (a backslash does not escape them in Markdown, and
    TensorBoard would otherwise keep tags such as ``<em>`` that its sanitiser allows).
    """
    text = " ".join(str(text).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    return "".join("\\" + c if c in _MARKDOWN_ESCAPED else c for c in text)


def _text_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _ms(value_us: float) -> str:
    return f"{value_us / _US_PER_MS:.3f}" if _is_finite(value_us) else _NOT_AVAILABLE


def _share(part: float, whole: float) -> str:
    if not (_is_finite(part) and _is_finite(whole)) or whole <= 0:
        return _NOT_AVAILABLE
    return f"{100.0 * part / whole:.1f} %"


def _si(value: float, unit: str) -> str:
    """``value`` with an SI prefix: ``1.23 GFLOP``, ``11.7 M``."""
    if not _is_finite(value):
        return _NOT_AVAILABLE
    for factor, prefix in _SI_PREFIXES:
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}".rstrip()
    return f"{value:g} {unit}".rstrip()


# ---------------------------------------------------------------------------------------------
# Selection and small helpers


def _main_rank(run: Run) -> RankData:
    """Rank 0, or the lowest rank present when rank 0 is missing."""
    return run.ranks[0] if 0 in run.ranks else run.ranks[min(run.ranks)]


def _top_layers(data: RankData, n: int) -> list[ModuleRecord]:
    """The ``n`` leaf modules with the largest median forward + backward time per step.

    Leaves only: a container's inclusive time repeats its children's. A model that is a
    single module is its own (root) leaf. Modules without a finite time are not ranked.
    """
    timed = [(total, m) for m in data.modules if m.leaf and _is_finite(total := _layer_total_us(m))]
    timed.sort(key=lambda item: (-item[0], item[1].name))
    return [m for _, m in timed[:n]]


def _layer_total_us(module: ModuleRecord) -> float:
    """Median over steps of forward + backward time (a missing backward counts as 0)."""
    per_step = [f + b for f, b in itertools.zip_longest(module.fwd_us, module.bwd_us, fillvalue=0.0)]
    return _finite_median(per_step)


def _phase_names(steps: Iterable[StepRecord]) -> list[str]:
    """The phases present in ``steps``: the known ones in step order, then others by name."""
    present: set[str] = set()
    for step in steps:
        present.update(step.phases_us)
    return [p for p in PHASES if p in present] + sorted(present - set(PHASES))


def _batch_size(tags: Mapping[str, Any]) -> float | None:
    value = tags.get("batch_size")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if _is_finite(value) and value > 0 else None


def _device_label(run: Run, main: RankData) -> str:
    """The device's name from the manifest (``name``, else ``type``), else rank 0's device."""
    for key in ("name", "type"):
        value = run.manifest.device.get(key)
        if isinstance(value, str) and value:
            return value
    return main.device


def _module_label(name: str) -> str:
    return name if name else ROOT_MODULE_LABEL


def _per_second(duration_us: float) -> float:
    """Events per second for one event lasting ``duration_us``; NaN if not positive."""
    return _US_PER_S / duration_us if _is_finite(duration_us) and duration_us > 0 else math.nan


def _finite_median(values: Iterable[float]) -> float:
    """Median of the finite values (NaN when there are none)."""
    return median(v for v in values if _is_finite(v))


def _is_finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except (TypeError, OverflowError):
        return False


# ---------------------------------------------------------------------------------------------
# Files

_file_counter = itertools.count()


def _event_file_name(directory: Path, wall_time_s: float) -> str:
    """A new event file name, in TensorBoard's pattern (which it sorts by), ending in our suffix."""
    stem = f"{_EVENT_FILE_PREFIX}{int(wall_time_s):010d}.{socket.gethostname()}.{os.getpid()}"
    while True:
        name = f"{stem}.{next(_file_counter)}{EVENT_FILE_SUFFIX}"
        if not (directory / name).exists():
            return name


