"""Tests of the NVTX injection recorder (tests/nvtx_recorder/recorder.c + tests/nvtxrec.py).

Each test runs the plain ``nvtx`` package (or a small C program using the NVTX v3 headers) in a
subprocess with the recorder attached, and checks what it recorded.
"""

import json
import subprocess
import sys
import textwrap

import pytest

import nvtxrec
from nvtxrec import NvtxEvent, outline, process_ranges, range_forest, run_recorded

pytest.importorskip("nvtx")


def run(lib, tmp_path, code, **kw):
    return run_recorded(textwrap.dedent(code), tmp_path, lib=lib, **kw)


def kinds(events):
    return [e.kind for e in events]


def test_push_pop_exact_values(nvtx_recorder_lib, tmp_path):
    r = run(nvtx_recorder_lib, tmp_path, """
        import json, os, threading, time, nvtx
        t0 = time.monotonic_ns()
        nvtx.push_range("step 3", color=0xFF76B900, domain="topoprof", payload=3)
        t1 = time.monotonic_ns()
        nvtx.pop_range(domain="topoprof")
        t2 = time.monotonic_ns()
        nvtx.push_range("lr", color=0x80102030, domain="topoprof", payload=0.125)
        nvtx.pop_range(domain="topoprof")
        print(json.dumps(dict(pid=os.getpid(), tid=threading.get_native_id(), t=[t0, t1, t2])))
    """)
    info = json.loads(r.stdout)
    assert r.injected and r.returncode == 0
    assert kinds(r.events) == ["push", "pop", "push", "pop"]
    push, pop, push2, _ = r.events
    assert push == NvtxEvent(kind="push", pid=info["pid"], tid=info["tid"], ts_ns=push.ts_ns,
                             domain="topoprof", range_id=None, payload=3, payload_type="int",
                             color=0xFF76B900, category=0, message="step 3")
    assert (pop.kind, pop.domain, pop.tid, pop.message, pop.payload, pop.color) == (
        "pop", "topoprof", info["tid"], None, None, None)
    # CLOCK_MONOTONIC timestamps, the same clock as time.monotonic_ns()
    t0, t1, t2 = info["t"]
    assert t0 <= push.ts_ns <= t1 <= pop.ts_ns <= t2
    assert (push2.message, push2.payload, push2.payload_type, push2.color) == ("lr", 0.125, "double", 0x80102030)
    forest = range_forest(r.events)
    assert list(forest) == [info["tid"]]
    node = forest[info["tid"]][0]
    assert (node.name, node.payload, node.start_ns, node.end_ns) == ("step 3", 3, push.ts_ns, pop.ts_ns)
    assert node.duration_ns >= 0 and node.children == []


def test_nesting_three_levels(nvtx_recorder_lib, tmp_path):
    r = run(nvtx_recorder_lib, tmp_path, """
        import nvtx
        d = nvtx.get_domain("topoprof")
        for step in range(2):
            with nvtx.annotate(f"step {step}", domain="topoprof", payload=step):
                with nvtx.annotate("forward", domain="topoprof", payload=step):
                    d.push_range(message="fwd fc1", payload=step); d.pop_range()
                    d.push_range(message="fwd fc2", payload=step); d.pop_range()
                with nvtx.annotate("backward", domain="topoprof", payload=step):
                    d.push_range(message="bwd fc2", payload=step); d.pop_range()
    """)
    forest = range_forest(r.events)
    assert len(forest) == 1
    (roots,) = forest.values()
    assert outline(roots) == [
        "step 0", "  forward", "    fwd fc1", "    fwd fc2", "  backward", "    bwd fc2",
        "step 1", "  forward", "    fwd fc1", "    fwd fc2", "  backward", "    bwd fc2",
    ]
    for step, root in enumerate(roots):
        assert all(n.payload == step for _, n in nvtxrec.iter_nodes([root]))
        fwd = root.children[0]
        assert root.start_ns <= fwd.start_ns <= fwd.children[0].start_ns
        assert fwd.children[-1].end_ns <= fwd.end_ns <= root.end_ns


def test_two_threads_kept_apart(nvtx_recorder_lib, tmp_path):
    r = run(nvtx_recorder_lib, tmp_path, """
        import json, threading, nvtx
        barrier = threading.Barrier(2)
        tids = {}
        def work(name):
            tids[name] = threading.get_native_id()
            for i in range(50):
                nvtx.push_range(f"{name} outer {i}", domain="topoprof")
                barrier.wait()       # both threads inside a range at once: interleaved events
                nvtx.push_range(f"{name} inner {i}", domain="topoprof")
                nvtx.pop_range(domain="topoprof")
                nvtx.pop_range(domain="topoprof")
        ts = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
        for t in ts: t.start()
        for t in ts: t.join()
        print(json.dumps(tids))
    """)
    tids = json.loads(r.stdout)
    forest = range_forest(r.events)
    assert set(forest) == set(tids.values()) and len(forest) == 2
    for name, tid in tids.items():
        roots = forest[tid]
        assert [n.name for n in roots] == [f"{name} outer {i}" for i in range(50)]
        assert all([c.name for c in n.children] == [f"{name} inner {i}"] for i, n in enumerate(roots))
        assert all(n.tid == tid for _, n in nvtxrec.iter_nodes(roots))


def test_mark(nvtx_recorder_lib, tmp_path):
    r = run(nvtx_recorder_lib, tmp_path, """
        import nvtx
        nvtx.mark("checkpoint", color=0xFFFF0000, domain="topoprof", payload=42)
        nvtx.mark("default domain mark")
    """)
    assert kinds(r.events) == ["mark", "mark"]
    m, m2 = r.events
    assert (m.domain, m.message, m.payload, m.color, m.range_id) == ("topoprof", "checkpoint", 42, 0xFFFF0000, None)
    assert (m2.domain, m2.message) == ("", "default domain mark")
    assert range_forest(r.events) == {}   # marks are not ranges


def test_unbalanced_pop_is_reported(nvtx_recorder_lib, tmp_path):
    r = run(nvtx_recorder_lib, tmp_path, """
        import nvtx
        nvtx.push_range("ok", domain="topoprof"); nvtx.pop_range(domain="topoprof")
        nvtx.pop_range(domain="topoprof")
    """)
    assert kinds(r.events) == ["push", "pop", "pop"]
    with pytest.raises(AssertionError, match=r"pop without push in domain 'topoprof'.*\['ok'\]"):
        range_forest(r.events)


def test_ranges_left_open_are_reported(nvtx_recorder_lib, tmp_path):
    r = run(nvtx_recorder_lib, tmp_path, """
        import nvtx
        nvtx.push_range("step 0", domain="topoprof"); nvtx.push_range("forward", domain="topoprof")
        nvtx.push_range("fwd fc1", domain="topoprof"); nvtx.pop_range(domain="topoprof")
    """)
    with pytest.raises(AssertionError, match=r"left open in domain 'topoprof': thread \d+: 'step 0' > 'forward'"):
        range_forest(r.events)
    (roots,) = range_forest(r.events, allow_open=True).values()
    assert roots[0].end_ns is None and roots[0].children[0].end_ns is None
    assert roots[0].children[0].children[0].end_ns is not None


def test_default_domain_push_range(nvtx_recorder_lib, tmp_path):
    r = run(nvtx_recorder_lib, tmp_path, """
        import nvtx
        nvtx.push_range("outer", payload=-7)
        nvtx.push_range("in topoprof", domain="topoprof")
        nvtx.push_range("inner")
        nvtx.pop_range(); nvtx.pop_range(domain="topoprof"); nvtx.pop_range()
    """)
    assert [(e.kind, e.domain) for e in r.events] == [
        ("push", ""), ("push", "topoprof"), ("push", ""), ("pop", ""), ("pop", "topoprof"), ("pop", "")]
    (default,) = range_forest(r.events, domain="").values()
    assert outline(default) == ["outer", "  inner"] and default[0].payload == -7
    (tp,) = range_forest(r.events).values()
    assert outline(tp) == ["in topoprof"]


def test_start_end_range(nvtx_recorder_lib, tmp_path):
    r = run(nvtx_recorder_lib, tmp_path, """
        import threading, nvtx
        a = nvtx.start_range("epoch", domain="topoprof", payload=1)
        b = nvtx.start_range("prefetch", domain="topoprof")
        t = threading.Thread(target=nvtx.end_range, args=(b,)); t.start(); t.join()  # ends elsewhere
        nvtx.end_range(a)
        c = nvtx.start_range("default domain")
        nvtx.end_range(c)
    """)
    assert kinds(r.events) == ["start", "start", "end", "end", "start", "end"]
    ranges = process_ranges(r.events)
    assert len(ranges) == 2
    (epoch_s, epoch_e), (pre_s, pre_e) = (ranges[k] for k in sorted(ranges))
    assert (epoch_s.message, epoch_s.payload, pre_s.message) == ("epoch", 1, "prefetch")
    assert epoch_e.range_id == epoch_s.range_id and epoch_e.ts_ns >= epoch_s.ts_ns
    assert pre_e.tid != pre_s.tid
    assert len({epoch_s.range_id, pre_s.range_id, r.events[4].range_id}) == 3
    assert [s.message for s, _ in process_ranges(r.events, domain="").values()] == ["default domain"]
    assert range_forest(r.events) == {}   # start/end ranges do not nest


def test_messages_escaped_and_unbounded(nvtx_recorder_lib, tmp_path):
    long = "x\\" * 100_000 + "\t" * 100_000   # longer than any stack buffer
    r = run(nvtx_recorder_lib, tmp_path, """
        import nvtx
        long = "x\\\\" * 100_000 + "\\t" * 100_000
        for m in ["tab\\there", "new\\nline\\r", "back\\\\slash \\\\N \\\\t", "\\\\N", "-", "", "héllo 中文", long]:
            nvtx.mark(m, domain="top\\tprof")
    """)
    msgs = [e.message for e in r.events]
    assert msgs == ["tab\there", "new\nline\r", "back\\slash \\N \\t", "\\N", "-", "", "héllo 中文", long]
    assert {e.domain for e in r.events} == {"top\tprof"}


def test_no_events_without_nvtx_calls(nvtx_recorder_lib, tmp_path):
    r = run(nvtx_recorder_lib, tmp_path, "print('hi')")
    assert r.events == [] and not r.injected


def test_subprocess_failure_surfaces_stderr(nvtx_recorder_lib, tmp_path):
    with pytest.raises(AssertionError, match=r"(?s)exit code 3.*boom-marker"):
        run(nvtx_recorder_lib, tmp_path, "import sys; sys.stderr.write('boom-marker'); sys.exit(3)")


def test_forked_child_records_with_its_pid(nvtx_recorder_lib, tmp_path):
    r = run(nvtx_recorder_lib, tmp_path, """
        import os, nvtx
        nvtx.push_range("parent", domain="topoprof")
        pid = os.fork()
        if pid == 0:
            nvtx.push_range("child", domain="topoprof"); nvtx.pop_range(domain="topoprof")
            os._exit(0)
        os.waitpid(pid, 0)
        nvtx.pop_range(domain="topoprof")
    """)
    pids = {e.pid for e in r.events}
    assert len(pids) == 2
    with pytest.raises(ValueError, match="several processes"):
        range_forest(r.events)
    by_pid = {p: [e for e in r.events if e.pid == p] for p in pids}
    outlines = sorted(outline(next(iter(range_forest(evs).values()))) for evs in by_pid.values())
    assert outlines == [["child"], ["parent"]]


C_PROGRAM = r"""
#include <nvToolsExt.h>
#include <stdio.h>
int main(void) {
    nvtxEventAttributes_t a = {0};
    a.version = NVTX_VERSION; a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    a.colorType = NVTX_COLOR_ARGB; a.color = 0xFF00FF00u;
    a.payloadType = NVTX_PAYLOAD_TYPE_UNSIGNED_INT64; a.payload.ullValue = 18446744073709551615ull;
    a.messageType = NVTX_MESSAGE_TYPE_ASCII; a.message.ascii = "core ex";
    int d0 = nvtxRangePushA("core a");
    int d1 = nvtxRangePushEx(&a);
    int p1 = nvtxRangePop(), p0 = nvtxRangePop(), pe = nvtxRangePop();
    nvtxMarkA(NULL);
    a.messageType = NVTX_MESSAGE_TYPE_UNICODE; a.message.unicode = L"wide \u00e9\u4e2d";
    a.payloadType = NVTX_PAYLOAD_TYPE_INT32; a.payload.iValue = -5;
    nvtxMarkEx(&a);
    nvtxRangeId_t r = nvtxRangeStartA("proc a");
    nvtxRangeEnd(r);
    a.messageType = NVTX_MESSAGE_TYPE_ASCII; a.message.ascii = "proc ex";
    a.payloadType = NVTX_PAYLOAD_TYPE_FLOAT; a.payload.fValue = 0.5f;
    nvtxRangeEnd(nvtxRangeStartEx(&a));
    nvtxDomainHandle_t d = nvtxDomainCreateA("topoprof");
    nvtxStringHandle_t s = nvtxDomainRegisterStringA(d, "registered");
    a.messageType = NVTX_MESSAGE_TYPE_REGISTERED; a.message.registered = s;
    a.payloadType = NVTX_PAYLOAD_TYPE_DOUBLE; a.payload.dValue = 0.1;
    nvtxDomainRangePushEx(d, &a); nvtxDomainRangePop(d);
    a.message.registered = nvtxDomainRegisterStringA(d, NULL);
    nvtxDomainMarkEx(d, &a);
    nvtxDomainRangeEnd(d, nvtxDomainRangeStartEx(d, &a));
    printf("%d %d %d %d %d\n", d0, d1, p1, p0, pe);
    return 0;
}
"""


def test_c_api_core_and_core2_slots(nvtx_recorder_lib, tmp_path):
    """The CORE slots (used by C/C++ code, not by the Python package) and NULL messages."""
    src = tmp_path / "prog.c"
    src.write_text(C_PROGRAM)
    exe = tmp_path / "prog"
    subprocess.run(["gcc", "-O1", f"-I{nvtxrec.find_nvtx_include_dir()}", str(src), "-o", str(exe), "-ldl"],
                   check=True, capture_output=True)
    log = tmp_path / "c.log"
    proc = subprocess.run([str(exe)], env=nvtxrec.recorder_env(nvtx_recorder_lib, log),
                          capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["0", "1", "1", "0", "-1"]   # push/pop nesting levels
    ev = nvtxrec.parse_log(log)
    got = [(e.kind, e.domain, e.message, e.payload, e.payload_type, e.color) for e in ev]
    green = 0xFF00FF00
    assert got == [
        ("push", "", "core a", None, None, None),
        ("push", "", "core ex", 2**64 - 1, "uint", green),
        ("pop", "", None, None, None, None),
        ("pop", "", None, None, None, None),
        ("pop", "", None, None, None, None),
        ("mark", "", None, None, None, None),
        ("mark", "", "wide é中", -5, "int", green),
        ("start", "", "proc a", None, None, None),
        ("end", "", None, None, None, None),
        ("start", "", "proc ex", 0.5, "double", green),
        ("end", "", None, None, None, None),
        ("push", "topoprof", "registered", 0.1, "double", green),
        ("pop", "topoprof", None, None, None, None),
        ("mark", "topoprof", None, 0.1, "double", green),
        ("start", "topoprof", None, 0.1, "double", green),
        ("end", "topoprof", None, None, None, None),
    ]
    with pytest.raises(AssertionError, match="pop without push"):
        range_forest(ev, domain="")
    assert len(process_ranges(ev, domain=None)) == 3


BENCH = """
import time, nvtx
N = 20_000
d = nvtx.get_domain("topoprof")
attrs = d.get_event_attributes(message="fwd layer", color=0xFF76B900, payload=1)
def best(f):
    times = []
    for _ in range(3):
        t0 = time.perf_counter_ns(); f(); times.append(time.perf_counter_ns() - t0)
    return min(times) / N
def prebuilt():
    for _ in range(N):
        d.push_range(attrs); d.pop_range()
def module_api():
    for _ in range(N):
        nvtx.push_range("fwd layer", domain="topoprof", payload=1); nvtx.pop_range(domain="topoprof")
print(f"{best(prebuilt):.0f} {best(module_api):.0f}")
"""


def test_push_pop_cost_with_and_without_recorder(nvtx_recorder_lib, tmp_path):
    """Measures (prints, never asserts on time) the cost of a push/pop pair."""
    plain = subprocess.run([sys.executable, "-c", BENCH], capture_output=True, text=True, check=True,
                           env={k: v for k, v in nvtxrec.recorder_env(nvtx_recorder_lib, tmp_path / "x").items()
                                if k not in (nvtxrec.INJECTION_ENV, nvtxrec.LOG_ENV)})
    rec = run(nvtx_recorder_lib, tmp_path, BENCH)
    assert len(rec.events) == 2 * 2 * 3 * 20_000
    (p_pre, p_mod), (r_pre, r_mod) = (map(float, out.split()) for out in (plain.stdout, rec.stdout))
    print(f"\nNVTX push/pop pair, ns: no tool: Domain.push_range(attrs) {p_pre:.0f}, "
          f"nvtx.push_range {p_mod:.0f}; recorder attached: {r_pre:.0f}, {r_mod:.0f}")
