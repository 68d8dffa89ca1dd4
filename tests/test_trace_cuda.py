"""Attribution of CUDA device events on small synthetic Kineto traces.

The traces under ``tests/data/traces/`` are written by :func:`build_cuda_trace` (run this file
with ``--regenerate`` to rewrite them); a test checks that the files still match it.

Layout of one step (times in microseconds from the step start; step 1 repeats it 1000 us later
with a 70 us GEMM instead of 50 us and ids offset by 100):

- main thread (pid 100, tid 100): ``forward`` [10, 400] holds ``fwd <root>`` [15, 390], which
  holds ``fwd fc`` [20, 200] (``aten::linear`` > ``aten::t`` (seq 4), ``aten::addmm`` (seq 5) >
  ``cudaLaunchKernel`` -> GEMM 50 us; a ``cudaMemcpyAsync`` inside ``aten::linear`` -> memcpy
  10 us overlapping the GEMM on another stream), ``fwd act`` [210, 300] (``aten::relu`` -> 10 us
  kernel) and ``aten::add`` [310, 320], whose 5 us kernel has no correlation or flow, only its
  ``External id``;
- autograd thread (tid 101): ``bwd act`` [420, 500] with ``ReluBackward0`` -> 20 us kernel;
  ``AddmmBackward0`` outside any ``bwd`` range, linked to ``aten::addmm`` by a ``fwdbwd`` flow,
  -> 60 us kernel; ``TBackward0`` outside any range with no flow, linked by its sequence number
  to ``aten::t``, -> 5 us memset;
- ``optimizer`` [800, 950] on the main thread: a 20 us kernel found only through its ``ac2g``
  flow (no correlation argument).
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from topoprof.trace import load_trace, summarize_trace

DATA = Path(__file__).parent / "data" / "traces"
CUDA_LAYERS = DATA / "cuda_layers.json.gz"
CUDA_PLAIN = DATA / "cuda_plain.json.gz"

HOST_PID, MAIN_TID, AUTOGRAD_TID = 100, 100, 101
GPU_PID, COMPUTE_STREAM, COPY_STREAM = 0, 7, 20
STEP_US = 1000.0
T0 = 5_000_000.0  # the trace's clock at step 0


def _x(cat: str, name: str, ts: float, dur: float, tid: int = MAIN_TID, pid: int = HOST_PID,
       **args: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": tid, "ts": T0 + ts, "dur": dur}
    if args:
        e["args"] = {k.replace("_", " ") if k in ("External_id", "Sequence_number", "Fwd_thread_id") else k: v
                     for k, v in args.items()}
    return e


def _flow(cat: str, ph: str, fid: int, ts: float, tid: int, pid: int = HOST_PID) -> dict[str, Any]:
    e = {"ph": ph, "id": fid, "pid": pid, "tid": tid, "ts": T0 + ts, "cat": cat, "name": cat}
    if ph == "f":
        e["bp"] = "e"
    return e


def _step_events(step: int, ranges: bool) -> list[dict[str, Any]]:
    o = step * STEP_US  # time offset
    c = step * 100  # id offset (correlation, External id, flow id, sequence number)
    gemm_us = 50.0 if step == 0 else 70.0
    ev: list[dict[str, Any]] = []
    ua = "user_annotation"

    def x(cat: str, name: str, ts: float, dur: float, **kw: Any) -> None:
        ev.append(_x(cat, name, o + ts, dur, **kw))

    if ranges:
        x(ua, f"step {step}", 0, 1000)
        x(ua, "forward", 10, 390)
        x(ua, "fwd <root>", 15, 375)
        x(ua, "fwd fc", 20, 180)
        x(ua, "fwd act", 210, 90)
        x(ua, "backward", 400, 400)
        x(ua, "bwd act", 420, 80, tid=AUTOGRAD_TID)
        x(ua, "optimizer", 800, 150)
    else:
        x(ua, f"ProfilerStep#{step}", 0, 1000)
    # forward ops
    x("cpu_op", "aten::linear", 30, 160, External_id=c + 1, Sequence_number=c + 4, Fwd_thread_id=0,
      **{"Input Dims": [[8, 16], [32, 16], [32]]})
    x("cpu_op", "aten::t", 32, 3, External_id=c + 2, Sequence_number=c + 4, Fwd_thread_id=0)
    x("cpu_op", "aten::addmm", 40, 100, External_id=c + 3, Sequence_number=c + 5, Fwd_thread_id=0)
    x("cuda_runtime", "cudaLaunchKernel", 50, 10, correlation=c + 1, External_id=c + 3)
    x("cuda_runtime", "cudaMemcpyAsync", 150, 10, correlation=c + 2, External_id=c + 1)
    x("cpu_op", "aten::relu", 220, 70, External_id=c + 4, Sequence_number=c + 6, Fwd_thread_id=0)
    x("cuda_runtime", "cudaLaunchKernel", 230, 5, correlation=c + 3, External_id=c + 4)
    x("cpu_op", "aten::add", 310, 10, External_id=c + 42, Sequence_number=c + 7, Fwd_thread_id=0)
    # backward ops (autograd thread)
    bt = {"tid": AUTOGRAD_TID}
    x("cpu_op", "autograd::engine::evaluate_function: ReluBackward0", 425, 65, External_id=c + 50,
      Sequence_number=c + 6, Fwd_thread_id=1, **bt)
    x("cpu_op", "ReluBackward0", 430, 55, External_id=c + 51, Sequence_number=c + 6, Fwd_thread_id=1, **bt)
    x("cpu_op", "aten::threshold_backward", 435, 45, External_id=c + 52, **bt)
    x("cuda_runtime", "cudaLaunchKernel", 440, 5, correlation=c + 4, External_id=c + 52, **bt)
    x("cpu_op", "autograd::engine::evaluate_function: AddmmBackward0", 510, 90, External_id=c + 53,
      Sequence_number=c + 5, Fwd_thread_id=1, **bt)
    x("cpu_op", "AddmmBackward0", 512, 86, External_id=c + 54, Sequence_number=c + 5, Fwd_thread_id=1, **bt)
    x("cpu_op", "aten::mm", 520, 70, External_id=c + 55, **bt)
    x("cuda_runtime", "cudaLaunchKernel", 530, 5, correlation=c + 5, External_id=c + 55, **bt)
    x("cpu_op", "autograd::engine::evaluate_function: TBackward0", 610, 40, External_id=c + 56,
      Sequence_number=c + 4, Fwd_thread_id=1, **bt)
    x("cuda_runtime", "cudaMemsetAsync", 615, 5, correlation=c + 6, External_id=c + 56, **bt)
    # optimizer
    x("cpu_op", "aten::_foreach_add_", 805, 30, External_id=c + 60)
    x("cuda_runtime", "cudaLaunchKernel", 810, 5, correlation=c + 7, External_id=c + 60)
    # device events
    gpu = {"pid": GPU_PID, "tid": COMPUTE_STREAM}
    x("kernel", "ampere_sgemm_64x64_nn", 100, gemm_us, correlation=c + 1, External_id=c + 3, device=0,
      stream=COMPUTE_STREAM, **gpu)
    x("gpu_memcpy", "Memcpy HtoD (Pageable -> Device)", 140, 10, correlation=c + 2, External_id=c + 1,
      device=0, stream=COPY_STREAM, pid=GPU_PID, tid=COPY_STREAM)
    x("kernel", "vectorized_elementwise_kernel<relu>", 240, 10, correlation=c + 3, External_id=c + 4,
      device=0, stream=COMPUTE_STREAM, **gpu)
    x("kernel", "vectorized_elementwise_kernel<add>", 330, 5, External_id=c + 42, device=0,
      stream=COMPUTE_STREAM, **gpu)
    x("kernel", "threshold_backward_kernel", 450, 20, correlation=c + 4, External_id=c + 52, device=0,
      stream=COMPUTE_STREAM, **gpu)
    x("kernel", "ampere_sgemm_128x64_tn", 540, 60, correlation=c + 5, External_id=c + 55, device=0,
      stream=COMPUTE_STREAM, **gpu)
    x("gpu_memset", "Memset (Device)", 630, 5, correlation=c + 6, External_id=c + 56, device=0,
      stream=COMPUTE_STREAM, **gpu)
    x("kernel", "multi_tensor_apply_kernel", 820, 20, device=0, stream=COMPUTE_STREAM, **gpu)
    # flows: ac2g (ids = correlation, as Kineto writes them) and fwdbwd
    ev.append(_flow("ac2g", "s", c + 1, o + 50, MAIN_TID))
    ev.append(_flow("ac2g", "f", c + 1, o + 100, COMPUTE_STREAM, GPU_PID))
    ev.append(_flow("ac2g", "s", c + 7, o + 810, MAIN_TID))
    ev.append(_flow("ac2g", "f", c + 7, o + 820, COMPUTE_STREAM, GPU_PID))
    ev.append(_flow("fwdbwd", "s", c + 1, o + 40, MAIN_TID))
    ev.append(_flow("fwdbwd", "f", c + 1, o + 510, AUTOGRAD_TID))
    ev.append({"ph": "i", "cat": "cpu_instant_event", "name": "[memory]", "pid": HOST_PID, "tid": MAIN_TID,
               "ts": T0 + o + 45, "s": "t", "args": {"Bytes": 4096, "Total Allocated": 8192}})
    return ev


def build_cuda_trace(ranges: bool = True) -> dict[str, Any]:
    """The synthetic trace (with topoprof's ranges, or a plain profiler trace without them)."""
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": HOST_PID, "tid": 0, "ts": T0, "args": {"name": "python"}},
        {"ph": "M", "name": "thread_name", "pid": HOST_PID, "tid": MAIN_TID, "ts": T0,
         "args": {"name": "thread 100 (python)"}},
        {"ph": "M", "name": "process_name", "pid": GPU_PID, "tid": 0, "ts": T0, "args": {"name": "python"}},
        {"ph": "M", "name": "process_labels", "pid": GPU_PID, "tid": 0, "ts": T0, "args": {"labels": "GPU 0"}},
        {"ph": "M", "name": "thread_name", "pid": GPU_PID, "tid": COMPUTE_STREAM, "ts": T0,
         "args": {"name": "stream 7 "}},
    ]
    for step in (0, 1):
        events += _step_events(step, ranges)
    events.append({"ph": "i", "s": "g", "name": "Record Window End", "pid": "", "tid": "", "ts": T0 + 2000.0})
    return {
        "schemaVersion": 1,
        "deviceProperties": [{"id": 0, "name": "NVIDIA A100-SXM4-80GB", "totalGlobalMem": 85051572224,
                              "computeMajor": 8, "computeMinor": 0, "numSms": 108}],
        "distributedInfo": {"backend": "nccl", "rank": 0, "world_size": 2},
        "record_shapes": 1,
        "with_stack": 0,
        "displayTimeUnit": "ms",
        "baseTimeNanoseconds": 1_700_000_000_000_000_000,
        "traceEvents": events,
        "traceName": "synthetic",
    }


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(orjson.dumps(doc, option=orjson.OPT_INDENT_2), mtime=0))


def test_checked_in_traces_match_their_builder() -> None:
    assert orjson.loads(gzip.decompress(CUDA_LAYERS.read_bytes())) == build_cuda_trace(ranges=True)
    assert orjson.loads(gzip.decompress(CUDA_PLAIN.read_bytes())) == build_cuda_trace(ranges=False)


@pytest.fixture(scope="module")
def summary():
    return summarize_trace(CUDA_LAYERS)


def test_metadata_is_kept() -> None:
    trace = load_trace(CUDA_LAYERS)
    assert trace.metadata["deviceProperties"][0]["name"] == "NVIDIA A100-SXM4-80GB"
    assert trace.metadata["distributedInfo"] == {"backend": "nccl", "rank": 0, "world_size": 2}
    assert trace.metadata["baseTimeNanoseconds"] == 1_700_000_000_000_000_000


def test_kernels_land_on_the_layer_of_the_op_that_launched_them(summary) -> None:
    fc, act, root = summary.layers["fc"], summary.layers["act"], summary.layers["<root>"]
    # fc forward: GEMM (50 + 70) and the memcpy (10 + 10) launched inside aten::linear
    assert fc.device_fwd_us == pytest.approx(140.0)
    assert fc.kernels_fwd == 2  # memcpys are not kernels
    # fc backward: the linked AddmmBackward0 GEMM (60 x 2) and the TBackward0 memset (5 x 2)
    assert fc.device_bwd_us == pytest.approx(130.0)
    assert fc.kernels_bwd == 2
    assert act.device_fwd_us == pytest.approx(20.0) and act.device_bwd_us == pytest.approx(40.0)
    assert act.kernels == 4
    # aten::add's kernel has only its External id
    assert root.device_fwd_us == pytest.approx(10.0) and root.device_bwd_us == 0.0
    assert root.kernels == 2


def test_backward_ops_outside_bwd_ranges_use_flows_and_sequence_numbers(summary) -> None:
    fc = summary.layers["fc"]
    # evaluate_function + AddmmBackward0 + aten::mm (flow) and evaluate_function: TBackward0 (seq)
    assert fc.bwd_ops == 2 * 4
    assert fc.bwd_ops_linked == 2 * 4
    assert fc.bwd_calls == 0 and fc.fwd_calls == 2
    act = summary.layers["act"]
    assert act.bwd_ops == 2 * 3 and act.bwd_ops_linked == 0 and act.bwd_calls == 2


def test_node_attributes_are_medians_over_steps(summary) -> None:
    attrs = summary.node_attributes()
    assert attrs["fc"] == {"device_fwd_us": 70.0, "device_bwd_us": 65.0, "kernels": 2}
    assert attrs["act"] == {"device_fwd_us": 10.0, "device_bwd_us": 20.0, "kernels": 2}
    assert attrs["<root>"] == {"device_fwd_us": 5.0, "device_bwd_us": 0.0, "kernels": 1}
    assert list(summary.layers["fc"].step_device_fwd_us) == [60.0, 80.0]


def test_steps_report_device_busy_as_the_union_of_device_activity(summary) -> None:
    assert list(summary.steps) == [0, 1]
    s0, s1 = summary.steps[0], summary.steps[1]
    assert s0.dur_us == pytest.approx(1000.0)
    # per step: 50/70 + 10 + 10 + 5 + 20 + 60 + 5 + 20
    assert s0.device_us == pytest.approx(180.0) and s1.device_us == pytest.approx(200.0)
    # the memcpy [140, 150] overlaps the GEMM [100, 150+]: it counts once in busy time
    assert s0.device_busy_us == pytest.approx(170.0) and s1.device_busy_us == pytest.approx(190.0)
    assert s0.device_idle_us == pytest.approx(830.0)
    assert s0.kernels == 6
    assert s0.phases_us == {"forward": 390.0, "backward": 400.0, "optimizer": 150.0, "other": 60.0}


def test_phases_and_unattributed_device_work(summary) -> None:
    assert summary.phases["optimizer"].device_us == pytest.approx(40.0)  # ac2g-only kernel
    assert summary.phases["optimizer"].kernels == 2
    assert summary.phases["forward"].device_us == pytest.approx(2 * 75.0 + 20.0)
    assert summary.unattributed.device_us == pytest.approx(40.0)
    assert summary.total.device_us == pytest.approx(380.0)
    assert summary.has_device and summary.has_layer_ranges


def test_op_device_time_goes_to_the_innermost_launching_op(summary) -> None:
    ops = {o.name: o for o in summary.ops}
    assert ops["aten::addmm"].device_us == pytest.approx(120.0) and ops["aten::addmm"].kernels == 2
    assert ops["aten::linear"].device_us == pytest.approx(20.0) and ops["aten::linear"].kernels == 0
    assert ops["aten::mm"].device_us == pytest.approx(120.0)
    assert summary.ops[0].name in ("aten::addmm", "aten::mm")  # ranked by device time
    # self time excludes child ops, not runtime calls: aten::linear 160 - 3 - 100
    assert ops["aten::linear"].cpu_self_us == pytest.approx(2 * 57.0)


def test_plain_cuda_trace_gives_op_level_results_and_profiler_steps() -> None:
    s = summarize_trace(CUDA_PLAIN)
    assert not s.has_layer_ranges and s.layers == {} and s.phases == {}
    assert list(s.steps) == [0, 1]
    ops = {o.name: o for o in s.ops}
    assert ops["aten::addmm"].device_us == pytest.approx(120.0)
    assert s.total.device_us == pytest.approx(380.0)
    assert s.unattributed.device_us == pytest.approx(380.0)
    assert s.steps[1].device_busy_us == pytest.approx(190.0)


if __name__ == "__main__":
    if "--regenerate" in sys.argv:
        _write(CUDA_LAYERS, build_cuda_trace(ranges=True))
        _write(CUDA_PLAIN, build_cuda_trace(ranges=False))
        print(f"wrote {CUDA_LAYERS} and {CUDA_PLAIN}")
