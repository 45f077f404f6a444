"""The model card ``GET /model`` returns and the page shows: what is served, how good it is, trained on what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imdb_sentiment import __version__
from imdb_sentiment.config import ExperimentConfig
from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import read_json

# metrics.json keys worth a glance on the page (two classes; more: macro-F1, and MAE / within-one when
# ordered); /model returns the whole file.
HEADLINE_METRICS = ("accuracy", "f1", "roc_auc", "parameters", "train_seconds")
HEADLINE_METRICS_MULTICLASS = (
    "accuracy",
    "macro_f1",
    "roc_auc",
    "mae",
    "within_one",
    "parameters",
    "train_seconds",
)


def model_card(
    run_dir: Path, config: ExperimentConfig, backend: str | None = None, classes: LabelSpace | None = None
) -> dict[str, Any]:
    """Name, run, what runs it (``backend``), its classes (default: those data.json records; none
    recorded: sentiment), config, test metrics and what they were measured on, package version and the
    training data's checksums, each saying what it is the digest of."""
    from imdb_sentiment.models.registry import get_model_class

    metrics = _optional_json(run_dir / "metrics.json")
    data = _optional_json(run_dir / "data.json")
    status = _optional_json(run_dir / "run.json")
    checksums = data.get("checksums", {})
    sizes = data.get("sizes") or {}
    if classes is None:
        try:
            classes = LabelSpace.from_json(data.get("classes"))
        except ValueError:  # damaged: the card does without, as with any other damaged file
            classes = None
    headline = HEADLINE_METRICS if classes is None or classes.size == 2 else HEADLINE_METRICS_MULTICLASS
    return {
        "name": config.model.name,
        "description": get_model_class(config.model.name).description,
        "run": run_dir.name,
        "trained": status.get("finished"),
        "backend": backend,
        "classes": classes.to_json() if classes is not None else None,
        "package_version": __version__,
        "headline_metrics": {key: metrics[key] for key in headline if key in metrics},
        "test_set": _test_set(metrics, sizes, config),
        "metrics": metrics,
        "training_data": {
            "source": data.get("source"),
            "format": data.get("format"),
            "sizes": sizes,
            # The reviews the model was trained on (order-independent content digest, data.json's
            # split_digests) and the whole train part of the source they were drawn from.
            "train_reviews_used": sizes.get("train"),
            "train_used_sha256": (data.get("split_digests") or {}).get("train"),
            "source_train_sha256": checksums.get("train.content_sha256"),
            "checksums": checksums,
        },
        "config": config.model_dump(mode="json"),
    }


def _test_set(metrics: dict[str, Any], sizes: dict[str, Any], config: ExperimentConfig) -> dict[str, Any]:
    """How many test reviews the metrics come from, and whether that is the whole test split or a sample
    (``data.test_limit``): a 500-review accuracy is not the 25,000-review one."""
    reviews = sizes.get("test")
    sample = config.data.test_limit is not None or metrics.get("full_test_set") is False
    described = f"{reviews:,} reviews" if isinstance(reviews, int) else "an unrecorded number of reviews"
    return {
        "reviews": reviews,
        "full_test_set": not sample,
        "description": f"a sample of {described} of the test split"
        if sample
        else f"the whole test split ({described})",
    }


def _optional_json(path: Path) -> dict[str, Any]:
    """A run file the card can do without (an exported run may lack metrics); damaged reads as absent."""
    try:
        return read_json(path)
    except UserError:
        return {}
