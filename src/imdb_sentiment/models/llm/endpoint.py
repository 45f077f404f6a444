"""What llm-prompt needs around the ``openai`` client: strict parsing of answers, the persistent answer
cache, a guard against servers whose answers are not chat completions, the remaining-time estimate and
one-line descriptions of what went wrong."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from imdb_sentiment.errors import UserError
from imdb_sentiment.models.llm.prompting import WORD

MALFORMED_SAMPLE = 8  # responses before a server whose answers are mostly malformed is given up on
WATCH_SECONDS = 1.0  # how often the server's port is probed while requests wait


# ------------------------------------------------------------------------------------------- parsing
def parse_answer(answer: str | None, label_words: list[str]) -> int | None:
    """Strict: the answer must begin with a label word and name no other label word ("Positive." -> 1;
    "negative, not positive" -> None; "I think positive" -> None). Words are runs of letters and digits,
    compared case-insensitively, so punctuation and markup around them do not count; a label word of
    several words matches as that sequence, and the longest label word the answer begins with wins
    ("very positive" over "very" when both are labels)."""
    words = WORD.findall((answer or "").lower())
    labels = [tuple(WORD.findall(word.lower())) for word in label_words]
    starting = [index for index, label in enumerate(labels) if label and tuple(words[: len(label)]) == label]
    if not starting:
        return None
    chosen = max(starting, key=lambda index: len(labels[index]))
    rest = words[len(labels[chosen]) :]
    for index, label in enumerate(labels):
        if index != chosen and any(tuple(rest[at : at + len(label)]) == label for at in range(len(rest))):
            return None  # names two labels: ambiguous
    return chosen


# --------------------------------------------------------------------------------------------- cache
class AnswerCache:
    """Answers by request key, as JSON lines appended and flushed one by one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answers: dict[str, str] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    self.answers[record["key"]] = record["answer"]
                except (ValueError, KeyError, TypeError):  # a line cut by a crash: skip it
                    continue
        self._file = None

    def get(self, key: str) -> str | None:
        return self.answers.get(key)

    def put(self, key: str, answer: str) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self.answers[key] = answer
        self._file.write(json.dumps({"key": key, "answer": answer}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# ------------------------------------------------------------------------------------- malformed guard
class MalformedServer(UserError):
    """Most answers so far were no chat completion: the URL is not an OpenAI-compatible endpoint."""


def malformed_kind(exc: BaseException, body: str) -> str:
    """What came back instead of a chat completion, in a few words."""
    if body.lstrip()[:1] == "<":
        return "an HTML page"
    if isinstance(exc, (IndexError, TypeError, AttributeError)):
        return "a completion without choices"
    return f"a body that is no chat completion ({type(exc).__name__})"


def check_malformed(malformed: int, responses: int, kind: str, base_url: str) -> None:
    """Raise once most responses so far (cached answers count as good ones; after a small sample) were
    no usable chat completion: every further request would be wasted and accuracy would read 0.0."""
    if responses < MALFORMED_SAMPLE or 2 * malformed <= responses:
        return
    raise MalformedServer(
        f"{base_url} answered {malformed} of {responses} requests with {kind} instead of a chat completion; "
        "is model.params.base_url an OpenAI-compatible endpoint (…/v1)?"
    )


# ---------------------------------------------------------------------------------------- watchdog
class ServerGone(UserError):
    """The server stopped listening while requests waited for answers."""


async def watch_server(base_url: str, interval: float = WATCH_SECONDS) -> None:
    """Runs beside the requests; raises ServerGone when the server's port refuses connections twice in
    a row. Why: a llama.cpp server stopped with SIGTERM closes its port at once but keeps the open
    connections of the requests in flight, silent, until the client's read timeout (300 s) ends them;
    a refused connection says the server is gone, which no timeout needs to wait for."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    refused = 0
    while True:
        await asyncio.sleep(interval)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=max(interval, 1.0))
            writer.close()
            refused = 0
        except ConnectionRefusedError:
            refused += 1
            if refused >= 2:
                raise ServerGone(
                    f"{base_url} stopped: its port refuses connections while requests wait for answers "
                    "(was the server stopped?)"
                ) from None
        except (OSError, asyncio.TimeoutError):  # a slow or unresolvable host: the requests will say
            refused = 0


# ------------------------------------------------------------------------------------ time estimate
class RemainingTime:
    """Seconds left, from the words answered so far: the first answers back are the short reviews (the
    server finishes them first), so a per-request rate after a few answers was 1.8x too optimistic."""

    def __init__(self, sizes: list[int]) -> None:
        self.started = time.perf_counter()
        self.total = max(sum(sizes), 1)
        self.answered = 0

    def add(self, size: int) -> None:
        self.answered += size

    def seconds_left(self, now: float | None = None) -> float:
        elapsed = (time.perf_counter() if now is None else now) - self.started
        return elapsed * (self.total - self.answered) / max(self.answered, 1)


# ------------------------------------------------------------------------------------------- errors
def _timeout_description(exc: Any, seconds: float | None) -> str:
    """Which wait ran out (connect / read / write / pool), with the limit the client really used."""
    phase = {"ConnectTimeout": "accept the connection", "ReadTimeout": "send an answer",
             "WriteTimeout": "take the request", "PoolTimeout": "free a connection"}  # fmt: skip
    cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else ""
    limits = getattr(getattr(exc, "request", None), "extensions", {}).get("timeout", {}) or {}
    key = cause.removesuffix("Timeout").lower()
    limit = limits.get(key)
    what = phase.get(cause, "answer")
    figure = f" within {limit:g} s" if isinstance(limit, (int, float)) else ""
    total = f" ({seconds:.1f} s in all, retries included)" if seconds is not None else ""
    return f"did not {what}{figure}{total}"


def describe_api_error(
    exc: BaseException, params: Any, done: int, total: int, cache: Path | None, seconds: float | None = None
) -> str:
    """One line naming the cause, and what is kept."""
    import openai

    where = params.base_url
    key_unset = bool(params.api_key_env) and not os.environ.get(params.api_key_env)
    if isinstance(exc, UserError):
        cause = str(exc).rstrip(".")
    elif isinstance(exc, openai.APITimeoutError):
        cause = f"{where} {_timeout_description(exc, seconds)} (model.params.timeout={params.timeout:g} s)"
    elif isinstance(exc, openai.APIConnectionError):
        reason = exc.__cause__ or exc
        lost = "closed the connection" if type(reason).__name__ in ("RemoteProtocolError", "ReadError") else ""
        cause = (f"{where} {lost} (the server stopped?): {reason}" if lost
                 else f"cannot reach {where} (model.params.base_url): {reason}")  # fmt: skip
    elif isinstance(exc, openai.AuthenticationError) and key_unset:
        cause = (f"{where} wants an API key (401) and ${params.api_key_env} is unset "
                 "(model.params.api_key_env): export it")  # fmt: skip
    elif isinstance(exc, openai.AuthenticationError):
        source = f"${params.api_key_env}" if params.api_key_env else "nowhere (model.params.api_key_env is null)"
        cause = f"{where} refused the API key from {source} (401)"
    elif isinstance(exc, openai.PermissionDeniedError):
        cause = f"{where} denied access (403) to model {params.model!r}"
    elif isinstance(exc, openai.NotFoundError):
        cause = f"{where} does not know model {params.model!r} (model.params.model; 404)"
    elif isinstance(exc, openai.RateLimitError):
        cause = (f"{where} kept answering 429 (rate limit) after {params.max_retries} retries; lower "
                 "model.params.concurrency or raise max_retries")  # fmt: skip
    elif isinstance(exc, openai.APIStatusError):
        cause = f"{where} answered HTTP {exc.status_code} after {params.max_retries} retries"
    else:
        cause = f"request to {where} failed: {type(exc).__name__}: {exc}"
    kept = f" ({done} of {total} answers received are kept in {cache})" if cache else ""
    return f"{cause}{kept}."
