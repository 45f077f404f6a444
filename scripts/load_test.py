#!/usr/bin/env python
"""Load test of a running ``imdb-sentiment serve``: N concurrent clients for a bounded time.

Each client sends ``POST /predict`` requests back to back (the next as soon as the last is answered),
each with ``--texts-per-request`` reviews drawn in turn from ``--reviews`` (a Parquet / CSV file with a
``text`` column, e.g. the IMDB test split) or from a few built-in ones. Prints requests/s, reviews/s,
p50 / p99 latency and the errors (non-200 answers and failed connections)::

    imdb-sentiment serve runs/nbsvm-... &
    python scripts/load_test.py http://127.0.0.1:8000 --concurrency 16 --duration 20 \\
        --reviews ../shared/data/imdb/test.parquet

``--heavy N`` adds N clients that meanwhile send the largest requests the server allows (its limits
from ``GET /model``), in turn: ``max_texts`` texts of ``max_request_chars`` characters in all, and
texts of ``max_explain_chars`` characters in all with ``explain: true``. The latencies reported are
those of the ordinary clients: how responsive the server stays for small requests while big ones run::

    python scripts/load_test.py http://127.0.0.1:8000 --heavy 1 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path

import httpx

BUILT_IN = [
    "A wonderful film: the cast is superb and the ending moved me to tears.",
    "Dull, predictable and far too long. I wanted my two hours back.",
    "The first half is gripping, the second falls apart; still worth seeing for the lead performance.",
    "One of the worst movies I have seen this year, with wooden acting and a plot full of holes.",
]


def read_reviews(path: Path | None, limit: int) -> list[str]:
    if path is None:
        return BUILT_IN
    import pandas as pd

    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return frame["text"].astype(str).sample(n=min(limit, len(frame)), random_state=0).tolist()


async def client_loop(
    client: httpx.AsyncClient, reviews: itertools.cycle, per_request: int, explain: bool, end: float,
    latencies: list[float], errors: Counter,
) -> None:  # fmt: skip
    while time.perf_counter() < end:
        body = {"texts": [next(reviews) for _ in range(per_request)], "explain": explain}
        started = time.perf_counter()
        try:
            response = await client.post("/predict", json=body)
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] += 1
            continue
        if response.status_code == 200:
            latencies.append(time.perf_counter() - started)
        else:
            errors[f"HTTP {response.status_code}"] += 1


def heavy_requests(reviews: list[str], limits: dict) -> list[dict]:
    """The largest requests the server's limits allow: a full batch, and a full explanation."""
    text = " ".join(reviews * (1 + limits["max_request_chars"] // max(1, len(" ".join(reviews)))))

    def texts(count: int, total: int) -> list[str]:
        size = min(limits["max_chars"], total // count)
        return [text[i * size : (i + 1) * size].strip() or "film" for i in range(count)]

    count = limits["max_texts"]
    explained = max(1, min(count, limits["max_explain_chars"] // 2_000))  # review-sized texts
    return [{"texts": texts(count, limits["max_request_chars"] - count), "explain": False},
            {"texts": texts(explained, limits["max_explain_chars"] - explained), "explain": True}]  # fmt: skip


async def heavy_loop(client: httpx.AsyncClient, bodies: list[dict], end: float, done: Counter) -> None:
    for body in itertools.cycle(bodies):
        if time.perf_counter() >= end:
            return
        started = time.perf_counter()
        response = await client.post("/predict", json=body)
        kind = "explain" if body["explain"] else "batch"
        done[f"{kind} HTTP {response.status_code}"] += 1
        done[f"{kind} ms"] = max(done[f"{kind} ms"], round(1000 * (time.perf_counter() - started)))


async def run(args: argparse.Namespace) -> dict:
    drawn = read_reviews(args.reviews, args.sample)
    reviews = itertools.cycle(drawn)
    connections = args.concurrency + args.heavy
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=args.url, timeout=args.timeout, limits=limits) as client:
        health = (await client.get("/health")).json()
        await client.post("/predict", json={"texts": [next(reviews)]})  # warm-up, not counted
        heavy = heavy_requests(drawn, (await client.get("/model")).json()["limits"]) if args.heavy else []
        latencies: list[float] = []
        errors: Counter = Counter()
        heavy_done: Counter = Counter()
        started = time.perf_counter()
        end = started + args.duration
        await asyncio.gather(
            *(client_loop(client, reviews, args.texts_per_request, args.explain, end, latencies, errors)
              for _ in range(args.concurrency)),
            *(heavy_loop(client, heavy, end, heavy_done) for _ in range(args.heavy)),
        )  # fmt: skip
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)

    def percentile(share: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")

    return {
        "model": health.get("model"),
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "reviews_per_s": round(len(latencies) * args.texts_per_request / elapsed, 1),
        "p50_ms": round(percentile(0.50), 1),
        "p99_ms": round(percentile(0.99), 1),
        "mean_ms": round(1000 * statistics.fmean(ordered), 1) if ordered else None,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "heavy": dict(heavy_done),  # heavy requests answered by status, and the slowest of each kind (ms)
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="The server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--concurrency", "-c", type=int, default=1, help="Concurrent clients.")
    parser.add_argument("--duration", "-d", type=float, default=20.0, help="Seconds to send requests.")
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--explain", action="store_true", help="Ask for explanations too.")
    parser.add_argument("--heavy", type=int, default=0, help="Clients sending the largest allowed requests.")
    parser.add_argument("--reviews", type=Path, help="Parquet / CSV file with a 'text' column.")
    parser.add_argument("--sample", type=int, default=2000, help="Reviews drawn from --reviews.")
    parser.add_argument("--timeout", type=float, default=60.0, help="Seconds before a request counts as failed.")
    parser.add_argument("--json", action="store_true", help="Print one JSON line instead of a summary.")
    args = parser.parse_args()
    if args.concurrency < 1 or args.duration <= 0 or args.texts_per_request < 1 or args.heavy < 0:
        parser.error("--concurrency and --texts-per-request must be >= 1, --heavy >= 0, --duration > 0")
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['model']}: {result['concurrency']} client(s), {result['seconds']} s: "
          f"{result['requests_per_s']} requests/s ({result['reviews_per_s']} reviews/s), "
          f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, errors {result['errors']} {result['error_kinds'] or ''}"
          f"{'; heavy ' + str(result['heavy']) if result['heavy'] else ''}"
          f"; load average {result['load_average']}")  # fmt: skip


if __name__ == "__main__":
    main()
