"""Micro-batching: texts of concurrent requests go through the model together.

Requests wait in a queue; a batch is closed when it holds ``max_batch`` texts or ``max_wait_ms`` after
its first request arrived, whichever comes first. While one batch runs, the next one fills, so batches
grow with the load and throughput with them. The model runs in one worker thread: the event loop never
blocks, and the model (PyTorch modules, Captum's hooks) is never used by two threads at once.

Why hand-written: FastAPI / Starlette have no request batching, and the few small packages that do add
little over this one asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
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


class MicroBatcher:
    """``await batcher.predict(texts)``: the rows of ``predict_fn`` for ``texts``, computed together
    with the texts of other requests waiting at the same time."""

    def __init__(
        self, predict_fn: Callable[[list[str]], np.ndarray], max_batch: int = 32, max_wait_ms: float = 5.0
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_ms >= 0")
        self.predict_fn, self.max_batch, self.max_wait = predict_fn, max_batch, max_wait_ms / 1000
        self.model_calls = 0  # batches run (tests and /health read it)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._queue: asyncio.Queue[_Request] | None = None
        self._held: _Request | None = None  # a request that did not fit the last batch: first in the next
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._serve(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait().future.cancel()
        self.executor.shutdown(wait=True)

    async def predict(self, texts: list[str]) -> np.ndarray:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(list(texts), future))
        return await future

    async def run_exclusive(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function`` in the model's thread, between batches (e.g. an explanation)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def _next_batch(self) -> list[_Request]:
        assert self._queue is not None
        first = self._held or await self._queue.get()
        self._held = None
        batch, size = [first], len(first.texts)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                request = (
                    self._queue.get_nowait()
                    if remaining <= 0
                    else await asyncio.wait_for(self._queue.get(), remaining)
                )
            except (asyncio.QueueEmpty, TimeoutError, asyncio.TimeoutError):
                break
            if size + len(request.texts) > self.max_batch:
                self._held = request
                break
            batch.append(request)
            size += len(request.texts)
        return batch

    async def _serve(self) -> None:
        while True:
            batch = await self._next_batch()
            live = [request for request in batch if not request.future.done()]  # drop cancelled clients
            if not live:
                continue
            texts = [text for request in live for text in request.texts]
            try:
                self.model_calls += 1
                rows = await self.run_exclusive(self.predict_fn, texts)
            except Exception:
                # One request's bad text must not fail its neighbours: run each alone, each gets its own result.
                for request in live:
                    await self._run_alone(request)
                continue
            start = 0
            for request in live:
                if not request.future.done():
                    request.future.set_result(rows[start : start + len(request.texts)])
                start += len(request.texts)

    async def _run_alone(self, request: _Request) -> None:
        try:
            self.model_calls += 1
            rows = await self.run_exclusive(self.predict_fn, request.texts)
        except Exception as exc:
            if not request.future.done():
                request.future.set_exception(exc)
            return
        if not request.future.done():
            request.future.set_result(rows)
