"""The micro-batcher: concurrent requests share model calls, each gets its own rows back."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from imdb_sentiment.serving.batcher import MicroBatcher


class FakeModel:
    """Row i of a call is [len(text), call number]; records each call's size and thread."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.calls: list[int] = []
        self.threads: set[int] = set()
        self.delay, self.fail_on = delay, fail_on

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.threads.add(threading.get_ident())
        if self.fail_on in texts:
            raise ValueError(f"cannot read {self.fail_on!r}")
        time.sleep(self.delay)
        self.calls.append(len(texts))
        return np.array([[len(text), len(self.calls)] for text in texts], dtype=float)


async def serve(model: FakeModel, requests: list[list[str]], **settings) -> tuple[list, MicroBatcher]:
    batcher = MicroBatcher(model, **settings)
    await batcher.start()
    try:
        results = await asyncio.gather(*(batcher.predict(texts) for texts in requests), return_exceptions=True)
    finally:
        await batcher.stop()
    return results, batcher


def test_concurrent_requests_share_model_calls() -> None:
    model = FakeModel(delay=0.01)
    requests = [["x" * (i + 1)] * (1 + i % 3) for i in range(40)]
    results, batcher = asyncio.run(serve(model, requests, max_batch=16, max_wait_ms=20))
    assert batcher.model_calls == len(model.calls) < len(requests) / 3
    assert max(model.calls) <= 16 and sum(model.calls) == sum(map(len, requests))
    for texts, rows in zip(requests, results, strict=True):
        assert rows[:, 0].tolist() == [len(text) for text in texts]  # each request gets its own rows


def test_a_request_larger_than_a_batch_goes_through_in_pieces() -> None:
    model = FakeModel()
    results, _ = asyncio.run(serve(model, [["a"] * 5, ["bb"]], max_batch=2, max_wait_ms=5))
    assert results[0].shape == (5, 2) and results[0][:, 0].tolist() == [1] * 5 and results[1][:, 0].tolist() == [2]
    assert max(model.calls) <= 2 and sum(model.calls) == 6


def test_a_small_request_does_not_wait_for_a_big_one() -> None:
    """64 long texts take 16 model calls of 4 texts (or 40 characters); a one-text request sent while
    the first of them runs is answered after at most two calls, not after all 16."""
    model = FakeModel(delay=0.02)

    async def scenario() -> tuple[int, np.ndarray, np.ndarray]:
        batcher = MicroBatcher(model, max_batch=8, max_wait_ms=1, max_batch_chars=40)
        await batcher.start()
        big = asyncio.create_task(batcher.predict([f"{i:02d}" + "x" * 8 for i in range(64)]))
        await asyncio.sleep(0.01)  # the big request's first piece is running
        small = await batcher.predict(["tiny"])
        calls_when_small_answered = len(model.calls)
        rows = await big
        await batcher.stop()
        return calls_when_small_answered, small, rows

    calls, small, rows = asyncio.run(scenario())
    assert calls <= 3 and small[:, 0].tolist() == [4]
    assert rows[:, 0].tolist() == [10] * 64 and len(model.calls) >= 16 and max(model.calls) <= 4
    order = rows[:, 1]  # pieces come back in order, each row from its own call
    assert (np.diff(order) >= 0).all()


def test_one_text_longer_than_the_character_budget_still_runs() -> None:
    results, _ = asyncio.run(
        serve(FakeModel(), [["y" * 500, "z"]], max_batch=8, max_wait_ms=1, max_batch_chars=10)
    )
    assert results[0][:, 0].tolist() == [500, 1]


def test_one_bad_request_does_not_fail_its_neighbours() -> None:
    model = FakeModel(fail_on="bad")
    results, _ = asyncio.run(serve(model, [["good"], ["bad"], ["fine", "ok"]], max_batch=8, max_wait_ms=20))
    assert isinstance(results[1], ValueError)
    assert results[0][:, 0].tolist() == [4] and results[2][:, 0].tolist() == [4, 2]


def test_the_model_runs_in_one_worker_thread_and_the_loop_stays_free() -> None:
    model = FakeModel(delay=0.2)

    async def scenario() -> int:
        batcher = MicroBatcher(model, max_batch=4, max_wait_ms=1)
        await batcher.start()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await batcher.predict(["slow"])
        task.cancel()
        await batcher.stop()
        return ticks

    ticks = asyncio.run(scenario())
    assert ticks >= 5  # a blocking call on the loop would have allowed none during the 0.2 s call
    assert model.threads and threading.get_ident() not in model.threads


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(FakeModel(), max_batch=0)
    with pytest.raises(ValueError, match="max_batch_chars"):
        MicroBatcher(FakeModel(), max_batch_chars=0)


def slow_units(count: int, seconds: float, log: list[str], name: str):
    """A fake explanation: ``count`` units of ``seconds`` each in the model's thread, then its name."""
    for index in range(count):
        time.sleep(seconds)
        log.append(f"{name}{index}")
        yield
    return name


def test_a_one_text_prediction_overtakes_long_explanations() -> None:
    """Two explanations of 20 units each are running; a one-text request sent meanwhile waits for the
    unit in progress, then goes first (the old code ran each explanation as one job, ahead of it)."""
    model = FakeModel()
    log: list[str] = []

    async def scenario() -> tuple[int, list]:
        batcher = MicroBatcher(model, max_batch=8, max_wait_ms=1)
        await batcher.start()
        explaining = [asyncio.create_task(batcher.run_in_turns(slow_units(20, 0.01, log, name))) for name in "ab"]
        await asyncio.sleep(0.05)  # a few units of each have run
        sent_at = len(log)
        await batcher.predict(["tiny"])
        units_before_answer = len(log) - sent_at
        results = await asyncio.gather(*explaining)
        await batcher.stop()
        return units_before_answer, results

    units_before_answer, results = asyncio.run(scenario())
    assert units_before_answer <= 1 and results == ["a", "b"]
    assert len(log) == 40 and {entry[0] for entry in log[:4]} == {"a", "b"}  # the explanations take turns


def test_a_cancelled_explanation_runs_no_more_units() -> None:
    log: list[str] = []

    async def scenario() -> None:
        batcher = MicroBatcher(FakeModel(), max_batch=8, max_wait_ms=1)
        await batcher.start()
        explaining = asyncio.create_task(batcher.run_in_turns(slow_units(50, 0.01, log, "a")))
        await asyncio.sleep(0.05)
        explaining.cancel()
        await asyncio.sleep(0.05)
        assert (await batcher.predict(["still served"]))[:, 0].tolist() == [12]
        await batcher.stop()

    asyncio.run(scenario())
    assert 0 < len(log) < 15  # the unit in progress finishes; none after it starts


def test_a_steady_stream_of_predictions_does_not_starve_an_explanation() -> None:
    """Predictions go first, but a waiting explanation unit gets every FAIR_SHARE + 1-th turn (before:
    while a prediction waited, no explanation unit ever ran)."""
    from imdb_sentiment.serving.batcher import EXPLANATION, FAIR_SHARE, PREDICTION, _Turns

    async def scenario() -> list[int]:
        turns, granted = _Turns(), []
        holder = turns.ask(PREDICTION)  # the model is busy
        explanation = turns.ask(EXPLANATION)
        await holder
        for _ in range(3 * (FAIR_SHARE + 1)):  # a prediction always waits when a turn ends
            waiting = turns.ask(PREDICTION)
            turns.done()
            await asyncio.sleep(0)
            if explanation.done() and explanation not in granted:
                granted.append(explanation)
                explanation = turns.ask(EXPLANATION)  # the explanation's next unit
                turns.done()  # ... its unit ran
                await asyncio.sleep(0)
            if waiting.done():
                granted.append(PREDICTION)
        return [index for index, item in enumerate(granted) if item is not PREDICTION]

    explanation_turns = asyncio.run(scenario())
    assert explanation_turns, "no explanation unit ran while predictions kept coming"
    assert explanation_turns[0] == FAIR_SHARE


def test_with_an_explanation_thread_a_prediction_never_waits_for_a_unit() -> None:
    """Units of 0.3 s each run in a thread of their own at the lowest priority (Linux: nice 19): a
    one-text request sent meanwhile is answered at once, not after the unit in progress."""
    import os
    import sys

    log: list[str] = []
    niceness: list[int] = []

    def slow_explanation():
        for index in range(4):
            if sys.platform == "linux":
                niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            time.sleep(0.3)
            log.append(f"e{index}")
            yield
        return "explained"

    async def scenario() -> tuple[float, int, str]:
        batcher = MicroBatcher(FakeModel(), max_batch=8, max_wait_ms=1, explanation_thread=True)
        await batcher.start()
        explaining = asyncio.create_task(batcher.run_in_turns(slow_explanation()))
        await asyncio.sleep(0.05)  # its first unit is running
        started = time.monotonic()
        await batcher.predict(["tiny"])
        waited = time.monotonic() - started
        units_then = len(log)
        result = await explaining
        await batcher.stop()
        return waited, units_then, result

    waited, units_then, result = asyncio.run(scenario())
    assert units_then == 0, "the prediction waited for the unit in progress"
    assert waited < 0.2  # the unit in progress had >= 0.25 s left
    assert result == "explained" and len(log) == 4
    if sys.platform == "linux":
        assert niceness == [19] * 4
