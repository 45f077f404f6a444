"""One runtime, one meaning of 'auto'."""

from __future__ import annotations

import pytest
import torch

from imdb_sentiment.errors import UserError
from imdb_sentiment.training import runtime as runtime_module
from imdb_sentiment.training.runtime import Runtime


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's choices")
@pytest.mark.parametrize("native", [True, False])
def test_native_bf16_follows_the_cpu(native: bool, monkeypatch) -> None:
    monkeypatch.setattr(runtime_module, "cpu_has_fast_bf16", lambda: native)
    assert Runtime.resolve(precision="native-bf16").bf16 is native
    assert Runtime.resolve(precision="auto").bf16 is False  # fp32 training on any CPU
    assert Runtime.resolve(precision="bf16").bf16 is True  # asked for: always
    assert Runtime.resolve().inference_precision("auto") == ("bf16" if native else "fp32")
    assert Runtime.resolve().inference_precision("int8") == "int8"


def test_devices_are_checked_once_with_the_field_named() -> None:
    assert Runtime.resolve("cpu").device == torch.device("cpu")
    with pytest.raises(UserError, match=r"training\.device: unknown device"):
        Runtime.resolve("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match=r"training\.device: cuda was asked for"):
            Runtime.resolve("cuda:1")


def test_threads_null_gives_torch_its_default_back_after_a_one_thread_run() -> None:
    """An ensemble's members and a benchmark's rows share one process: `threads: null` after a
    `threads: 1` run must not inherit the single thread."""
    try:
        Runtime.resolve(threads=1).apply()
        assert torch.get_num_threads() == 1
        Runtime.resolve(threads=None).apply()
        assert torch.get_num_threads() == runtime_module.DEFAULT_THREADS
    finally:
        torch.set_num_threads(runtime_module.DEFAULT_THREADS)
