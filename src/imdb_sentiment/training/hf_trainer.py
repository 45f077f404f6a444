"""The ``trainer`` backend: fit an HF network with ``transformers.Trainer`` instead of the shared loop.

Same data, encoder, objective, optimizer (incl. layer-wise LR decay) and run folder as the native loop;
what changes is who drives the steps: ``TrainingArguments`` with evaluation and checkpointing every
epoch on the validation split, ``load_best_model_at_end`` on validation accuracy, bf16 where
``training.precision`` asks for it (auto: on GPUs), and ``group_by_length`` sampling. It exists so
the write-up's "Trainer" rows can be reproduced and compared with the native loop.

Checkpoints and pre-emption use the Trainer's own machinery: ``training.checkpoint_every_steps`` and
SIGTERM ask it to save (a callback sets ``should_save``), and ``resume_from_checkpoint`` restores
model, optimizer, scheduler, scaler, RNG states and skips the batches the epoch already took. Each
saved ``checkpoint-N/`` gets a ``manifest.json`` (io_utils' integrity format; the Trainer writes
none): a resume takes the newest folder whose files match it, with a warning when it has to skip a damaged or unfinished one. Under
torchrun / accelerate launch the Trainer runs DDP itself; ``per_device_train_batch_size`` is the
global ``training.batch_size`` split over the processes, as in the native loop. Without a launcher it
trains on the runtime's one device (``training.device: cuda:N`` included): transformers would take
cuda:0 and wrap the model in DataParallel over every visible GPU, multiplying the global batch.

The network is our :class:`~imdb_sentiment.models.hf.network.HFNetwork` adapter (batch dict in,
``NetworkOutput`` out), so ``compute_loss`` is overridden to call the project's objective; the
Trainer's own loss handling never sees a raw transformers model.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import MANIFEST_FILE, manifest_mismatch, read_manifest, write_manifest
from imdb_sentiment.text.encoder import TextEncoder
from imdb_sentiment.training import distributed
from imdb_sentiment.training.backends import FitJob, register_backend
from imdb_sentiment.training.batching import EncodedDataset, FlatLengthBucketSampler, LengthBucketBatchSampler
from imdb_sentiment.training.loop import FitResult
from imdb_sentiment.training.objectives import Objective, build_objective
from imdb_sentiment.training.optimization import TRANSFORMERS_SCHEDULERS, build_optimizer
from imdb_sentiment.training.preemption import TrainingStopped, deferred_stop, stop_requested
from imdb_sentiment.training.runtime import Runtime

logger = logging.getLogger("imdb_sentiment.training")

TRAINER_DIR = "hf_trainer"


def _accuracy(prediction: Any) -> dict[str, float]:
    logits, labels = prediction.predictions, prediction.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return {"accuracy": float((np.asarray(logits).argmax(-1) == np.asarray(labels)).mean())}


def make_trainer_class() -> type:
    """Defined lazily so importing this module does not import transformers.Trainer."""
    from transformers import Trainer

    class ObjectiveTrainer(Trainer):
        """Trainer whose loss is the project's objective (cross-entropy, R-Drop or SupCon)."""

        loss_is_scaled_for_ga = False  # our loss is a per-batch mean; Trainer divides for accumulation

        def __init__(self, *args: Any, objective: Objective, length_bucketing: bool = True, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.objective = objective
            self.length_bucketing = length_bucketing

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            """Our (seed, epoch)-seeded length buckets: a resume inside an epoch sees the same order."""
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if not isinstance(dataset, EncodedDataset):
                return super()._get_train_sampler(train_dataset)
            batches = LengthBucketBatchSampler(dataset.lengths, self.args.per_device_train_batch_size, shuffle=True,
                                               seed=self.args.data_seed, bucketing=self.length_bucketing)  # fmt: skip
            return FlatLengthBucketSampler(batches)

        def compute_loss(
            self,
            model: nn.Module,
            inputs: dict[str, torch.Tensor],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
            loss, logits = self.objective(model, inputs)
            return (loss, {"logits": logits}) if return_outputs else loss

    return ObjectiveTrainer


def write_checksums(folder: Path) -> None:
    write_manifest(folder)


def _intact(folder: Path) -> bool:
    # Checkpoints of older versions (checksums.sha256) have no manifest: they count as unfinished.
    try:
        manifest = read_manifest(folder, "train the run again")
    except UserError:
        return False
    # Other ranks may add their rng_state_<rank>.pth after rank 0 listed the folder: check what it listed.
    return manifest is not None and manifest_mismatch(folder, manifest) is None


def latest_intact_checkpoint(output_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` whose files match its checksums; None when there is none at all."""
    folders = sorted(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.rpartition("-")[2]),
                     reverse=True)  # fmt: skip
    for folder in folders:
        if _intact(folder):
            return folder
        logger.warning("%s is damaged or was not finished (its %s does not match); trying an older one",
                       folder, MANIFEST_FILE)  # fmt: skip
    if folders:
        raise UserError(
            f"cannot resume: no checkpoint in {output_dir} matches its {MANIFEST_FILE} (checkpoints of versions "
            "before manifests have none); train the run again."
        )
    return None


def make_checkpoint_callback(every_steps: int | None) -> Any:
    """Save every ``every_steps`` steps besides the epoch ends; on SIGTERM save, and stop; a checksum
    file in every saved checkpoint."""
    from transformers import TrainerCallback

    class StepCheckpoints(TrainerCallback):
        stopped_at: int | None = None

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.is_world_process_zero:
                write_checksums(Path(args.output_dir) / f"checkpoint-{state.global_step}")
            return control

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if every_steps and state.global_step % every_steps == 0:
                control.should_save = True
            if stop_requested():
                control.should_save = control.should_training_stop = True
                self.stopped_at = state.global_step
            return control

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if self.stopped_at is not None:  # stopped inside the epoch: no evaluation or second save
                control.should_evaluate = control.should_save = False
            return control

    return StepCheckpoints()


def on_one_device(args: Any, runtime: Runtime) -> Any:
    """Without a launcher transformers trains on cuda:0 with every visible GPU (``n_gpu`` = all of them:
    DataParallel, and a global batch of ``per_device_train_batch_size`` x n_gpu). Keep the runtime's one
    device instead: ``training.device: cuda:N`` honoured, the global batch the config's. Accelerate
    follows the current CUDA device, hence ``set_device``."""
    if runtime.world_size > 1 or runtime.device.type != "cuda":
        return args
    device = (
        runtime.device if runtime.device.index is not None else torch.device("cuda", torch.cuda.current_device())
    )
    _ = args.device  # transformers' own set-up first (its distributed state), then our device over it
    args.__dict__["_setup_devices"] = device  # the cached_property behind args.device
    args._n_gpu = 1
    torch.cuda.set_device(device)
    return args


def check_trainer_runtime(config: TrainingConfig, runtime: Runtime) -> None:
    if config.batch_size % runtime.world_size:
        raise UserError(
            f"training.batch_size: {config.batch_size} does not split over {runtime.world_size} processes; the "
            "trainer backend needs a multiple of the number of processes."
        )


def base_training_arguments(
    output_dir: Path, runtime: Runtime, seed: int, show_progress: bool, **settings: Any
) -> Any:
    """``TrainingArguments`` with what every use of the Trainer here shares (device and precision from
    the runtime, seeds, our own collate output, no worker processes); ``settings`` adds the rest."""
    from transformers import TrainingArguments

    args = TrainingArguments(
        output_dir=str(output_dir),
        bf16=runtime.bf16,
        use_cpu=runtime.device.type == "cpu",
        seed=seed,
        data_seed=seed,
        remove_unused_columns=False,  # our collate output is what the network reads
        disable_tqdm=not show_progress,
        dataloader_num_workers=0,
        **settings,
    )
    return on_one_device(args, runtime)


def training_arguments(
    config: TrainingConfig, runtime: Runtime, output_dir: Path, seed: int, logging_enabled: bool,
    show_progress: bool,
) -> Any:  # fmt: skip
    return base_training_arguments(
        output_dir,
        runtime,
        seed,
        show_progress,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        # Global batches, each split over the processes (accelerate's split_batches): every rank
        # takes its share of the batch one process would take, so a run trains the same way on any
        # number of processes. Without it each rank takes whole batches of its own, of other examples.
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=math.ceil(config.eval_batch_size / runtime.world_size) * runtime.world_size,
        accelerator_config={"split_batches": runtime.world_size > 1},
        gradient_accumulation_steps=config.grad_accum_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        lr_scheduler_type=TRANSFORMERS_SCHEDULERS[config.scheduler],
        warmup_steps=config.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        max_grad_norm=config.grad_clip or 0.0,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="steps",
        logging_steps=config.log_every_steps,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        save_total_limit=2,  # the last two resume points (the best one is always kept besides)
        train_sampling_strategy="group_by_length" if config.length_bucketing else "random",
        label_names=["labels"],
        report_to=["tensorboard"] if logging_enabled else "none",
    )


@register_backend("trainer", network="transformers", description="Hugging Face transformers.Trainer",
                  check=check_trainer_runtime)  # fmt: skip
def fit_with_trainer_backend(job: FitJob) -> FitResult:
    return fit_with_hf_trainer(job.network, job.encoder, job.train_data, job.valid_data, job.training, job.runtime,
                               seed=job.seed, run_dir=job.run_dir, resume=job.resume,
                               show_progress=job.show_progress)  # fmt: skip


def fit_with_hf_trainer(
    network: nn.Module,
    encoder: TextEncoder,
    train_data: EncodedDataset,
    valid_data: EncodedDataset,
    config: TrainingConfig,
    runtime: Runtime,
    *,
    seed: int = 42,
    run_dir: Path | None = None,
    resume: bool = False,
    show_progress: bool = True,
) -> FitResult:
    """Train ``network`` with transformers.Trainer; the best epoch's weights are loaded at the end."""
    from transformers import EarlyStoppingCallback

    temporary = None if run_dir is not None else tempfile.TemporaryDirectory(prefix="imdb-hf-trainer-")
    output_dir = Path(run_dir) / TRAINER_DIR if run_dir is not None else Path(temporary.name)  # type: ignore[union-attr]
    try:
        args = training_arguments(config, runtime, output_dir, seed, run_dir is not None, show_progress)
        network.to(args.device)  # before the optimizer is built around its parameters
        checkpointing = make_checkpoint_callback(config.checkpoint_every_steps)
        callbacks = [checkpointing]
        if config.early_stopping_patience is not None:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
        trainer = make_trainer_class()(
            model=network,
            args=args,
            train_dataset=train_data,
            eval_dataset=valid_data,
            data_collator=encoder.collate,
            compute_metrics=_accuracy,
            callbacks=callbacks,
            # Same optimizer as the native loop (weight-decay groups, layer-wise LR decay); the Trainer
            # builds the warmup/decay schedule on it.
            optimizers=(build_optimizer(network, config), None),
            objective=build_objective(config.objective),
            length_bucketing=config.length_bucketing,
        )
        if not show_progress:
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)  # it prints every log dict when tqdm is off
        checkpoint = latest_intact_checkpoint(output_dir) if resume else None
        started = time.perf_counter()
        with deferred_stop():  # SIGTERM: the checkpoint callback saves after the step, then stops
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            if checkpointing.stopped_at is not None:
                raise TrainingStopped(checkpointing.stopped_at)  # its checkpoint stays for --resume
        elapsed = time.perf_counter() - started
        result = _fit_result(trainer, elapsed, len(train_data), config)
        result.world_size = runtime.world_size
        result.weights_identical_across_ranks = distributed.weights_identical_across_ranks(network)
        # Done: the checkpoints hold optimizer state (3x the model) and the caller saves the final
        # model itself. After an error or Ctrl-C they stay, so that --resume continues from them.
        for checkpoint in output_dir.glob("checkpoint-*"):
            shutil.rmtree(checkpoint, ignore_errors=True)
    finally:
        if temporary is not None:
            temporary.cleanup()
    network.eval()
    return result


def _fit_result(trainer: Any, elapsed: float, train_size: int, config: TrainingConfig) -> FitResult:
    """Per-epoch history in the native loop's format, from the Trainer's log history."""
    history: list[dict[str, float]] = []
    last_train: dict[str, float] = {}
    for entry in trainer.state.log_history:
        if "loss" in entry:
            last_train = {"train_loss": float(entry["loss"])}
        if "eval_accuracy" in entry:
            history.append(
                {
                    "epoch": float(round(entry.get("epoch", len(history) + 1))),
                    "step": float(entry.get("step", 0)),
                    **last_train,
                    "valid_loss": float(entry.get("eval_loss", math.nan)),
                    "valid_accuracy": float(entry["eval_accuracy"]),
                }
            )
    best_accuracy = max((h["valid_accuracy"] for h in history), default=math.nan)
    best_epoch = next((int(h["epoch"]) for h in history if h["valid_accuracy"] == best_accuracy), 0)
    steps_per_epoch = math.ceil(math.ceil(train_size / config.batch_size) / config.grad_accum_steps)
    planned = steps_per_epoch * config.epochs
    if config.max_steps:
        planned = min(planned, config.max_steps)
    return FitResult(
        history=history,
        best_epoch=best_epoch,
        best_valid_accuracy=best_accuracy,
        train_seconds=elapsed,
        steps=int(trainer.state.global_step),
        stopped_early=int(trainer.state.global_step) < planned,
    )
