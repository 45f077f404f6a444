"""A fake OpenAI-compatible chat server on 127.0.0.1 for the llm-prompt tests (standard library only).

It answers from the review's cue words (tests/helpers.py), and misbehaves when the review says so:
``SLOW`` (answers late), ``FLAKY429`` / ``FLAKY500`` (fails the first time), ``MALFORMED`` (a body that
is not JSON, every time), ``OFFLABEL`` (an answer that names no label). Server-wide modes: ``api_key``
(401 unless it matches), ``models`` (404 for others), ``always_429``, ``delay`` (seconds before every
answer), ``malformed`` (every 200 is ``html``, ``bad_json`` or ``no_choices``), ``die_after`` (after that
many answers the server stops like llama.cpp's on SIGTERM: its port closes, the requests in flight
stay open and silent), ``seconds_per_word`` (answers take time in proportion to the prompt).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from helpers import NEGATIVE_CUES, NEUTRAL_CUES, POSITIVE_CUES


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 refuses connections under 16+ in flight
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a client that hung up: not news here
        pass


class FakeOpenAI:
    def __init__(self, api_key: str | None = None, models: tuple[str, ...] = ("fake",), always_429: bool = False,
                 delay: float = 0.0, malformed: str | None = None, die_after: int | None = None,
                 seconds_per_word: float = 0.0) -> None:  # fmt: skip
        self.api_key, self.models, self.always_429, self.delay = api_key, models, always_429, delay
        self.malformed, self.die_after, self.seconds_per_word = malformed, die_after, seconds_per_word
        self.released = threading.Event()  # set on exit: the dead server's held connections end
        self.requests = 0
        self.model_listings = 0  # GET /models: what the configure step's server check asks
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def stop_listening(self) -> None:
        """Close the port (new connections are refused) and keep the open connections."""
        with self.lock:
            if self.server.socket.fileno() != -1:
                threading.Thread(target=self.server.shutdown, daemon=True).start()
                self.server.socket.close()

    def answer(self, body: dict) -> tuple[int, bytes]:
        with self.lock:
            self.requests += 1
        if self.always_429:
            return 429, b'{"error": {"message": "slow down", "type": "rate_limit"}}'
        if body.get("model") not in self.models:
            return 404, json.dumps({"error": {"message": f"model {body.get('model')} not found"}}).encode()
        review = body["messages"][-1]["content"]
        with self.lock:
            first_time = review not in self.seen
            self.seen.add(review)
        if "SLOW" in review:
            time.sleep(0.3)
        if ("FLAKY429" in review or "FLAKY500" in review) and first_time:
            return (429 if "FLAKY429" in review else 500), b'{"error": {"message": "try again"}}'
        if "MALFORMED" in review or self.malformed == "bad_json":
            return 200, b'{"choices": [{"message": {"content": "posi'
        if self.malformed == "html":
            return 200, b"<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>"
        if self.malformed == "no_choices":
            return 200, json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                    "choices": []}).encode()  # fmt: skip
        if self.seconds_per_word:
            time.sleep(self.seconds_per_word * sum(len(m["content"].split()) for m in body["messages"]))
        words = set(review.lower().split())
        if "OFFLABEL" in review:
            text = "I cannot tell."
        else:
            score = len(words & set(POSITIVE_CUES)) - len(words & set(NEGATIVE_CUES))
            neutral = score == 0 and words & set(NEUTRAL_CUES)  # the 3-class reviews' middle class
            text = "Positive." if score > 0 else "Neutral" if neutral else "negative"
        completion = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": text}}]}  # fmt: skip
        return 200, json.dumps(completion).encode()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                with fake.lock:
                    fake.model_listings += 1
                if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    status, payload = 401, b'{"error": {"message": "invalid api key"}}'
                else:
                    listing = {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "x"}
                                                          for m in fake.models]}  # fmt: skip
                    status, payload = 200, json.dumps(listing).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if fake.die_after is not None and fake.requests >= fake.die_after:
                    fake.stop_listening()
                    fake.released.wait(60)  # in flight: held open, never answered
                    return
                if fake.delay:
                    time.sleep(fake.delay)
                if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    status, payload = 401, b'{"error": {"message": "invalid api key"}}'
                else:
                    status, payload = fake.answer(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(payload)

        return Handler


_SHARED: FakeOpenAI | None = None


def shared_fake_server() -> FakeOpenAI:
    """One well-behaved fake server per test process (the conformance checks use it)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = FakeOpenAI().__enter__()
    return _SHARED
