"""Hugging Face: profile ``transformers.Trainer`` with a callback (``pip install topoprof[huggingface]``).

::

    from topoprof.integrations.huggingface import TopoprofCallback

    profiler = TopoprofCallback("runs/bert", steps=10, skip_first=3)
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[profiler])
    with profiler:           # optional: a train() that raises still saves its finished steps
        trainer.train()

- The profile starts on the Trainer's model at the first training step (``on_step_begin``,
  which gets ``model``), after the dataloader and optimizer set-up of ``on_train_begin``.
- A step ends at ``on_step_end``, once per optimizer step: with
  ``gradient_accumulation_steps=k`` a step holds ``k`` forward and backward passes.
- The profile ends after ``steps`` profiled steps or at ``on_train_end``. The Trainer has no
  exception event: use the callback as a context manager around ``trainer.train()`` (or call
  :meth:`TopoprofCallback.close` with the exception) so that a failed training removes every
  hook and saves the steps that finished, with a status that says it failed.
- Evaluation and logging done between two steps belong to the step they fall in.
- One profile per callback: a second ``train()`` with the same callback is not profiled.

``transformers`` is imported with this module; ``import topoprof`` never imports it.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from transformers import TrainerCallback

from ..capture.session import Profiler, profile
from ._common import check_profile_options, end_profile

__all__ = ["TopoprofCallback"]


class TopoprofCallback(TrainerCallback):
    """Profiles the Trainer's training steps and saves the run in ``run_dir``.

    Args:
        run_dir: the run directory (as for :func:`topoprof.profile`).
        steps: profiled steps after the warm-up.
        skip_first: warm-up steps (the last one captures the layer graph).
        mode, tags, capture_graph, tensorboard: as for :func:`topoprof.profile`.

    After the training, :attr:`run` holds the saved run (``None`` if no step ran).
    """

    def __init__(
        self,
        run_dir: str | Path = "runs/huggingface",
        steps: int = 10,
        skip_first: int = 3,
        *,
        mode: str = "layers",
        tags: dict[str, Any] | None = None,
        capture_graph: bool = True,
        tensorboard: bool = True,
    ) -> None:
        self.options: dict[str, Any] = {
            "steps": steps, "skip_first": skip_first, "mode": mode, "tags": tags,
            "capture_graph": capture_graph, "tensorboard": tensorboard,
        }
        check_profile_options(run_dir, self.options)
        self.run_dir = Path(run_dir)
        self.profiler: Profiler | None = None
        self._closed = False

    @property
    def run(self) -> Any:
        """The saved :class:`topoprof.Run`, once the profile has ended."""
        return self.profiler.run if self.profiler is not None else None

    # ------------------------------------------------------------------ Trainer events
    def on_step_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.profiler is not None or self._closed or model is None:
            return
        self.profiler = profile(model, self.run_dir, **self.options)
        self.profiler.__enter__()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.profiler is not None:
            self.profiler.step()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ ending
    def close(self, exception: BaseException | None = None) -> None:
        """End the profile (idempotent): remove every hook and save the run.

        Args:
            exception: the error that ended the training, recorded in the run's status.
        """
        if self._closed:
            return
        self._closed = True
        end_profile(self.profiler, exception)

    def __enter__(self) -> TopoprofCallback:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(exc)
