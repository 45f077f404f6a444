"""``ensemble``: several fitted models combined into one, by averaging or by a stacker.

Members are finished run folders (``{run: runs/nbsvm-...}``) or models trained on the fly inside the
ensemble's own fit (``{model: fasttext, params: {...}, training: {...}}``), all on the ensemble's
train / validation split. ``combine``:

- ``mean``: the average of the members' probabilities;
- ``stacker``: a logistic regression over the members' log-odds (two classes; for K > 2 classes a
  multinomial one over their K log-probabilities each), fitted on their predictions for the
  *validation* split only (never the test split). Those predictions must be held out: a member refit
  on train + validation (``refit_on_train_and_valid``) is refused, and so is a run folder trained on
  another split (its ``data.json`` split digests, or for older runs its data settings, must match).
  Word and transformer members pick their best epoch on the same validation split, so the stacker's
  view of them is slightly optimistic; with two or three members and one weight each this costs little.

Every member must predict the ensemble's classes, by name and in order: run-folder members' recorded
classes are compared with each other and their data settings with the ensemble's (configure step), and
with the data's classes once it is read (``check_classes``), all before a run folder exists.

Saved as JSON (``ensemble.json``): the stacker's weights (two classes: one per member and a number
for the intercept, as ever; K classes: K rows of K weights per member, K intercepts), run-folder
members by path and one sha256 of their saved model's files (the digest of its manifest's file list;
loading checks the member's manifest and refuses a member that changed since), on-the-fly members
saved inside the ensemble under ``members/<i>/`` like any model. Nothing is pickled.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.special import softmax

from imdb_sentiment.config import TrainingConfig, validated
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.data.labels import LabelSpace
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import read_json, write_json_atomic
from imdb_sentiment.models.base import Capabilities, FitContext, ModelParams, SentimentModel
from imdb_sentiment.models.configure import check_objective
from imdb_sentiment.models.ensemble_members import check_run_members, member_digest, recorded_classes, shown
from imdb_sentiment.models.registry import get_model_class, register_model
from imdb_sentiment.runs import RunFolder
from imdb_sentiment.training.backends import check_backend_supports

if TYPE_CHECKING:
    from imdb_sentiment.config import ExperimentConfig

logger = logging.getLogger("imdb_sentiment.models.ensemble")

FILE_NAME = "ensemble.json"
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


def log_odds(probabilities: np.ndarray) -> np.ndarray:
    positive = np.clip(probabilities[:, 1], EPSILON, 1 - EPSILON)
    return np.log(positive / (1 - positive))


def stacker_features(probabilities: list[np.ndarray]) -> np.ndarray:
    """The stacker's inputs: each member's log-odds for two classes (as ever); for K > 2 its K
    log-probabilities, whose K - 1 differences are the multinomial generalisation of the log-odds."""
    if probabilities[0].shape[1] == 2:
        return np.column_stack([log_odds(p) for p in probabilities])
    return np.column_stack([np.log(np.clip(p, EPSILON, 1.0)) for p in probabilities])


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
        # Stacker coefficients: one per member (two classes), or (K, K x members) for K classes.
        self.weights: np.ndarray | None = None
        self.intercept: float | np.ndarray = 0.0

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
        check_run_members(config, params)

    def check_classes(self, classes: LabelSpace) -> None:
        """Run members must predict the data's classes, in its order (their recorded classes); members
        trained on the fly learn them, but their own settings may need them (label words)."""
        for index, spec in enumerate(self.params.members):
            if spec.run is not None:
                where = f"model.params.members.{index}.run"
                recorded = recorded_classes(Path(spec.run).expanduser(), where)
                if recorded.names != classes.names:
                    raise UserError(
                        f"{where}: {spec.run} predicts the classes {shown(recorded)}, the data has "
                        f"{shown(classes)}; train the member on this data."
                    )
                continue
            try:
                get_model_class(spec.model)(spec.params).check_classes(classes)
            except UserError as exc:
                raise UserError(f"model.params.members.{index}: {exc}") from None

    # ------------------------------------------------------------------------------------- fitting
    def fit(self, train: TextDataset, valid: TextDataset, context: FitContext) -> EnsembleModel:
        self.learn_classes(train)
        split = {"train": train.content_digest(), "valid": valid.content_digest()}
        self.members, self.member_records = [], []
        for index, spec in enumerate(self.params.members):
            if spec.run is not None:
                member, record = self._load_run_member(Path(spec.run).expanduser(), split, index)
            else:
                member, record = self._train_member(spec, index, train, valid, context)
            if member.classes.names != self.classes.names:  # configure compared run members' data settings
                raise UserError(
                    f"model.params.members.{index}: the member predicts the classes {shown(member.classes)}, "
                    f"the data has {shown(self.classes)}; train the member on this data."
                )
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

        features = stacker_features(probabilities)
        # lbfgs (the default): for K > 2 classes the multinomial loss, one row of weights per class.
        stacker = LogisticRegression(C=self.params.stacker_C)
        # An honest estimate: the stacker's own (stratified) 5-fold CV, when every class has 5 examples.
        if min(np.bincount(labels, minlength=self.num_classes)) >= 5:
            context.extra_metrics["stacker_cv_accuracy"] = float(cross_val_score(stacker, features, labels).mean())
        stacker.fit(features, labels)
        if self.num_classes == 2:
            self.weights, self.intercept = stacker.coef_[0].astype(float), float(stacker.intercept_[0])
        else:
            self.weights, self.intercept = stacker.coef_.astype(float), stacker.intercept_.astype(float)

    def _combine(self, probabilities: list[np.ndarray]) -> np.ndarray:
        if self.num_classes > 2:
            if self.params.combine == "mean":
                return np.mean(probabilities, axis=0)
            assert self.weights is not None, "fit or load the ensemble first"
            return softmax(stacker_features(probabilities) @ self.weights.T + self.intercept, axis=1)
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
        if not texts:  # the stacker (scikit-learn) refuses an empty batch; no texts, no rows
            return np.zeros((0, self.num_classes))
        return self._combine([member.predict_proba(texts, batch_size) for member in self.members])

    def device_used(self) -> str:
        return ",".join(sorted({member.device_used() for member in self.members}))

    def num_parameters(self) -> int:
        return sum(member.num_parameters() for member in self.members) + self._combiner_parameters()

    def num_trainable_parameters(self) -> int:
        return sum(member.num_trainable_parameters() for member in self.members) + self._combiner_parameters()

    def _combiner_parameters(self) -> int:
        if self.num_classes == 2:  # counted as ever: a weight per member and an intercept
            return len(self.members) + 1
        return 0 if self.weights is None else int(self.weights.size + np.size(self.intercept))

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
                "intercept": self.intercept
                if np.isscalar(self.intercept)
                else np.asarray(self.intercept).tolist(),
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
        for index, member in enumerate(self.members):
            if member.classes.names != self.classes.names:
                raise UserError(
                    f"ensemble member {index} predicts the classes {shown(member.classes)}, the ensemble "
                    f"{shown(self.classes)}; fit the ensemble again."
                )
        self.member_records = records
        self.weights, self.intercept = None, 0.0
        if data.get("weights") is not None:
            self._load_stacker(directory, data.get("weights"), data.get("intercept", 0.0))

    def _load_stacker(self, directory: Path, weights: Any, intercept: Any) -> None:
        """The stacker's weights, in the shapes this ensemble's members and classes need."""
        members, classes = len(self.members), self.num_classes
        shapes = ((members,), ()) if classes == 2 else ((classes, classes * members), (classes,))
        try:
            self.weights, self.intercept = np.asarray(weights, dtype=float), np.asarray(intercept, dtype=float)
            fits = (self.weights.shape, self.intercept.shape) == shapes
        except (TypeError, ValueError):  # ragged or not numbers
            fits = False
        if not fits:
            raise UserError(
                f"{directory / FILE_NAME}: the stacker's weights do not fit {members} members and {classes} "
                "classes; it is damaged or from another ensemble: fit the ensemble again."
            )
        if classes == 2:
            self.intercept = float(self.intercept)


def _is_plain(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None
