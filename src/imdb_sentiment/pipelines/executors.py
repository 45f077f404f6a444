"""Where planned runs and tune trials execute: in this process, one after another, or as Ray tasks.

Both executors have one interface: ``submit(function, *args, cpus=, gpus=)`` returns a handle, and
``next_done(handles)`` waits for one of them and returns ``(handle, result, error)``. The benchmark and
the tune loop stay the same code; only where a task runs changes. Scheduling, placement and retrying a
task whose worker died are Ray's (``max_retries``): a retried run finds its folder's checkpoint and
resumes (pipelines/benchmark.py decides run states), so nothing here is a scheduler.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from imdb_sentiment.errors import RunPreempted, UserError

RAY_INSTALL = 'Ray is not installed; install it with: pip install "imdb-sentiment[ray]"'
# A task whose worker process or node died is run again this many times (Ray's max_retries); the run's
# own checkpoint makes the retry a resume.
RAY_RETRIES = 2


@dataclass(eq=False)  # a handle: hashed by identity
class _LocalTask:
    function: Callable[..., Any]
    args: tuple[Any, ...]


@dataclass
class LocalExecutor:
    """Runs each task in this process when it is waited for: the sequential behaviour of old."""

    slots: int = 1
    name: str = "local"
    pending: list[Any] = field(default_factory=list)

    def submit(self, function: Callable[..., Any], *args: Any, cpus: int = 1, gpus: int = 0) -> Any:
        return _LocalTask(function, args)

    def next_done(self, handles: list[Any]) -> tuple[Any, Any, BaseException | None]:
        handle = handles[0]
        try:
            return handle, handle.function(*handle.args), None
        except RunPreempted:  # SIGTERM stops the whole command (as Ctrl-C does), not this task
            raise
        except Exception as exc:
            return handle, None, exc

    def cancel(self, handles: list[Any]) -> None:
        """Nothing runs until waited for."""

    def gpus_available(self) -> bool:
        return False

    def shutdown(self) -> None:
        """Nothing to release."""


class RayExecutor:
    """Each task a Ray task with the CPUs and GPUs it declares, on a local instance or a cluster."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        ray = import_ray()
        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:
            # Workers import this package from the same environment; a cluster's nodes need it installed.
            env = {"env_vars": {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}}
            try:
                ray.init(address=address, num_cpus=num_cpus if address is None else None, runtime_env=env,
                         include_dashboard=False, log_to_driver=False, logging_level="WARNING")  # fmt: skip
            except ConnectionError as exc:
                raise UserError(f"--address {address}: no Ray cluster answers there ({exc}).") from None
        self.slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote: dict[Callable[..., Any], Any] = {}

    def submit(self, function: Callable[..., Any], *args: Any, cpus: int = 1, gpus: int = 0) -> Any:
        if function not in self._remote:
            self._remote[function] = self.ray.remote(function)
        return self._remote[function].options(num_cpus=cpus, num_gpus=gpus, max_retries=RAY_RETRIES).remote(*args)

    def next_done(self, handles: list[Any]) -> tuple[Any, Any, BaseException | None]:
        done, _ = self.ray.wait(handles, num_returns=1)
        handle = done[0]
        try:
            return handle, self.ray.get(handle), None
        except self.ray.exceptions.RayTaskError as exc:  # the task raised: its own exception, as locally
            return handle, None, exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
        except self.ray.exceptions.RayError as exc:  # the worker died more often than max_retries
            return handle, None, RuntimeError(f"Ray: {type(exc).__name__}: {str(exc).splitlines()[0]}")

    def cancel(self, handles: list[Any]) -> None:
        for handle in handles:
            self.ray.cancel(handle, force=False)

    def gpus_available(self) -> bool:
        return self.ray.cluster_resources().get("GPU", 0) > 0

    def shutdown(self) -> None:
        if self.started_here:
            self.ray.shutdown()


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(RAY_INSTALL) from None
    return ray


def make_executor(name: str, address: str | None = None) -> LocalExecutor | RayExecutor:
    if name == "local":
        if address is not None:
            raise UserError("--address is for --executor ray.")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise UserError(f"--executor {name!r}: use local or ray.")


def task_resources(config: Any, uses_torch: bool, gpus_available: bool) -> dict[str, int]:
    """What a run asks Ray for: ``training.threads`` CPUs (1 when unset: all cores is not a number a
    scheduler can pack), a GPU when the device names one, or is ``auto`` for a loop-trained model on a
    cluster that has GPUs (``uses_torch``: the model runs on torch, Capabilities.needs_torch_runtime)."""
    device = config.training.device
    wants_gpu = device.startswith("cuda") or (device == "auto" and uses_torch and gpus_available)
    return {"cpus": config.training.threads or 1, "gpus": 1 if wants_gpu else 0}
