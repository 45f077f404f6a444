"""Export a finished run for serving: ``--merge`` folds a LoRA adapter into its base weights, giving
an ordinary run folder (no adapter, no extra latency) that predicts the same."""

from __future__ import annotations

import shutil
from pathlib import Path

from imdb_sentiment.config import build_config, dump_config, read_yaml
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import ensure_writable_dir, write_text_atomic
from imdb_sentiment.models.base import SentimentModel
from imdb_sentiment.runs import check_run_dir, now_utc, save_model_atomically, write_status

COPIED = ("metrics.json", "data.json", "environment.json", "predictions.csv")


def export_merged(run_dir: Path, output: Path | None = None) -> Path:
    run_dir = check_run_dir(Path(run_dir))
    config = build_config(read_yaml(run_dir / "config.yaml"), for_training=False)
    if not config.model.params.get("adapter"):
        raise UserError(f"{run_dir} has no adapter to merge (model.params.adapter is not set).")
    model = SentimentModel.load(run_dir / "model")
    merged_model = getattr(model, "merged", None)
    if merged_model is None:
        raise UserError(f"{config.model.name} models cannot merge an adapter.")
    merged = merged_model()
    target = Path(output) if output is not None else run_dir.with_name(run_dir.name + "-merged")
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target} exists and is not empty; pass another --output.")
    ensure_writable_dir(target)
    raw = config.model_dump(mode="json")
    raw["model"]["params"]["adapter"] = None
    write_text_atomic(target / "config.yaml", dump_config(build_config(raw, for_training=False)))
    for name in COPIED:  # the merged model predicts what the run predicted: its results still hold
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, target / name)
    save_model_atomically(merged, target)
    write_status(target, "completed", finished=now_utc(), exported_from=str(run_dir), export="merge")
    return target
