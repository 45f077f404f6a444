"""SIGTERM, how clusters (Slurm, Kubernetes, spot instances) and ``docker stop`` pre-empt a job: finish
the current optimizer step, write a resume checkpoint, stop cleanly.

The handler only raises a flag; the training loops check it between steps, where the model,
optimizer and sampler position form a consistent checkpoint. A process has one set of signal
handlers, so the flag is process-wide; it is installed only around a fit and only in the main thread
(Python delivers signals there).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from imdb_sentiment.training import distributed

_requested: list[int] = []


class TrainingStopped(Exception):
    """Training stopped on a signal after writing its resume checkpoint."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped by SIGTERM after step {step}; a resume checkpoint was written")
        self.step = step


def _request_stop(signum: int, frame: FrameType | None) -> None:
    _requested.append(signum)


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested.clear()
    previous = signal.signal(signal.SIGTERM, _request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _requested.clear()


def stop_requested() -> bool:
    """Whether a stop was asked for, agreed by every rank (they must stop after the same step)."""
    return distributed.any_rank(bool(_requested))
