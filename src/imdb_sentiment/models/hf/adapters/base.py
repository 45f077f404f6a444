"""The adapter-method registry, shaped like peft's ``register_peft_method``: one
:class:`AdapterMethod` record per method (its settings class, how it is applied, saved, reloaded and
merged, the positions it takes, which architectures it supports), registered by the method's own
module. The rest of the tree asks the record; nobody branches on the method's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, SerializeAsAny, WrapValidator
from pydantic_core import PydanticCustomError
from torch import nn


class AdapterSettings(BaseModel):
    """Base of every method's settings (the ``adapter:`` section); ``method`` names the record."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: str


@dataclass(frozen=True)
class AdapterTarget:
    """What a new adapter is applied to: the checkpoint's architecture, whether the checkpoint's own
    classifier is used (peft's SEQ_CLS task then trains it too) and where its tokenizer lives."""

    model_type: str
    with_head: bool
    tokenizer_source: str | None = None


def _takes_no_positions(settings: AdapterSettings) -> int:
    return 0


def _supports_any(model_type: str) -> None:
    return None


@dataclass(frozen=True)
class AdapterMethod:
    """One parameter-efficient method. ``apply`` freezes the backbone and returns it (or its wrapper)
    with a new adapter; ``load`` does the same with the adapter saved in ``folder``; ``save`` writes
    the adapter's weights only into ``folder``; ``merge`` folds it into the base weights (None: it
    cannot be); ``positions_taken``: input positions its virtual tokens use up; ``check_support``
    raises a UserError for a ``model_type`` it cannot adapt."""

    settings: type[AdapterSettings]
    apply: Callable[[nn.Module, Any, AdapterTarget], nn.Module]
    load: Callable[[nn.Module, Any, Path], nn.Module]
    save: Callable[[nn.Module, Any, Path], None]
    merge: Callable[[nn.Module], nn.Module] | None = None
    positions_taken: Callable[[Any], int] = _takes_no_positions
    check_support: Callable[[str], None] = _supports_any
    # ``pooling: model`` reads the checkpoint's own classifier: only a method that trains it may use it
    # (a prompt method would also make it read a virtual token as [CLS]).
    trains_checkpoint_head: bool = False
    # Usable under llm-sft's label-word network of a causal LM (tested there).
    for_causal_lm: bool = False

    @property
    def name(self) -> str:
        return self.settings.model_fields["method"].default


ADAPTER_METHODS: dict[str, AdapterMethod] = {}


def register_adapter_method(method: AdapterMethod) -> AdapterMethod:
    """Make ``method`` available as ``adapter: {method: <name>, ...}`` (its settings' ``method`` default)."""
    name = method.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"{method.settings.__name__}.method needs a default: the method's name")
    if name in ADAPTER_METHODS and ADAPTER_METHODS[name] != method:
        raise ValueError(f"adapter method {name!r} is registered already")
    ADAPTER_METHODS[name] = method
    return method


def method_of(settings: AdapterSettings) -> AdapterMethod:
    return ADAPTER_METHODS[settings.method]


def _validate(value: Any, handler: Any) -> AdapterSettings:
    """Pick the settings class by ``method`` at validation time, so methods registered after the
    params classes were built (a plug-in, a test) validate too."""
    if isinstance(value, AdapterSettings):
        return value
    known = ", ".join(sorted(ADAPTER_METHODS))
    method = value.get("method") if isinstance(value, dict) else None
    if method not in ADAPTER_METHODS:
        raise PydanticCustomError(
            "adapter_method",
            "method must be one of {known} (got {method})",
            {"known": known, "method": repr(method)},
        )
    return ADAPTER_METHODS[method].settings.model_validate(value)


# The ``adapter:`` field's type: any registered method's settings, serialised with all their fields.
AdapterConfig = Annotated[SerializeAsAny[AdapterSettings], WrapValidator(_validate)]
