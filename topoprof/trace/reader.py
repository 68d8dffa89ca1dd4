"""Read a Kineto (Chrome trace format) JSON file into compact columns.

A Kineto trace is one JSON object whose ``traceEvents`` array holds every event as a small
object. Held as Python dicts, a 1 GB trace takes several times its size in memory, so the reader
never holds the whole array: it reads the text in blocks, cuts each block at an event boundary,
parses the piece with orjson and appends it to numpy columns before the next block is read.
The peak is one block of text, its parsed events and the columns (about 40 bytes per event
plus the sparse arguments), far below the file size for large traces.

Cutting at an event boundary needs no JSON tokenizer: a candidate boundary is a ``}`` followed
by ``,`` and ``{`` (whitespace allowed). A wrong candidate (inside a string or a nested object)
always leaves the piece unbalanced, so orjson reports "unexpected end of data" at the end of the
piece and the reader tries an earlier candidate. Any other parse error is real corruption and
raises :class:`~topoprof.errors.TraceFormatError` with the byte offset.

Columns (one row per event, in file order):

========  =======  ====================================================================
column    dtype    meaning
========  =======  ====================================================================
ph        uint8    phase code, index into :data:`PHASE_CODES` (0: other / missing)
cat       int32    category, index into :attr:`TraceEvents.categories` (0: none)
name      int32    name, index into :attr:`TraceEvents.names`
pid, tid  int64    process / thread id; string ids (``"Spans"``) are ``-1 - k`` for
                   ``labels[k]``
ts        float64  start time in microseconds (NaN if missing)
dur       float64  duration in microseconds (NaN if missing, e.g. instant events)
========  =======  ====================================================================

Arguments are kept sparse (:class:`SparseColumn`: row indices and values) for the keys in
:data:`INT_ARGS` (``External id``, ``Sequence number``, ``Fwd thread id``, ``correlation``),
the flow ``id`` of ``s``/``t``/``f`` events, and, unless ``input_dims=False``, ``Input Dims`` (as
an index into :attr:`TraceEvents.dims`, JSON text). Everything else in ``args`` is dropped.

The cyclic garbage collector is paused while reading: the parsed events form no cycles, and
its repeated scans of millions of fresh containers would triple the parse time.
"""

from __future__ import annotations

import gc
import gzip
import itertools
import math
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import orjson

from ..errors import TraceFormatError

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "INT_ARGS",
    "PHASE_CODES",
    "SparseColumn",
    "TraceEvents",
    "load_trace",
]

#: Trace event phases with a code; any other phase (or none) is code 0.
PHASE_CODES: tuple[str, ...] = ("", "X", "B", "E", "i", "I", "s", "t", "f", "M", "C", "b", "e", "n")
_PH_INDEX: dict[Any, int] = {p: i for i, p in enumerate(PHASE_CODES)}
_FLOW_PH_CODES = np.array([_PH_INDEX[p] for p in ("s", "t", "f")], dtype=np.uint8)

#: Integer arguments kept (sparse) from ``args``. ``Fwd thread id`` is the *RecordFunction*
#: thread id of a backward op's forward op (a small integer, not the OS thread id).
INT_ARGS: tuple[str, ...] = ("External id", "Sequence number", "Fwd thread id", "correlation")
#: Top-level integer field of flow events (``s``, ``t``, ``f``): the flow id.
FLOW_ID = "id"
#: Shape argument kept (sparse) as interned JSON text.
INPUT_DIMS = "Input Dims"

#: Text parsed per piece. Small pieces keep the freshly parsed objects in the CPU caches while
#: they are converted (256 KiB parses about twice as fast as 8 MiB) and the transient Python
#: objects (5-10x the text) to a few MB whatever the file size.
DEFAULT_CHUNK_BYTES = 256 << 10
#: How many earlier boundary candidates are tried when a cut fails before more text is read.
_MAX_CUT_RETRIES = 8
#: A header (everything before ``"traceEvents"``) larger than this is not a Kineto header: the
#: reader then parses the file in one piece.
_MAX_HEADER_BYTES = 64 << 20
#: Pieces of a column joined into one block (bounds the number of small arrays alive).
_PIECES_PER_BLOCK = 64
_COLUMN_DTYPES: dict[str, type] = {"ph": np.uint8, "cat": np.int32, "name": np.int32, "pid": np.int64,
                                   "tid": np.int64, "ts": np.float64, "dur": np.float64}
_GZIP_MAGIC = b"\x1f\x8b"
_WS = b" \t\r\n"
_TRACE_EVENTS_KEY = b'"traceEvents"'
_END_OF_DATA = "unexpected end of data"


@dataclass(frozen=True)
class SparseColumn:
    """Values of one argument for the events that have it.

    Attributes:
        rows: Event indices (int64, ascending).
        values: The argument's value for each of ``rows`` (int64).
    """

    rows: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.size)

    def dense(self, n: int, fill: int = -1) -> np.ndarray:
        """Return an int64 array of length ``n`` with ``fill`` where the argument is absent."""
        out = np.full(n, fill, dtype=np.int64)
        out[self.rows] = self.values
        return out

    def take(self, rows: np.ndarray, fill: int = -1) -> np.ndarray:
        """Values at event indices ``rows`` (int64), ``fill`` where the argument is absent;
        unlike :meth:`dense`, allocates only ``len(rows)``."""
        if not self.rows.size:
            return np.full(rows.size, fill, dtype=np.int64)
        j = np.searchsorted(self.rows, rows)
        jj = np.minimum(j, self.rows.size - 1)
        return np.where(self.rows[jj] == rows, self.values[jj], fill)

    def get(self, row: int) -> int | None:
        """Return the value for event ``row`` or None."""
        i = int(np.searchsorted(self.rows, row))
        if i < self.rows.size and int(self.rows[i]) == row:
            return int(self.values[i])
        return None


@dataclass
class TraceEvents:
    """A Kineto trace held as columns (see the module docstring for the layout).

    Attributes:
        path: The file it was read from.
        metadata: Every top-level key except ``traceEvents`` (``deviceProperties``,
            ``distributedInfo``, ``baseTimeNanoseconds``, ``schemaVersion``, ...).
        names, categories, labels, dims: Interned string tables.
        ph, cat, name, pid, tid, ts, dur: Per-event columns.
        args: Sparse integer arguments keyed by argument name (plus ``"id"`` for flows).
        input_dims: Sparse ``Input Dims``; values index :attr:`dims`.
        process_names: ``pid -> name`` from ``process_name`` metadata events.
        thread_names: ``(pid, tid) -> name`` from ``thread_name`` metadata events.
    """

    path: str
    metadata: dict[str, Any]
    names: list[str]
    categories: list[str]
    labels: list[str]
    dims: list[str]
    ph: np.ndarray
    cat: np.ndarray
    name: np.ndarray
    pid: np.ndarray
    tid: np.ndarray
    ts: np.ndarray
    dur: np.ndarray
    args: dict[str, SparseColumn]
    input_dims: SparseColumn
    process_names: dict[int, str] = field(default_factory=dict)
    thread_names: dict[tuple[int, int], str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ts.size)

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns and sparse arguments (not the string tables)."""
        total = sum(a.nbytes for a in (self.ph, self.cat, self.name, self.pid, self.tid, self.ts, self.dur))
        for col in (*self.args.values(), self.input_dims):
            total += col.rows.nbytes + col.values.nbytes
        return int(total)

    def category_codes(self, *categories: str) -> np.ndarray:
        """Codes of the given categories (case-insensitive) that occur in the trace."""
        wanted = {c.lower() for c in categories}
        return np.array([i for i, c in enumerate(self.categories) if c.lower() in wanted], dtype=np.int32)

    def category_mask(self, *categories: str) -> np.ndarray:
        """Boolean mask of the events in any of ``categories`` (case-insensitive)."""
        return np.isin(self.cat, self.category_codes(*categories))

    def phase_mask(self, *phases: str) -> np.ndarray:
        """Boolean mask of the events whose ``ph`` is one of ``phases``."""
        codes = [_PH_INDEX[p] for p in phases if p in _PH_INDEX]
        return np.isin(self.ph, np.array(codes, dtype=np.uint8))

    def arg(self, key: str) -> SparseColumn:
        """The sparse column of integer argument ``key`` (empty if never present)."""
        col = self.args.get(key)
        if col is None:
            return SparseColumn(np.empty(0, np.int64), np.empty(0, np.int64))
        return col

    def label(self, code: int) -> str | int:
        """A pid/tid as written in the trace (string ids come back as strings)."""
        return self.labels[-1 - code] if code < 0 else int(code)

    def event(self, i: int) -> dict[str, Any]:
        """Rebuild event ``i`` as a dict holding the kept fields (for debugging and tests)."""
        out: dict[str, Any] = {
            "ph": PHASE_CODES[int(self.ph[i])],
            "cat": self.categories[int(self.cat[i])],
            "name": self.names[int(self.name[i])],
            "pid": self.label(int(self.pid[i])),
            "tid": self.label(int(self.tid[i])),
            "ts": float(self.ts[i]),
        }
        if not math.isnan(self.dur[i]):
            out["dur"] = float(self.dur[i])
        args = {k: v for k, col in self.args.items() if k != FLOW_ID and (v := col.get(i)) is not None}
        dims = self.input_dims.get(i)
        if dims is not None:
            args[INPUT_DIMS] = orjson.loads(self.dims[dims])
        if args:
            out["args"] = args
        flow = self.args.get(FLOW_ID)
        if flow is not None and (fid := flow.get(i)) is not None:
            out["id"] = fid
        return out


class _Interner:
    """Maps hashable values to dense int codes; :attr:`values` holds their text."""

    def __init__(self, first: str | None = None) -> None:
        self.index: dict[Any, int] = {}
        self.values: list[str] = []
        if first is not None:
            self.index[first] = 0
            self.values.append(first)

    def add(self, value: Any) -> int:
        code = self.index.get(value)
        if code is None:
            code = len(self.values)
            self.index[value] = code
            if isinstance(value, bytes):
                text = value.decode("utf-8", errors="replace")
            else:
                text = "" if value is None else value if isinstance(value, str) else str(value)
            self.values.append(text)
        return code

    def codes(self, values: list[Any]) -> np.ndarray:
        """Codes of ``values`` as int32 (raises TypeError on unhashable values)."""
        index = self.index
        try:  # most pieces hold no new value: one pass
            return np.fromiter(map(index.__getitem__, values), dtype=np.int32, count=len(values))
        except KeyError:
            pass
        for v in dict.fromkeys(values):  # new values in order of first appearance
            if v not in index:
                self.add(v)
        return np.fromiter(map(index.__getitem__, values), dtype=np.int32, count=len(values))


class _Parts:
    """An array built from many small pieces. Pieces are joined into blocks every
    :data:`_PIECES_PER_BLOCK` appends, so the small allocations are reused instead of piling up
    in the heap, and the final join copies a few large blocks."""

    def __init__(self, dtype: type) -> None:
        self.dtype = dtype
        self.blocks: list[np.ndarray] = []
        self.pieces: list[np.ndarray] = []

    def __bool__(self) -> bool:
        return bool(self.blocks or self.pieces)

    def append(self, piece: np.ndarray) -> None:
        self.pieces.append(piece)
        if len(self.pieces) >= _PIECES_PER_BLOCK:
            self.blocks.append(np.concatenate(self.pieces))
            self.pieces.clear()

    def join(self) -> np.ndarray:
        """The whole array (the parts are released)."""
        parts = self.blocks + self.pieces
        self.blocks, self.pieces = [], []
        if not parts:
            return np.empty(0, dtype=self.dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class _Columns:
    """Accumulates per-piece columns, then concatenates them once."""

    def __init__(self, input_dims: bool = True) -> None:
        self.input_dims = input_dims
        self.names = _Interner("")
        self.categories = _Interner("")
        self.labels = _Interner()
        self.dims = _Interner()
        self.parts = {k: _Parts(t) for k, t in _COLUMN_DTYPES.items()}
        self.sparse_rows = {k: _Parts(np.int64) for k in (*INT_ARGS, FLOW_ID, INPUT_DIMS)}
        self.sparse_values = {k: _Parts(np.int64) for k in (*INT_ARGS, FLOW_ID, INPUT_DIMS)}
        self.process_names: dict[int, str] = {}
        self.thread_names: dict[tuple[int, int], str] = {}
        self.flow_ids = _Interner()
        self.n = 0

    # -- value conversion -------------------------------------------------------------------
    def _id_column(self, values: tuple[Any, ...]) -> np.ndarray:
        """pid/tid column: integers as they are, anything else interned as ``-1 - code``."""
        try:
            return np.fromiter(values, dtype=np.int64, count=len(values))
        except (TypeError, ValueError, OverflowError):  # "Spans", "" or None in Kineto's trailer
            pass
        out = np.empty(len(values), dtype=np.int64)
        for i, v in enumerate(values):
            if type(v) is int and -(1 << 62) < v < (1 << 62):
                out[i] = v
            else:
                out[i] = -1 - self.labels.add(_hashable(v))
        return out

    @staticmethod
    def _float_column(values: list[Any]) -> np.ndarray:
        try:
            return np.fromiter(values, dtype=np.float64, count=len(values))
        except (TypeError, ValueError):
            return np.fromiter(map(_to_float, values), dtype=np.float64, count=len(values))

    def _intern(self, table: _Interner, values: list[Any]) -> np.ndarray:
        try:
            return table.codes(values)
        except TypeError:  # an unhashable name or category in a foreign trace
            return table.codes([_hashable(v) for v in values])

    # -- one parsed piece -------------------------------------------------------------------
    def add_events(self, events: list[Any], where: Callable[[], str]) -> None:
        """Append one piece of parsed ``traceEvents``; ``where`` names it in errors."""
        n = len(events)
        if n == 0:
            return
        nan = math.nan
        # One pass over the dicts (each is touched once, while it is in cache), then columns.
        try:
            recs = [(e.get("ph"), e.get("cat", ""), e.get("name", ""), e.get("pid", 0), e.get("tid", 0),
                     e.get("ts", nan), e.get("dur", nan), e.get("args")) for e in events]
        except AttributeError:
            i = next(i for i, e in enumerate(events) if type(e) is not dict)
            raise TraceFormatError(f"{where()}: not a trace: traceEvents[{self.n + i}] is not an object") from None
        phs, cats, names, pids, tids, tss, durs, args = zip(*recs)
        del recs
        get_ph = _PH_INDEX.get
        try:
            ph = np.fromiter(map(get_ph, phs, _zeros(n)), dtype=np.uint8, count=n)
        except TypeError:  # an unhashable "ph" in a foreign trace
            ph = np.fromiter((get_ph(_hashable(p), 0) for p in phs), dtype=np.uint8, count=n)
        self.parts["ph"].append(ph)
        self.parts["cat"].append(self._intern(self.categories, cats))
        self.parts["name"].append(self._intern(self.names, names))
        self.parts["pid"].append(self._id_column(pids))
        self.parts["tid"].append(self._id_column(tids))
        self.parts["ts"].append(self._float_column(tss))
        self.parts["dur"].append(self._float_column(durs))

        base = self.n
        if self.input_dims:
            none = (None,) * (len(INT_ARGS) + 1)
            arg_recs = [(a.get("External id"), a.get("Sequence number"), a.get("Fwd thread id"), a.get("correlation"),
                         a.get(INPUT_DIMS)) if a.__class__ is dict else none for a in args]
        else:
            none = (None,) * len(INT_ARGS)
            arg_recs = [(a.get("External id"), a.get("Sequence number"), a.get("Fwd thread id"), a.get("correlation"))
                        if a.__class__ is dict else none for a in args]
        for key, values in zip((*INT_ARGS, INPUT_DIMS), zip(*arg_recs)):
            col = np.fromiter(values, dtype=object, count=n)  # 1-D even when values are lists
            rows = np.flatnonzero(col != None)
            if not rows.size:
                continue
            if key == INPUT_DIMS:
                dims = self.dims
                vals = np.fromiter((dims.add(orjson.dumps(v)) for v in col[rows]), dtype=np.int64, count=rows.size)
                self.sparse_rows[key].append(rows + base)
                self.sparse_values[key].append(vals)
            else:
                self._add_sparse_int(key, rows, col[rows], base)
        flow_rows = np.flatnonzero(np.isin(ph, _FLOW_PH_CODES))
        if flow_rows.size:  # a few events: look their ids up directly
            col = np.fromiter((events[i].get(FLOW_ID) for i in flow_rows.tolist()), dtype=object, count=flow_rows.size)
            keep = col != None
            if keep.any():
                self._add_sparse_int(FLOW_ID, flow_rows[keep], col[keep], base, intern=self.flow_ids)
        for i in np.flatnonzero(ph == _PH_INDEX["M"]).tolist():
            self._add_metadata(events[i])
        self.n += n

    def _add_sparse_int(self, key: str, rows: np.ndarray, values: np.ndarray, base: int,
                        intern: _Interner | None = None) -> None:
        """Append integer argument ``key`` (``values``: object array) at ``rows``; values that
        are not integers are dropped, except flow ids, which are interned as negative codes."""
        try:
            ints = values.astype(np.int64)
        except (TypeError, OverflowError, ValueError):
            keep, vals = [], []
            for j, v in enumerate(values.tolist()):
                iv = _to_int(v)
                if iv is None and intern is not None:
                    iv = -1 - intern.add(_hashable(v))  # string flow ids ("0x1f") stay distinct
                if iv is not None:
                    keep.append(j)
                    vals.append(iv)
            rows = rows[np.array(keep, dtype=np.int64)]
            ints = np.array(vals, dtype=np.int64)
        self.sparse_rows[key].append(rows + base)
        self.sparse_values[key].append(ints)

    def _add_metadata(self, e: dict[str, Any]) -> None:
        args = e.get("args")
        if type(args) is not dict or not isinstance(args.get("name"), str):
            return
        pid = self._id_column([e.get("pid", 0)])[0]
        if e.get("name") == "process_name":
            self.process_names[int(pid)] = args["name"]
        elif e.get("name") == "thread_name":
            tid = self._id_column([e.get("tid", 0)])[0]
            self.thread_names[(int(pid), int(tid))] = args["name"]

    def finish(self, path: str, metadata: dict[str, Any]) -> TraceEvents:
        """Concatenate the pieces into a :class:`TraceEvents`."""
        cols = {k: parts.join() for k, parts in self.parts.items()}

        def sparse(key: str) -> SparseColumn:
            return SparseColumn(self.sparse_rows[key].join(), self.sparse_values[key].join())

        args = {k: sparse(k) for k in (*INT_ARGS, FLOW_ID) if self.sparse_rows[k]}
        return TraceEvents(
            path=path,
            metadata=metadata,
            names=self.names.values,
            categories=self.categories.values,
            labels=self.labels.values,
            dims=self.dims.values,
            args=args,
            input_dims=sparse(INPUT_DIMS),
            process_names=self.process_names,
            thread_names=self.thread_names,
            **cols,
        )


def _zeros(n: int) -> Iterable[int]:
    """``n`` zeros, the default argument for ``map(dict.get, keys, _zeros(n))``."""
    return itertools.repeat(0, n)


def _hashable(v: Any) -> Any:
    try:
        hash(v)
        return v
    except TypeError:
        return orjson.dumps(v).decode()


def _to_float(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return math.nan
    return math.nan


def _to_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if -(1 << 62) < v < (1 << 62) else None
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return int(v, 0)
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------------------------------------
# Streaming over the text


def _open(path: Path) -> BinaryIO:
    """Open ``path`` for reading bytes, transparently decompressing gzip (by magic number)."""
    with open(path, "rb") as f:
        magic = f.read(len(_GZIP_MAGIC))
    if magic == _GZIP_MAGIC:
        return gzip.open(path, "rb")
    return open(path, "rb")


def _skip_ws(buf: bytearray, i: int) -> int:
    n = len(buf)
    while i < n and buf[i] in _WS:
        i += 1
    return i


def _boundary_candidates(buf: bytearray, lo: int, hi: int) -> Iterable[int]:
    """Yield, from the end backwards, positions ``c`` in ``(lo, hi)`` of the ``,`` of a
    ``} , {`` candidate event boundary whose ``{`` is inside the buffer."""
    j = hi
    while True:
        j = buf.rfind(b"}", lo + 1, j)
        if j < 0:
            return
        k = _skip_ws(buf, j + 1)
        if k < len(buf) and buf[k] == 0x2C:  # ','
            m = _skip_ws(buf, k + 1)
            if m < len(buf) and buf[m] == 0x7B:  # '{'
                yield k


def _parse_error(path: Path, exc: orjson.JSONDecodeError, piece: bytes | memoryview, offset: int) -> TraceFormatError:
    """A :class:`TraceFormatError` for a parse failure at char ``exc.pos`` of ``piece``,
    which starts at byte ``offset`` of the (decompressed) text."""
    text = bytes(piece)
    try:
        byte_pos = len(text.decode("utf-8", errors="replace")[: exc.pos].encode("utf-8"))
    except Exception:  # noqa: BLE001 - only used to word the message
        byte_pos = exc.pos
    if exc.msg.startswith(_END_OF_DATA):
        what = "truncated (JSON ends early)"
    else:
        what = f"corrupt JSON ({exc.msg})"
    return TraceFormatError(f"{path}: not a valid trace: {what} near byte {offset + byte_pos}")


class _Reader:
    """Streams one file's ``traceEvents`` into :class:`_Columns`."""

    def __init__(self, path: Path, chunk_bytes: int, input_dims: bool = True) -> None:
        self.path = path
        self.chunk_bytes = max(int(chunk_bytes), 1 << 10)
        self.cols = _Columns(input_dims)
        self.metadata: dict[str, Any] = {}
        self.consumed = 0  # bytes of text dropped from the front of the buffer so far
        self.array_form = False  # the file is a bare JSON array of events

    def read(self) -> TraceEvents:
        try:
            f = _open(self.path)
        except IsADirectoryError:
            raise TraceFormatError(f"{self.path}: is a directory, expected a trace file") from None
        except FileNotFoundError:
            raise TraceFormatError(f"{self.path}: no such trace file") from None
        except OSError as exc:
            raise TraceFormatError(f"{self.path}: cannot read trace: {exc.strerror or exc}") from None
        try:
            with f:
                self._stream(f)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise TraceFormatError(f"{self.path}: not a valid trace: damaged gzip data ({exc})") from None
        except OSError as exc:
            raise TraceFormatError(f"{self.path}: cannot read trace: {exc}") from None
        return self.cols.finish(str(self.path), self.metadata)

    def _where(self) -> str:
        return str(self.path)

    def _read_more(self, f: BinaryIO, buf: bytearray) -> bool:
        data = f.read(self.chunk_bytes)
        if data:
            buf += data
            return True
        return False

    def _stream(self, f: BinaryIO) -> None:
        buf = bytearray()
        eof = not self._read_more(f, buf)
        # Find the start of the events array.
        while True:
            start = _skip_ws(buf, 0)
            if start >= len(buf) and eof:
                raise TraceFormatError(f"{self.path}: not a valid trace: file is empty")
            if start < len(buf) and buf[start] == 0x5B:  # '[': the JSON Array form of the format
                sep = start
                self.array_form = True
                break
            if start < len(buf) and buf[start] != 0x7B:  # not '{'
                raise TraceFormatError(f"{self.path}: not a trace: expected a JSON object with traceEvents")
            key = buf.find(_TRACE_EVENTS_KEY)
            if key >= 0:
                colon = _skip_ws(buf, key + len(_TRACE_EVENTS_KEY))
                open_ = _skip_ws(buf, colon + 1) if colon < len(buf) and buf[colon] == 0x3A else -1
                if 0 <= open_ < len(buf):
                    header = self._parse_header(buf, key)
                    if header is not None and buf[open_] == 0x5B:
                        self.metadata.update(header)
                        sep = open_
                        break
                    return self._whole(f, buf)
            if eof or len(buf) > _MAX_HEADER_BYTES:
                return self._whole(f, buf)
            eof = not self._read_more(f, buf)
        # Stream the events: buf[sep] is the '[' (or ',' turned into '[') before the next event.
        retry_at = 0
        while True:
            if eof:
                return self._tail(buf, sep)
            if len(buf) >= retry_at:
                cut = self._cut_and_parse(buf, sep)
                if cut is not None:
                    del buf[:cut]  # buf[0] is now the ',' before the next event
                    self.consumed += cut
                    sep = 0
                    retry_at = 0
                else:
                    # No boundary worked: an event larger than the buffer (or damage that only
                    # shows at the end). Wait until the buffer doubles, so that the parse work
                    # stays linear in the file size.
                    retry_at = 2 * len(buf)
            if not self._read_more(f, buf):
                eof = True

    def _parse_header(self, buf: bytearray, key: int) -> dict[str, Any] | None:
        text = bytes(buf[:key]).rstrip(_WS)
        if text.endswith(b","):
            text = text[:-1]
        try:
            header = orjson.loads(text + b"}")
        except orjson.JSONDecodeError:
            return None  # "traceEvents" inside a string of the header: parse in one piece
        return header if isinstance(header, dict) else None

    def _cut_and_parse(self, buf: bytearray, sep: int) -> int | None:
        """Parse the events between ``sep`` and the last good boundary; return the boundary
        (index of its ``,``) or None when no boundary in the buffer works yet."""
        buf[sep] = 0x5B  # '['
        for tries, c in enumerate(_boundary_candidates(buf, sep, len(buf))):
            if tries >= _MAX_CUT_RETRIES:
                return None
            buf[c] = 0x5D  # ']'
            view = memoryview(buf)[sep : c + 1]
            try:
                events = orjson.loads(view)
            except orjson.JSONDecodeError as exc:
                if exc.msg.startswith(_END_OF_DATA):
                    continue  # a '},{' inside a string or a nested object: try an earlier one
                raise _parse_error(self.path, exc, view, self.consumed + sep) from None
            finally:
                view.release()
                buf[c] = 0x2C  # ','
            self.cols.add_events(events, self._where)
            del events
            return c
        return None

    def _tail(self, buf: bytearray, sep: int) -> None:
        """Parse the last events and the keys after the array (at end of file)."""
        buf[sep] = 0x5B
        prefix = b"" if self.array_form else b'{"traceEvents":'
        piece = prefix + bytes(buf[sep:])
        try:
            doc = orjson.loads(piece)
        except orjson.JSONDecodeError as exc:
            raise _parse_error(self.path, exc, piece[len(prefix):], self.consumed + sep) from None
        del buf[:]
        if isinstance(doc, list):
            self.cols.add_events(doc, self._where)
            return
        events = doc.pop("traceEvents")
        if not isinstance(events, list):
            raise TraceFormatError(f"{self.path}: not a trace: traceEvents is not an array")
        self.metadata.update(doc)
        self.cols.add_events(events, self._where)

    def _whole(self, f: BinaryIO, buf: bytearray) -> None:
        """Parse the file in one piece (small files, or a layout the streaming path does not
        recognise)."""
        while self._read_more(f, buf):
            pass
        try:
            doc = orjson.loads(buf)
        except orjson.JSONDecodeError as exc:
            raise _parse_error(self.path, exc, buf, 0) from None
        del buf[:]
        if isinstance(doc, dict):
            events = doc.pop("traceEvents", None)
            if events is None:
                raise TraceFormatError(f"{self.path}: not a trace: the JSON object has no traceEvents")
            if not isinstance(events, list):
                raise TraceFormatError(f"{self.path}: not a trace: traceEvents is not an array")
            self.metadata.update(doc)
        elif isinstance(doc, list):
            events = doc
        else:
            raise TraceFormatError(f"{self.path}: not a trace: expected a JSON object with traceEvents")
        step = 1 << 16  # convert in slices so the columns' temporaries stay small
        for i in range(0, len(events), step):
            self.cols.add_events(events[i : i + step], self._where)


def load_trace(path: str | os.PathLike[str], *, input_dims: bool = True,
               chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> TraceEvents:
    """Read a Kineto / Chrome trace (``.json`` or gzip-compressed ``.json.gz``) into columns.

    Args:
        path: The trace file. Gzip is recognised by its magic number, not the extension.
        input_dims: Keep the ops' ``Input Dims`` (about 15% of the reading time; the
            attribution does not need them).
        chunk_bytes: Bytes of text parsed at a time (memory/speed trade-off; tests use small
            values to exercise the streaming path).

    Returns:
        The events as :class:`TraceEvents`.

    Raises:
        TraceFormatError: The file is missing, empty, truncated, corrupt (JSON or gzip) or not a
            trace; the message names the file and, for bad JSON, the byte offset.
    """
    # Parsing allocates millions of dicts and lists; the cyclic GC would scan them over and over
    # (3x the parse time) although they form no cycles. Pause it for the read.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _Reader(Path(path), chunk_bytes, input_dims).read()
    finally:
        if gc_was_enabled:
            gc.enable()
