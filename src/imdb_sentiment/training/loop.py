"""The one training loop every PyTorch model uses (word models, pretrained encoders, later PEFT).

Features: AdamW/SGD, warmup + linear/cosine decay, gradient clipping and accumulation, bf16 autocast,
early stopping and best-checkpoint selection on the validation split (never the test split),
``resume`` from the last epoch checkpoint with identical results, a Rich progress bar with live
loss / accuracy / throughput, TensorBoard event files, and hooks (callbacks) for later extensions.

Why not accelerate/Lightning: the loop is ~200 lines, and owning it keeps checkpoints, the run folder
and the bit-exact resume contract in one place; device, precision and threads come from one
:class:`~imdb_sentiment.training.runtime.Runtime` resolved by the caller.
"""

from __future__ import annotations

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
from imdb_sentiment.training.checkpoint import BEST, CheckpointStore, get_rng_state, set_rng_state
from imdb_sentiment.training.objectives import Objective, build_objective
from imdb_sentiment.training.runtime import Runtime, autocast

logger = logging.getLogger("imdb_sentiment.training")

NO_DECAY_HINTS = ("bias", "norm", "LayerNorm", "layer_norm")
# training.scheduler -> the transformers scheduler name (the native loop and the Trainer backend).
TRANSFORMERS_SCHEDULERS = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


class Callback:
    """Hooks into the loop (override what you need)."""

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None: ...


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_accuracy: float = float("nan")
    train_seconds: float = 0.0  # all attempts: a resumed fit adds the time its checkpoint recorded
    earlier_seconds: float = 0.0  # of which spent before the last resume
    steps: int = 0
    stopped_early: bool = False


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def default_parameter_groups(network: nn.Module, config: TrainingConfig) -> list[dict[str, Any]]:
    """No weight decay on biases and normalisation weights; a network may define its own groups
    (e.g. layer-wise learning-rate decay) with ``parameter_groups(config)``."""
    if hasattr(network, "parameter_groups"):
        return network.parameter_groups(config)
    decay, no_decay = [], []
    for name, parameter in network.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or any(h in name for h in NO_DECAY_HINTS) else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(network: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    groups = [group for group in default_parameter_groups(network, config) if group["params"]]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.learning_rate)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig, total_steps: int):
    from transformers import get_scheduler

    warmup = round(config.warmup_ratio * total_steps)
    return get_scheduler(
        TRANSFORMERS_SCHEDULERS[config.scheduler],
        optimizer,
        num_warmup_steps=warmup,
        num_training_steps=max(total_steps, 1),
    )


@torch.no_grad()
def predict_logits(
    network: nn.Module, loader: DataLoader, device: torch.device, bf16: bool, show_progress: bool = False
) -> np.ndarray:
    """Logits in dataset order (the sampler may reorder batches by length)."""
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
    logits = np.concatenate(outputs) if outputs else np.zeros((0, 2), dtype=np.float32)
    if batches is None:
        return logits
    restored = np.empty_like(logits)
    restored[np.asarray(order, dtype=np.int64)] = logits
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
    """Fits a network that maps a batch dict to :class:`NetworkOutput`."""

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
        self.callbacks = list(callbacks)
        self.show_progress = show_progress
        self.checkpoints = CheckpointStore(run_dir / "checkpoints" if run_dir else None, self.device)
        self.writer = None

    # ------------------------------------------------------------------------------------- training
    def fit(self, train_loader: DataLoader, valid_loader: DataLoader | None, resume: bool = False) -> FitResult:
        config = self.config
        steps_per_epoch = math.ceil(len(train_loader) / config.grad_accum_steps)
        total_steps = steps_per_epoch * config.epochs
        if config.max_steps:
            total_steps = min(total_steps, config.max_steps)
        optimizer = build_optimizer(self.network, config)
        scheduler = build_scheduler(optimizer, config, total_steps)
        result = FitResult()
        start_epoch, step, patience_left = 0, 0, config.early_stopping_patience
        best_state: dict[str, torch.Tensor] | None = None
        elapsed_before = 0.0

        checkpoint = self.checkpoints.load_resume_point() if resume else None
        if checkpoint is not None:
            self.network.load_state_dict(checkpoint["network"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            start_epoch, step = checkpoint["epoch"], checkpoint["step"]
            patience_left = checkpoint["patience_left"]
            result.history = checkpoint["history"]
            result.best_epoch = checkpoint["best_epoch"]
            result.best_valid_accuracy = checkpoint["best_valid_accuracy"]
            elapsed_before = checkpoint["train_seconds"]
            best_state = self._load_best_state()
            set_rng_state(checkpoint["rng"])
            logger.info("resumed from epoch %d (step %d)", start_epoch, step)
        if self.run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

        started = time.perf_counter()
        stop = (
            start_epoch >= config.epochs
            or (config.max_steps is not None and step >= config.max_steps)
            or (patience_left is not None and patience_left <= 0)  # the resumed run had stopped early
        )
        with _progress(self.show_progress) as progress:
            for epoch in range(start_epoch, config.epochs):
                if stop:
                    break
                if hasattr(train_loader.batch_sampler, "set_epoch"):
                    train_loader.batch_sampler.set_epoch(epoch)
                task = progress.add_task(f"epoch {epoch + 1}/{config.epochs}", total=len(train_loader), info="")
                epoch_logs = self._train_epoch(train_loader, optimizer, scheduler, progress, task, step)
                step = int(epoch_logs.pop("step"))
                logs: dict[str, float] = {"epoch": epoch + 1, "step": step, **epoch_logs}
                if valid_loader is not None:
                    logs.update(self.evaluate(valid_loader))
                logs["elapsed_seconds"] = elapsed_before + time.perf_counter() - started
                result.history.append(logs)
                self._log_epoch(logs)
                improved = valid_loader is None or not logs["valid_accuracy"] <= result.best_valid_accuracy
                if improved:
                    result.best_epoch = epoch + 1
                    result.best_valid_accuracy = logs.get("valid_accuracy", float("nan"))
                    best_state = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
                    self.checkpoints.save({"network": best_state, "epoch": epoch + 1}, BEST)
                    patience_left = config.early_stopping_patience
                elif patience_left is not None:
                    patience_left -= 1
                for callback in self.callbacks:
                    callback.on_epoch_end(self, epoch + 1, logs)
                stop = (patience_left is not None and patience_left <= 0) or (
                    config.max_steps is not None and step >= config.max_steps
                )
                result.stopped_early = patience_left is not None and patience_left <= 0
                self.checkpoints.save_resume_point(
                    {
                        "network": self.network.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "epoch": epoch + 1,
                        "step": step,
                        "patience_left": patience_left,
                        "history": result.history,
                        "best_epoch": result.best_epoch,
                        "best_valid_accuracy": result.best_valid_accuracy,
                        "train_seconds": logs["elapsed_seconds"],
                        "rng": get_rng_state(),
                    }
                )
        result.train_seconds = elapsed_before + time.perf_counter() - started
        result.earlier_seconds = elapsed_before
        result.steps = step
        if best_state is not None:
            self.network.load_state_dict(best_state)
        if self.writer is not None:
            self.writer.close()
        return result

    def _load_best_state(self) -> dict[str, torch.Tensor] | None:
        """The best epoch's weights; a damaged best.pt costs only the choice of epoch, not the run."""
        try:
            best = self.checkpoints.load(BEST)
        except UserError as exc:
            logger.warning("%s; the best epoch's weights are lost, the final weights will be kept", exc)
            return None
        return best["network"] if best else None

    def _train_epoch(self, loader, optimizer, scheduler, progress, task, step: int) -> dict[str, float]:
        config = self.config
        self.network.train()
        total_loss, correct, seen, micro = 0.0, 0, 0, 0
        window_started, window_examples = time.perf_counter(), 0
        optimizer.zero_grad(set_to_none=True)
        batches_left = len(loader)
        for batch in loader:
            batch = to_device(batch, self.device)
            with autocast(self.device, self.bf16):
                loss, logits = self.objective(self.network, batch)
            # The last accumulation group of an epoch may be short: scale by its real size.
            group = min(config.grad_accum_steps, batches_left + micro)
            (loss / group).backward()
            micro += 1
            batches_left -= 1
            size = len(batch["labels"])
            total_loss += float(loss.detach()) * size
            correct += int((logits.detach().argmax(-1) == batch["labels"]).sum())
            seen += size
            window_examples += size
            if micro == group:
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.network.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                micro = 0
                step += 1
                throughput = window_examples / max(time.perf_counter() - window_started, 1e-9)
                logs = {"loss": total_loss / seen, "accuracy": correct / seen, "examples_per_second": throughput}
                if step % config.log_every_steps == 0:
                    self._scalar("train/loss", float(loss.detach()), step)
                    self._scalar("train/learning_rate", scheduler.get_last_lr()[0], step)
                    window_started, window_examples = time.perf_counter(), 0
                for callback in self.callbacks:
                    callback.on_step_end(self, step, logs)
                if config.max_steps is not None and step >= config.max_steps:
                    progress.update(task, advance=1)
                    break
            progress.update(
                task,
                advance=1,
                info=f"loss {total_loss / seen:.4f} acc {correct / seen:.3f} "
                f"{window_examples / max(time.perf_counter() - window_started, 1e-9):.1f} ex/s",
            )
        return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1), "step": step}

    @torch.no_grad()
    def evaluate(self, loader: DataLoader) -> dict[str, float]:
        logits = predict_logits(self.network, loader, self.device, self.bf16)
        labels = loader.dataset.labels
        loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
        return {"valid_loss": loss, "valid_accuracy": float((logits.argmax(-1) == labels).mean())}

    def _scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def _log_epoch(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            if key not in ("epoch", "step"):
                self._scalar(f"epoch/{key}", value, int(logs["step"]))
        logger.info(
            "epoch %d: %s", logs["epoch"], ", ".join(f"{k} {v:.4f}" for k, v in logs.items() if k != "epoch")
        )
