"""SIGTERM, how clusters (Slurm, Kubernetes, spot instances) and ``docker stop`` pre-empt a job: the run
ends as "preempted" (exit code 143) with the command that resumes it, at whatever stage it was.

- :func:`stop_on_sigterm` covers a whole run (the pipeline installs it once the run folder exists):
  SIGTERM raises :class:`TrainingStopped` at once, wherever the run is (a fit that keeps no checkpoints
  such as nbsvm's, the test evaluation, a wait for an LLM server, saving, plotting). It also ignores
  SIGXFSZ, so that a file-size limit (``ulimit -f``) makes a write fail (EFBIG, reported in one line)
  instead of killing the process with ``run.json`` still saying "running".
- :func:`deferred_stop` covers a training backend's steps: there SIGTERM only raises a flag, which the
  backend reads between steps (:func:`stop_requested`), where the model, optimizer and sampler position
  form a consistent checkpoint; it writes one, then raises :class:`TrainingStopped`. A flag still up
  when the steps are over (the signal came during the last validation) stops the run right after.
- Under a launcher one rank's SIGTERM stops every rank (they agree on the step), and torchrun signals
  its workers one after another: a rank's own SIGTERM may come once its run is over, while it waits at
  the teardown barrier. Once a stop is agreed, a SIGTERM only repeats it: it neither cuts the stop short
  nor (ignored until the rank exits) kills the rank there, which made rank 0's barrier fail.

SIGINT (Ctrl-C) stays Python's KeyboardInterrupt: the run ends as "interrupted" (exit code 130). A
process has one set of signal handlers, so the state here is process-wide; handlers are installed only
in the main thread (Python delivers signals there).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from imdb_sentiment.training import distributed

_requested: list[int] = []
_state: dict[str, int | str] = {"deferring": 0, "stage": "the run", "agreed": 0}


class TrainingStopped(BaseException):
    """The run stopped on SIGTERM: after ``step`` (a resume checkpoint was written), or during
    ``stage``. A BaseException, like KeyboardInterrupt, so that no ``except Exception`` (a retry loop, a
    library's error handling) swallows it."""

    def __init__(self, step: int | None = None, stage: str | None = None, agreed: bool = False) -> None:
        where = f"after step {step}; a resume checkpoint was written" if step is not None else f"during {stage}"
        super().__init__(f"stopped by SIGTERM {where}")
        self.step, self.stage = step, stage
        # Every rank stops here together (after a step, or at the end of training by a collective): they
        # may meet at a barrier before leaving. A stop during a stage is this process's alone.
        self.agreed = agreed or step is not None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _requested.append(signum)
    # Once: a second SIGTERM must not cut the clean-up, nor a first one that comes after the stop was agreed.
    if not _state["deferring"] and not _state["agreed"] and len(_requested) == 1:
        raise TrainingStopped(stage=str(_state["stage"]))


def stage(name: str) -> None:
    """Name what the run does now ("the test evaluation"): said when SIGTERM stops it there."""
    _state["stage"] = name


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM -> :class:`TrainingStopped` for the whole block (deferred inside :func:`deferred_stop`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested.clear()
    _state.update(deferring=0, stage="the run", agreed=0)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    previous_file_size = signal.signal(signal.SIGXFSZ, signal.SIG_IGN) if hasattr(signal, "SIGXFSZ") else None
    try:
        yield
    finally:
        # A rank of a launched job is a process that ends with the run: after an agreed stop its own
        # SIGTERM may still be on the way (see above), and the default action would kill it before the
        # teardown barrier. In-process callers (no process group) get their handler back. The cost: a
        # rank hung at that barrier (its peer killed) outlives the launcher's SIGTERM and ends only by
        # the SIGKILL that torchrun / Slurm send after their grace period.
        late_notice = _state["agreed"] and distributed.active()
        signal.signal(signal.SIGTERM, signal.SIG_IGN if late_notice else previous)
        if previous_file_size is not None:
            signal.signal(signal.SIGXFSZ, previous_file_size)
        _requested.clear()
        _state["agreed"] = 0


@contextlib.contextmanager
def deferred_stop() -> Iterator[None]:
    """Inside: SIGTERM waits for the backend to ask :func:`stop_requested` between steps. Leaving the
    block normally with a stop asked for (agreed by every rank) raises :class:`TrainingStopped`."""
    _state["deferring"] = int(_state["deferring"]) + 1
    try:
        yield
    finally:
        _state["deferring"] = int(_state["deferring"]) - 1
    if stop_requested():
        raise TrainingStopped(stage="the end of training", agreed=True)


def stop_requested() -> bool:
    """Whether a stop was asked for, agreed by every rank (they must stop after the same step)."""
    agreed = distributed.any_rank(bool(_requested))
    if agreed:  # from here on a SIGTERM repeats this stop (see the module's docstring)
        _state["agreed"] = 1
    return agreed


def signal_received() -> bool:
    """Whether SIGTERM reached this process (no collective: for a rank whose peers went away)."""
    return bool(_requested)
