"""The REST API (FastAPI): ``POST /predict``, ``GET /health``, ``GET /model`` and the page at ``GET /``.

The app serves a :class:`ServedModel`: anything with ``predict_proba(texts) -> (n, K) array`` (the
PyTorch / scikit-learn :class:`~imdb_sentiment.serving.predictor.Predictor`, or another backend such as
ONNX Runtime), its model card, and optionally a check of texts and an explainer. Every error, whatever
its status, is JSON ``{"error": "<one line saying what is wrong>"}`` and never a traceback: 400 for a
body that is not JSON (or not UTF-8, nested too deeply, a number too long) or a Host not served, 404 /
405 for a wrong path or method, 408 for a body that arrives too slowly, 413 for a request larger than
the limits, 422 for JSON that is not a valid request, 500 for anything else (and 499, which nobody reads, to
a client that left before its answer: its work is cancelled).

The work of one request is bounded (texts, characters per text and per request, characters
explained), and a big request never holds the model for long at a time (serving/batcher.py), so one
client cannot make the server unresponsive to others.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import pickle
import sys
from collections.abc import Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from imdb_sentiment import __version__
from imdb_sentiment.data.labels import SENTIMENT, LabelSpace
from imdb_sentiment.errors import UserError
from imdb_sentiment.serving.batcher import MicroBatcher
from imdb_sentiment.serving.explain import Explainer, Explanation, target_index
from imdb_sentiment.serving.guards import BodyGuard, HostGuard, error_response
from imdb_sentiment.serving.predictor import unknown_texts_warning
from imdb_sentiment.serving.schema import (
    ERRORS,
    ExplanationOut,
    HealthResponse,
    PredictionOut,
    PredictRequest,
    PredictResponse,
    WordScoreOut,
)

logger = logging.getLogger("imdb_sentiment.serve")
T = TypeVar("T")


@dataclass(frozen=True)
class ServeLimits:
    max_texts: int = 64  # texts per request
    max_chars: int = 100_000  # characters per text (the longest IMDB review has ~14,000)
    max_request_chars: int = 250_000  # characters per request (64 IMDB reviews average ~85,000)
    max_explain_chars: int = 20_000  # characters explained per request (any one IMDB review)
    max_batch: int = 32  # texts per model call, across requests
    max_batch_chars: int = 20_000  # characters per model call: a big request goes through in pieces
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    body_timeout_s: float = 30.0  # the whole body must arrive within this

    @property
    def max_body_bytes(self) -> int:
        """Most bytes a valid request can need (12 per character: JSON's escaped surrogate pair
        \\ud83c\\udfac of an emoji, plus quotes and commas): a larger body is refused while it arrives."""
        return 12 * min(self.max_request_chars, self.max_texts * self.max_chars) + 16 * self.max_texts + 4096


@dataclass
class ServedModel:
    name: str
    predict_proba: Callable[[list[str]], np.ndarray]
    card: dict[str, Any]
    # Raises UserError for texts the model cannot read (e.g. nothing left after cleaning HTML).
    check_texts: Callable[[list[str]], object] | None = None
    explainer: Explainer | None = None
    # True: the explainer works on its own copy of the model, so it may run beside predictions.
    explainer_owns_model: bool = False
    files_checked: bool = True  # False: the run has no manifest (older version), its files went unchecked
    # (probabilities, share of each text's tokens the model knows, or None when it cannot tell), from
    # texts cleaned once (Predictor.classify); None: predict_proba only, no shares.
    classify: Callable[[list[str]], tuple[np.ndarray, np.ndarray | None]] | None = None
    classes: LabelSpace = SENTIMENT  # the columns of predict_proba

    def rows(self, texts: list[str]) -> np.ndarray:
        """What the batcher hands around: each class's probability, then the known-token share (NaN: unknown)."""
        probabilities, shares = self.classify(texts) if self.classify else (self.predict_proba(texts), None)
        shares = np.full(len(texts), np.nan) if shares is None else np.asarray(shares, dtype=float)
        return np.column_stack([np.asarray(probabilities, dtype=float), shares])


def served_model_from_run(
    run_dir: Path, predictor: Any | None = None, explanation_thread: bool | None = None
) -> ServedModel:
    """A run folder's model (checked against its manifest); ``predictor`` replaces the default
    PyTorch / scikit-learn one (e.g. an ONNX Runtime predictor with ``predict_proba(texts)``).
    ``explanation_thread``: explain on a copy of the model in a thread of its own (None: where it helps,
    a PyTorch model on Linux, see :func:`wants_explanation_thread`)."""
    from imdb_sentiment.serving.card import model_card
    from imdb_sentiment.serving.explain import explainer_for
    from imdb_sentiment.serving.predictor import Predictor

    predictor = predictor if predictor is not None else Predictor.from_run(Path(run_dir))
    config = predictor.config
    model = getattr(predictor, "model", None)
    explainer = explainer_for(model, config.data.clean) if model is not None else None
    owns_model = False
    if explainer is not None and (
        wants_explanation_thread(model) if explanation_thread is None else explanation_thread
    ):
        try:  # Captum's hooks and the explainer's batches then never touch the predicting model
            explainer, owns_model = explainer_for(copy.deepcopy(model), config.data.clean), True
        except (TypeError, RuntimeError, AttributeError, copy.Error, pickle.PicklingError) as exc:
            logger.warning("explanations share the model's thread: the model cannot be copied (%s)", exc)
    return ServedModel(
        name=config.model.name,
        predict_proba=predictor.predict_proba,
        card=model_card(Path(run_dir), config, backend_name(predictor), predictor.classes),
        check_texts=getattr(predictor, "clean", None),
        explainer=explainer,
        explainer_owns_model=owns_model,
        files_checked=getattr(predictor, "files_checked", True),
        classify=getattr(predictor, "classify", None),
        classes=predictor.classes,
    )


def wants_explanation_thread(model: Any) -> bool:
    """Whether explaining on a copy in a nice-19 thread pays: a network's explanations (forward and
    backward passes) on Linux, where a thread has its own nice value. A linear model's exact explanation
    is a dot product (no thread needed); elsewhere the thread could not be lowered, and at equal priority
    it slows predictions more than waiting for one unit does (measured: p99 153 ms against 40 ms)."""
    from imdb_sentiment.models.torch_base import TorchTextClassifier

    return sys.platform == "linux" and isinstance(model, TorchTextClassifier)


def backend_name(predictor: Any) -> str:
    """What runs the model, as the card and the page say it: "pytorch", "scikit-learn", "onnxruntime int8"..."""
    backend = str(getattr(predictor, "backend", "native"))
    if backend != "native":
        return backend
    from imdb_sentiment.models.linear import LinearModel
    from imdb_sentiment.models.torch_base import TorchTextClassifier

    model = getattr(predictor, "model", None)
    if isinstance(model, TorchTextClassifier):
        return "pytorch"
    return "scikit-learn" if isinstance(model, LinearModel) else type(model).__name__


# ------------------------------------------------------------------------------------------------ app
def create_app(
    served: ServedModel,
    limits: ServeLimits | None = None,
    allowed_hosts: Sequence[str] | None = None,
    docs: bool = False,
) -> FastAPI:
    """The API as an ASGI app. ``allowed_hosts``: the Host names it answers (None: any; ``serve`` passes
    the loopback names unless told otherwise); ``docs``: Swagger UI at /docs and ReDoc at /redoc, whose
    scripts come from a CDN (blank without the network; /openapi.json is always there)."""
    from imdb_sentiment.serving.page import PAGE_HTML

    limits = limits or ServeLimits()
    batcher = MicroBatcher(served.rows, limits.max_batch, limits.max_wait_ms, limits.max_batch_chars,
                           explanation_thread=served.explainer_owns_model)  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="imdb-sentiment",
        version=__version__,
        summary=f"Sentiment of movie reviews with {served.name} (run {served.card.get('run')}).",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.state.batcher = batcher
    # Outermost first: a foreign Host is refused before its body is read.
    app.add_middleware(BodyGuard, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    if allowed_hosts is not None:
        app.add_middleware(HostGuard, allowed_hosts=list(allowed_hosts))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        malformed = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if malformed is not None:
            where = malformed.get("ctx", {}).get("error", "")
            return error_response(400, f'Malformed JSON body ({where}); send {{"texts": ["..."]}}.')
        return error_response(422, "; ".join(_describe(error) for error in errors[:5]))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        parse_failure = exc.status_code == 400 and exc.detail == "There was an error parsing the body"
        message = _parse_failure(exc.__cause__) if parse_failure else str(exc.detail)
        if exc.status_code == 404:
            message = (
                f"No {request.url.path[:200]} here; the API has POST /predict, GET /health, GET /model, GET /."
            )
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; use {exc.headers.get('Allow', '')}."
        response = error_response(exc.status_code, message)
        response.headers.update({k: v for k, v in (exc.headers or {}).items() if k.lower() != "content-length"})
        return response

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return error_response(exc.status if isinstance(exc, TooMuchWork) else 422, exc.message)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> JSONResponse:
        return error_response(499, "The client closed the connection before the answer was ready.")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"Internal error ({type(exc).__name__}); the server log has details.")

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict(request: PredictRequest, connection: Request) -> PredictResponse:
        """Label, each class's probability and the share of known tokens of each text; with ``explain``,
        each word's contribution towards ``target`` (default: the predicted class)."""
        return await unless_disconnected(connection, answer(request))

    async def answer(request: PredictRequest) -> PredictResponse:
        texts = request.texts
        check_work(texts, request.explain, limits)
        if request.explain and served.explainer is None:
            raise UserError(f"{served.name} cannot explain its predictions here; send explain: false.")
        if request.target is not None and not request.explain:
            raise UserError("target names the class to explain; send it with explain: true.")
        target = target_index(served.classes, request.target)  # an unknown class: 422 before any work
        if served.check_texts is not None:  # a bad text fails its own request, not the batch it would join
            await asyncio.to_thread(served.check_texts, texts)
        rows = await batcher.predict(texts)
        explanations: list[Explanation | None] = [None] * len(texts)
        if request.explain:
            assert served.explainer is not None
            # In small units (the explanation thread's, or the model thread's turns between batches).
            explanations = [
                await batcher.run_in_turns(served.explainer.units(text, _target(row, target, served.classes)))
                for text, row in zip(texts, rows, strict=True)
            ]
        shares = rows[:, -1]
        warning = unknown_texts_warning(shares if not np.isnan(shares).any() else None)
        return PredictResponse(
            model=served.name,
            predictions=[
                _prediction(row, explanation, served.classes)
                for row, explanation in zip(rows, explanations, strict=True)
            ],
            warnings=[warning] if warning else [],
        )

    @app.get("/health", response_model=HealthResponse)
    async def health() -> HealthResponse:
        return HealthResponse(model=served.name, model_calls=batcher.model_calls,
                              explanation_units=batcher.explanation_units)  # fmt: skip

    @app.get("/model")
    async def model_card() -> dict[str, Any]:
        """The model card: name, run, backend, config, test metrics (and on how many reviews), package
        version, training data checksums, the explanation method (null: none) and this server's limits."""
        return {**served.card, "explanation_method": served.explainer.method if served.explainer else None,
                "limits": asdict(limits)}  # fmt: skip

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE_HTML)

    return app


async def unless_disconnected(connection: Request, work: Coroutine[Any, Any, T]) -> T:
    """``work``'s result, or ``work`` cancelled once the client has gone (its batches are dropped, its
    explanation stops after the unit in progress): nobody would read the answer. Starlette does not
    cancel a handler whose client left; the ASGI server's ``receive`` says so (the body has been read,
    so the next message is the disconnect), as Starlette's streaming responses listen for it."""
    task = asyncio.ensure_future(work)
    listener = asyncio.ensure_future(_until_disconnected(connection))
    try:
        await asyncio.wait({task, listener}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            raise ClientGone
        return task.result()
    finally:
        for pending in (task, listener):
            pending.cancel()
        # The work's own clean-up (an explanation's generator closed in its thread) before the handler ends.
        await asyncio.gather(task, listener, return_exceptions=True)


async def _until_disconnected(connection: Request) -> None:
    while (await connection.receive())["type"] != "http.disconnect":
        pass


class ClientGone(Exception):
    """The client left before its answer was ready: answered with 499, which nobody reads."""


class TooMuchWork(UserError):
    """A request over the work limits: 413 when it is too large as a whole, 422 for an option it may
    not use at this size."""

    def __init__(self, message: str, status: int = 413) -> None:
        super().__init__(message)
        self.status = status


def check_work(texts: list[str], explain: bool, limits: ServeLimits) -> None:
    """Refuse a request whose work is over the limits, before any of it is done."""
    if len(texts) > limits.max_texts:
        raise UserError(f"{len(texts)} texts sent; at most {limits.max_texts} per request (--max-texts).")
    too_long = [index for index, text in enumerate(texts) if len(text) > limits.max_chars]
    if too_long:
        raise UserError(
            f"text {too_long[0]} has {len(texts[too_long[0]]):,} characters; at most {limits.max_chars:,} "
            "per text (--max-chars)."
        )
    total = sum(map(len, texts))
    if total > limits.max_request_chars:
        raise TooMuchWork(
            f"{total:,} characters in {len(texts)} texts; at most {limits.max_request_chars:,} per request "
            "(--max-request-chars): send them in several requests."
        )
    if explain and total > limits.max_explain_chars:
        raise TooMuchWork(
            f"explain: true for {total:,} characters; at most {limits.max_explain_chars:,} per request are "
            "explained (--max-explain-chars): send fewer or shorter texts, or explain: false.", status=422,
        )  # fmt: skip


def _parse_failure(cause: BaseException | None) -> str:
    """Why a body could not be read as JSON (FastAPI's 400 keeps the cause)."""
    if isinstance(cause, UnicodeDecodeError):
        return (
            f"The body is not UTF-8 (byte 0x{cause.object[cause.start]:02x} at {cause.start}); send JSON in UTF-8."
        )
    if isinstance(cause, RecursionError):
        return 'The JSON body is nested too deeply; send {"texts": ["..."]}.'
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return 'The JSON body holds a number with too many digits; send {"texts": ["..."]}.'
    return f'The body could not be read as JSON ({type(cause).__name__}); send {{"texts": ["..."]}}.'


def _target(row: np.ndarray, requested: int | None, classes: LabelSpace) -> int:
    """The class to explain: the one asked for, else the predicted one (sentiment: positive, as ever)."""
    if requested is not None:
        return requested
    return 1 if classes.is_sentiment else int(row[:-1].argmax())


def _prediction(row: np.ndarray, explanation: Explanation | None, classes: LabelSpace) -> PredictionOut:
    probabilities, share = row[:-1], None if np.isnan(row[-1]) else float(row[-1])
    if classes.is_sentiment:  # as the API always answered: positive from P(positive) >= 0.5
        label = classes.names[int(probabilities[1] >= 0.5)]
    else:
        label = classes.name_of(int(probabilities.argmax()))
    out = PredictionOut(
        label=label,
        probabilities={name: float(p) for name, p in zip(classes.names, probabilities, strict=True)},
        prob_positive=float(probabilities[1]) if classes.is_sentiment else None,
        known_token_share=share,
    )
    if explanation is not None:
        out.explanation = ExplanationOut(
            method=explanation.method,
            signed=explanation.signed,
            target=explanation.target,
            words=[WordScoreOut(word=w.text, start=w.start, end=w.end, score=w.score) for w in explanation.words],
        )
    return out


def _describe(error: dict[str, Any]) -> str:
    where = [str(part) for part in error.get("loc", ()) if part != "body"]
    path = "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in where).lstrip(".") or "body"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{path}: {message}"
