"""Micro-batching: texts of concurrent requests go through the model together, and no request hogs it.

Requests wait in line; a batch is closed when it holds ``max_batch`` texts or ``max_batch_chars``
characters, or ``max_wait_ms`` after it was opened, whichever comes first. While one batch runs, the
next one fills, so batches grow with the load and throughput with them. A request too big for one
batch is cut into pieces that go through the model one batch at a time, and after each piece it goes
back to the end of the line: a one-text request sent while a 64-text request is being scored waits for
one bounded batch, not for the whole big request. The model runs in one worker thread: the event loop
never blocks, and the model (PyTorch modules, Captum's hooks) is never used by two threads at once.
Explanations run one unit at a time (:meth:`MicroBatcher.run_in_turns`: a generator run one step per
turn), so a client that leaves stops its explanation after the unit in progress. Where the explainer
has its own copy of the model (``explanation_thread=True``: the server's default for PyTorch models on
Linux), the units run in a thread of their own at the lowest CPU priority (nice 19, inherited by the
OpenMP workers the thread starts: GNU OpenMP, as in PyTorch's Linux wheels, gives each calling thread
its own pool): the scheduler gives the cores to predictions the moment they need them, so a one-text
request sent while a big explanation runs waits for neither the explanation nor one of its units.
Measured on a 2-core CPU with MiniLM: one-text p99 40 ms beside a running explanation against 37 ms
alone (153 ms with both threads at the same priority); the explanation slows by the cores the
predictions take (README: 85 s instead of 58 s under back-to-back one-text requests). Otherwise they
share the model's thread, whose turns go to waiting batches first: a one-text request then waits for one
unit.

Why hand-written: FastAPI / Starlette have no request batching, and the few small packages that do add
little over this one asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
PREDICTION, EXPLANATION = 0, 1  # turn priorities in the model's thread: lower goes first
# After this many turns granted to more urgent jobs while a less urgent one waits, the oldest less urgent
# one goes next: a steady stream of predictions slows explanations down but never starves them.
FAIR_SHARE = 8


class _Turns:
    """Who uses the model's thread next: one job at a time, the most urgent waiting one (lowest
    priority number) first, first come first served among equals, except that a waiting job passed over
    :data:`FAIR_SHARE` times goes next. asyncio's locks have no priorities, and the executor's own queue
    is first come first served."""

    def __init__(self) -> None:
        self._waiting: list[tuple[int, int, asyncio.Future]] = []
        self._order = itertools.count()
        self._held = False
        self._passed_over = 0  # turns granted in a row while a less urgent job waited

    def ask(self, priority: int) -> asyncio.Future:
        """A place in line: the future is done when the turn is the caller's; hand it back with :meth:`done`."""
        turn = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), turn))
        self._grant()
        return turn

    async def wait(self, turn: asyncio.Future) -> None:
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # granted, but its caller left: pass it on
                self.done()
            raise

    def done(self) -> None:
        self._held = False
        self._grant()

    def wanted(self) -> bool:
        """Whether a job waits for the model."""
        return any(not turn.done() for _, _, turn in self._waiting)

    def give_back(self, turn: asyncio.Future) -> None:
        """An unused place in line: dropped, or handed on if it was already granted."""
        if turn.done():
            self.done()
        else:
            turn.cancel()

    def _grant(self) -> None:
        while not self._held and self._waiting:
            self._waiting = [entry for entry in self._waiting if not entry[2].done()]  # cancelled waiters go
            heapq.heapify(self._waiting)
            if not self._waiting:
                return
            urgent = self._waiting[0][0]
            later = [entry for entry in self._waiting if entry[0] > urgent]
            if later and self._passed_over >= FAIR_SHARE:
                chosen = min(later, key=lambda entry: entry[1])  # the oldest of the less urgent
                self._waiting.remove(chosen)
                heapq.heapify(self._waiting)
                self._passed_over = 0
            else:
                chosen = heapq.heappop(self._waiting)
                self._passed_over = self._passed_over + 1 if later else 0
            chosen[2].set_result(None)
            self._held = True


@dataclass
class _Request:
    texts: list[str]
    future: asyncio.Future = field(repr=False)
    taken: int = 0  # texts handed to batches so far
    rows: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # first text -> its piece's rows
    scored: int = 0  # texts with rows

    def deliver(self, start: int, rows: np.ndarray) -> None:
        self.rows[start] = rows
        self.scored += len(rows)
        if self.scored == len(self.texts) and not self.future.done():
            self.future.set_result(np.concatenate([self.rows[key] for key in sorted(self.rows)]))


@dataclass(frozen=True)
class _Piece:
    request: _Request
    start: int
    stop: int

    @property
    def texts(self) -> list[str]:
        return self.request.texts[self.start : self.stop]


class MicroBatcher:
    """``await batcher.predict(texts)``: the rows of ``predict_fn`` for ``texts``, computed together
    with the texts of other requests waiting at the same time."""

    def __init__(
        self,
        predict_fn: Callable[[list[str]], np.ndarray],
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_batch_chars: int = 50_000,
        explanation_thread: bool = False,
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0 or max_batch_chars < 1:
            raise ValueError("max_batch and max_batch_chars must be >= 1 and max_wait_ms >= 0")
        self.predict_fn, self.max_batch, self.max_wait = predict_fn, max_batch, max_wait_ms / 1000
        self.max_batch_chars = max_batch_chars  # one text longer than this still goes through, alone
        self.model_calls = 0  # batches run (tests and /health read it)
        self.explanation_units = 0  # units of explanation work run (/health)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        # True: the explanations' model is a copy, never touched by the model's thread.
        self.explanation_executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="explain", initializer=lowest_thread_priority)
            if explanation_thread
            else None
        )
        self._line: deque[_Request] = deque()
        self._turns = _Turns()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._serve(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._line:
            self._line.popleft().future.cancel()
        self.executor.shutdown(wait=True)
        if self.explanation_executor is not None:
            self.explanation_executor.shutdown(wait=True)

    async def predict(self, texts: list[str]) -> np.ndarray:
        if self._arrived is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future = asyncio.get_running_loop().create_future()
        self._line.append(_Request(list(texts), future))
        self._arrived.set()
        return await future

    async def run_exclusive(self, function: Callable[..., T], *args: Any, priority: int = EXPLANATION) -> T:
        """Run ``function`` in the model's thread when no job of a lower ``priority`` number waits
        (``PREDICTION`` batches go before ``EXPLANATION`` units): keep each call bounded."""
        return await self._run_in_turn(self._turns.ask(priority), function, *args)

    async def _run_in_turn(self, turn: asyncio.Future, function: Callable[..., T], *args: Any) -> T:
        await self._turns.wait(turn)
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)
        finally:
            # Also when the caller was cancelled mid-call: the next job queues behind this one in the
            # executor's one thread, so the model is still never used by two threads at once.
            self._turns.done()

    async def run_in_turns(self, job: Generator[None, None, T], priority: int = EXPLANATION) -> T:
        """The value ``job`` returns, run one step (up to its next ``yield``) at a time: an explanation
        in the explanation thread where there is one, else in the model's thread one step per turn
        (batches waiting meanwhile go first). A cancelled caller drops the steps not yet run."""
        own = self.explanation_executor if priority == EXPLANATION else None
        try:
            while True:
                if own is not None:
                    finished, value = await asyncio.get_running_loop().run_in_executor(own, _step, job)
                else:
                    finished, value = await self.run_exclusive(_step, job, priority=priority)
                self.explanation_units += priority == EXPLANATION
                if finished:
                    return value
        finally:
            with contextlib.suppress(RuntimeError):  # the executor is already shut down: nothing to close
                (own or self.executor).submit(job.close)  # in the job's thread, after a step still running there

    def _fill(self, batch: list[_Piece], size: int, chars: int) -> tuple[int, int, bool]:
        """Move texts from the front of the line into ``batch`` while they fit; a request only partly
        taken goes to the back of the line. Returns the batch's texts, characters and whether it is full."""
        while self._line:
            request = self._line[0]
            if request.future.done():  # the client left, or an earlier piece failed
                self._line.popleft()
                continue
            stop = request.taken
            while stop < len(request.texts) and size < self.max_batch:
                length = len(request.texts[stop])
                if size and chars + length > self.max_batch_chars:
                    break
                stop, size, chars = stop + 1, size + 1, chars + length
            if stop == request.taken:
                return size, chars, True
            batch.append(_Piece(request, request.taken, stop))
            request.taken = stop
            self._line.popleft()
            if stop < len(request.texts):
                self._line.append(request)  # its next piece waits behind the others in line
                return size, chars, True
        return size, chars, size >= self.max_batch or chars >= self.max_batch_chars

    async def _next_batch(self) -> tuple[list[_Piece], asyncio.Future]:
        """The next batch, and its turn in the model's thread, asked for when its first text arrived:
        the batch fills while an explanation unit finishes, and runs before the next unit. It waits
        for company (``max_wait``) only while no other job wants the model: never idle it then."""
        assert self._arrived is not None
        while not self._line:
            self._arrived.clear()
            await self._arrived.wait()
        turn = self._turns.ask(PREDICTION)
        batch: list[_Piece] = []
        size, chars, full = self._fill(batch, 0, 0)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while not full:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or (turn.done() and self._turns.wanted()):
                break
            self._arrived.clear()
            arrival = asyncio.ensure_future(self._arrived.wait())
            waits = {arrival} if turn.done() else {arrival, turn}
            await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            arrival.cancel()
            size, chars, full = self._fill(batch, size, chars)
        return batch, turn

    async def _serve(self) -> None:
        while True:
            pieces, turn = await self._next_batch()
            batch = [piece for piece in pieces if not piece.request.future.done()]
            if not batch:
                self._turns.give_back(turn)
                continue
            texts = [text for piece in batch for text in piece.texts]
            try:
                self.model_calls += 1
                rows = await self._run_in_turn(turn, self.predict_fn, texts)
            except Exception:
                # One request's bad text must not fail its neighbours: run each alone, each gets its own result.
                for piece in batch:
                    await self._run_alone(piece)
                continue
            start = 0
            for piece in batch:
                piece.request.deliver(piece.start, rows[start : start + len(piece.texts)])
                start += len(piece.texts)

    async def _run_alone(self, piece: _Piece) -> None:
        try:
            self.model_calls += 1
            rows = await self.run_exclusive(self.predict_fn, piece.texts, priority=PREDICTION)
        except Exception as exc:
            if not piece.request.future.done():
                piece.request.future.set_exception(exc)
            return
        piece.request.deliver(piece.start, rows)


def lowest_thread_priority() -> None:
    """The calling thread (and the OpenMP workers it starts later, which inherit it) at nice 19: on
    Linux a thread has its own nice value. Elsewhere ``setpriority`` would lower the whole process, so
    the thread keeps the normal priority there (the server does not ask for the thread there)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _step(job: Generator[None, None, T]) -> tuple[bool, T | None]:
    """Run ``job`` up to its next ``yield``: (True, what it returned) once it has finished."""
    try:
        next(job)
    except StopIteration as finished:
        return True, finished.value
    return False, None
