"""Distributed capture: DDP gradient all-reduce timing and the shared run manifest.

Under ``torchrun`` every rank profiles itself and writes ``rank<R>.json`` into the same run
directory; the manifest ``run.json`` is updated by each rank in turn under a file lock, so it
lists exactly the ranks that finished (a rank that dies writes nothing and is missing there).

DDP's gradient all-reduce is timed per bucket by a communication hook that performs exactly
``torch.distributed.algorithms.ddp_comm_hooks.default_hooks.allreduce_hook`` (documented by
PyTorch as equivalent to DDP without a hook: divide by the world size, then all-reduce), with
a timestamp when the bucket is handed over and one when its future completes. DDP cannot
unregister a communication hook, so after the profile the hook stays and only forwards to
``allreduce_hook``: the one piece of state topoprof cannot remove (said in the README).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from .._jsonio import read_json, write_json_atomic
from ..errors import RunFormatError
from ..run import MANIFEST_NAME, Manifest
from .clock import Clock

__all__ = ["unwrap_ddp", "DDPCommTimer", "ddp_facts", "run_id", "merge_manifest"]


def unwrap_ddp(model: nn.Module) -> tuple[nn.Module, Any | None]:
    """``(inner module, DDP wrapper)`` for a DistributedDataParallel model, else ``(model, None)``."""
    ddp_cls = getattr(torch.nn.parallel, "DistributedDataParallel", None)
    if ddp_cls is not None and isinstance(model, ddp_cls):
        return model.module, model
    return model, None


def ddp_facts(ddp: Any) -> dict[str, Any]:
    """Plain facts about a DDP wrapper for the analysis (bucket size, backend, flags)."""
    pg = getattr(ddp, "process_group", None)
    backend = None
    with contextlib.suppress(Exception):
        backend = torch.distributed.get_backend(pg)
    return {
        "backend": backend,
        "bucket_cap_bytes": int(getattr(ddp, "bucket_bytes_cap", 0) or 0),
        "gradient_as_bucket_view": bool(getattr(ddp, "gradient_as_bucket_view", False)),
        "find_unused_parameters": bool(getattr(ddp, "find_unused_parameters", False)),
        "static_graph": bool(getattr(ddp, "static_graph", False)),
        "comm_hook": None,
    }


def _timed_allreduce_hook(state, bucket):  # type: ignore[no-untyped-def]
    # No annotations: DDP checks them against dist.GradBucket / Future[Tensor], and
    # ``from __future__ import annotations`` turns them into strings it rejects.
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    if not state.active:
        return allreduce_hook(state.process_group, bucket)
    buffer = bucket.buffer()
    record = [state.clock.now(), None, buffer.numel() * buffer.element_size()]
    state.records.append(record)
    fut = allreduce_hook(state.process_group, bucket)

    def done(f: torch.futures.Future) -> torch.Tensor:
        record[1] = state.clock.now()
        return f.value()

    return fut.then(done)


class DDPCommTimer:
    """Times every DDP bucket all-reduce; records are ``[t_start, t_end, bytes]``."""

    def __init__(self, ddp: Any, clock: Clock) -> None:
        self.ddp = ddp
        self.clock = clock
        self.process_group = getattr(ddp, "process_group", None)
        self.records: list[list[Any]] = []
        self.active = False
        self.status = "not installed"

    def install(self) -> bool:
        """Register the hook; False (with :attr:`status` saying why) if DDP refuses it."""
        try:
            self.ddp.register_comm_hook(self, _timed_allreduce_hook)
        except (RuntimeError, AssertionError, ValueError) as exc:
            self.status = f"not timed: {exc}".splitlines()[0]
            return False
        self.active = True
        self.status = "timed (default all-reduce)"
        return True

    def drain(self) -> list[list[Any]]:
        """The records of the step that just ended (completed all-reduces)."""
        done = [r for r in self.records if r[1] is not None]
        self.records = [r for r in self.records if r[1] is None]
        return done

    def stop(self) -> None:
        self.active = False
        self.records.clear()


def run_id() -> str:
    """An id shared by all ranks of one job, so that their files are merged into one run.

    With an initialised process group, rank 0 draws a fresh id and broadcasts it (a rerun into
    the same directory is then a new job, never merged with the last one); every rank must
    enter the profile, as every rank of a DDP job does. Otherwise torchrun's run id, else the
    rendezvous address and world size; a single process gets a fresh id.
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [uuid.uuid4().hex if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return str(box[0])
    rid = os.environ.get("TORCHELASTIC_RUN_ID")
    if rid and rid != "none":
        return rid
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    world = os.environ.get("WORLD_SIZE")
    if addr and port and world and world != "1":
        return f"{addr}:{port}/{world}"
    return uuid.uuid4().hex


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no fcntl (Windows): single-writer assumption
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def merge_manifest(run_dir: Path, manifest: Manifest) -> Manifest:
    """Write ``manifest`` into ``run_dir``, merged with the one other ranks of the same job wrote.

    Ranks are unioned and the status keeps the first failure seen; a manifest of another job
    (a different ``run_id``) is replaced, and so are its rank files when they are read back
    (:func:`topoprof.load` skips rank files of another job).
    """
    path = run_dir / MANIFEST_NAME
    lock = _locked(run_dir / ".run.json.lock") if manifest.world_size > 1 else contextlib.nullcontext()
    with lock:
        merged = manifest
        if path.exists():
            try:
                previous = Manifest.from_dict(read_json(path), source=str(path))
            except RunFormatError:
                previous = None
            if previous is not None and previous.run_id == manifest.run_id:
                ranks = sorted(set(previous.ranks) | set(manifest.ranks))
                status = manifest.status if previous.status == "complete" else previous.status
                hosts = sorted(set(previous.hosts) | set(manifest.hosts))
                merged = Manifest(**{**manifest.__dict__, "ranks": ranks, "status": status, "hosts": hosts})
        write_json_atomic(path, merged.to_dict())
    return merged
