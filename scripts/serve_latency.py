#!/usr/bin/env python
"""How long a one-text ``POST /predict`` waits while the largest explanation request allowed runs.

Starts ``imdb-sentiment serve RUN`` on a free loopback port (the package found on PYTHONPATH: point it
at two checkouts to compare them side by side), then:

1. quiet: ``--quiet-requests`` one-text requests one after the other, nothing else running;
2. loaded: one client sends, back to back, the largest explanation requests the server's limits allow
   (from ``GET /model``: ``max_explain_chars`` characters with ``explain: true``, in turn as
   ``max_texts`` texts, as review-sized texts of 2,000 characters, and as one text), while another
   sends one-text requests one after the other: ``--requests`` of them, and more until each kind of
   explanation request has been answered once (its duration under this load; ``--max-seconds``).

It prints p50 / p99 / max of the one-text latencies in both phases, the explanation requests'
durations and the load average before and after (the numbers mean little on a busy machine: say the
load with them)::

    PYTHONPATH=src python scripts/serve_latency.py runs/cnn-... --requests 200
    PYTHONPATH=../main/src python scripts/serve_latency.py runs/cnn-... --requests 200   # another checkout
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REVIEWS = [
    "A wonderful film: the cast is superb and the ending moved me to tears. ",
    "Dull, predictable and far too long. I wanted my two hours back. ",
    "The first half is gripping, the second falls apart; still worth seeing for the lead performance. ",
    "One of the worst movies I have seen this year, with wooden acting and a plot full of holes. ",
]
ONE_TEXT = REVIEWS[0] + REVIEWS[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(run: Path, port: int) -> subprocess.Popen:
    cli = Path(sys.executable).with_name("imdb-sentiment")
    process = subprocess.Popen([str(cli), "serve", str(run), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            raise SystemExit(f"serve exited with {process.returncode}: {process.stdout.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit("serve did not answer /health within 300 s")
        time.sleep(0.3)


def explain_bodies(limits: dict) -> list[dict]:
    """The largest explanation requests the limits allow: all of ``max_explain_chars`` characters, as
    many texts as allowed, as review-sized texts, and as one text."""
    total = min(limits["max_explain_chars"], limits["max_request_chars"])
    source = "".join(itertools.islice(itertools.cycle(REVIEWS), 1 + total // 60))

    def texts(count: int) -> list[str]:
        size = min(limits["max_chars"], total // count)
        return [source[i * size : (i + 1) * size].strip() or "film" for i in range(count)]

    counts = [limits["max_texts"], max(1, min(limits["max_texts"], total // 2_000)), 1]
    return [{"texts": texts(count), "explain": True} for count in counts]


def summary(latencies: list[float]) -> dict:
    ordered = sorted(latencies)

    def at(share: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)

    return {
        "requests": len(ordered),
        "p50_ms": at(0.5),
        "p99_ms": at(0.99),
        "max_ms": round(1000 * ordered[-1], 1),
    }


async def one_text_requests(
    client: httpx.AsyncClient, count: int, until: Callable[[], bool] = lambda: True
) -> list[float]:
    latencies: list[float] = []
    while len(latencies) < count or not until():
        started = time.perf_counter()
        response = await client.post("/predict", json={"texts": [ONE_TEXT]})
        response.raise_for_status()
        latencies.append(time.perf_counter() - started)
    return latencies


async def explain_loop(client: httpx.AsyncClient, bodies: list[dict], durations: list[tuple[int, float]]) -> None:
    for body in itertools.cycle(bodies):
        started = time.perf_counter()
        response = await client.post("/predict", json=body)
        response.raise_for_status()
        durations.append((len(body["texts"]), time.perf_counter() - started))


async def measure(url: str, requests: int, quiet_requests: int, max_seconds: float) -> dict:
    timeout = httpx.Timeout(600.0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as light, \
            httpx.AsyncClient(base_url=url, timeout=timeout) as heavy:  # fmt: skip
        card = (await light.get("/model")).json()
        if card.get("explanation_method") is None:
            raise SystemExit(f"{card.get('name')} gives no explanations: serve a model that does")
        bodies = explain_bodies(card["limits"])
        for body in bodies:  # warm-up: every code path once, not counted
            (await heavy.post("/predict", json=body)).raise_for_status()
        await one_text_requests(light, 5)
        quiet = summary(await one_text_requests(light, quiet_requests))
        durations: list[tuple[int, float]] = []
        load_before = os.getloadavg()
        explaining = asyncio.create_task(explain_loop(heavy, bodies, durations))
        await asyncio.sleep(0.5)  # the first explanation request is running
        deadline = time.monotonic() + max_seconds

        def enough() -> bool:
            if explaining.done():  # it failed: say why
                explaining.result()
            return len(durations) >= len(bodies) or time.monotonic() > deadline

        loaded = summary(await one_text_requests(light, requests, enough))
        explaining.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await explaining
    return {
        "model": card.get("name"),
        "explanation_method": card["explanation_method"],
        "quiet": quiet,
        "while_explaining": loaded,
        "explain_requests_done": len(durations),
        "explain_request_s": {
            f"{n} texts": round(max(s for k, s in durations if k == n), 2)
            for n in sorted({n for n, _ in durations})
        },
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="A finished run folder whose model gives explanations.")
    parser.add_argument("--requests", type=int, default=200, help="One-text requests while explaining.")
    parser.add_argument("--quiet-requests", type=int, default=50, help="One-text requests with nothing else.")
    parser.add_argument("--max-seconds", type=float, default=300, help="Most seconds of one-text requests.")
    args = parser.parse_args()
    if args.requests < 1 or args.quiet_requests < 1:
        parser.error("--requests and --quiet-requests must be >= 1")
    port = free_port()
    process = start_server(args.run, port)
    try:
        result = asyncio.run(
            measure(f"http://127.0.0.1:{port}", args.requests, args.quiet_requests, args.max_seconds)
        )
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
