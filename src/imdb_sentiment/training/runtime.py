"""Where and how a network runs: one :class:`Runtime`, resolved once from the config and passed down.

Device, training precision, CPU threads (and, for distributed runs, rank and world size) are decided
here and nowhere else, so the loop, the Hugging Face Trainer backend, MLM pre-training and inference
all agree on what ``auto`` means:

- ``device: auto``: the first CUDA GPU if there is one, else the CPU;
- ``precision: auto`` (training): bf16 autocast on a CUDA GPU that supports it, fp32 on CPU;
  ``native-bf16``: bf16 also on CPUs that run it natively (AMX / AVX-512-BF16), fp32 elsewhere: measured
  on an AVX2-only host, emulated bf16 trained MiniLM several times slower than fp32;
- :meth:`Runtime.inference_precision` ``auto``: bf16 wherever the hardware runs it fast (CUDA, or a CPU
  with AVX-512-BF16 / AMX), else fp32; ``int8`` is dynamic quantisation, CPU only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from imdb_sentiment.errors import UserError
from imdb_sentiment.training import distributed

if TYPE_CHECKING:
    from imdb_sentiment.config import TrainingConfig

Precision = Literal["auto", "fp32", "bf16", "native-bf16"]
InferencePrecision = Literal["auto", "fp32", "bf16", "int8"]

# torch's own choice (all cores, or OMP_NUM_THREADS), read before any run changes it: ``threads: null``
# restores it, so a run after a one-thread run in the same process (an ensemble's members, a benchmark's
# rows) gets all cores back instead of inheriting one.
DEFAULT_THREADS = torch.get_num_threads()


def parse_device(name: str) -> torch.device:
    """``auto``/``cpu``/``cuda``/``cuda:N`` -> a device that exists here, or a UserError naming the field."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"training.device: unknown device {name!r}; use auto, cpu or cuda[:N].") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError("training.device: cuda was asked for but no CUDA GPU is available; use auto or cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"training.device: {name} does not exist; this machine has {torch.cuda.device_count()} GPU(s)."
            )
    elif device.type != "cpu":
        raise UserError(f"training.device: {name!r} is not supported; use auto, cpu or cuda[:N].")
    return device


def cpu_has_fast_bf16() -> bool:
    """AVX-512-BF16 or AMX: oneDNN runs bf16 matrix products natively."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    bf16: bool  # autocast to bf16 while training
    threads: int | None = None  # torch intra-op threads; None: torch's default (all cores)
    rank: int = 0
    world_size: int = 1

    @classmethod
    def resolve(cls, device: str = "auto", precision: Precision = "auto", threads: int | None = None) -> Runtime:
        resolved = parse_device(device)
        cuda_bf16 = resolved.type == "cuda" and torch.cuda.is_bf16_supported()
        if precision == "auto":
            bf16 = cuda_bf16
        elif precision == "native-bf16":
            bf16 = cuda_bf16 or (resolved.type == "cpu" and cpu_has_fast_bf16())
        else:
            bf16 = precision == "bf16"
        return cls(device=resolved, bf16=bf16, threads=threads)

    @classmethod
    def from_training(cls, training: TrainingConfig) -> Runtime:
        """The training runtime; under torchrun / accelerate launch, this process's rank and world size
        (and, on GPUs, the launcher's local device)."""
        runtime = cls.resolve(training.device, training.precision, training.threads)
        rank, world_size, local_rank = distributed.launcher_ranks()
        if world_size == 1:
            return runtime
        device = runtime.device
        if device.type == "cuda" and training.device in ("auto", "cuda"):
            device = torch.device("cuda", local_rank)
        return dataclasses.replace(runtime, device=device, rank=rank, world_size=world_size)

    def apply(self) -> Runtime:
        """Make the process follow this runtime (thread count, the launcher's process group); returns
        self for chaining."""
        torch.set_num_threads(self.threads or DEFAULT_THREADS)
        if self.world_size > 1:
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            distributed.join_process_group(self.device)
        return self

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    def inference_precision(self, requested: InferencePrecision = "auto") -> Literal["fp32", "bf16", "int8"]:
        if requested == "int8" and self.device.type != "cpu":
            return "bf16"  # dynamic int8 quantisation exists for CPU kernels only
        if requested != "auto":
            return requested
        if self.device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
