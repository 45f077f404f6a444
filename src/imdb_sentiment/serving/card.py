"""The model card ``GET /model`` returns and the page shows: what is served, how good it is, trained on what."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imdb_sentiment import __version__
from imdb_sentiment.config import ExperimentConfig

# metrics.json keys worth a glance on the page; /model returns the whole file.
HEADLINE_METRICS = ("accuracy", "f1", "roc_auc", "parameters", "train_seconds")


def model_card(run_dir: Path, config: ExperimentConfig) -> dict[str, Any]:
    """Name, run, config, test metrics, package version and the training data's checksums."""
    from imdb_sentiment.models.registry import get_model_class

    metrics = _optional_json(run_dir / "metrics.json")
    data = _optional_json(run_dir / "data.json")
    status = _optional_json(run_dir / "run.json")
    checksums = data.get("checksums", {})
    return {
        "name": config.model.name,
        "description": get_model_class(config.model.name).description,
        "run": run_dir.name,
        "trained": status.get("finished"),
        "package_version": __version__,
        "headline_metrics": {key: metrics[key] for key in HEADLINE_METRICS if key in metrics},
        "metrics": metrics,
        "training_data": {
            "source": data.get("source"),
            "format": data.get("format"),
            "sizes": data.get("sizes"),
            "train_content_sha256": checksums.get("train.content_sha256"),
            "checksums": checksums,
        },
        "config": config.model_dump(mode="json"),
    }


def _optional_json(path: Path) -> dict[str, Any]:
    """A run file the card can do without (an exported run may lack metrics); damaged reads as absent."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
