"""Benchmark topoprof's Kineto trace reader against other loaders on the same files.

Usage::

    python benchmarks/bench_trace.py                       # 10 MB and 100 MB
    python benchmarks/bench_trace.py --sizes 10,100,1000   # add 1 GB
    python benchmarks/bench_trace.py --tools topoprof,json # a subset of loaders

How the traces are built: a small CNN (two conv-bn-relu blocks, pooling, a linear head) is
trained on CPU for :data:`BASE_STEPS` steps under ``torch.profiler`` (``record_shapes=True``)
with topoprof's trace-mode ranges (``step N``, phases, ``fwd``/``bwd <module>`` from module and
autograd-node hooks). That base trace is then replicated until the file reaches the target
size: copy ``k`` (the last one possibly cut short) shifts every timestamp by ``k`` times the base span (plus a gap), renumbers
``step N`` / ``ProfilerStep#N``, and offsets ``External id``, ``Sequence number``,
``correlation`` and flow ids so that links stay unique. Events are written one per line without inner whitespace (denser than
Kineto's indented layout, so a "100 MB" trace holds more events than a Kineto file of that size:
the comparison is conservative). The files are cached in ``--dir``.

Each measurement runs in a fresh subprocess, after the file has been read once into the page
cache, and reports its wall time and its peak resident memory (``ru_maxrss`` of itself and of
any worker processes it started) minus its resident memory after imports. Runs shorter than
10 s are repeated (best of ``--repeat``). Loaders measured (each only if installed; otherwise "not installed"):

- ``topoprof``: :func:`topoprof.trace.summarize_trace` (parse + attribution + summary; it
  skips the ops' ``Input Dims``, which the summary does not use);
- ``json``: ``json.load`` of the file alone (the first step of most other loaders);
- ``hta``: Holistic Trace Analysis, ``TraceAnalysis(trace_dir=...)`` (parse only);
- ``tb``: the TensorBoard profiler plugin's per-worker loader,
  ``RunProfileData.parse`` (parse + its event tree and aggregations).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["build_trace", "main", "measure"]

#: Steps profiled for the base trace (about 12 MB of JSON with shapes).
BASE_STEPS = 30
#: Steps run before profiling starts.
WARMUP_STEPS = 3
#: Gap between replicated copies, microseconds.
REPLICA_GAP_US = 1000.0
MB = 1 << 20
#: Events written per slice while building (the size is checked after each slice).
_SLICE_EVENTS = 2000
DEFAULT_DIR = Path("/tmp/topoprof-bench-traces")
TOOLS = ("topoprof", "json", "hta", "tb")
#: Per measurement wall-clock limit, seconds.
MEASURE_TIMEOUT_S = 3600
#: Measurements faster than this are repeated (best of ``--repeat``), seconds.
REPEAT_BELOW_S = 10.0


# ---------------------------------------------------------------------------------------------
# Building traces


def _profile_base(out: Path) -> None:
    """Profile a small CNN with topoprof-style ranges and export a Kineto trace to ``out``."""
    import torch
    from torch import nn
    from torch.profiler import ProfilerActivity, profile, record_function

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * 16, 10),
    )
    names = {m: (n or "<root>") for n, m in model.named_modules()}
    open_ranges: dict[Any, Any] = {}

    def pre(m: nn.Module, args: Any) -> None:
        rf = record_function("fwd " + names[m])
        rf.__enter__()
        open_ranges[("f", m)] = rf

    def post(m: nn.Module, args: Any, out: Any) -> None:
        open_ranges.pop(("f", m)).__exit__(None, None, None)
        ins = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        if out.grad_fn is None or not ins:
            return

        def start(grads: Any, m: nn.Module = m) -> None:
            rf = record_function("bwd " + names[m])
            rf.__enter__()
            open_ranges[("b", m)] = rf

        def end(grad: Any, m: nn.Module = m) -> None:
            rf = open_ranges.pop(("b", m), None)
            if rf is not None:
                rf.__exit__(None, None, None)

        out.grad_fn.register_prehook(start)
        ins[0].register_hook(end)

    for m in model.modules():
        m.register_forward_pre_hook(pre)
        m.register_forward_hook(post)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(8, 3, 16, 16, requires_grad=True)
    y = torch.randint(0, 10, (8,))

    def step(i: int) -> None:
        with record_function(f"step {i}"):
            with record_function("forward"):
                loss = nn.functional.cross_entropy(model(x), y)
            with record_function("backward"):
                loss.backward()
            with record_function("optimizer"):
                opt.step()
                opt.zero_grad()

    for i in range(WARMUP_STEPS):
        step(i)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for i in range(WARMUP_STEPS, WARMUP_STEPS + BASE_STEPS):
            step(i)
            prof.step()
    prof.export_chrome_trace(str(out))


def _shift_event(e: dict[str, Any], k: int, shift_us: float, offsets: dict[str, int], n_steps: int) -> dict[str, Any]:
    e = dict(e)
    if isinstance(e.get("ts"), (int, float)):
        e["ts"] = e["ts"] + shift_us
    name = e.get("name")
    if isinstance(name, str):
        if name.startswith("step ") and name[5:].isdigit():
            e["name"] = f"step {int(name[5:]) + k * n_steps}"
        elif name.startswith("ProfilerStep#") and name[13:].isdigit():
            e["name"] = f"ProfilerStep#{int(name[13:]) + k * n_steps}"
    if isinstance(e.get("id"), int):
        e["id"] = e["id"] + k * offsets["id"]
    args = e.get("args")
    if isinstance(args, dict):
        args = dict(args)
        for key in ("External id", "Sequence number", "correlation"):
            v = args.get(key)
            if isinstance(v, int) and v >= 0:
                args[key] = v + k * offsets[key]
        e["args"] = args
    return e


def build_trace(target_bytes: int, out: Path, base: Path) -> Path:
    """Write a trace of about ``target_bytes`` to ``out`` by replicating ``base`` (see the
    module docstring)."""
    import orjson

    doc = orjson.loads(base.read_bytes())
    events = doc.pop("traceEvents")
    doc.pop("traceName", None)
    meta = [e for e in events if e.get("ph") == "M"]
    body = [e for e in events if e.get("ph") != "M" and isinstance(e.get("pid"), int)]
    trailer = [e for e in events if e.get("ph") != "M" and not isinstance(e.get("pid"), int)]
    t0 = min(e["ts"] for e in body)
    t1 = max(e["ts"] + e.get("dur", 0) for e in body)
    shift = t1 - t0 + REPLICA_GAP_US
    offsets = {"id": 0, "External id": 0, "Sequence number": 0, "correlation": 0}
    for e in body:
        if isinstance(e.get("id"), int):
            offsets["id"] = max(offsets["id"], e["id"] + 1)
        for key in ("External id", "Sequence number", "correlation"):
            v = (e.get("args") or {}).get(key)
            if isinstance(v, int):
                offsets[key] = max(offsets[key], v + 1)
    numbers = [int(m.group(1)) for e in body if isinstance(e.get("name"), str)
               and (m := re.match(r"(?:step |ProfilerStep#)(\d+)\Z", e["name"]))]
    n_steps = max(numbers) + 1 if numbers else 1  # copy k renumbers step N to N + k * n_steps
    header = orjson.dumps(doc, option=orjson.OPT_INDENT_2)[:-2].rstrip() + b',\n  "traceEvents": [\n  '
    tmp = out.with_suffix(".tmp")
    k = 0
    with open(tmp, "wb") as f:
        f.write(header)
        sep = b""
        for e in meta:
            f.write(sep + orjson.dumps(e))
            sep = b",\n  "
        while f.tell() < target_bytes:
            for i in range(0, len(body), _SLICE_EVENTS):  # the last copy may stop part-way
                chunk = [_shift_event(e, k, k * shift, offsets, n_steps) for e in body[i : i + _SLICE_EVENTS]]
                f.write(sep + b",\n  ".join(map(orjson.dumps, chunk)))
                sep = b",\n  "
                if f.tell() >= target_bytes:
                    break
            k += 1
        for e in trailer:
            if e.get("name") == "Record Window End":
                e = dict(e, ts=e["ts"] + (k - 1) * shift)
            f.write(sep + orjson.dumps(e))
            sep = b",\n  "
        f.write(b'\n  ],\n  "traceName": ' + orjson.dumps(out.name) + b"\n}\n")
    os.replace(tmp, out)
    return out


def ensure_traces(sizes_mb: list[int], directory: Path) -> dict[int, Path]:
    """Build (or reuse) the base trace and one trace per size; each in its own directory
    (HTA and the TensorBoard plugin load a directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / "base.pt.trace.json"
    if not base.exists():
        print(f"profiling the base trace ({BASE_STEPS} steps) ...", flush=True)
        _profile_base(base)
    out = {}
    for size in sizes_mb:
        d = directory / f"{size}mb"
        d.mkdir(exist_ok=True)
        path = d / "worker0.1.pt.trace.json"
        if not path.exists():
            t = time.perf_counter()
            build_trace(size * MB, path, base)
            print(f"built {path} ({path.stat().st_size / MB:.0f} MB) in {time.perf_counter() - t:.0f} s", flush=True)
        out[size] = path
    return out


# ---------------------------------------------------------------------------------------------
# Measuring (each in its own process)


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _peak_bytes() -> int:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * 1024  # Linux: kilobytes


def _available(tool: str) -> bool:
    import importlib.util

    module = {"topoprof": "topoprof.trace", "json": "json", "hta": "hta", "tb": "torch_tb_profiler"}[tool]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def measure(tool: str, path: Path) -> dict[str, Any]:
    """Run one loader on ``path`` in this process; return seconds and memory figures."""
    import logging

    logging.disable(logging.WARNING)
    if tool == "topoprof":
        from topoprof.trace import summarize_trace

        def run() -> Any:
            s = summarize_trace(path)
            return len(s.ops)
    elif tool == "json":
        def run() -> Any:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rb") as f:
                return len(json.load(f)["traceEvents"])
    elif tool == "hta":
        import hta  # noqa: F401 - imported before the baseline so imports are not counted
        from hta.trace_analysis import TraceAnalysis

        def run() -> Any:
            analysis = TraceAnalysis(trace_dir=str(path.parent))
            return len(analysis.t.get_trace(0))
    elif tool == "tb":
        import tempfile

        from torch_tb_profiler.profiler.data import RunProfileData

        def run() -> Any:
            with tempfile.TemporaryDirectory() as cache:
                profile = RunProfileData.parse("worker0", None, str(path), cache)
            return len(profile.events)
    else:
        raise ValueError(tool)
    base = _rss_bytes()
    t = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - t
    peak = _peak_bytes()
    return {"tool": tool, "seconds": seconds, "peak_bytes": peak, "base_bytes": base,
            "extra_bytes": max(peak - base, 0), "result": result}


def _warm_page_cache(path: Path) -> None:
    """Read the file once so that every loader starts from the page cache (otherwise the
    first loader measured after a memory-hungry one pays the disk reads)."""
    with open(path, "rb") as f:
        while f.read(8 * MB):
            pass


def _measure_best(tool: str, path: Path, repeat: int) -> dict[str, Any] | str:
    """The fastest of up to ``repeat`` runs (runs shorter than :data:`REPEAT_BELOW_S` are
    repeated; on a shared machine the minimum is the least disturbed)."""
    best: dict[str, Any] | str | None = None
    for _ in range(max(repeat, 1)):
        _warm_page_cache(path)
        r = _measure_in_subprocess(tool, path)
        if isinstance(r, str):
            return r
        if best is None or r["seconds"] < best["seconds"]:
            best = r
        if r["seconds"] >= REPEAT_BELOW_S:
            break
    assert best is not None
    return best


def _measure_in_subprocess(tool: str, path: Path) -> dict[str, Any] | str:
    cmd = [sys.executable, __file__, "--measure", tool, str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=MEASURE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return f"timed out after {MEASURE_TIMEOUT_S} s"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return f"failed (exit {proc.returncode}): {tail[0][:120]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Build the traces, measure every loader on each, print a table and ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10,100", help="trace sizes in MB, comma-separated")
    p.add_argument("--tools", default=",".join(TOOLS), help="loaders to measure")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where traces are built and cached")
    p.add_argument("--repeat", type=int, default=3, help="best of N runs for runs under 10 s")
    p.add_argument("--measure", nargs=2, metavar=("TOOL", "PATH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]))))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    tools = [t for t in args.tools.split(",") if t]
    paths = ensure_traces(sizes, args.dir)
    results: dict[tuple[int, str], dict[str, Any] | str] = {}
    print(f"{'size':>8} {'tool':>9} {'seconds':>9} {'MB/s':>7} {'peak MB':>8} {'+MB':>7} {'+/file':>7}")
    for size in sizes:
        path = paths[size]
        file_bytes = path.stat().st_size
        for tool in tools:
            if not _available(tool):
                results[(size, tool)] = "not installed"
                print(f"{size:>6}MB {tool:>9}  not installed", flush=True)
                continue
            r = _measure_best(tool, path, args.repeat)
            results[(size, tool)] = r
            if isinstance(r, str):
                print(f"{size:>6}MB {tool:>9}  {r}", flush=True)
                continue
            print(f"{size:>6}MB {tool:>9} {r['seconds']:>9.2f} {file_bytes / MB / r['seconds']:>7.0f} "
                  f"{r['peak_bytes'] / MB:>8.0f} {r['extra_bytes'] / MB:>7.0f} "
                  f"{r['extra_bytes'] / file_bytes:>7.2f}", flush=True)
    print("\nratios (other tool / topoprof; >1 means topoprof is faster or smaller):")
    for size in sizes:
        ours = results.get((size, "topoprof"))
        if not isinstance(ours, dict):
            continue
        for tool in tools:
            other = results.get((size, tool))
            if tool == "topoprof" or not isinstance(other, dict):
                continue
            print(f"{size:>6}MB {tool:>9}: time x{other['seconds'] / ours['seconds']:.1f}, "
                  f"peak memory x{other['peak_bytes'] / ours['peak_bytes']:.1f} "
                  f"(added memory x{other['extra_bytes'] / max(ours['extra_bytes'], 1):.1f})")
    if len(sizes) > 1:
        ours = [(s, results.get((s, "topoprof"))) for s in sizes]
        ours = [(s, r) for s, r in ours if isinstance(r, dict)]
        if len(ours) > 1:
            print("\ntopoprof seconds per 100 MB (constant if linear): " + ", ".join(
                f"{s} MB: {r['seconds'] / paths[s].stat().st_size * 100 * MB:.2f}" for s, r in ours))
    return 0


if __name__ == "__main__":
    sys.exit(main())
