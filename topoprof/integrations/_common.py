"""What the framework callbacks share: option checks and the optimizer phase mark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["check_profile_options", "mark_optimizer_phase", "end_profile"]


def check_profile_options(run_dir: str | Path, options: dict[str, Any]) -> None:
    """Raise :class:`topoprof.errors.ProfilerUsageError` now for options that
    :func:`topoprof.profile` would reject, rather than in the middle of the training."""
    from torch import nn

    from ..capture.session import Profiler

    Profiler(nn.Module(), run_dir, **options)


def mark_optimizer_phase(prof: Any) -> None:
    """The optimizer phase of the step in progress begins now.

    For frameworks that call ``optimizer.step(closure)`` with the forward and backward passes
    inside the closure (Lightning): the optimizer step hook fires before the closure, so the
    parameter update after it would be counted as ``other``. The session's own optimizer post
    hook ends the phase.
    """
    if prof is None or not prof.active:
        return
    mark = getattr(getattr(prof, "_timer", None), "mark", None)
    if callable(mark):
        mark("optimizer")


def end_profile(prof: Any, exception: BaseException | None = None) -> None:
    """End a callback's profile: remove every hook and save the run, with ``exception`` (the
    error that ended the training) in the run's status."""
    if prof is None:
        return
    if exception is None:
        prof.__exit__(None, None, None)
    else:
        prof.__exit__(type(exception), exception, exception.__traceback__)
