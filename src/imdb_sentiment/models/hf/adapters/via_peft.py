"""What the methods ``peft`` implements (LoRA, P-Tuning, Prompt Tuning) share: applying a peft config,
reloading a saved adapter with ``PeftModel``, saving with ``save_pretrained``."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    # peft reads transformers' deprecated `is_gradient_checkpointing` (transformers >= 5.2x warns on
    # every run); the warning is addressed to peft, not to our users.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def task_type(with_head: bool) -> Any:
    from peft import TaskType

    return TaskType.SEQ_CLS if with_head else TaskType.FEATURE_EXTRACTION


def apply_peft_config(backbone: nn.Module, config: Any) -> nn.Module:
    from peft import get_peft_model

    with _quiet_peft():
        return get_peft_model(backbone, config)


def load_peft_adapter(backbone: nn.Module, settings: Any, folder: Path) -> nn.Module:
    from peft import PeftModel

    with _quiet_peft():
        return PeftModel.from_pretrained(backbone, str(folder))


def save_peft_adapter(backbone: nn.Module, settings: Any, folder: Path) -> None:
    backbone.save_pretrained(str(folder))
