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

The prompt lists the label words (one per class); an answer that names none of them (or two) is
*invalid*: its probability row is uniform (1/K each) and ``prediction_metrics`` reports ``accuracy``
with invalid answers counted wrong, ``accuracy_valid_only`` and ``coverage`` (share of valid answers).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import cache_dir
from imdb_sentiment.models.base import Capabilities, FitContext, ModelParams, SentimentModel
from imdb_sentiment.models.llm.endpoint import (
    AnswerCache,
    RemainingTime,
    check_malformed,
    describe_api_error,
    malformed_kind,
    parse_answer,
    watch_server,
)
from imdb_sentiment.models.llm.prompting import (
    PromptParams,
    chat_messages,
    check_label_words_fit_the_data,
    choose_shots,
)
from imdb_sentiment.models.registry import register_model
from imdb_sentiment.text.truncation import Truncation, truncate

logger = logging.getLogger("imdb_sentiment.models.llm")

SHOTS_FILE = "llm_shots.json"
ESTIMATE_AFTER = 8  # answers received before the time estimate is first logged (again at 1/2 and 3/4)


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
        self._prompt: tuple[LabelSpace, LLMPromptParams] | None = None  # see prompt
        self.shots: list[tuple[str, int]] = []
        self._last: tuple[int, np.ndarray] | None = None  # (id(texts), parsed labels; -1 invalid)
        self.request_stats: dict[str, Any] = {}

    @property
    def prompt(self) -> LLMPromptParams:
        """The params with the task's defaults (label words, template) for the model's classes."""
        if self._prompt is None or self._prompt[0] != self.classes:
            self._prompt = (self.classes, self.params.for_task(self.classes))
        return self._prompt[1]

    # ------------------------------------------------------------------------------------- prompts
    def cut(self, text: str, words: int) -> str:
        return " ".join(truncate(text.split(), words, self.params.truncation))

    def messages(self, text: str) -> list[dict]:
        p = self.prompt
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
    def runnable_key(cls, config, params: ModelParams) -> tuple[str, str, str | None, tuple[int, str] | None]:
        assert isinstance(params, LLMPromptParams)
        # One check per server and key (and per label-word count and data, which check_runnable also checks).
        labels = (len(params.label_words), config.data.model_dump_json()) if params.label_words else None
        return params.base_url.rstrip("/"), params.model, params.api_key_env, labels

    @classmethod
    def check_runnable(cls, config, params: ModelParams) -> None:
        """Before a run folder exists: the server answers, takes the key and knows the model
        (``GET /models``; a server without that endpoint is given the benefit of the doubt). Run by
        the configure step, once per distinct server in a command (:meth:`runnable_key`)."""
        assert isinstance(params, LLMPromptParams)
        import openai

        check_label_words_fit_the_data(config, params)

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
    def check_classes(self, classes: LabelSpace) -> None:
        self.params.for_task(classes)  # label words and template for these classes, or one line

    def fit(self, train: TextDataset, valid: TextDataset, context: FitContext) -> LLMPromptClassifier:
        self.learn_classes(train)
        # Resolved for these classes: label words given for another number of classes are refused here.
        logger.info("llm-prompt: label words %s", ", ".join(self.prompt.label_words or ()))
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
                asyncio.run(
                    self._ask_all([(keys[i], all_messages[i]) for i in missing], cache, len(texts) - len(missing))
                )
            return [cache.get(key) for key in keys]
        finally:
            cache.close()

    async def _ask_all(self, requests: list[tuple[str, list[dict]]], cache: AnswerCache, cached: int = 0) -> None:
        import openai

        p = self.params
        api_key = os.environ.get(p.api_key_env, "") if p.api_key_env else ""
        client = openai.AsyncOpenAI(base_url=p.base_url, api_key=api_key or "none", timeout=p.timeout,
                                    max_retries=p.max_retries)  # fmt: skip
        semaphore = asyncio.Semaphore(p.concurrency)
        started, done, malformed, responses = time.perf_counter(), 0, 0, 0
        remaining = RemainingTime([prompt_size(messages) for _, messages in requests])
        quarters = {ESTIMATE_AFTER, len(requests) // 2, len(requests) * 3 // 4}

        async def ask(key: str, messages: list[dict]) -> None:
            nonlocal done, malformed, responses
            answer = None
            for attempt in range(p.max_retries + 1):
                try:
                    async with semaphore:
                        raw = await client.chat.completions.with_raw_response.create(
                            model=p.model, messages=messages, temperature=p.temperature, max_tokens=p.max_tokens
                        )
                except openai.APIResponseValidationError as exc:
                    malformed, responses = malformed + 1, responses + 1
                    check_malformed(malformed, cached + responses, malformed_kind(exc, ""), p.base_url)
                    await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
                    continue
                try:
                    answer = raw.parse().choices[0].message.content or ""
                    responses += 1
                    break
                except (
                    ValueError,
                    TypeError,
                    AttributeError,
                    IndexError,
                    openai.APIResponseValidationError,
                ) as exc:
                    # A 200 whose body is no chat completion (malformed JSON, no choices, HTML): the client
                    # does not retry these; retry here, then give up on this review only (invalid).
                    malformed, responses = malformed + 1, responses + 1
                    check_malformed(malformed, cached + responses, malformed_kind(exc, raw.text), p.base_url)
                    await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
            if answer is not None:
                cache.put(key, answer)
            done += 1
            remaining.add(prompt_size(messages))
            if done in quarters and len(requests) > done:
                logger.info("llm-prompt: %d of %d answered in %.0f s; about %.1f s left", done, len(requests),
                            time.perf_counter() - started, remaining.seconds_left())  # fmt: skip

        tasks = [asyncio.create_task(ask(key, messages)) for key, messages in requests]
        watch = asyncio.create_task(watch_server(p.base_url))
        answered = asyncio.gather(*tasks)
        # Mark its outcome seen even when a stop (SIGTERM, Ctrl-C) leaves it un-awaited: otherwise asyncio
        # prints "exception was never retrieved" with a traceback after the run's one-line message.
        answered.add_done_callback(lambda future: future.cancelled() or future.exception())
        try:
            await asyncio.wait([answered, watch], return_when=asyncio.FIRST_COMPLETED)
            if watch.done():
                watch.result()  # raises ServerGone
            await answered
        except Exception as exc:
            for task in [*tasks, watch]:
                task.cancel()
            await asyncio.gather(answered, watch, return_exceptions=True)
            seconds = time.perf_counter() - started
            raise UserError(describe_api_error(exc, p, done, len(requests), self.cache_path(), seconds)) from None
        finally:
            watch.cancel()
            await client.close()
        seconds = time.perf_counter() - started
        self.request_stats = {"requests_sent": len(requests), "request_seconds": seconds,
                              "requests_per_second": len(requests) / max(seconds, 1e-9),
                              "malformed_responses": malformed}  # fmt: skip

    def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        labels = np.array([-1 if (label := parse_answer(answer, self.prompt.label_words)) is None else label
                           for answer in self.answers(texts)], dtype=np.int64)  # fmt: skip
        self._last = (id(texts), labels)
        probabilities = np.full((len(texts), self.num_classes), 1.0 / self.num_classes)
        valid = labels >= 0
        probabilities[valid] = np.eye(self.num_classes)[labels[valid]]
        return probabilities

    def prediction_metrics(
        self, texts: list[str], labels: np.ndarray, probabilities: np.ndarray
    ) -> dict[str, Any]:
        """Accuracy with invalid answers counted wrong (replaces the argmax accuracy, which would
        give every invalid answer a chance), over valid answers only, and coverage. The confusion matrix
        and the scores read from it replace the argmax ones too (which read an invalid answer's uniform
        row as the first class): the matrix gets a last column for invalid answers, so its diagonal over
        its total is the accuracy, and an invalid answer is a miss of its true class (recall)."""
        if self._last is None or self._last[0] != id(texts):
            self.predict_proba(texts)
        assert self._last is not None
        parsed, labels = self._last[1], np.asarray(labels)
        valid = parsed >= 0
        answers = [*range(self.num_classes), -1]
        matrix = [[int(((labels == true) & (parsed == answer)).sum()) for answer in answers]
                  for true in range(self.num_classes)]  # fmt: skip
        scores = [class_scores(matrix[k][k], int((parsed == k).sum()), int((labels == k).sum()))
                  for k in range(self.num_classes)]  # fmt: skip
        if self.num_classes == 2:  # the binary keys: of the positive class
            precision, recall, f1 = scores[1]
            by_class: dict[str, Any] = {"precision": precision, "recall": recall, "f1": f1}
        else:
            by_class = {"per_class": {
                name: {"precision": p, "recall": r, "f1": f, "support": int((labels == k).sum())}
                for k, (name, (p, r, f)) in enumerate(zip(self.classes.names, scores, strict=True))
            }}  # fmt: skip
        return {
            "accuracy": float((parsed == labels).mean()) if len(labels) else float("nan"),
            "accuracy_valid_only": float((parsed[valid] == labels[valid]).mean()) if valid.any() else float("nan"),
            "coverage": float(valid.mean()) if len(labels) else float("nan"),
            "invalid_answers": int((~valid).sum()),
            **by_class,
            "macro_f1": float(np.mean([f for _, _, f in scores])),
            "confusion_matrix": matrix,
            "confusion_matrix_columns": [*self.classes.names, "invalid"],
            **self.request_stats,
        }

    # ------------------------------------------------------------------------------------ save/load
    def num_parameters(self) -> int:
        return 0  # on the server: nothing here to count

    def save_weights(self, directory: Path) -> None:
        (Path(directory) / SHOTS_FILE).write_text(json.dumps(self.shots, indent=2))

    def load_weights(self, directory: Path) -> None:
        self.shots = [(text, int(label)) for text, label in json.loads((Path(directory) / SHOTS_FILE).read_text())]


def prompt_size(messages: list[dict]) -> int:
    """Words in a request's messages: what the server's time per request grows with."""
    return sum(len(str(message.get("content", "")).split()) for message in messages)


def class_scores(hits: int, predicted: int, support: int) -> tuple[float, float, float]:
    """Precision, recall and F1 of one class from its counts (0 where undefined, as scikit-learn's
    zero_division=0); ``support`` counts invalid answers, so they lower recall."""
    precision = hits / predicted if predicted else 0.0
    recall = hits / support if support else 0.0
    return precision, recall, 2 * precision * recall / (precision + recall) if precision + recall else 0.0
