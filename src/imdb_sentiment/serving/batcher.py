"""Micro-batching: texts of concurrent requests go through the model together, and no request hogs it.

Requests wait in line; a batch is closed when it holds ``max_batch`` texts or ``max_batch_chars``
characters, or ``max_wait_ms`` after it was opened, whichever comes first. While one batch runs, the
next one fills, so batches grow with the load and throughput with them. A request too big for one
batch is cut into pieces that go through the model one batch at a time, and after each piece it goes
back to the end of the line: a one-text request sent while a 64-text request is being scored waits for
one bounded batch, not for the whole big request. The model runs in one worker thread: the event loop
never blocks, and the model (PyTorch modules, Captum's hooks) is never used by two threads at once;
other work on the model (explanations) goes through the same thread one bounded job at a time
(:meth:`MicroBatcher.run_exclusive`), so batches slip in between those jobs.

Why hand-written: FastAPI / Starlette have no request batching, and the few small packages that do add
little over this one asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


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
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0 or max_batch_chars < 1:
            raise ValueError("max_batch and max_batch_chars must be >= 1 and max_wait_ms >= 0")
        self.predict_fn, self.max_batch, self.max_wait = predict_fn, max_batch, max_wait_ms / 1000
        self.max_batch_chars = max_batch_chars  # one text longer than this still goes through, alone
        self.model_calls = 0  # batches run (tests and /health read it)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._line: deque[_Request] = deque()
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

    async def predict(self, texts: list[str]) -> np.ndarray:
        if self._arrived is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future = asyncio.get_running_loop().create_future()
        self._line.append(_Request(list(texts), future))
        self._arrived.set()
        return await future

    async def run_exclusive(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function`` in the model's thread, between batches (e.g. one text's explanation): keep
        each call bounded, batches queued meanwhile run before the caller's next call."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

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

    async def _next_batch(self) -> list[_Piece]:
        assert self._arrived is not None
        while not self._line:
            self._arrived.clear()
            await self._arrived.wait()
        batch: list[_Piece] = []
        size, chars, full = self._fill(batch, 0, 0)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while not full:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
            size, chars, full = self._fill(batch, size, chars)
        return batch

    async def _serve(self) -> None:
        while True:
            batch = [piece for piece in await self._next_batch() if not piece.request.future.done()]
            if not batch:
                continue
            texts = [text for piece in batch for text in piece.texts]
            try:
                self.model_calls += 1
                rows = await self.run_exclusive(self.predict_fn, texts)
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
            rows = await self.run_exclusive(self.predict_fn, piece.texts)
        except Exception as exc:
            if not piece.request.future.done():
                piece.request.future.set_exception(exc)
            return
        piece.request.deliver(piece.start, rows)
