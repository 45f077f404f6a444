"""Hooks into the shared loop that can stop it or make it save, the way transformers' ``TrainerCallback``
and ``TrainerControl`` do: every hook receives the trainer, the fit's state and a :class:`TrainerControl`
whose flags it may set; the loop acts on them after the hook (a resume checkpoint for ``should_save``,
the end of the fit for ``should_stop``).

The loop itself keeps only what makes a fit a fit (steps, epochs, ``max_steps``, the best epoch's
weights, periodic checkpoints); early stopping, TensorBoard and pre-emption are the callbacks below,
installed by :class:`~imdb_sentiment.training.loop.Trainer` from the config. A callback that keeps a
counter the resume must restore keeps it in the state (``patience_left``), which the checkpoint holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imdb_sentiment.training import distributed
from imdb_sentiment.training.preemption import TrainingStopped, stop_requested

if TYPE_CHECKING:
    from imdb_sentiment.training.loop import FitState, Trainer


@dataclass
class TrainerControl:
    """What the callbacks ask of the loop after a hook; reset by the loop once acted on."""

    should_stop: bool = False  # end the fit as finished (no more steps or epochs)
    should_save: bool = False  # write a resume checkpoint after this step


class Callback:
    """Hooks into the loop (override what you need); ``logs`` holds the step's or the epoch's figures.

    - ``on_fit_begin``: after a resume point was loaded, before the first step;
    - ``on_step_end``: after each optimizer step (``logs``: running loss / accuracy, throughput, the
      step's own ``step_loss`` and ``learning_rate``);
    - ``on_save``: after a resume checkpoint was written;
    - ``on_epoch_end``: after the epoch's validation (``logs``: the history row), before its checkpoint;
    - ``on_fit_end``: always, also when the fit ends in an exception (release what you hold).
    """

    def on_fit_begin(self, trainer: Trainer, state: FitState, control: TrainerControl) -> None: ...

    def on_step_end(
        self, trainer: Trainer, state: FitState, control: TrainerControl, logs: dict[str, float]
    ) -> None: ...

    def on_save(self, trainer: Trainer, state: FitState, control: TrainerControl) -> None: ...

    def on_epoch_end(
        self, trainer: Trainer, state: FitState, control: TrainerControl, logs: dict[str, float]
    ) -> None: ...

    def on_fit_end(self, trainer: Trainer, state: FitState, control: TrainerControl) -> None: ...


class EarlyStopping(Callback):
    """Stop when validation accuracy has not improved for ``patience`` epochs (the loop decides what an
    improvement is: it keeps the best epoch's weights). The counter lives in ``state.patience_left`` so
    that a resumed run continues it."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_fit_begin(self, trainer: Trainer, state: FitState, control: TrainerControl) -> None:
        if state.patience_left is None:
            state.patience_left = self.patience
        elif state.patience_left <= 0:  # the resumed run had stopped early
            control.should_stop = state.result.stopped_early = True

    def on_epoch_end(
        self, trainer: Trainer, state: FitState, control: TrainerControl, logs: dict[str, float]
    ) -> None:
        improved = state.result.best_epoch == logs["epoch"]
        state.patience_left = self.patience if improved else (state.patience_left or self.patience) - 1
        if state.patience_left <= 0:
            control.should_stop = True
            state.result.stopped_early = True


class TensorBoard(Callback):
    """Event files in ``<folder>`` (the run folder's ``tensorboard/``): the loss and learning rate every
    ``every_steps`` steps, every epoch figure at the epoch's end."""

    def __init__(self, folder: Path, every_steps: int) -> None:
        self.folder, self.every_steps = folder, every_steps
        self.writer: Any = None

    def on_fit_begin(self, trainer: Trainer, state: FitState, control: TrainerControl) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.folder))

    def on_step_end(
        self, trainer: Trainer, state: FitState, control: TrainerControl, logs: dict[str, float]
    ) -> None:
        if self.writer is not None and state.step % self.every_steps == 0:
            self.writer.add_scalar("train/loss", logs["step_loss"], state.step)
            self.writer.add_scalar("train/learning_rate", logs["learning_rate"], state.step)

    def on_epoch_end(
        self, trainer: Trainer, state: FitState, control: TrainerControl, logs: dict[str, float]
    ) -> None:
        if self.writer is None:
            return
        for key, value in logs.items():
            if key not in ("epoch", "step"):
                self.writer.add_scalar(f"epoch/{key}", value, int(logs["step"]))

    def on_fit_end(self, trainer: Trainer, state: FitState, control: TrainerControl) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Preemption(Callback):
    """SIGTERM (see :mod:`.preemption`): a resume checkpoint after the current step, then
    :class:`TrainingStopped`. Every rank asks after every step (a collective: they must stop after the
    same one), and none leaves before rank 0 has written the checkpoint."""

    def __init__(self) -> None:
        self.stopping = False

    def on_step_end(
        self, trainer: Trainer, state: FitState, control: TrainerControl, logs: dict[str, float]
    ) -> None:
        if stop_requested():
            self.stopping = control.should_save = True

    def on_save(self, trainer: Trainer, state: FitState, control: TrainerControl) -> None:
        if self.stopping:
            distributed.wait_for_all()
            raise TrainingStopped(state.step)
