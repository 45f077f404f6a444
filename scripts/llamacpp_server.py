"""Serve a GGUF model (default: the fetched SmolLM2-135M-Instruct) on an OpenAI-compatible endpoint
with llama.cpp's own server, through the ``xllamacpp`` wheel (prebuilt: no compiler needed).

    pip install xllamacpp
    imdb-sentiment llm fetch smollm2
    python scripts/llamacpp_server.py --port 8080 &        # prints the base URL once it listens
    imdb-sentiment train configs/llm-prompt.yaml --test-limit 200

Runs until interrupted (Ctrl-C / SIGTERM), then exits at once: llama.cpp's server shutdown would
otherwise wait for the requests in flight, keeping their connections open and silent, so clients sat
out their whole read timeout. ``--model-name`` is the name ``/v1/models`` reports and requests use
(``model.params.model``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, help="GGUF file (default: the fetched smollm2).")
    parser.add_argument("--model-name", default="smollm2")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=4, help="Request slots (continuous batching).")
    parser.add_argument("--ctx", type=int, default=8192, help="Context shared by all slots.")
    args = parser.parse_args(argv)
    try:
        import xllamacpp
    except ImportError:
        print("error: xllamacpp is not installed; pip install xllamacpp", file=sys.stderr)
        return 2
    gguf = args.gguf
    if gguf is None:
        try:
            from imdb_sentiment.models.llm.fetch import fetched_gguf
        except ImportError:
            print("error: imdb-sentiment is not installed in this Python, so the fetched smollm2 cannot be "
                  "found; pass --gguf FILE, or run this script with the project's environment", file=sys.stderr)  # fmt: skip
            return 2
        gguf = fetched_gguf("smollm2")
        if gguf is None:
            print("error: run imdb-sentiment llm fetch smollm2 first, or pass --gguf", file=sys.stderr)
            return 2
    if not Path(gguf).is_file():
        print(f"error: --gguf {gguf} does not exist", file=sys.stderr)
        return 2
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.model_alias = {args.model_name} if isinstance(params.model_alias, set) else args.model_name
    params.hostnames = [args.host]
    params.port = args.port
    params.n_parallel = args.parallel
    params.n_ctx = args.ctx
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    server = xllamacpp.Server(params)
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    print(f"{server.listening_address}/v1", flush=True)  # after the handlers: a stop right after is heard
    stop.wait()
    sys.stdout.flush()
    # Not ``del server``: its shutdown waits for the requests in flight. Ending the process closes
    # every connection, answered or not, so clients learn at once.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
