"""The contract every model follows (scikit-learn style: fit / predict_proba / save / load), and the
one record of what each model family can do (:class:`Capabilities`)."""

from __future__ import annotations

import json
import pickle
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.data.labels import SENTIMENT, LabelSpace
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import atomic_path, read_json

if TYPE_CHECKING:
    from imdb_sentiment.config import ExperimentConfig, TrainingConfig
    from imdb_sentiment.training.runtime import Runtime


class ModelParams(BaseModel):
    """Base of every model's ``Params``: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())


@dataclass
class FitContext:
    """Everything a model may use while fitting, besides its own params."""

    training: TrainingConfig
    seed: int = 42
    # Device / precision / threads, resolved once by the pipeline; PyTorch models resolve it from
    # ``training`` when a caller (a test, a notebook) gives none.
    runtime: Runtime | None = None
    run_dir: Path | None = None
    unsup: TextDataset | None = None
    resume: bool = False
    show_progress: bool = True
    # Extra hooks for the training loop (training/loop.py Callback), e.g. a tune trial's pruning.
    callbacks: list[Any] = field(default_factory=list)
    # Filled by the model: per-epoch history, best epoch etc. for metrics.json and plots.
    history: list[dict[str, float]] = field(default_factory=list)
    extra_metrics: dict[str, Any] = field(default_factory=dict)


ExplanationMethod = Literal["linear", "attention", "integrated-gradients", "occlusion"]


@dataclass(frozen=True)
class Capabilities:
    """What a model family is and can do, said once; the configure step, the pipeline, ``models``,
    the conformance checks (:mod:`imdb_sentiment.models.checks`), export and serving read it instead
    of testing class names or probing attributes. Override with ``dataclasses.replace`` in a subclass."""

    kind: str = "scikit-learn"  # shown by `imdb-sentiment models`
    needs_torch_runtime: bool = False  # training.device / precision / threads apply: checked before a run folder
    trains_with_loop: bool = False  # fitted by the shared loop (training/loop.py): history, checkpoints, launchers
    supports_resume: bool = False  # fit(..., context.resume) continues from the run folder's checkpoint
    weights_on_disk: bool = True  # save() writes what load() needs to predict the same again
    remote: bool = False  # predictions come from a server (an LLM endpoint): nothing local to count
    exportable_to_onnx: bool = False  # its network becomes an ONNX graph (export --onnx)
    explanation: ExplanationMethod | None = None  # how serving explains a prediction (None: it does not)
    # Kinds of network a training backend may drive (training/backends.py: "torch", "transformers");
    # none: the model fits itself and takes no backend.
    network_kinds: frozenset[str] = frozenset()


class SentimentModel(ABC):
    """A text classifier over two or more classes. Subclasses register with ``@register_model(name)``.

    The classes are the training split's (``train.classes``): ``fit`` records them in ``self.classes``
    (:meth:`learn_classes`), ``save`` writes them to model.json and ``load`` restores them before the
    weights, so a network is rebuilt with as many outputs as it was trained with. A folder saved before
    classes were recorded is the binary sentiment task."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[ModelParams]] = ModelParams
    capabilities: ClassVar[Capabilities] = Capabilities()
    description: ClassVar[str] = ""

    def __init__(self, params: ModelParams | dict[str, Any] | None = None) -> None:
        if params is None or isinstance(params, dict):
            params = self.Params.model_validate(params or {})
        self.params = params
        self.classes: LabelSpace = SENTIMENT

    @property
    def num_classes(self) -> int:
        return self.classes.size

    def learn_classes(self, train: TextDataset) -> None:
        """Take the task's classes from the training split; the first thing every ``fit`` does."""
        self.classes = train.classes

    def check_classes(self, classes: LabelSpace) -> None:
        """Refuse, in one line naming the field, settings that do not fit the data's classes (label words
        for another number of classes). The pipeline calls it once the data is read, before a run folder
        exists: the configure step cannot, since a table's classes are known only then."""

    # The configure step (models/configure.py) calls these after the schema has validated the config;
    # each raises UserError naming the field. None of them runs inside pydantic validation.
    @classmethod
    def config_defaults(cls, params: ModelParams) -> dict[str, dict[str, Any]]:
        """Defaults this model supplies for other config sections (e.g. a preset's
        ``{"training": {"backend": "trainer"}}``); keys the config sets itself win."""
        return {}

    @classmethod
    def check_config(cls, config: ExperimentConfig, params: ModelParams) -> None:
        """Pure cross-field checks against the whole experiment (no file or network access)."""
        from imdb_sentiment.training.backends import check_backend_supports

        check_backend_supports(config.training.backend, cls.name, cls.capabilities.network_kinds)

    @classmethod
    def torch_devices(cls, config: ExperimentConfig, params: ModelParams) -> dict[str, str]:
        """The torch devices a new run will use, by the config field that names each; the configure
        step checks they exist here before a run folder does (an ensemble lists its members')."""
        return {"training.device": config.training.device} if cls.capabilities.needs_torch_runtime else {}

    @classmethod
    def check_runnable(cls, config: ExperimentConfig, params: ModelParams) -> None:
        """Checks of this machine before a new run starts (files and folders exist, a server answers,
        the checkpoint fits ``max_length``...). Skipped for finished runs."""

    @classmethod
    def runnable_key(cls, config: ExperimentConfig, params: ModelParams) -> Hashable | None:
        """What :meth:`check_runnable`'s outcome depends on, when that is less than the whole config: a
        command that configures many runs (a suite) checks each distinct key once. None: every time."""
        return None

    @abstractmethod
    def fit(self, train: TextDataset, valid: TextDataset, context: FitContext) -> SentimentModel: ...

    @abstractmethod
    def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        """Return an (n, num_classes) array of class probabilities, columns in ``self.classes`` order
        (sentiment: column 1 is P(positive))."""

    def predict(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        return self.predict_proba(texts, batch_size).argmax(axis=1)

    def known_token_share(self, texts: list[str]) -> np.ndarray | None:
        """Share (0..1, one float per text) of each text's tokens that the fitted model knows, by its
        own tokenization; a text with no tokens at all counts as 0. A text at 0 gives the model
        nothing to go on: its prediction is the model's prior, however confident it looks.

        None means this model cannot tell (the default; e.g. a byte-level tokenizer never meets an
        unknown token).
        """
        return None

    def prediction_metrics(
        self, texts: list[str], labels: np.ndarray, probabilities: np.ndarray
    ) -> dict[str, Any]:
        """Extra test metrics only this model can compute from the predictions it just made (an LLM
        scorer's raw vs calibrated accuracy, a prompted model's coverage); merged into metrics.json."""
        return {}

    @abstractmethod
    def num_parameters(self) -> int: ...

    def device_used(self) -> str:
        """The device the fitted model computed on, for metrics.json."""
        return "cpu"

    def num_trainable_parameters(self) -> int:
        """Parameters the fit changed (all of them, unless a model freezes some)."""
        return self.num_parameters()

    def train_examples_used(self, available: int) -> int:
        """Training reviews the fit read, of the ``available`` ones (all, unless a model samples)."""
        return available

    def saved_sizes(self, directory: Path) -> dict[str, float]:
        """Sizes (MB) of notable parts of a saved model folder, e.g. an adapter; recorded in metrics.json."""
        return {}

    @abstractmethod
    def save_weights(self, directory: Path) -> None: ...

    @abstractmethod
    def load_weights(self, directory: Path) -> None: ...

    def save(self, directory: Path) -> None:
        """Write the model to ``directory`` (which the caller renames into place atomically)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "model.json").write_text(
            json.dumps(
                {
                    "name": self.name,
                    "params": self.params.model_dump(mode="json"),
                    "classes": self.classes.to_json(),
                },
                indent=2,
            )
        )
        self.save_weights(directory)

    @classmethod
    def load(cls, directory: Path) -> SentimentModel:
        from imdb_sentiment.models.registry import get_model_class

        meta_file = Path(directory) / "model.json"
        if not meta_file.is_file():
            raise UserError(f"{directory} holds no saved model (model.json missing).")
        try:
            meta = read_json(meta_file, "the saved model is damaged: train it again")
            model = get_model_class(meta["name"])(meta["params"])
            model.classes = LabelSpace.from_json(meta.get("classes"))
            with warnings.catch_warnings():  # torch's note on a file's pickle protocol says nothing useful here
                warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
                model.load_weights(Path(directory))
        except UserError:
            raise
        except pickle.UnpicklingError:  # torch.load(weights_only=True) met something that is not a tensor
            raise UserError(
                f"The saved model in {directory} holds pickled Python objects, not only tensors: refused, since "
                "loading them could run code. Use a model saved by imdb-sentiment (train it again)."
            ) from None
        except Exception as exc:  # any unreadable weight file: say so instead of a traceback
            raise UserError(
                f"The saved model in {directory} cannot be loaded ({type(exc).__name__}: {first_line(exc)}). "
                "It is corrupt or from an incompatible version; train it again."
            ) from None
        return model


def saved_model_error(directory: Path, detail: str) -> UserError:
    """What a model's ``load_weights`` raises for files it cannot trust."""
    return UserError(
        f"The saved model in {directory} cannot be loaded: {detail}. It is corrupt, tampered with or from "
        "an incompatible version; train it again."
    )


def save_arrays(directory: Path, arrays: dict[str, Any]) -> None:
    """Each array as ``<name>.npy``, written atomically, never pickled (what :func:`load_array` reads)."""
    for name, array in arrays.items():
        with atomic_path(directory / f"{name}.npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.asarray(array), allow_pickle=False)


def load_array(directory: Path, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A plain numeric array of ``shape`` from ``<name>.npy``; pickled (object) arrays are refused, never
    unpickled."""
    path = directory / f"{name}.npy"
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError:  # what a pickled object array or a pickle file gives (numpy's text suggests unpickling)
        raise saved_model_error(
            directory, f"{path.name} is not a plain numeric array (pickled or damaged data)"
        ) from None
    if isinstance(array, np.lib.npyio.NpzFile):  # an .npz archive under the .npy name
        array.close()
        raise saved_model_error(directory, f"{path.name} is an .npz archive, not one array")
    if array.dtype.kind not in "iuf" or array.shape != shape:
        raise saved_model_error(
            directory, f"{path.name} holds {array.dtype} {array.shape}, expected numbers of shape {shape}"
        )
    # No saved weight is NaN or infinite; one that is would give NaN probabilities, a library's traceback
    # or, inside gensim's compiled loops, an out-of-bounds read.
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise saved_model_error(directory, f"{path.name} holds NaN or infinite numbers")
    return array


def load_classes(directory: Path, num_classes: int) -> np.ndarray:
    """``classes.npy``: a classifier's classes, which must be 0..num_classes-1 (model.json's classes)."""
    classes = load_array(directory, "classes", (num_classes,))
    if classes.tolist() != list(range(num_classes)):
        raise saved_model_error(directory, f"classes.npy holds {classes.tolist()}, not 0..{num_classes - 1}")
    return classes


def first_line(exc: BaseException, limit: int = 200) -> str:
    """A library's exception text as one plain line: ANSI styling removed, the first non-empty line, cut."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(exc))
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."
