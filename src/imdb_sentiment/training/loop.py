"""The one training loop every PyTorch model uses (word models, pretrained encoders, LoRA / PEFT).

Features: AdamW/SGD, warmup + linear/cosine decay, gradient clipping and accumulation, bf16 autocast,
best-checkpoint selection on the validation split (never the test split), resume checkpoints at epoch
ends and every ``training.checkpoint_every_steps`` steps (``resume`` continues from the saved step with
identical results), DistributedDataParallel under a launcher (see training/distributed.py) and a Rich
progress bar with live loss / accuracy / throughput. Early stopping, TensorBoard event files and
pre-emption (SIGTERM: a checkpoint and a clean stop) are callbacks (training/callbacks.py) that can
stop the fit or make it save; more can be passed in. It is the ``native`` training backend
(training/backends.py).

Why not accelerate/Lightning: the loop is one file under 400 lines, and owning it keeps checkpoints, the run folder
and the bit-exact resume contract in one place; device, precision and threads come from one
:class:`~imdb_sentiment.training.runtime.Runtime` resolved by the caller.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.errors import UserError
from imdb_sentiment.training import distributed
from imdb_sentiment.training.callbacks import Callback, EarlyStopping, Preemption, TensorBoard, TrainerControl
from imdb_sentiment.training.checkpoint import BEST, CheckpointStore, get_rng_state, set_rng_state
from imdb_sentiment.training.objectives import Objective, build_objective
from imdb_sentiment.training.optimization import build_optimizer, build_scheduler
from imdb_sentiment.training.preemption import deferred_stop
from imdb_sentiment.training.runtime import Runtime, autocast

logger = logging.getLogger("imdb_sentiment.training")


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_accuracy: float = float("nan")
    train_seconds: float = 0.0  # all attempts: a resumed fit adds the time its checkpoint recorded
    earlier_seconds: float = 0.0  # of which spent before the last resume
    steps: int = 0
    stopped_early: bool = False
    world_size: int = 1  # processes that trained it (DistributedDataParallel when > 1)
    weights_identical_across_ranks: bool = True


@dataclass
class EpochPosition:
    """How far the current epoch got: batches taken and the running training totals (of all ranks).
    Saved in mid-epoch checkpoints so that a resume continues from the next batch."""

    batches: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0
    seen: float = 0.0


@dataclass
class FitState:
    """What a resume checkpoint holds besides the weights, kept together while fitting; what the
    callbacks read (and, for their own counters such as ``patience_left``, write)."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    result: FitResult
    epochs_done: int = 0
    step: int = 0
    patience_left: int | None = None
    elapsed_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


@torch.no_grad()
def predict_logits(
    network: nn.Module,
    loader: DataLoader,
    device: torch.device,
    bf16: bool,
    show_progress: bool = False,
    num_classes: int = 2,
) -> np.ndarray:
    """Logits in dataset order (the sampler may reorder batches by length); ``num_classes``: the width
    of the (0, num_classes) result when there is nothing to predict (the network never runs then)."""
    network.eval()
    order: list[int] = []
    outputs: list[np.ndarray] = []
    batches = list(loader.batch_sampler) if loader.batch_sampler is not None else None
    with _progress(show_progress) as progress:
        task = progress.add_task("predict", total=len(loader.dataset), info="")
        for index, batch in enumerate(loader):
            with autocast(device, bf16):
                logits = network(to_device(batch, device)).logits
            outputs.append(logits.float().cpu().numpy())
            if batches is not None:
                order.extend(batches[index])
            progress.update(task, advance=len(logits))
    logits = np.concatenate(outputs) if outputs else np.zeros((0, num_classes), dtype=np.float32)
    if batches is None:
        return logits
    indices = np.asarray(order, dtype=np.int64)
    if getattr(loader.batch_sampler, "world_size", 1) > 1:  # each rank predicted its share
        indices, logits = distributed.gather_rows(indices, logits)
        if len(indices) != len(loader.dataset) or len(np.unique(indices)) != len(indices):
            raise RuntimeError("the ranks' predictions do not cover the dataset exactly once")
    restored = np.empty_like(logits)
    restored[indices] = logits
    return restored


def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        disable=not enabled,
        transient=True,
    )


class Trainer:
    """Fits a network that maps a batch dict to :class:`NetworkOutput`. ``callbacks`` run after the
    built-in ones (early stopping, TensorBoard) and before pre-emption."""

    def __init__(
        self,
        network: nn.Module,
        config: TrainingConfig,
        runtime: Runtime | None = None,
        run_dir: Path | None = None,
        objective: Objective | None = None,
        callbacks: Iterable[Callback] = (),
        show_progress: bool = True,
    ) -> None:
        self.config = config
        self.runtime = runtime or Runtime.from_training(config)
        self.device, self.bf16 = self.runtime.device, self.runtime.bf16
        self.network = network.to(self.device)
        self.objective = objective or build_objective(config.objective)
        self.run_dir = run_dir
        self.callbacks = [*self._default_callbacks(), *callbacks, Preemption()]
        self.show_progress = show_progress
        # Every rank reads the checkpoints (a resume); only the main process writes them.
        self.checkpoints = CheckpointStore(
            run_dir / "checkpoints" if run_dir else None, self.device, writable=self.runtime.is_main_process
        )
        self.train_network: nn.Module = self.network  # the DistributedDataParallel wrapper when distributed

    def _default_callbacks(self) -> list[Callback]:
        callbacks: list[Callback] = []
        if self.config.early_stopping_patience is not None:
            callbacks.append(EarlyStopping(self.config.early_stopping_patience))
        if self.run_dir is not None and self.runtime.is_main_process:
            callbacks.append(TensorBoard(self.run_dir / "tensorboard", self.config.log_every_steps))
        return callbacks

    def _call(self, hook: str, run: FitState, control: TrainerControl, *logs: dict[str, float]) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, run, control, *logs)

    # ------------------------------------------------------------------------------------- training
    def fit(self, train_loader: DataLoader, valid_loader: DataLoader | None, resume: bool = False) -> FitResult:
        config = self.config
        steps_per_epoch = math.ceil(len(train_loader) / config.grad_accum_steps)
        total_steps = steps_per_epoch * config.epochs
        if config.max_steps:
            total_steps = min(total_steps, config.max_steps)
        optimizer = build_optimizer(self.network, config)
        run = FitState(optimizer, build_scheduler(optimizer, config, total_steps), FitResult())
        result, control = run.result, TrainerControl()
        best_state: dict[str, torch.Tensor] | None = None
        position, rng_in_epoch = EpochPosition(), None

        checkpoint = self.checkpoints.load_resume_point() if resume else None
        if checkpoint is not None:
            self.network.load_state_dict(checkpoint["network"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            run.scheduler.load_state_dict(checkpoint["scheduler"])
            run.epochs_done, run.step = checkpoint["epoch"], checkpoint["step"]
            run.patience_left = checkpoint["patience_left"]
            result.history = checkpoint["history"]
            result.best_epoch = checkpoint["best_epoch"]
            result.best_valid_accuracy = checkpoint["best_valid_accuracy"]
            run.elapsed_before = checkpoint["train_seconds"]
            best_state = self._load_best_state()
            saved_position = checkpoint.get("position")
            if saved_position:  # mid-epoch: the RNG state is restored once the epoch's iterator exists
                position = EpochPosition(**saved_position)
                if not self.runtime.is_main_process:  # the totals of all ranks are counted once, on rank 0
                    position = EpochPosition(batches=position.batches)
                rng_in_epoch = checkpoint["rng"]
            else:
                set_rng_state(checkpoint["rng"])
            logger.info("resumed from epoch %d, step %d (batch %d of the epoch)", run.epochs_done, run.step,
                        position.batches)  # fmt: skip
        self.train_network = self._wrap_for_training()

        run.started = time.perf_counter()
        # SIGTERM inside waits for the end of a step (the Preemption callback); outside it, it stops at once.
        with deferred_stop(), _progress(self.show_progress and self.runtime.is_main_process) as progress:
            try:
                self._call("on_fit_begin", run, control)
                for epoch in range(run.epochs_done, config.epochs):
                    if control.should_stop or self._out_of_steps(run):
                        break
                    if hasattr(train_loader.batch_sampler, "set_epoch"):
                        train_loader.batch_sampler.set_epoch(epoch, position.batches)
                    task = progress.add_task(
                        f"epoch {epoch + 1}/{config.epochs}", total=len(train_loader), info=""
                    )
                    epoch_logs = self._train_epoch(
                        train_loader, run, control, progress, task, position, rng_in_epoch
                    )
                    position, rng_in_epoch = EpochPosition(), None
                    logs: dict[str, float] = {"epoch": epoch + 1, "step": run.step, **epoch_logs}
                    if valid_loader is not None:
                        logs.update(self.evaluate(valid_loader))
                    logs["elapsed_seconds"] = run.seconds()
                    result.history.append(logs)
                    logger.info("epoch %d: %s", logs["epoch"],
                                ", ".join(f"{k} {v:.4f}" for k, v in logs.items() if k != "epoch"))  # fmt: skip
                    if valid_loader is None or not logs["valid_accuracy"] <= result.best_valid_accuracy:
                        result.best_epoch = epoch + 1
                        result.best_valid_accuracy = logs.get("valid_accuracy", float("nan"))
                        best_state = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
                        self.checkpoints.save({"network": best_state, "epoch": epoch + 1}, BEST)
                    self._call("on_epoch_end", run, control, logs)
                    run.epochs_done = epoch + 1
                    self._save_resume_point(run, control, None, logs["elapsed_seconds"])
            finally:
                self._call("on_fit_end", run, control)
        result.train_seconds = run.seconds()
        result.earlier_seconds = run.elapsed_before
        result.steps = run.step
        if best_state is not None:
            self.network.load_state_dict(best_state)
        result.world_size = self.runtime.world_size
        result.weights_identical_across_ranks = distributed.weights_identical_across_ranks(self.network)
        return result

    def _out_of_steps(self, run: FitState) -> bool:
        return self.config.max_steps is not None and run.step >= self.config.max_steps

    def _wrap_for_training(self) -> nn.Module:
        """DistributedDataParallel under a launcher (it broadcasts rank 0's weights, then averages the
        gradients); the bare network otherwise. Checkpoints and evaluation use the bare network."""
        if self.runtime.world_size == 1:
            return self.network
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # Some networks leave parameters out of a forward (an unused pooler, a features head): DDP
        # must not wait for their gradients.
        return DistributedDataParallel(self.network, device_ids=device_ids, find_unused_parameters=True)

    def _save_resume_point(
        self, run: FitState, control: TrainerControl, position: EpochPosition | None, seconds: float
    ) -> None:
        """``last.pt`` (the previous one kept); ``position`` for a checkpoint inside an epoch. Called on
        every rank at the same step: the epoch totals are summed over the ranks first."""
        control.should_save = False
        saved_position = None
        if position is not None:
            loss_sum, correct, seen = distributed.sum_over_ranks(
                [position.loss_sum, position.correct, position.seen]
            )
            saved_position = {"batches": position.batches, "loss_sum": loss_sum, "correct": correct, "seen": seen}
        self.checkpoints.save_resume_point(
            {
                "network": self.network.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict(),
                "epoch": run.epochs_done,
                "step": run.step,
                "position": saved_position,
                "patience_left": run.patience_left,
                "history": run.result.history,
                "best_epoch": run.result.best_epoch,
                "best_valid_accuracy": run.result.best_valid_accuracy,
                "train_seconds": seconds,
                "rng": get_rng_state(),
            }
        )
        self._call("on_save", run, control)

    def _load_best_state(self) -> dict[str, torch.Tensor] | None:
        """The best epoch's weights; a damaged best.pt costs only the choice of epoch, not the run."""
        try:
            best = self.checkpoints.load(BEST)
        except UserError as exc:
            logger.warning("%s; the best epoch's weights are lost, the final weights will be kept", exc)
            return None
        return best["network"] if best else None

    def _train_epoch(
        self, loader, run: FitState, control: TrainerControl, progress, task, position: EpochPosition,
        rng_state: dict[str, Any] | None,
    ) -> dict[str, float]:  # fmt: skip
        config, network = self.config, self.train_network
        network.train()
        micro = 0
        window_started, window_examples = time.perf_counter(), 0
        run.optimizer.zero_grad(set_to_none=True)
        total_batches = len(loader)
        batches_left = total_batches - position.batches
        batches = iter(loader)
        if rng_state is not None:
            set_rng_state(rng_state)  # after iter(loader): creating the iterator draws from torch's RNG
        if position.batches and not hasattr(loader.batch_sampler, "set_epoch"):
            batches = itertools.islice(batches, position.batches, None)  # exact only for a fixed order
        progress.update(task, completed=position.batches)
        for batch in batches:
            batch = to_device(batch, self.device)
            # The last accumulation group of an epoch may be short: scale by its real size.
            group = min(config.grad_accum_steps, batches_left + micro)
            # DistributedDataParallel averages gradients on the group's last backward only.
            skip_sync = micro + 1 < group and hasattr(network, "no_sync")
            with network.no_sync() if skip_sync else contextlib.nullcontext():
                with autocast(self.device, self.bf16):
                    loss, logits = self.objective(network, batch)
                (loss / group).backward()
            micro += 1
            batches_left -= 1
            size = len(batch["labels"])
            position.loss_sum += float(loss.detach()) * size
            position.correct += int((logits.detach().argmax(-1) == batch["labels"]).sum())
            position.seen += size
            window_examples += size
            if micro == group:
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.network.parameters(), config.grad_clip)
                run.optimizer.step()
                run.scheduler.step()
                run.optimizer.zero_grad(set_to_none=True)
                micro = 0
                run.step += 1
                position.batches = total_batches - batches_left
                throughput = window_examples / max(time.perf_counter() - window_started, 1e-9)
                logs = {"loss": position.loss_sum / position.seen, "accuracy": position.correct / position.seen,
                        "examples_per_second": throughput, "step_loss": float(loss.detach()),
                        "learning_rate": run.scheduler.get_last_lr()[0]}  # fmt: skip
                if run.step % config.log_every_steps == 0:
                    window_started, window_examples = time.perf_counter(), 0
                self._call("on_step_end", run, control, logs)
                # Every checkpoint_every_steps steps (the epoch's end writes its own), or when a callback asks.
                every = config.checkpoint_every_steps
                if control.should_save or (every and run.step % every == 0 and batches_left > 0):
                    self._save_resume_point(run, control, position, run.seconds())
                if self._out_of_steps(run) or control.should_stop:
                    progress.update(task, advance=1)
                    break
            progress.update(
                task,
                advance=1,
                info=f"loss {position.loss_sum / max(position.seen, 1):.4f} "
                f"acc {position.correct / max(position.seen, 1):.3f} "
                f"{window_examples / max(time.perf_counter() - window_started, 1e-9):.1f} ex/s",
            )
        loss_sum, correct, seen = distributed.sum_over_ranks([position.loss_sum, position.correct, position.seen])
        return {"train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1)}

    @torch.no_grad()
    def evaluate(self, loader: DataLoader) -> dict[str, float]:
        logits = predict_logits(self.network, loader, self.device, self.bf16)
        labels = loader.dataset.labels
        loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
        return {"valid_loss": loss, "valid_accuracy": float((logits.argmax(-1) == labels).mean())}
