"""Observe real NVTX emission in tests, without Nsight.

``tests/nvtx_recorder/recorder.c`` is an NVTX v3 injection library: NVTX loads it at the first
NVTX call of a process when ``NVTX_INJECTION64_PATH`` names it, and it appends one line per NVTX
event to the file named by ``TOPOPROF_NVTX_LOG``. Because the variable must be set before the
first NVTX call, recorded code runs in a subprocess (:func:`run_python_with_recorder`).

Log line format (tab-separated, one event per line, ``#`` lines are comments)::

    kind pid tid ts_ns domain range_id payload color category message

- ``kind``: ``push`` | ``pop`` | ``mark`` | ``start`` | ``end``
- ``tid``: ``gettid()`` (= ``threading.get_native_id()``); ``ts_ns``: ``CLOCK_MONOTONIC``
  (= ``time.monotonic_ns()`` / ``time.perf_counter_ns()`` on Linux)
- ``domain``: domain name, ``""`` for the default domain (``nvtx`` calls without ``domain=``)
- ``range_id``: for ``start``/``end``, else ``-``
- ``payload``: ``-`` | ``i:<int64>`` | ``u:<uint64>`` | ``d:<double>`` | ``?:<payload type>``
- ``color``: ``-`` | ``0xAARRGGBB``; ``category``: decimal, 0 = none
- ``message``: last field; ``\\N`` when absent. ``domain`` and ``message`` escape backslash, tab,
  newline and CR as ``\\\\``, ``\\t``, ``\\n``, ``\\r``.

This module is pure Python and never imports topoprof.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union

HERE = Path(__file__).resolve().parent
RECORDER_SOURCE = HERE / "nvtx_recorder" / "recorder.c"
REPO_ROOT = HERE.parent
LOG_ENV = "TOPOPROF_NVTX_LOG"
INJECTION_ENV = "NVTX_INJECTION64_PATH"
INCLUDE_ENV = "TOPOPROF_NVTX_INCLUDE"  # optional override: a directory holding nvToolsExt.h
HEADER_PREFIX = "# topoprof-nvtx-recorder"

Payload = Union[int, float, None]


class RecorderUnavailable(RuntimeError):
    """The recorder cannot be built here (no C compiler or no NVTX v3 headers)."""


@dataclass(frozen=True)
class NvtxEvent:
    kind: str                 # push | pop | mark | start | end
    pid: int
    tid: int
    ts_ns: int
    domain: str               # "" for the default domain
    range_id: Optional[int]   # start/end only
    payload: Payload
    payload_type: Optional[str]  # "int" | "uint" | "double" | "unknown:<n>" | None
    color: Optional[int]      # ARGB
    category: int
    message: Optional[str]
    line: int = field(default=0, compare=False)  # 1-based line in the log


@dataclass
class RangeNode:
    name: Optional[str]
    payload: Payload
    start_ns: int
    end_ns: Optional[int]     # None for a range left open (range_forest(allow_open=True))
    tid: int
    color: Optional[int] = None
    children: list["RangeNode"] = field(default_factory=list)

    @property
    def duration_ns(self) -> Optional[int]:
        return None if self.end_ns is None else self.end_ns - self.start_ns

    def __repr__(self) -> str:  # compact, for assertion messages
        return f"RangeNode({self.name!r}, payload={self.payload!r}, children={len(self.children)})"


@dataclass(frozen=True)
class RecordedRun:
    events: list[NvtxEvent]
    stdout: str
    stderr: str
    returncode: int
    log_path: Path
    injected: bool            # the recorder was loaded in the subprocess (it made an NVTX call)


# ---------------------------------------------------------------- build

def find_nvtx_include_dir() -> Path:
    """The NVTX v3 header directory (the one holding ``nvToolsExt.h``)."""
    tried: list[str] = []
    candidates: list[str] = []
    if os.environ.get(INCLUDE_ENV):
        candidates.append(os.environ[INCLUDE_ENV])
    try:
        import nvidia  # namespace package of the nvidia-* wheels (nvidia-nvtx)

        for base in list(getattr(nvidia, "__path__", [])):
            tried.append(f"{base}/*/include/nvtx3")
            candidates += sorted(glob.glob(os.path.join(base, "*", "include", "nvtx3")), reverse=True)
    except ImportError:
        tried.append("python package 'nvidia' (not installed)")
    tried.append("/usr/local/cuda*/include/nvtx3")
    candidates += sorted(glob.glob("/usr/local/cuda*/include/nvtx3"), reverse=True)
    for c in candidates:
        if (Path(c) / "nvToolsExt.h").is_file() and (Path(c) / "nvtxDetail").is_dir():
            return Path(c)
    raise RecorderUnavailable(
        "NVTX v3 headers not found (install the 'nvidia-nvtx' wheel, or set "
        f"{INCLUDE_ENV}); looked in: " + ", ".join(tried)
    )


def build_recorder(tmpdir: Union[str, os.PathLike]) -> Path:
    """Compile the recorder into ``tmpdir/librec.so`` and return its path.

    Raises :class:`RecorderUnavailable` when gcc or the NVTX headers are missing, and
    ``RuntimeError`` (with the compiler output) when compilation fails.
    """
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RecorderUnavailable("gcc not found on PATH: cannot build the NVTX recorder")
    include = find_nvtx_include_dir()
    out = Path(tmpdir) / "librec.so"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [gcc, "-O2", "-shared", "-fPIC", f"-I{include}", str(RECORDER_SOURCE), "-o", str(out),
           "-lpthread", "-ldl"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"building the NVTX recorder failed ({' '.join(cmd)}):\n{proc.stderr}")
    return out


_default_lib: Optional[Path] = None


def default_recorder() -> Path:
    """A recorder built once per process in a temporary directory removed at exit."""
    global _default_lib
    if _default_lib is None:
        d = tempfile.mkdtemp(prefix="nvtxrec-")
        atexit.register(shutil.rmtree, d, True)
        _default_lib = build_recorder(d)
    return _default_lib


def recorder_env(lib: Union[str, os.PathLike], log_path: Union[str, os.PathLike],
                 base: Optional[dict] = None) -> dict:
    """Environment for a subprocess whose NVTX events go to ``log_path``.

    Also puts the repository root first on PYTHONPATH (so ``import topoprof`` finds this tree)
    and removes ``NVTX_DISABLE`` (which would turn the ``nvtx`` package into no-ops).
    """
    env = dict(os.environ if base is None else base)
    env[INJECTION_ENV] = str(Path(lib).resolve())
    env[LOG_ENV] = str(Path(log_path).resolve())
    env.pop("NVTX_DISABLE", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


# ---------------------------------------------------------------- parse

_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def _unescape(s: str, where: str) -> str:
    if "\\" not in s:
        return s
    out, it = [], iter(s)
    for ch in it:
        if ch == "\\":
            nxt = next(it, "")
            if nxt not in _UNESCAPE:
                raise ValueError(f"{where}: bad escape '\\{nxt}' in {s!r}")
            out.append(_UNESCAPE[nxt])
        else:
            out.append(ch)
    return "".join(out)


def _parse_payload(s: str, where: str) -> tuple[Payload, Optional[str]]:
    if s == "-":
        return None, None
    tag, _, value = s.partition(":")
    if tag == "i":
        return int(value), "int"
    if tag == "u":
        return int(value), "uint"
    if tag == "d":
        return float(value), "double"
    if tag == "?":
        return None, f"unknown:{value}"
    raise ValueError(f"{where}: bad payload field {s!r}")


def parse_log(path: Union[str, os.PathLike]) -> list[NvtxEvent]:
    """All events of a recorder log, in file order (program order within each thread)."""
    events = []
    text = Path(path).read_bytes().decode("utf-8", errors="surrogateescape")
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        parts = line.split("\t")
        if len(parts) != 10:
            raise ValueError(f"{where}: expected 10 tab-separated fields, got {len(parts)}: {line!r}")
        kind, pid, tid, ts, dom, rid, pay, col, cat, msg = parts
        if kind not in ("push", "pop", "mark", "start", "end"):
            raise ValueError(f"{where}: unknown event kind {kind!r}")
        payload, ptype = _parse_payload(pay, where)
        events.append(NvtxEvent(
            kind=kind, pid=int(pid), tid=int(tid), ts_ns=int(ts), domain=_unescape(dom, where),
            range_id=None if rid == "-" else int(rid), payload=payload, payload_type=ptype,
            color=None if col == "-" else int(col, 16), category=int(cat),
            message=None if msg == "\\N" else _unescape(msg, where), line=lineno))
    return events


def recorder_pids(path: Union[str, os.PathLike]) -> set[int]:
    """Pids of the processes that loaded the recorder and wrote to this log."""
    pids = set()
    if Path(path).exists():
        for line in Path(path).read_text(errors="replace").splitlines():
            if line.startswith(HEADER_PREFIX) and "pid=" in line:
                pids.add(int(line.rsplit("pid=", 1)[1]))
    return pids


# ---------------------------------------------------------------- ranges

def range_forest(events: list[NvtxEvent], domain: Optional[str] = "topoprof", *,
                 allow_open: bool = False) -> dict[int, list[RangeNode]]:
    """Push/pop ranges of one domain as a forest per thread: ``{tid: [root RangeNode, ...]}``.

    ``domain=None`` takes every domain, nesting them together (NVTX keeps one stack per domain,
    so only do this when a single domain is in use). A pop without a matching push raises
    AssertionError; so do ranges left open at the end, unless ``allow_open`` (then their
    ``end_ns`` is None). Events of several processes raise ValueError: filter by pid first.
    """
    sel = [e for e in events if e.kind in ("push", "pop") and (domain is None or e.domain == domain)]
    pids = {e.pid for e in sel}
    if len(pids) > 1:
        raise ValueError(f"events from several processes {sorted(pids)}: filter them by pid first")
    roots: dict[int, list[RangeNode]] = {}
    stacks: dict[int, list[RangeNode]] = {}
    for e in sel:
        stack = stacks.setdefault(e.tid, [])
        if e.kind == "push":
            node = RangeNode(e.message, e.payload, e.ts_ns, None, e.tid, e.color)
            (stack[-1].children if stack else roots.setdefault(e.tid, [])).append(node)
            stack.append(node)
        elif not stack:
            done = [n.name for n in roots.get(e.tid, [])][-5:]
            raise AssertionError(
                f"NVTX pop without push in domain {e.domain!r} on thread {e.tid} at ts {e.ts_ns} "
                f"(log line {e.line}); last closed top-level ranges on this thread: {done}")
        else:
            stack.pop().end_ns = e.ts_ns
    open_ = {tid: [n.name for n in st] for tid, st in stacks.items() if st}
    if open_ and not allow_open:
        desc = "; ".join(f"thread {tid}: {' > '.join(map(repr, names))}" for tid, names in open_.items())
        raise AssertionError(f"NVTX ranges left open in domain {domain!r}: {desc}")
    return roots


def iter_nodes(nodes: list[RangeNode], depth: int = 0) -> Iterator[tuple[int, RangeNode]]:
    """Depth-first ``(depth, node)`` over a list of trees (one thread's forest)."""
    for n in nodes:
        yield depth, n
        yield from iter_nodes(n.children, depth + 1)


def outline(nodes: list[RangeNode]) -> list[str]:
    """Indented names, handy in assertions: ``['step 0', '  forward', '    fwd fc1']``."""
    return ["  " * d + str(n.name) for d, n in iter_nodes(nodes)]


def process_ranges(events: list[NvtxEvent], domain: Optional[str] = "topoprof"
                   ) -> dict[int, tuple[NvtxEvent, Optional[NvtxEvent]]]:
    """start/end ranges: ``{range_id: (start event, end event or None)}``.

    An end without a start raises AssertionError. ``domain`` filters on the start's domain
    (the ``nvtx`` package passes the same domain to the end).
    """
    out: dict[int, tuple[NvtxEvent, Optional[NvtxEvent]]] = {}
    for e in events:
        if e.kind == "start" and (domain is None or e.domain == domain):
            out[e.range_id] = (e, None)
        elif e.kind == "end" and (domain is None or e.domain == domain):
            if e.range_id not in out or out[e.range_id][1] is not None:
                raise AssertionError(f"NVTX end of range {e.range_id} without a start (log line {e.line})")
            out[e.range_id] = (out[e.range_id][0], e)
    return out


# ---------------------------------------------------------------- run

_counter = itertools.count()


def run_recorded(code: str, tmp_path: Union[str, os.PathLike], *, lib: Optional[Path] = None,
                 extra_env: Optional[dict] = None, timeout: float = 300, check: bool = True,
                 cwd: Optional[Union[str, os.PathLike]] = None) -> RecordedRun:
    """Run ``python -c code`` with the recorder attached; return its events and output.

    With ``check`` a non-zero exit raises AssertionError carrying the subprocess's stderr.
    """
    lib = Path(lib) if lib is not None else default_recorder()
    tmp_path = Path(tmp_path)
    log = tmp_path / f"nvtx-{os.getpid()}-{next(_counter)}.log"
    log.unlink(missing_ok=True)
    env = recorder_env(lib, log)
    env.update(extra_env or {})
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=str(cwd or tmp_path))
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        raise AssertionError(f"recorded subprocess timed out after {timeout}s; stderr:\n{err}") from None
    if check and proc.returncode != 0:
        raise AssertionError(
            f"recorded subprocess failed with exit code {proc.returncode}\n"
            f"--- code ---\n{code}\n--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-8000:]}")
    events = parse_log(log) if log.exists() else []
    return RecordedRun(events, proc.stdout, proc.stderr, proc.returncode, log,
                       injected=bool(recorder_pids(log)))


def run_python_with_recorder(code: str, tmp_path: Union[str, os.PathLike], *,
                             lib: Optional[Path] = None, **kwargs) -> list[NvtxEvent]:
    """Run ``python -c code`` in a subprocess with the recorder attached; return its events.

    ``lib``: a built recorder (e.g. the ``nvtx_recorder_lib`` fixture); default: built once per
    process. Other keyword arguments go to :func:`run_recorded`.
    """
    return run_recorded(code, tmp_path, lib=lib, **kwargs).events
