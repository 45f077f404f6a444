"""``llm-prompt``: classification by asking any OpenAI-compatible chat endpoint (llama.cpp server,
vLLM, Ollama, a hosted API) for one label word per review.

The ``openai`` client does the HTTP: timeouts, and retries with exponential backoff (honouring
``Retry-After``) on 429 / 5xx / connection errors. This module adds what it does not do: bounded
concurrency over many reviews, a persistent answer cache, strict parsing of answers into labels,
coverage, and one-line errors for what a user can get wrong (server, key, model, rate limit).

Answers are appended to the cache (JSON lines, one per answer, flushed as it arrives) keyed by the
endpoint, model, messages and sampling settings: an interrupted, failed or repeated run pays for
nothing twice. The API key is read from the environment variable named by ``api_key_env`` and never
stored in the params, the run folder or the cache.

An answer that names no label word (or both) is *invalid*: its probability row is [0.5, 0.5] and
``prediction_metrics`` reports ``accuracy`` with invalid answers counted wrong, ``accuracy_valid_only``
and ``coverage`` (share of valid answers).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.data.splits import cache_dir
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import Capabilities, FitContext, ModelParams, SentimentModel
from imdb_sentiment.models.llm.prompting import (
    PromptParams,
    chat_messages,
    choose_shots,
)
from imdb_sentiment.models.registry import register_model
from imdb_sentiment.text.truncation import Truncation, truncate

logger = logging.getLogger("imdb_sentiment.models.llm")

SHOTS_FILE = "llm_shots.json"
ESTIMATE_AFTER = 8  # answers received before the time estimate is logged


class LLMPromptParams(PromptParams):
    base_url: str = Field("http://127.0.0.1:8080/v1", description="OpenAI-compatible endpoint (.../v1).")
    model: str = Field("smollm2", description="Model name the server knows.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (never stored); null: none."
    )
    system_prompt: str | None = None
    shot_max_words: int = Field(80, ge=4, le=10_000, description="Words kept of each example review.")
    max_words: int = Field(300, ge=4, le=100_000, description="Words kept of the review (head+tail).")
    truncation: Truncation = "head+tail"
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(4, ge=1, le=512, description="Answer length limit: one label word is enough.")
    concurrency: int = Field(16, ge=1, le=1024, description="Requests in flight.")
    timeout: float = Field(60.0, gt=0.0, le=3600.0, description="Seconds per request attempt.")
    max_retries: int = Field(4, ge=0, le=20, description="Retries (with backoff) on 429 / 5xx / timeouts.")
    answer_cache: str | None = Field(None, description="Folder of the answer cache (default: the user cache).")


# ------------------------------------------------------------------------------------------- parsing
def parse_answer(answer: str | None, label_words: list[str]) -> int | None:
    """Strict: the answer's first word must be a label word and the other label word must not
    appear ("Positive." -> 1; "negative, not positive" -> None; "I think positive" -> None)."""
    words = re.findall(r"[a-z]+", (answer or "").lower())
    labels = [word.strip().lower() for word in label_words]
    if not words or words[0] not in labels:
        return None
    label = labels.index(words[0])
    return None if labels[1 - label] in words else label


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


# --------------------------------------------------------------------------------------------- model
@register_model("llm-prompt")
class LLMPromptClassifier(SentimentModel):
    """Zero- / k-shot prompting of an OpenAI-compatible chat endpoint; fit() only picks the shots."""

    Params: ClassVar[type[ModelParams]] = LLMPromptParams
    params: LLMPromptParams
    description = "Any OpenAI-compatible chat server (llama.cpp, vLLM, Ollama, hosted), zero- or k-shot."

    capabilities = Capabilities(kind="remote (OpenAI-compatible server)", remote=True)

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.shots: list[tuple[str, int]] = []
        self._last: tuple[int, np.ndarray] | None = None  # (id(texts), parsed labels; -1 invalid)
        self.request_stats: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------- prompts
    def cut(self, text: str, words: int) -> str:
        return " ".join(truncate(text.split(), words, self.params.truncation))

    def messages(self, text: str) -> list[dict]:
        p = self.params
        shots = [(self.cut(example, p.shot_max_words), label) for example, label in self.shots]
        messages = chat_messages(p.template, p.label_words, shots, self.cut(text, p.max_words))
        return ([{"role": "system", "content": p.system_prompt}] if p.system_prompt else []) + messages

    def request_key(self, messages: list[dict]) -> str:
        p = self.params
        identity = {"base_url": p.base_url.rstrip("/"), "model": p.model, "messages": messages,
                    "temperature": p.temperature, "max_tokens": p.max_tokens}  # fmt: skip
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def cache_path(self) -> Path:
        folder = (
            Path(self.params.answer_cache).expanduser()
            if self.params.answer_cache
            else cache_dir() / "llm-answers"
        )
        endpoint = hashlib.sha256(f"{self.params.base_url.rstrip('/')}|{self.params.model}".encode()).hexdigest()
        return folder / f"{endpoint[:16]}.jsonl"

    @classmethod
    def runnable_key(cls, config, params: ModelParams) -> tuple[str, str, str | None]:
        assert isinstance(params, LLMPromptParams)
        return params.base_url.rstrip("/"), params.model, params.api_key_env  # one check per server and key

    @classmethod
    def check_runnable(cls, config, params: ModelParams) -> None:
        """Before a run folder exists: the server answers, takes the key and knows the model
        (``GET /models``; a server without that endpoint is given the benefit of the doubt). Run by
        the configure step, once per distinct server in a command (:meth:`runnable_key`)."""
        assert isinstance(params, LLMPromptParams)
        import openai

        api_key = os.environ.get(params.api_key_env, "") if params.api_key_env else ""
        client = openai.OpenAI(base_url=params.base_url, api_key=api_key or "none", timeout=min(params.timeout, 10.0),
                               max_retries=0)  # fmt: skip
        try:
            known = [model.id for model in client.models.list()]
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.APIConnectionError) as exc:
            raise UserError(describe_api_error(exc, params, 0, 0, None)) from None
        except (openai.APIError, ValueError, TypeError, AttributeError):
            return
        finally:
            client.close()
        if known and params.model not in known:
            raise UserError(
                f"model.params.model: {params.base_url} does not know model {params.model!r}; it serves "
                f"{', '.join(known[:10])}"
            )

    # -------------------------------------------------------------------------------------- fitting
    def fit(self, train: TextDataset, valid: TextDataset, context: FitContext) -> LLMPromptClassifier:
        try:
            self.shots = choose_shots(train, self.params.shots, context.seed)
        except ValueError as exc:
            raise UserError(f"model.params.shots: {exc}") from None
        return self

    # ------------------------------------------------------------------------------------ answering
    def answers(self, texts: list[str]) -> list[str | None]:
        """One answer per text (None: no answer came back), from the cache or the server."""
        all_messages = [self.messages(text) for text in texts]
        keys = [self.request_key(messages) for messages in all_messages]
        cache = AnswerCache(self.cache_path())
        try:
            missing = sorted(
                {key: i for i, key in reversed(list(enumerate(keys))) if cache.get(key) is None}.values()
            )
            logger.info("llm-prompt: %d reviews, %d answers cached, %d requests to send to %s (%d in flight)",
                        len(texts), len(texts) - len(missing), len(missing), self.params.base_url,
                        self.params.concurrency)  # fmt: skip
            if missing:
                asyncio.run(self._ask_all([(keys[i], all_messages[i]) for i in missing], cache))
            return [cache.get(key) for key in keys]
        finally:
            cache.close()

    async def _ask_all(self, requests: list[tuple[str, list[dict]]], cache: AnswerCache) -> None:
        import openai

        p = self.params
        api_key = os.environ.get(p.api_key_env, "") if p.api_key_env else ""
        client = openai.AsyncOpenAI(base_url=p.base_url, api_key=api_key or "none", timeout=p.timeout,
                                    max_retries=p.max_retries)  # fmt: skip
        semaphore = asyncio.Semaphore(p.concurrency)
        started, done, malformed = time.perf_counter(), 0, [0]

        async def ask(key: str, messages: list[dict]) -> None:
            nonlocal done
            answer = None
            for attempt in range(p.max_retries + 1):
                try:
                    async with semaphore:
                        response = await client.chat.completions.create(
                            model=p.model, messages=messages, temperature=p.temperature, max_tokens=p.max_tokens
                        )
                    answer = response.choices[0].message.content or ""
                    break
                except (ValueError, TypeError, AttributeError, IndexError, openai.APIResponseValidationError):
                    # A 200 whose body is no chat completion (malformed JSON, no choices): the client
                    # does not retry these; retry here, then give up on this review only (invalid).
                    malformed[0] += 1
                    await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
            if answer is not None:
                cache.put(key, answer)
            done += 1
            if done == min(ESTIMATE_AFTER, len(requests)) and len(requests) > done:
                rate = done / max(time.perf_counter() - started, 1e-9)
                logger.info("llm-prompt: %.1f requests/s so far; about %.0f s for the remaining %d",
                            rate, (len(requests) - done) / rate, len(requests) - done)  # fmt: skip

        tasks = [asyncio.create_task(ask(key, messages)) for key, messages in requests]
        try:
            await asyncio.gather(*tasks)
        except Exception as exc:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise UserError(describe_api_error(exc, p, done, len(requests), self.cache_path())) from None
        finally:
            await client.close()
        seconds = time.perf_counter() - started
        self.request_stats = {"requests_sent": len(requests), "request_seconds": seconds,
                              "requests_per_second": len(requests) / max(seconds, 1e-9),
                              "malformed_responses": malformed[0]}  # fmt: skip

    def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        labels = np.array([-1 if (label := parse_answer(answer, self.params.label_words)) is None else label
                           for answer in self.answers(texts)], dtype=np.int64)  # fmt: skip
        self._last = (id(texts), labels)
        probabilities = np.full((len(texts), 2), 0.5)
        valid = labels >= 0
        probabilities[valid] = np.eye(2)[labels[valid]]
        return probabilities

    def prediction_metrics(
        self, texts: list[str], labels: np.ndarray, probabilities: np.ndarray
    ) -> dict[str, Any]:
        """Accuracy with invalid answers counted wrong (replaces the argmax accuracy, which would
        give every invalid answer a coin's chance), over valid answers only, and coverage."""
        if self._last is None or self._last[0] != id(texts):
            self.predict_proba(texts)
        assert self._last is not None
        parsed, labels = self._last[1], np.asarray(labels)
        valid = parsed >= 0
        return {
            "accuracy": float((parsed == labels).mean()) if len(labels) else float("nan"),
            "accuracy_valid_only": float((parsed[valid] == labels[valid]).mean()) if valid.any() else float("nan"),
            "coverage": float(valid.mean()) if len(labels) else float("nan"),
            "invalid_answers": int((~valid).sum()),
            **self.request_stats,
        }

    # ------------------------------------------------------------------------------------ save/load
    def num_parameters(self) -> int:
        return 0  # on the server: nothing here to count

    def save_weights(self, directory: Path) -> None:
        (Path(directory) / SHOTS_FILE).write_text(json.dumps(self.shots, indent=2))

    def load_weights(self, directory: Path) -> None:
        self.shots = [(text, int(label)) for text, label in json.loads((Path(directory) / SHOTS_FILE).read_text())]


def describe_api_error(
    exc: BaseException, params: LLMPromptParams, done: int, total: int, cache: Path | None
) -> str:
    """One line naming the cause, and what is kept."""
    import openai

    where = params.base_url
    if isinstance(exc, openai.APITimeoutError):
        cause = f"{where} did not answer within model.params.timeout={params.timeout:g} s"
    elif isinstance(exc, openai.APIConnectionError):
        cause = f"cannot reach {where} (model.params.base_url): {exc.__cause__ or exc}"
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
