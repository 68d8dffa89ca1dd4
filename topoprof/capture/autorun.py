"""Profile an unmodified training script: ``topoprof run script.py`` / ``topoprof run -m module``.

The script runs in this process as ``python script.py`` would run it (same ``sys.argv``,
``__name__ == "__main__"``, working directory, ``sys.path[0]``, exit code, exceptions), while
topoprof watches it for its model and profiles the model's training steps.

How the model is found (the rule):

1. While the script runs its first training iteration, a global forward pre-hook and a global
   forward hook (``torch.nn.modules.module.register_module_forward_pre_hook`` /
   ``register_module_forward_hook``) track which module forwards are active. A module whose
   forward begins while no other module forward is active is *outermost*; every outermost
   module is a candidate, in the order of its first call (the model, but also a loss module
   such as ``nn.CrossEntropyLoss``, an input-normalising module, a frozen backbone...).
2. At the first ``optimizer.step()`` (a global optimizer step pre-hook), the model is the first
   candidate that has a gradient in a parameter this optimizer updates: the first outermost
   module whose forward was followed by a backward pass and an optimizer step. Failing that, the
   first candidate with any gradient. Failing that (no gradient yet), the next
   ``optimizer.step()`` decides. So with a GAN whose discriminator is stepped first, the
   discriminator is the model; a module without parameters or one run under ``no_grad`` never is.
3. The profile starts inside the model's next forward call (a forward pre-hook on the model,
   which also removes the global hooks), through
   :meth:`topoprof.capture.session.Profiler.start_in_root_forward`, so its first step begins at
   that forward pass exactly. The first training iteration, used to find the model, is
   therefore never profiled (it is the slowest one anyway: lazy initialisation, allocator
   warm-up). Steps are delimited by the optimizer, since the script never calls ``prof.step()``:
   a step ends when the model's next forward begins after an ``optimizer.step()``, or when the
   script ends.

Every hook is removed when the script ends, however it ends.
"""

from __future__ import annotations

import os
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import ProfilerUsageError

__all__ = [
    "NOT_FOUND_NO_FORWARD",
    "NOT_FOUND_NO_NEXT_FORWARD",
    "NOT_FOUND_NO_OPTIMIZER",
    "AutorunResult",
    "ModelFinder",
    "choose_model",
    "run_script",
    "script_exit_code",
]

#: Why an autorun profiled nothing (:attr:`AutorunResult.not_found`).
NOT_FOUND_NO_FORWARD = "no module forward ran"
NOT_FOUND_NO_OPTIMIZER = "no optimizer step"
NOT_FOUND_NO_NEXT_FORWARD = "no forward after the first optimizer step"


_current_graph_task_id: Callable[[], int] = torch._C._current_graph_task_id


def _in_backward() -> bool:
    """True inside an autograd backward pass (activation-checkpoint recomputation runs there)."""
    return _current_graph_task_id() != -1


class ModelFinder:
    """Finds the model of a script that runs (the rule in this module's docstring).

    ``on_found(model, args, kwargs)`` is called from inside the model's first forward call after
    it was identified, once, after every hook of the finder has been removed.
    """

    def __init__(self, on_found: Callable[[Any, tuple[Any, ...], dict[str, Any]], None]) -> None:
        self.on_found = on_found
        #: Outermost modules in the order of their first call (strong references, dropped when
        #: the model is chosen or the finder removed).
        self.candidates: list[Any] = []
        #: Outermost forward calls by module class name, for the messages.
        self.outermost_calls: dict[str, int] = {}
        self._seen: set[int] = set()
        self.optimizer_steps = 0
        self.model: Any = None
        self.model_kind: str | None = None
        self.started = False
        self._depth = 0
        self._global_handles: list[Any] = []
        self._model_handle: Any = None

    # ---------------------------------------------------------------- install / remove
    def install(self) -> None:
        """Install the global hooks that watch the script."""
        from torch.nn.modules.module import (
            register_module_forward_hook,
            register_module_forward_pre_hook,
        )
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        self._global_handles = [
            register_module_forward_pre_hook(self._forward_pre_hook),
            register_module_forward_hook(self._forward_hook, always_call=True),
            register_optimizer_step_pre_hook(self._optimizer_pre_hook),
        ]

    def remove(self) -> None:
        """Remove every hook the finder installed (idempotent)."""
        self._remove_global_hooks()
        if self._model_handle is not None:
            self._model_handle.remove()
            self._model_handle = None
        self.candidates = []
        self._seen = set()

    def _remove_global_hooks(self) -> None:
        for h in self._global_handles:
            h.remove()
        self._global_handles = []

    # ---------------------------------------------------------------- hooks
    def _forward_pre_hook(self, module: Any, args: Any) -> None:
        if _in_backward():
            return
        if self._depth == 0:
            kind = type(module).__name__
            self.outermost_calls[kind] = self.outermost_calls.get(kind, 0) + 1
            if self.model is None and id(module) not in self._seen:
                self._seen.add(id(module))
                self.candidates.append(module)
        self._depth += 1

    def _forward_hook(self, module: Any, args: Any, output: Any) -> None:
        if _in_backward():
            return
        self._depth = max(self._depth - 1, 0)

    def _optimizer_pre_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        # Torch iterates the global optimizer hooks while calling this one, so the global hooks
        # are removed later, in the model's forward pre-hook.
        self.optimizer_steps += 1
        if self.model is not None:
            return
        chosen = choose_model(self.candidates, optimizer)
        if chosen is None:
            return
        self.model = chosen
        self.model_kind = type(chosen).__name__
        self.candidates = []
        self._seen = set()
        self._model_handle = chosen.register_forward_pre_hook(self._model_pre_hook, with_kwargs=True)

    def _model_pre_hook(self, module: Any, args: Any, kwargs: Any = None) -> None:
        # Torch took a snapshot of the hooks before calling this one: removing them is safe.
        if self.started or _in_backward():
            return
        self.started = True
        self.remove()
        self.on_found(module, args, kwargs if kwargs is not None else {})


def choose_model(candidates: list[Any], optimizer: Any) -> Any:
    """The first candidate with a gradient in a parameter ``optimizer`` updates, else the first
    candidate with any gradient, else ``None`` (no backward has reached a candidate yet)."""
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    fallback = None
    for module in candidates:
        for p in module.parameters():
            if p.grad is None:
                continue
            if id(p) in stepped:
                return module
            if fallback is None:
                fallback = module
    return fallback


@dataclass
class AutorunResult:
    """What happened when a script ran under ``topoprof run``.

    Attributes:
        exit_code: the exit code ``python`` would have given the script (0, a ``SystemExit``
            code, 1 for an uncaught exception, 130 for KeyboardInterrupt).
        run: the saved run, or ``None`` when no profile started.
        model_kind: class name of the model that was found, if any.
        not_found: when no profile started, why (one of the ``NOT_FOUND_*`` constants).
        forward_modules: class names of the outermost modules that ran, with their call counts
            (for the message when no model was found).
        error: the exception the script raised (not ``SystemExit``), if any.
        exit_message: a non-integer ``SystemExit`` argument, which ``python`` prints.
        start_error: topoprof's own error if the profile could not start (the script then ran
            on unprofiled).
    """

    exit_code: int
    run: Any = None
    model_kind: str | None = None
    not_found: str | None = None
    forward_modules: dict[str, int] = field(default_factory=dict)
    error: BaseException | None = None
    exit_message: str | None = None
    start_error: BaseException | None = None


def script_exit_code(exc: SystemExit) -> tuple[int, str | None]:
    """``(code, message)`` as ``python`` turns an uncaught ``SystemExit`` into an exit status."""
    code = exc.code
    if code is None:
        return 0, None
    if isinstance(code, bool):  # bool is an int: sys.exit(True) exits with 1, as in python
        return int(code), None
    if isinstance(code, int):
        return code, None
    return 1, str(code)


def run_script(
    target: str,
    args: list[str],
    *,
    module: bool = False,
    run_dir: str | Path,
    steps: int = 10,
    skip_first: int = 3,
    mode: str = "layers",
    tags: dict[str, Any] | None = None,
    tensorboard: bool = True,
) -> AutorunResult:
    """Run a script (or ``-m`` module) as ``python`` would and profile the model it trains.

    Args:
        target: path of the script, or the module name with ``module=True``.
        args: the script's own arguments (``sys.argv[1:]`` for it).
        module: run ``target`` as ``python -m target`` does.
        run_dir: where the run is saved.
        steps, skip_first, mode, tags, tensorboard: as for :func:`topoprof.profile`.

    Returns:
        An :class:`AutorunResult`; the script's exception, if any, is in ``error`` (with its
        traceback) and is not re-raised.

    Raises:
        ProfilerUsageError: the script or module does not exist, or a bad option.
    """
    from torch import nn

    from .session import MODES, Profiler

    if mode not in MODES:
        raise ProfilerUsageError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    # Checked now: the profiler is built mid-script, where a bad value would look like a crash.
    Profiler(nn.Module(), run_dir, steps=steps, skip_first=skip_first, mode=mode, tags=tags)

    # Absolute: the script may change directory before the run is saved.
    run_dir = Path(run_dir).absolute()
    if module:
        path0 = os.getcwd()  # python -m puts the working directory first
        _check_module(target, path0)
    else:
        script = Path(target)
        if not script.is_file():
            raise ProfilerUsageError(f"script not found: {target}")
        path0 = os.path.dirname(os.path.realpath(script))  # python resolves symlinks here

    state: dict[str, Any] = {"prof": None, "start_error": None}

    def on_found(model: Any, call_args: tuple[Any, ...], call_kwargs: dict[str, Any]) -> None:
        prof = Profiler(model, run_dir, steps=steps, skip_first=skip_first, mode=mode, tags=tags,
                        tensorboard=tensorboard)
        try:
            prof.start_in_root_forward(call_args, call_kwargs)
        except Exception as exc:  # noqa: BLE001 - topoprof's failure must not become the script's
            state["start_error"] = exc
            if prof.active:
                prof.__exit__(type(exc), exc, exc.__traceback__)
            return
        state["prof"] = prof

    finder = ModelFinder(on_found)
    result = AutorunResult(exit_code=0)
    saved_argv, saved_path, saved_cwd = sys.argv[:], sys.path[:], os.getcwd()
    sys.argv = [target, *args]
    _set_path0(path0)
    finder.install()
    exc_info: tuple[Any, Any, Any] = (None, None, None)
    try:
        if module:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except SystemExit as exc:
        result.exit_code, result.exit_message = script_exit_code(exc)
    except KeyboardInterrupt as exc:
        result.exit_code, result.error = 130, exc
        exc_info = (type(exc), exc, exc.__traceback__)
    except BaseException as exc:  # noqa: BLE001 - the script's own error: reported, not ours
        result.exit_code, result.error = 1, exc
        exc_info = (type(exc), exc, exc.__traceback__)
    finally:
        finder.remove()
        # What python would leave to the end of the process is put back for the caller.
        sys.argv, sys.path[:] = saved_argv, saved_path
        if os.getcwd() != saved_cwd:
            os.chdir(saved_cwd)
        prof = state["prof"]
        if prof is not None:
            # Ends the open step and saves the run; a failed script saves its finished steps.
            prof.__exit__(*exc_info)
    prof = state["prof"]
    result.model_kind = finder.model_kind
    if prof is not None:
        result.run = prof.run
    elif finder.model is not None:
        result.not_found = NOT_FOUND_NO_NEXT_FORWARD
    elif finder.outermost_calls:
        result.not_found = NOT_FOUND_NO_OPTIMIZER
    else:
        result.not_found = NOT_FOUND_NO_FORWARD
    result.forward_modules = dict(finder.outermost_calls)
    result.start_error = state["start_error"]
    return result


def _set_path0(path0: str) -> None:
    if sys.path:
        sys.path[0] = path0
    else:
        sys.path.insert(0, path0)


def _check_module(name: str, path0: str) -> None:
    """Raise :class:`ProfilerUsageError` if ``python -m name`` would not find the module."""
    import importlib.util

    saved = sys.path[:]
    _set_path0(path0)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        raise ProfilerUsageError(f"{exc}") from None
    finally:
        sys.path[:] = saved
    if spec is None:
        raise ProfilerUsageError(f"No module named {name}")
