"""``ensemble``: several fitted models combined into one, by averaging or by a stacker.

Members are finished run folders (``{run: runs/nbsvm-...}``) or models trained on the fly inside the
ensemble's own fit (``{model: fasttext, params: {...}, training: {...}}``), all on the ensemble's
train / validation split. ``combine``:

- ``mean``: the average of the members' probabilities;
- ``stacker``: a logistic regression over the members' log-odds, fitted on their predictions for the
  *validation* split only (never the test split). Those predictions must be held out: a member refit
  on train + validation (``refit_on_train_and_valid``) is refused, and so is a run folder trained on
  another split (its ``data.json`` split digests, or for older runs its data settings, must match).
  Word and transformer members pick their best epoch on the same validation split, so the stacker's
  view of them is slightly optimistic; with two or three members and one weight each this costs little.

Saved as JSON (``ensemble.json``): the stacker's weights, run-folder members by path and one sha256 of
their saved model's files (the digest of its manifest's file list; loading checks the member's
manifest and refuses a member that changed since), on-the-fly members saved inside the
ensemble under ``members/<i>/`` like any model. Nothing is pickled.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from imdb_sentiment.config import TrainingConfig, read_yaml, validated
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import digest_of, file_digests, read_json, write_json_atomic
from imdb_sentiment.models.base import Capabilities, FitContext, ModelParams, SentimentModel
from imdb_sentiment.models.configure import check_objective
from imdb_sentiment.models.registry import get_model_class, register_model
from imdb_sentiment.runs import RunFolder
from imdb_sentiment.training.backends import check_backend_supports

if TYPE_CHECKING:
    from imdb_sentiment.config import ExperimentConfig

logger = logging.getLogger("imdb_sentiment.models.ensemble")

FILE_NAME = "ensemble.json"
# The data settings that decide which reviews train and validate (for runs without split digests).
SPLIT_SETTINGS = ("path", "format", "test_path", "text_column", "label_column", "id_column", "encoding",
                  "clean", "seed", "valid_fraction", "limit")  # fmt: skip
EPSILON = 1e-6  # probabilities are clipped to [EPSILON, 1 - EPSILON] before taking log-odds


class MemberSpec(BaseModel):
    """One member: a finished run folder, or a registered model trained inside the ensemble's fit."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    run: str | None = Field(None, description="A finished run folder whose saved model is a member.")
    model: str | None = Field(None, description="A registered model trained on the fly.")
    params: dict[str, Any] = Field(default_factory=dict, description="The on-the-fly model's params.")
    training: dict[str, Any] = Field(
        default_factory=dict, description="Changes to the ensemble's training section for this member."
    )

    @model_validator(mode="after")
    def _one_source(self) -> MemberSpec:
        if (self.run is None) == (self.model is None):
            raise ValueError("give either 'run' (a run folder) or 'model' (a model to train), not both")
        if self.run is not None and (self.params or self.training):
            raise ValueError("a 'run' member is used as trained; params and training belong to 'model' members")
        return self


class EnsembleParams(ModelParams):
    members: list[MemberSpec] = Field(min_length=2, description="Run folders or models to train (>= 2).")
    combine: Literal["mean", "stacker"] = Field(
        "stacker", description="mean: average probabilities; stacker: logistic regression on validation."
    )
    stacker_C: float = Field(1.0, gt=0.0, description="Inverse regularisation of the stacker.")


def member_digest(run: RunFolder) -> str:
    """One sha256 of a member run's model files: its manifest's list once the files are checked
    against it (a model/ of another run is refused there), or the files themselves for older runs."""
    manifest = run.verify_model()
    return digest_of(manifest["files"] if manifest is not None else file_digests(run.model_dir))


def log_odds(probabilities: np.ndarray) -> np.ndarray:
    positive = np.clip(probabilities[:, 1], EPSILON, 1 - EPSILON)
    return np.log(positive / (1 - positive))


@register_model("ensemble")
class EnsembleModel(SentimentModel):
    Params = EnsembleParams
    params: EnsembleParams
    description = "Ensemble of run folders / models: mean probability or a stacker fitted on validation."

    # Its members' own capabilities decide their devices (torch_devices) and explanations (none for now).
    capabilities = Capabilities(kind="ensemble")

    def __init__(self, params: EnsembleParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.members: list[SentimentModel] = []
        self.member_records: list[dict[str, Any]] = []  # what ensemble.json says about each member
        self.weights: np.ndarray | None = None  # stacker coefficients, one per member
        self.intercept = 0.0

    # ------------------------------------------------------------------------------- config checks
    @classmethod
    def check_config(cls, config: ExperimentConfig, params: EnsembleParams) -> None:  # type: ignore[override]
        super().check_config(config, params)
        for index, member in enumerate(params.members):
            where = f"model.params.members.{index}"
            if member.model is None:
                continue
            if member.model == cls.name:
                raise UserError(f"{where}.model: an ensemble cannot contain another ensemble")
            try:
                member_class = get_model_class(member.model)
            except UserError as exc:
                raise UserError(f"{where}.model: {exc}") from None
            member_params = validated(member_class.Params, member.params, f"{where}.params")
            training = validated(
                TrainingConfig, {**config.training.model_dump(), **member.training}, f"{where}.training"
            )
            try:
                check_backend_supports(training.backend, member.model, member_class.capabilities.network_kinds)
            except UserError as exc:
                raise UserError(f"{where}.{exc}") from None
            check_objective(training.objective.name, f"{where}.training.objective.name")
            if params.combine == "stacker" and getattr(member_params, "refit_on_train_and_valid", False):
                raise UserError(
                    f"{where}.params.refit_on_train_and_valid: a stacker member must not see the validation "
                    "split; set it to false, or combine: mean."
                )

    @classmethod
    def torch_devices(cls, config: ExperimentConfig, params: EnsembleParams) -> dict[str, str]:  # type: ignore[override]
        """The device of every member trained on the fly that runs on torch (run members predict on
        the best device here, whatever they trained on)."""
        devices = {}
        for index, member in enumerate(params.members):
            if member.model is not None and get_model_class(member.model).capabilities.needs_torch_runtime:
                field = (
                    f"model.params.members.{index}.training.device"
                    if "device" in member.training
                    else "training.device"
                )
                devices[field] = str(member.training.get("device", config.training.device))
        return devices

    @classmethod
    def check_runnable(cls, config: ExperimentConfig, params: EnsembleParams) -> None:  # type: ignore[override]
        for index, member in enumerate(params.members):
            if member.run is None:
                continue
            where = f"model.params.members.{index}.run"
            run_dir = Path(member.run).expanduser()
            member_config = _run_config(run_dir, where)
            problem = _split_mismatch(member_config.get("data") or {}, config.data.model_dump(mode="json"))
            if problem:
                raise UserError(f"{where}: {run_dir} was trained on another train/validation split ({problem}).")
            refit = (member_config.get("model") or {}).get("params", {}).get("refit_on_train_and_valid")
            if params.combine == "stacker" and refit:
                raise UserError(
                    f"{where}: {run_dir} was refit on train + validation, so its validation predictions are not "
                    "held out; retrain it with refit_on_train_and_valid: false, or combine: mean."
                )

    # ------------------------------------------------------------------------------------- fitting
    def fit(self, train: TextDataset, valid: TextDataset, context: FitContext) -> EnsembleModel:
        split = {"train": train.content_digest(), "valid": valid.content_digest()}
        self.members, self.member_records = [], []
        for index, spec in enumerate(self.params.members):
            if spec.run is not None:
                member, record = self._load_run_member(Path(spec.run).expanduser(), split, index)
            else:
                member, record = self._train_member(spec, index, train, valid, context)
            self.members.append(member)
            self.member_records.append(record)
        valid_probabilities = [member.predict_proba(valid.texts) for member in self.members]
        for record, probabilities in zip(self.member_records, valid_probabilities, strict=True):
            record["valid_accuracy"] = float((probabilities.argmax(1) == valid.labels).mean())
        if self.params.combine == "stacker":
            self._fit_stacker(valid_probabilities, valid.labels, context)
        combined = self._combine(valid_probabilities)
        context.extra_metrics["valid_accuracy"] = float((combined.argmax(1) == valid.labels).mean())
        context.extra_metrics["members"] = [
            {key: value for key, value in record.items() if key != "folder"} for record in self.member_records
        ]
        return self

    def _load_run_member(self, run_dir: Path, split: dict[str, str], index: int):
        where = f"model.params.members.{index}.run"
        summary = read_json(run_dir / "data.json", f"{where} must be a finished run folder")
        digests = summary.get("split_digests")
        if digests is not None and digests != split:
            raise UserError(
                f"{where}: {run_dir} was trained on another train/validation split (its split digests differ)."
            )
        if digests is None:
            logger.warning(
                "%s predates split digests; its data settings match, its reviews were not checked", run_dir
            )
        run = RunFolder(run_dir)
        digest = member_digest(run)
        member = SentimentModel.load(run.model_dir)
        record = {"run": str(run_dir.resolve()), "model": member.name, "model_files_sha256": digest}
        return member, record

    def _train_member(self, spec: MemberSpec, index: int, train: TextDataset, valid: TextDataset,
                      context: FitContext):  # fmt: skip
        assert spec.model is not None
        training = validated(
            TrainingConfig,
            {**context.training.model_dump(), **spec.training},
            f"model.params.members.{index}.training",
        )
        member_context = FitContext(
            training=training,
            seed=context.seed,
            runtime=None,  # resolved from the member's own training section
            run_dir=context.run_dir / "members" / str(index) if context.run_dir is not None else None,
            unsup=context.unsup,
            show_progress=context.show_progress,
        )
        logger.info("ensemble member %d: training %s", index, spec.model)
        member = get_model_class(spec.model)(spec.params).fit(train, valid, member_context)
        record = {"model": spec.model, "folder": f"members/{index}",
                  "details": {k: v for k, v in member_context.extra_metrics.items() if _is_plain(v)}}  # fmt: skip
        return member, record

    def _fit_stacker(self, probabilities: list[np.ndarray], labels: np.ndarray, context: FitContext) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_score

        features = np.column_stack([log_odds(p) for p in probabilities])
        stacker = LogisticRegression(C=self.params.stacker_C)
        if min(np.bincount(labels, minlength=2)) >= 5:  # an honest estimate: the stacker's own 5-fold CV
            context.extra_metrics["stacker_cv_accuracy"] = float(cross_val_score(stacker, features, labels).mean())
        stacker.fit(features, labels)
        self.weights, self.intercept = stacker.coef_[0].astype(float), float(stacker.intercept_[0])

    def _combine(self, probabilities: list[np.ndarray]) -> np.ndarray:
        if self.params.combine == "mean":
            positive = np.mean([p[:, 1] for p in probabilities], axis=0)
        else:
            assert self.weights is not None, "fit or load the ensemble first"
            score = np.column_stack([log_odds(p) for p in probabilities]) @ self.weights + self.intercept
            positive = 1 / (1 + np.exp(-score))
        return np.column_stack([1 - positive, positive])

    # ---------------------------------------------------------------------------------- prediction
    def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        assert self.members, "fit or load the ensemble first"
        return self._combine([member.predict_proba(texts, batch_size) for member in self.members])

    def device_used(self) -> str:
        return ",".join(sorted({member.device_used() for member in self.members}))

    def num_parameters(self) -> int:
        return sum(member.num_parameters() for member in self.members) + len(self.members) + 1

    def num_trainable_parameters(self) -> int:
        return sum(member.num_trainable_parameters() for member in self.members) + len(self.members) + 1

    # -------------------------------------------------------------------------------- save / load
    def save_weights(self, directory: Path) -> None:
        for member, record in zip(self.members, self.member_records, strict=True):
            if "folder" in record:
                member.save(directory / record["folder"])
        write_json_atomic(
            directory / FILE_NAME,
            {
                "combine": self.params.combine,
                "weights": None if self.weights is None else self.weights.tolist(),
                "intercept": self.intercept,
                "members": self.member_records,
            },
        )

    def load_weights(self, directory: Path) -> None:
        data = read_json(directory / FILE_NAME, "the saved ensemble is damaged: train it again")
        records = data.get("members")
        if not isinstance(records, list) or len(records) != len(self.params.members):
            raise UserError(f"{directory / FILE_NAME} does not list this ensemble's members; retrain it.")
        self.members = []
        for index, record in enumerate(records):
            if "folder" in record:
                self.members.append(SentimentModel.load(directory / record["folder"]))
                continue
            run = RunFolder(Path(record["run"]))
            if not run.model_dir.is_dir():
                raise UserError(
                    f"ensemble member {index}: {run.model_dir} is gone; the ensemble needs its run folder."
                )
            if "model_files_sha256" not in record:
                raise UserError(
                    f"{directory / FILE_NAME} records its members in an older format (no model_files_sha256): "
                    "fit the ensemble again."
                )
            try:
                digest = member_digest(run)
            except UserError as exc:
                raise UserError(f"ensemble member {index}: {exc}") from None
            if digest != record["model_files_sha256"]:
                raise UserError(
                    f"ensemble member {index}: {run.model_dir} changed since the ensemble was fitted "
                    "(sha256 differs); fit the ensemble again."
                )
            self.members.append(SentimentModel.load(run.model_dir))
        self.member_records = records
        weights = data.get("weights")
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        self.intercept = float(data.get("intercept", 0.0))


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
        theirs, ours = member_data.get(key, own_data.get(key)), own_data.get(key)
        if key == "path" and theirs and ours:
            theirs, ours = str(Path(theirs).expanduser().resolve()), str(Path(ours).expanduser().resolve())
        if theirs != ours:
            return f"data.{key} {theirs!r} vs {ours!r}"
    return ""


def _is_plain(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None
