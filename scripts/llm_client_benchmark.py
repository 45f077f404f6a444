"""Client overhead of llm-prompt: requests/s against the fake OpenAI-compatible server of the tests
answering instantly on 127.0.0.1 (the target: >= 200 requests/s with 16 in flight). Not a test:
numbers depend on the machine and its load, so print them with ``uptime``.

    PYTHONPATH=src python scripts/llm_client_benchmark.py --requests 2000 --concurrency 16
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_openai import FakeOpenAI

from imdb_sentiment.models.llm.remote import LLMPromptClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    texts = [f"review number {i}: a great film, loved it" for i in range(args.requests)]
    with FakeOpenAI() as server, tempfile.TemporaryDirectory() as cache:
        model = LLMPromptClassifier({"base_url": server.base_url, "model": "fake", "answer_cache": cache,
                                     "concurrency": args.concurrency, "api_key_env": None})  # fmt: skip
        started, cpu_started = time.perf_counter(), time.process_time()
        model.predict_proba(texts)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        cached_started = time.perf_counter()
        model.predict_proba(texts)  # every answer from the cache
        cached = time.perf_counter() - cached_started
    # CPU seconds (client and fake server, one process) say what the rate would be on an idle core.
    print(f"{args.requests} requests, {args.concurrency} in flight: {args.requests / seconds:.0f} requests/s "
          f"({seconds:.1f} s wall, {cpu:.1f} s CPU = {1000 * cpu / args.requests:.1f} ms CPU per request, client "
          f"and server); from the cache: {args.requests / cached:.0f} reviews/s; load {os.getloadavg()}")  # fmt: skip


if __name__ == "__main__":
    main()
