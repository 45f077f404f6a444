"""What an ensemble checks of its run-folder members before a run folder of its own exists: they are
finished runs, trained on the ensemble's train / validation split, predicting the same classes in the
same order; and the digest that ties the ensemble to each member's saved model files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from imdb_sentiment.config import read_yaml
from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import digest_of, file_digests, read_json
from imdb_sentiment.runs import RunFolder

if TYPE_CHECKING:
    from imdb_sentiment.config import ExperimentConfig
    from imdb_sentiment.models.ensemble import EnsembleParams

# The data settings that decide which reviews train and validate (for runs without split digests), and
# target / labels: which classes they have, in which order.
SPLIT_SETTINGS = ("path", "format", "test_path", "text_column", "label_column", "id_column", "encoding",
                  "clean", "seed", "valid_fraction", "limit", "target", "labels")  # fmt: skip
# What a run from before a setting existed used: the setting's default, not the ensemble's own value.
SETTINGS_BEFORE_THEY_EXISTED: dict[str, Any] = {"target": "sentiment", "labels": None}


def check_run_members(config: ExperimentConfig, params: EnsembleParams) -> None:
    """Each run member: a finished run, on the ensemble's split and classes, held out for a stacker."""
    first: tuple[int, LabelSpace] | None = None  # the first run member's classes
    for index, member in enumerate(params.members):
        if member.run is None:
            continue
        where = f"model.params.members.{index}.run"
        run_dir = Path(member.run).expanduser()
        member_config = _run_config(run_dir, where)
        classes = recorded_classes(run_dir, where)
        if first is not None and classes.names != first[1].names:
            raise UserError(
                f"{where}: {run_dir} predicts the classes {shown(classes)}, member {first[0]} predicts "
                f"{shown(first[1])}: every member needs the same classes in the same order."
            )
        first = first or (index, classes)
        # Equal data settings (target and labels among them) give the ensemble the member's classes.
        problem = _split_mismatch(member_config.get("data") or {}, config.data.model_dump(mode="json"))
        if problem:
            raise UserError(f"{where}: {run_dir} was trained on another train/validation split ({problem}).")
        refit = (member_config.get("model") or {}).get("params", {}).get("refit_on_train_and_valid")
        if params.combine == "stacker" and refit:
            raise UserError(
                f"{where}: {run_dir} was refit on train + validation, so its validation predictions are not "
                "held out; retrain it with refit_on_train_and_valid: false, or combine: mean."
            )


def member_digest(run: RunFolder) -> str:
    """One sha256 of a member run's model files: its manifest's list once the files are checked
    against it (a model/ of another run is refused there), or the files themselves for older runs."""
    manifest = run.verify_model()
    return digest_of(manifest["files"] if manifest is not None else file_digests(run.model_dir))


def recorded_classes(run_dir: Path, where: str) -> LabelSpace:
    """The classes a run's saved model predicts (none recorded: a binary sentiment run from before)."""
    meta = read_json(run_dir / "model" / "model.json", f"{where} must be a finished run folder")
    try:
        return LabelSpace.from_json(meta.get("classes") if isinstance(meta, dict) else None)
    except ValueError as exc:
        raise UserError(f"{where}: {run_dir / 'model' / 'model.json'} has unreadable classes ({exc}).") from None


def shown(classes: LabelSpace) -> str:
    """Class names for a one-line message."""
    names = ", ".join(classes.names[:10]) + (", ..." if classes.size > 10 else "")
    return f"[{names}]"


def _run_config(run_dir: Path, where: str) -> dict[str, Any]:
    if not (run_dir / "model" / "model.json").is_file() or not (run_dir / "config.yaml").is_file():
        raise UserError(f"{where}: {run_dir} is not a finished run folder (config.yaml and model/ needed)")
    try:
        return read_yaml(run_dir / "config.yaml")
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def _split_mismatch(member_data: dict[str, Any], own_data: dict[str, Any]) -> str:
    """'' when the two data sections give the same train / validation split, else what differs."""
    for key in SPLIT_SETTINGS:
        theirs = member_data.get(key, SETTINGS_BEFORE_THEY_EXISTED.get(key, own_data.get(key)))
        ours = own_data.get(key)
        if key == "path" and theirs and ours:
            theirs, ours = str(Path(theirs).expanduser().resolve()), str(Path(ours).expanduser().resolve())
        if theirs != ours:
            return f"data.{key} {theirs!r} vs {ours!r}"
    return ""
