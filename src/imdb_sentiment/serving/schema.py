"""The REST API's request and response bodies (pydantic): what /predict takes and answers, for any
number of classes.

Every prediction carries ``label`` (the predicted class's name) and ``probabilities`` ({class: p});
the binary sentiment task keeps ``prob_positive`` beside them, as it always had, so older clients
keep working.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

EXAMPLE_TEXTS = [
    "A wonderful film: the cast is superb and the ending moved me.",
    "Dull, predictable and far too long.",
]


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"texts": EXAMPLE_TEXTS, "explain": False}]}
    )

    texts: list[StrictStr] = Field(min_length=1, description="Reviews to classify (at least one).")
    explain: StrictBool = Field(False, description="Also return each word's contribution to the verdict.")
    target: StrictStr | None = Field(
        None,
        description="With explain: the class whose words are scored (a class name, see GET /model). Default: "
        "the predicted class; for sentiment, positive.",
    )

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
    score: float = Field(
        description="Contribution: > 0 pushes towards the target class (attention: weight, >= 0)."
    )


class ExplanationOut(BaseModel):
    method: Literal["linear", "attention", "integrated-gradients", "occlusion"]
    signed: bool = Field(description="False for attention weights: how much a word mattered, not which way.")
    target: str = Field(description="The class explained: a score > 0 pushed towards it.")
    words: list[WordScoreOut]


class PredictionOut(BaseModel):
    label: str = Field(description="The predicted class.")
    probabilities: dict[str, float] = Field(description="Every class's probability, in the model's class order.")
    prob_positive: float | None = Field(
        None, ge=0.0, le=1.0, description="P(positive) of the binary sentiment task; null for any other task."
    )
    known_token_share: float | None = Field(
        None, description="Share of the text's tokens the model knows; 0: it knows no word of it and its "
        "verdict is its prior. null: the model cannot tell.",
    )  # fmt: skip
    explanation: ExplanationOut | None = None


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"model": "nbsvm", "predictions": [
                    {"label": "positive", "probabilities": {"negative": 0.03, "positive": 0.97},
                     "prob_positive": 0.97, "explanation": None},
                    {"label": "negative", "probabilities": {"negative": 0.96, "positive": 0.04},
                     "prob_positive": 0.04, "explanation": None},
                ]}
            ]
        }
    )  # fmt: skip

    model: str
    predictions: list[PredictionOut]
    warnings: list[str] = Field(default_factory=list, description="E.g. texts with no word the model knows.")


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    model_calls: int = Field(description="Batches the model has run so far.")
    explanation_units: int = Field(0, description="Units of explanation work run so far.")


class ErrorResponse(BaseModel):
    error: str = Field(examples=["text 1 is empty or whitespace only (1 such text(s))"])


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 408, 413, 422, 500)
}
