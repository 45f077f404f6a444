"""The REST API (FastAPI): ``POST /predict``, ``GET /health``, ``GET /model`` and the page at ``GET /``.

The app serves a :class:`ServedModel`: anything with ``predict_proba(texts) -> (n, 2) array`` (the
PyTorch / scikit-learn :class:`~imdb_sentiment.serving.predictor.Predictor`, or another backend such as
ONNX Runtime), its model card, and optionally a check of texts and an explainer. Every error is JSON,
``{"error": "<one line saying what is wrong>"}``: 400 for a body that is not JSON, 422 for JSON that is
not a valid request, 413 for a body larger than any valid request, 500 (with no traceback) for
anything else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

from imdb_sentiment import __version__
from imdb_sentiment.errors import UserError
from imdb_sentiment.serving.batcher import MicroBatcher
from imdb_sentiment.serving.explain import Explainer, Explanation

EXAMPLE_TEXTS = [
    "A wonderful film: the cast is superb and the ending moved me.",
    "Dull, predictable and far too long.",
]


@dataclass(frozen=True)
class ServeLimits:
    max_texts: int = 64  # texts per request
    max_chars: int = 100_000  # characters per text (the longest IMDB review has ~14,000)
    max_batch: int = 32  # texts per model call, across requests
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company


@dataclass
class ServedModel:
    name: str
    predict_proba: Callable[[list[str]], np.ndarray]
    card: dict[str, Any]
    # Raises UserError for texts the model cannot read (e.g. nothing left after cleaning HTML).
    check_texts: Callable[[list[str]], object] | None = None
    explainer: Explainer | None = None
    files_checked: bool = True  # False: the run has no manifest (older version), its files went unchecked


def served_model_from_run(run_dir: Path, predictor: Any | None = None) -> ServedModel:
    """A run folder's model (checked against its manifest); ``predictor`` replaces the default
    PyTorch / scikit-learn one (e.g. an ONNX Runtime predictor with ``predict_proba(texts)``)."""
    from imdb_sentiment.serving.card import model_card
    from imdb_sentiment.serving.explain import explainer_for
    from imdb_sentiment.serving.predictor import Predictor

    predictor = predictor if predictor is not None else Predictor.from_run(Path(run_dir))
    config = predictor.config
    model = getattr(predictor, "model", None)
    explainer = explainer_for(model, config.data.clean) if model is not None else None
    return ServedModel(
        name=config.model.name,
        predict_proba=predictor.predict_proba,
        card=model_card(Path(run_dir), config),
        check_texts=getattr(predictor, "clean", None),
        explainer=explainer,
        files_checked=getattr(predictor, "files_checked", True),
    )


# ------------------------------------------------------------------------------------ request / response
class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"texts": EXAMPLE_TEXTS, "explain": False}]}
    )

    texts: list[StrictStr] = Field(min_length=1, description="Reviews to classify (at least one).")
    explain: StrictBool = Field(False, description="Also return each word's contribution to the verdict.")

    @field_validator("texts")
    @classmethod
    def _no_empty_texts(cls, texts: list[str]) -> list[str]:
        empty = [index for index, text in enumerate(texts) if not text.strip()]
        if empty:
            raise ValueError(f"text {empty[0]} is empty or whitespace only ({len(empty)} such text(s))")
        return texts


class WordScoreOut(BaseModel):
    word: str = Field(description="The word as sent: text[start:end].")
    start: int = Field(description="Character offset of the word in the text sent.")
    end: int
    score: float = Field(description="Contribution: > 0 pushes towards positive (attention: weight, >= 0).")


class ExplanationOut(BaseModel):
    method: Literal["linear", "attention", "integrated-gradients", "occlusion"]
    signed: bool = Field(description="False for attention weights: how much a word mattered, not which way.")
    words: list[WordScoreOut]


class PredictionOut(BaseModel):
    label: Literal["positive", "negative"]
    prob_positive: float = Field(ge=0.0, le=1.0)
    explanation: ExplanationOut | None = None


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"model": "nbsvm", "predictions": [
                    {"label": "positive", "prob_positive": 0.97, "explanation": None},
                    {"label": "negative", "prob_positive": 0.04, "explanation": None},
                ]}
            ]
        }
    )  # fmt: skip

    model: str
    predictions: list[PredictionOut]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    model_calls: int = Field(description="Batches the model has run so far.")


class ErrorResponse(BaseModel):
    error: str = Field(examples=["text 1 is empty or whitespace only (1 such text(s))"])


ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (400, 413, 422, 500)}


# ------------------------------------------------------------------------------------------------ app
def create_app(served: ServedModel, limits: ServeLimits | None = None) -> FastAPI:
    from imdb_sentiment.serving.page import PAGE_HTML

    limits = limits or ServeLimits()
    batcher = MicroBatcher(served.predict_proba, limits.max_batch, limits.max_wait_ms)

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
    )
    app.state.batcher = batcher

    # Most bytes a valid request can need (12 per character: JSON's escaped surrogate pair \ud83c\udfac
    # of an emoji): a larger body is refused from its Content-Length before it is read into memory.
    max_body = limits.max_texts * (12 * limits.max_chars + 16) + 4096

    @app.middleware("http")
    async def refuse_huge_bodies(request: Request, call_next):
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_body:
            return _error(
                413, f"Request body of {int(length):,} bytes; at most {max_body:,} (--max-texts x --max-chars)."
            )
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        malformed = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if malformed is not None:
            where = malformed.get("ctx", {}).get("error", "")
            return _error(400, f'Malformed JSON body ({where}); send {{"texts": ["..."]}}.')
        return _error(422, "; ".join(_describe(error) for error in errors[:5]))

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return _error(422, exc.message)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"Internal error ({type(exc).__name__}); the server log has details.")

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict(request: PredictRequest) -> PredictResponse:
        """Label and P(positive) of each text; with ``explain``, each word's contribution."""
        texts = request.texts
        if len(texts) > limits.max_texts:
            raise UserError(f"{len(texts)} texts sent; at most {limits.max_texts} per request (--max-texts).")
        too_long = [index for index, text in enumerate(texts) if len(text) > limits.max_chars]
        if too_long:
            raise UserError(
                f"text {too_long[0]} has {len(texts[too_long[0]]):,} characters; at most {limits.max_chars:,} "
                "per text (--max-chars)."
            )
        if request.explain and served.explainer is None:
            raise UserError(f"{served.name} cannot explain its predictions here; send explain: false.")
        if served.check_texts is not None:  # a bad text fails its own request, not the batch it would join
            await asyncio.to_thread(served.check_texts, texts)
        probabilities = await batcher.predict(texts)
        explanations: list[Explanation | None] = [None] * len(texts)
        if request.explain:
            assert served.explainer is not None
            explain = served.explainer.explain
            explanations = await batcher.run_exclusive(lambda: [explain(text) for text in texts])
        return PredictResponse(
            model=served.name,
            predictions=[
                _prediction(row, explanation) for row, explanation in zip(probabilities, explanations, strict=True)
            ],
        )

    @app.get("/health", response_model=HealthResponse)
    async def health() -> HealthResponse:
        return HealthResponse(model=served.name, model_calls=batcher.model_calls)

    @app.get("/model")
    async def model_card() -> dict[str, Any]:
        """The model card: name, run, config, test metrics, package version, training data checksums, and
        the explanation method (null: the model gives none)."""
        return {**served.card, "explanation_method": served.explainer.method if served.explainer else None}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE_HTML)

    return app


def _prediction(row: np.ndarray, explanation: Explanation | None) -> PredictionOut:
    probability = float(row[1])
    out = PredictionOut(label="positive" if probability >= 0.5 else "negative", prob_positive=probability)
    if explanation is not None:
        out.explanation = ExplanationOut(
            method=explanation.method,
            signed=explanation.signed,
            words=[WordScoreOut(word=w.text, start=w.start, end=w.end, score=w.score) for w in explanation.words],
        )
    return out


def _describe(error: dict[str, Any]) -> str:
    where = [str(part) for part in error.get("loc", ()) if part != "body"]
    path = "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in where).lstrip(".") or "body"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{path}: {message}"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": " ".join(message.split())})
