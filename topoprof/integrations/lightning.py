"""PyTorch Lightning: profile ``trainer.fit`` with a callback (``pip install topoprof[lightning]``).

::

    from topoprof.integrations.lightning import TopoprofCallback

    trainer = L.Trainer(max_steps=100, callbacks=[TopoprofCallback("runs/lit", steps=10, skip_first=3)])
    trainer.fit(model, loader)

- The profile starts on ``trainer.lightning_module`` at the first training batch
  (``on_train_batch_start``), not at ``on_fit_start``: the sanity-check validation, the
  dataloader set-up and the other fit preliminaries are not training steps.
- A step ends at the end of a training batch in which the optimizer stepped
  (``trainer.global_step`` moved): one step per batch, or per ``accumulate_grad_batches``
  batches with gradient accumulation, so a step is always one optimizer step.
- The forward phase begins at the LightningModule's ``forward``: have ``training_step`` call
  ``self(x)``. (A ``training_step`` that calls submodules directly still gets every layer
  timed; its forward time is then counted as ``other``.) Lightning runs ``training_step`` and
  ``backward`` inside ``optimizer.step(closure)``, so the optimizer phase is marked from
  ``on_before_optimizer_step``, after the closure, where the parameter update begins.
- The profile ends after ``steps`` profiled steps, at ``on_fit_end``, or at ``on_exception``
  (a failed or interrupted fit keeps the steps that finished; the run's status says so).
  Validation run between two training batches belongs to the step it falls in.
- One profile per callback: a second ``fit`` with the same callback is not profiled.

Lightning is imported with this module (from ``lightning.pytorch``, or the older standalone
``pytorch_lightning`` when ``lightning`` is not installed); ``import topoprof`` never imports it.
The callback must come from the same package as the ``Trainer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    from lightning.pytorch import Callback as _Callback
except ImportError:  # the standalone package
    from pytorch_lightning import Callback as _Callback

from ..capture.session import Profiler, profile
from ._common import check_profile_options, end_profile, mark_optimizer_phase

__all__ = ["TopoprofCallback"]


class TopoprofCallback(_Callback):
    """Profiles the LightningModule's training steps and saves the run in ``run_dir``.

    Args:
        run_dir: the run directory (as for :func:`topoprof.profile`).
        steps: profiled steps after the warm-up.
        skip_first: warm-up steps (the last one captures the layer graph).
        mode, tags, capture_graph, tensorboard: as for :func:`topoprof.profile`.

    After the fit, :attr:`run` holds the saved run (``None`` if no training batch ran).
    """

    def __init__(
        self,
        run_dir: str | Path = "runs/lightning",
        steps: int = 10,
        skip_first: int = 3,
        *,
        mode: str = "layers",
        tags: dict[str, Any] | None = None,
        capture_graph: bool = True,
        tensorboard: bool = True,
    ) -> None:
        super().__init__()
        self.options: dict[str, Any] = {
            "steps": steps, "skip_first": skip_first, "mode": mode, "tags": tags,
            "capture_graph": capture_graph, "tensorboard": tensorboard,
        }
        check_profile_options(run_dir, self.options)
        self.run_dir = Path(run_dir)
        self.profiler: Profiler | None = None
        self._closed = False
        self._global_step = 0

    @property
    def run(self) -> Any:
        """The saved :class:`topoprof.Run`, once the profile has ended."""
        return self.profiler.run if self.profiler is not None else None

    # ------------------------------------------------------------------ Lightning hooks
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.profiler is not None or self._closed:
            return
        self.profiler = profile(trainer.lightning_module, self.run_dir, **self.options)
        self.profiler.__enter__()
        self._global_step = trainer.global_step

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        mark_optimizer_phase(self.profiler)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        prof = self.profiler
        if prof is None or not prof.active:
            return
        if trainer.global_step != self._global_step:  # the optimizer stepped in this batch
            self._global_step = trainer.global_step
            prof.step()

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.close(exception)

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
