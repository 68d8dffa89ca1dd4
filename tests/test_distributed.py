"""Multi-process profiling with torch.distributed (gloo on CPU): every rank into one run."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import topoprof

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="gloo multi-process tests run on Linux")

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "ddp_train.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def torchrun(tmp_path, nproc, *script_args, extra=(), timeout=180):
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), *extra,
        str(SCRIPT), *script_args,
    ]
    return subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=timeout)


def checksums(stdout: str) -> dict[int, str]:
    # torchrun forwards every worker's stdout to one pipe: lines of two ranks may run together
    return {int(r): c for r, c in re.findall(r"rank (\d+) checksum (-?[0-9.]+)", stdout)}


def test_two_ranks_write_one_run_with_measured_allreduce(tmp_path):
    proc = torchrun(tmp_path, 2, "--out", "run", "--steps", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = topoprof.load(tmp_path / "run")
    assert run.manifest.ranks == [0, 1] and run.manifest.world_size == 2
    assert run.manifest.status == "complete" and run.missing_ranks == []
    for r in (0, 1):
        data = run.rank(r)
        assert (data.rank, data.world_size) == (r, 2)
        assert data.ddp["backend"] == "gloo" and data.ddp["comm_hook"] == "timed (default all-reduce)"
        # layers are named as in the user's module, not "module.stem"
        assert data.module("stem.0").kind == "Conv2d"
        param_bytes = data.module("").param_bytes
        for step in data.steps:
            assert step.comm_bytes == param_bytes  # every gradient was all-reduced once
            assert step.comm_buckets >= 1 and step.comm_us > 0
            assert 0 <= step.comm_exposed_us <= step.comm_us
    assert len(list((tmp_path / "run").glob("rank*.json"))) == 2


def test_profiling_leaves_ddp_results_bit_identical(tmp_path):
    profiled = torchrun(tmp_path, 2, "--out", "run", "--steps", "3")
    plain = torchrun(tmp_path, 2, "--out", "run2", "--steps", "3", "--no-profile")
    assert profiled.returncode == 0 and plain.returncode == 0, profiled.stderr[-2000:] + plain.stderr[-2000:]
    a, b = checksums(profiled.stdout), checksums(plain.stdout)
    assert len(a) == 2 and a == b


def test_four_ranks_with_a_planted_straggler(tmp_path):
    proc = torchrun(tmp_path, 4, "--out", "run", "--steps", "3", "--slow-rank", "2", "--slow-ms", "80")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = topoprof.load(tmp_path / "run")
    assert run.manifest.ranks == [0, 1, 2, 3]
    data_ms = {r: sorted(s.phases_us["data"] for s in run.rank(r).steps)[1] / 1000 for r in run.ranks}
    assert data_ms[2] >= 75
    assert all(data_ms[r] < 40 for r in (0, 1, 3)), data_ms
    # the merged analysis names the slow rank and its slow phase
    analysis = topoprof.analyze(run, target="dgx-a100")
    (straggler,) = [f for f in analysis.findings if f.id == "straggler-rank"]
    assert straggler.title.startswith("Rank 2 is a straggler")
    evidence = {e.name: e.value for e in straggler.evidence}
    assert evidence["rank 2 slow phase"] == "data"


def test_a_rank_that_dies_leaves_the_others_readable(tmp_path):
    # Launched without torchrun (nobody kills the survivor): rank 1 exits abruptly at the
    # start of step 3; rank 0's next all-reduce times out and its profile saves what finished.
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = _env() | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)}
        args = [sys.executable, str(SCRIPT), "--out", "run", "--steps", "5", "--die-rank", "1", "--die-step", "3", "--timeout-s", "5"]
        procs.append(subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=180) for p in procs]
    assert procs[1].returncode == 17
    assert procs[0].returncode != 0, outs[0]
    run = topoprof.load(tmp_path / "run")
    assert run.manifest.ranks == [0] and run.missing_ranks == [1]
    assert run.manifest.status.startswith("failed")
    assert [s.index for s in run.rank(0).steps] == [2]  # step 2 finished everywhere; step 3 never did
    analysis = topoprof.analyze(run, target="dgx-a100")
    assert any("ranks [1]" in note and "no data" in note for note in analysis.notes)


def test_two_nodes_on_one_machine_merge_into_one_run(tmp_path):
    port = str(_free_port())
    procs = []
    for node in (0, 1):
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", port,
            str(SCRIPT), "--out", "run", "--steps", "2",
        ]
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    run = topoprof.load(tmp_path / "run")
    assert run.manifest.ranks == [0, 1] and run.manifest.world_size == 2
    assert run.rank(0).run_id == run.rank(1).run_id == run.manifest.run_id


def test_a_rerun_into_the_same_directory_is_a_new_job(tmp_path):
    first = torchrun(tmp_path, 2, "--out", "run", "--steps", "2")
    assert first.returncode == 0, first.stderr[-2000:]
    id1 = topoprof.load(tmp_path / "run").manifest.run_id
    # the second job: rank 1 dies at once, rank 0's all-reduce times out
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = _env() | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)}
        args = [sys.executable, str(SCRIPT), "--out", "run", "--steps", "3", "--die-rank", "1", "--die-step", "3", "--timeout-s", "5"]
        procs.append(subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        p.communicate(timeout=180)
    with pytest.warns(UserWarning, match="left over from another job"):
        run = topoprof.load(tmp_path / "run")
    assert run.manifest.run_id != id1
    assert run.manifest.ranks == [0] and run.missing_ranks == [1]  # job 1's rank 1 is not taken
