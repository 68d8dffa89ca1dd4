"""The Kineto trace reader: columns, streaming, gzip, metadata and errors naming the file."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from topoprof.errors import TopoprofError, TraceFormatError
from topoprof.trace import TraceEvents, load_trace, summarize_trace

DATA = Path(__file__).parent / "data" / "traces"
SMALL_CHUNKS = (1 << 10, 3 << 10, 64 << 10)


def _event(i: int) -> dict[str, Any]:
    """A cpu_op with Kineto's argument set, and every 7th event a fwdbwd flow start."""
    if i % 7 == 3:
        return {"ph": "s", "id": i, "pid": 11, "tid": 12, "ts": 1000.0 + i, "cat": "fwdbwd", "name": "fwdbwd"}
    return {
        "ph": "X", "cat": "cpu_op", "name": f"aten::op{i % 5}", "pid": 11, "tid": 12,
        "ts": 1000.0 + i, "dur": 0.5,
        "args": {"External id": i, "Sequence number": i // 2, "Fwd thread id": 0, "Record function id": 0,
                 "Concrete Inputs": ["", "[1, 2]", "}, {"], "Input type": ["float", "ScalarList"],
                 "Input Strides": [[4, 1], []], "Input Dims": [[i % 3 + 1, 4], []], "Ev Idx": i},
    }


def _doc(n: int = 400) -> dict[str, Any]:
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": 11, "tid": 0, "ts": 999.0, "args": {"name": "python"}},
        {"ph": "M", "name": "thread_name", "pid": 11, "tid": 12, "ts": 999.0, "args": {"name": "thread 12"}},
    ]
    events += [_event(i) for i in range(n)]
    events.append({"ph": "i", "s": "g", "name": "Record Window End", "pid": "", "tid": "", "ts": 5000.0})
    return {"schemaVersion": 1, "deviceProperties": [{"id": 0, "name": "GPU"}],
            "distributedInfo": {"backend": "gloo", "rank": 1, "world_size": 2},
            "baseTimeNanoseconds": 1_700_000_000_000_000_000, "displayTimeUnit": "ms",
            "traceEvents": events, "traceName": "t.json"}


def _write(path: Path, doc: Any, *, indent: bool = True, gz: bool = False) -> Path:
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2 if indent else 0)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _columns(t: TraceEvents) -> dict[str, Any]:
    cols = {k: getattr(t, k).tolist() for k in ("ph", "cat", "name", "pid", "tid", "ts", "dur")}
    cols["args"] = {k: (c.rows.tolist(), c.values.tolist()) for k, c in t.args.items()}
    cols["dims"] = (t.input_dims.rows.tolist(), [t.dims[v] for v in t.input_dims.values.tolist()])
    cols["tables"] = (t.names, t.categories, t.labels)
    return json.loads(json.dumps(cols).replace("NaN", "null"))


def test_events_become_columns_with_kept_arguments(tmp_path: Path) -> None:
    doc = _doc(50)
    t = load_trace(_write(tmp_path / "t.json", doc))
    assert len(t) == len(doc["traceEvents"])
    assert t.ts.dtype == np.float64 and t.name.dtype == np.int32 and t.ph.dtype == np.uint8
    for i, e in enumerate(doc["traceEvents"]):
        got = t.event(i)
        for key in ("ph", "name", "pid", "tid", "ts"):
            assert got[key] == e[key], (i, key)
        assert got["cat"] == e.get("cat", "")
        if "dur" in e:
            assert got["dur"] == e["dur"]
        else:
            assert math.isnan(t.dur[i])
        args = e.get("args", {})
        for key in ("External id", "Sequence number", "Fwd thread id"):
            assert got.get("args", {}).get(key) == args.get(key)
        assert got.get("args", {}).get("Input Dims") == args.get("Input Dims")
        assert got.get("id") == e.get("id")
        assert "Concrete Inputs" not in got.get("args", {})  # dropped
    assert t.process_names == {11: "python"} and t.thread_names == {(11, 12): "thread 12"}
    assert t.label(int(t.pid[-1])) == ""  # string pids are kept as labels
    assert t.nbytes > 0


def test_input_dims_can_be_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.json", _doc(50))
    t = load_trace(path, input_dims=False)
    assert len(t.input_dims) == 0 and t.dims == []
    assert t.arg("External id").values.tolist() == load_trace(path).arg("External id").values.tolist()


def test_metadata_before_and_after_the_events_is_kept(tmp_path: Path) -> None:
    doc = _doc()
    for chunk in (*SMALL_CHUNKS, 1 << 20):
        t = load_trace(_write(tmp_path / "t.json", doc), chunk_bytes=chunk)
        assert t.metadata == {k: v for k, v in doc.items() if k != "traceEvents"}, chunk


@pytest.mark.parametrize("indent", [True, False])
def test_streaming_reads_equal_the_whole_file_read(tmp_path: Path, indent: bool) -> None:
    path = _write(tmp_path / "t.json", _doc(), indent=indent)
    whole = _columns(load_trace(path, chunk_bytes=1 << 30))
    for chunk in SMALL_CHUNKS:
        assert _columns(load_trace(path, chunk_bytes=chunk)) == whole, chunk


def test_gzip_is_recognised_by_content(tmp_path: Path) -> None:
    doc = _doc()
    plain = _columns(load_trace(_write(tmp_path / "t.json", doc)))
    assert _columns(load_trace(_write(tmp_path / "t.json.gz", doc, gz=True), chunk_bytes=2048)) == plain
    assert _columns(load_trace(_write(tmp_path / "gz_without_suffix.json", doc, gz=True))) == plain


def test_bare_array_form_is_read(tmp_path: Path) -> None:
    events = _doc()["traceEvents"]
    for chunk in (1 << 10, 1 << 20):
        t = load_trace(_write(tmp_path / "a.json", events), chunk_bytes=chunk)
        assert len(t) == len(events) and t.metadata == {}


def test_unknown_categories_phases_and_odd_fields_do_not_crash(tmp_path: Path) -> None:
    odd = [
        {"ph": "X", "cat": "some_future_category", "name": "x", "pid": 1, "tid": 1, "ts": 1.0, "dur": 1.0},
        {"ph": "Q", "name": "unknown phase", "pid": 1, "tid": 1, "ts": 2.0},
        {"ph": ["not", "a", "string"], "name": {"a": 1}, "pid": None, "tid": "main", "ts": "3.5"},
        {"name": "no ph, no ts"},
        {"ph": "X", "cat": "cpu_op", "name": "aten::weird", "pid": 1, "tid": 1, "ts": 4.0, "dur": 1.0,
         "args": {"External id": "0x10", "Sequence number": 1.0, "correlation": [1], "nested": [{"a": 1}, {"b": 2}]}},
        {"ph": "s", "id": "0x1f", "pid": 1, "tid": 1, "ts": 4.0, "cat": "fwdbwd", "name": "fwdbwd"},
        {"ph": "f", "id": "0x1f", "pid": 1, "tid": 1, "ts": 6.0, "cat": "fwdbwd", "name": "fwdbwd", "bp": "e"},
        {"ph": "s", "id": "flow-a", "pid": 1, "tid": 1, "ts": 4.0, "cat": "ac2g", "name": "ac2g"},
        {"ph": "X", "cat": "cpu_op", "name": "aten::no_args", "pid": 1, "tid": 1, "ts": 7.0, "dur": 0.0,
         "args": ["not", "a", "dict"]},
        {"ph": "B", "name": "begin", "pid": 1, "tid": 1, "ts": 8.0},
        {"ph": "E", "pid": 1, "tid": 1, "ts": 9.0},
    ]
    path = _write(tmp_path / "odd.json", {"traceEvents": odd * 50, "otherKey": {"x": [1, 2]}})
    for chunk in (1 << 10, 1 << 20):
        t = load_trace(path, chunk_bytes=chunk)
        assert len(t) == len(odd) * 50
        assert t.event(2)["ts"] == 3.5 and t.event(2)["tid"] == "main"
        assert t.event(3)["ph"] == "" and math.isnan(t.ts[3])
        assert t.event(4)["args"] == {"External id": 16, "Sequence number": 1}
        assert t.event(5)["id"] == t.event(6)["id"] == 0x1F  # hex string ids are read as numbers
        assert t.event(7)["id"] < 0  # other string ids are interned as negative codes
        assert t.metadata == {"otherKey": {"x": [1, 2]}}
    s = summarize_trace(t)
    assert {o.name for o in s.ops} == {"aten::weird", "aten::no_args"}


def test_boundary_lookalikes_and_events_larger_than_a_chunk(tmp_path: Path) -> None:
    big = {"ph": "X", "cat": "cpu_op", "name": "big " + "}, {" * 3000, "pid": 1, "tid": 1, "ts": 0.0,
           "dur": 1.0, "args": {"list": [{"a": "}, {"}, {"b": 2}] * 200}}
    events = [_event(i) for i in range(30)] + [big] + [_event(i) for i in range(30, 60)]
    path = _write(tmp_path / "t.json", {"traceEvents": events}, indent=False)
    whole = _columns(load_trace(path, chunk_bytes=1 << 30))
    for chunk in (1 << 10, 2 << 10):
        assert _columns(load_trace(path, chunk_bytes=chunk)) == whole
    assert load_trace(path, chunk_bytes=1 << 10).event(30)["name"] == big["name"]


def _kineto_like(tmp_path: Path) -> bytes:
    return _write(tmp_path / "src.json", _doc(300)).read_bytes()


BAD_FILES = {
    "truncated.json": lambda src: src[: len(src) // 2],
    "truncated_at_end.json": lambda src: src[:-2],
    "truncated.json.gz": lambda src: gzip.compress(src)[:2000],
    "bad_gzip.json.gz": lambda src: b"\x1f\x8b" + os.urandom(300),
    "corrupt_middle.json": lambda src: src.replace(b'"dur": ', b'"dur"  ', 120),
    "missing_brace.json": lambda src: src.replace(b"},\n    {", b",\n    {", 1),
    "foreign_object.json": lambda src: b'{"model": "resnet", "layers": [1, 2, 3]}',
    "foreign_array.json": lambda src: b"[1, 2, 3]",
    "scalar.json": lambda src: b"42",
    "empty.json": lambda src: b"",
    "whitespace.json": lambda src: b" \n\t ",
    "text.json": lambda src: b"this is not json",
    "events_not_a_list.json": lambda src: b'{"traceEvents": {"ph": "X"}}',
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
@pytest.mark.parametrize("chunk", [1 << 10, 1 << 20])
def test_bad_files_raise_trace_format_error_naming_the_file(tmp_path: Path, name: str, chunk: int) -> None:
    path = tmp_path / name
    path.write_bytes(BAD_FILES[name](_kineto_like(tmp_path)))
    with pytest.raises(TraceFormatError) as info:
        load_trace(path, chunk_bytes=chunk)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert isinstance(info.value, TopoprofError)


def test_corruption_is_reported_at_the_same_byte_whatever_the_chunk(tmp_path: Path) -> None:
    src = _kineto_like(tmp_path)
    at = src.index(b'"dur": ', len(src) // 2)
    path = tmp_path / "corrupt.json"
    path.write_bytes(src[:at] + b'"dur"  ' + src[at + 7:])
    messages = set()
    for chunk in (*SMALL_CHUNKS, 1 << 20):
        with pytest.raises(TraceFormatError, match="corrupt") as info:
            load_trace(path, chunk_bytes=chunk)
        messages.add(str(info.value))
    assert len(messages) == 1
    assert f"near byte {at + 7}" in messages.pop()


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="no such trace file"):
        load_trace(tmp_path / "nope.json")
    with pytest.raises(TraceFormatError, match="is a directory"):
        load_trace(tmp_path)


def test_checked_in_traces_load() -> None:
    for path in sorted(DATA.glob("*.json.gz")):
        t = load_trace(path)
        assert len(t) > 0 and "deviceProperties" in t.metadata


@pytest.mark.slow
def test_peak_memory_stays_below_twice_the_file_size(tmp_path: Path) -> None:
    """A ~60 MB trace is read with less added memory than twice its size (in a fresh process)."""
    events = [_event(i) for i in range(1000)]
    path = tmp_path / "big.json"
    with open(path, "wb") as f:
        f.write(b'{"traceEvents": [\n')
        for k in range(150):
            shifted = [dict(e, ts=e["ts"] + k * 2000.0) for e in events]
            f.write((b",\n" if k else b"") + b",\n".join(orjson.dumps(e, option=orjson.OPT_INDENT_2) for e in shifted))
        f.write(b"\n]}\n")
    size = path.stat().st_size
    code = (
        "import resource, sys\n"
        "from topoprof.trace import summarize_trace, load_trace\n"
        "def rss():\n"
        "    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]) * 1024\n"
        "base = rss()\n"
        f"s = summarize_trace({str(path)!r})\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base, s.total.ops)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    added, ops = int(out[0]), int(out[1])
    assert ops == 150 * sum(1 for e in events if e["ph"] == "X")
    assert added < 2 * size, (added, size)
