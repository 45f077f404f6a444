"""Several processes training one model (``torchrun`` / ``accelerate launch``): PyTorch's own engine.

The launcher starts one process per device and tells each its place through the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` / ``MASTER_PORT``); the process group is
joined with ``torch.distributed`` (gloo on CPU, NCCL on CUDA) and the network is wrapped in
``DistributedDataParallel``, which averages the gradients. What is hand-written here is only the
glue the loop and the pipeline need: the few collectives that keep the ranks agreeing (a stop
request, epoch totals, gathered predictions, the run folder's path) and a check that the weights are
still identical. Without a launcher every function is a cheap no-op.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def launcher_ranks() -> tuple[int, int, int]:
    """(rank, world size, local rank) as set by torchrun / accelerate launch; (0, 1, 0) without one."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def _process_groups() -> Any:
    """``torch.distributed`` once something imported it, else None: no process group can exist before,
    so the no-op paths of a run without a launcher (nbsvm, a refused input) never import torch, whose
    import is most of the CLI's start-up time."""
    return sys.modules.get("torch.distributed")


def join_process_group(device: torch.device) -> None:
    """Join the launcher's process group once (NCCL between GPUs, gloo on CPU)."""
    import torch.distributed as dist

    if dist.is_available() and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def leave_process_group(finished: bool = False) -> None:
    """Destroy the process group before the interpreter exits, as PyTorch asks: left to interpreter
    shutdown, gloo's threads can abort a rank ("terminate called without an active exception").
    ``finished``: every rank completed the run (or stopped after the step they agreed on), so they first
    meet at a barrier: a rank that tore its group down while rank 0 was still saving the run (or
    recording it as preempted) aborted that way (SIGABRT, seen in the suite).
    After a failure the call stays local, since the other ranks may never arrive."""
    dist = _process_groups()
    if dist is not None and dist.is_available() and dist.is_initialized():
        if finished and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def active() -> bool:
    dist = _process_groups()
    return dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one (a SIGTERM may reach the ranks a step apart)."""
    if not active():
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def sum_over_ranks(values: list[float]) -> list[float]:
    if not active():
        return values
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def from_main_process(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (e.g. the run folder it created)."""
    if not active():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_rows(order: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every rank's (dataset indices, rows), concatenated in rank order, on every rank."""
    if not active():
        return order, rows
    import torch.distributed as dist

    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (order, rows))
    # A rank with no share has no rows, only their shape's guess: the ranks that predicted tell the width.
    filled = [part for part in parts if len(part[0])] or parts[:1]
    return np.concatenate([part[0] for part in filled]), np.concatenate([part[1] for part in filled])


def wait_for_all() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


def weights_identical_across_ranks(network: torch.nn.Module) -> bool:
    """One digest of every parameter and buffer, compared across ranks: DDP keeps them equal, and a
    run that diverged (a rank skipped a step) must not be reported as one model."""
    if not active():
        return True
    import torch
    import torch.distributed as dist

    digest = hashlib.sha256()
    for name, value in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    digests: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest.hexdigest())
    return len(set(digests)) == 1
