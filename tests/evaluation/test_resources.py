"""Each run's own memory peaks: resident memory, and GPU memory where torch saw a GPU."""

from __future__ import annotations

import sys
from types import SimpleNamespace

from imdb_sentiment.evaluation import resources


class FakeCuda:
    def __init__(self) -> None:
        self.allocated_peak = 3 * 2**20

    def is_available(self) -> bool:
        return True

    def reset_peak_memory_stats(self) -> None:
        self.allocated_peak = 0

    def max_memory_allocated(self) -> int:
        return self.allocated_peak


def test_a_process_without_torch_reports_no_gpu_and_does_not_import_it(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    resources.reset_gpu_peak()
    assert resources.gpu_peak_mb() is None
    assert "torch" not in sys.modules


def test_the_gpu_peak_is_reset_per_run(monkeypatch) -> None:
    cuda = FakeCuda()
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    assert resources.gpu_peak_mb() == 3.0  # an earlier run's peak
    resources.reset_gpu_peak()
    assert resources.gpu_peak_mb() == 0.0


def test_the_resident_peak_of_a_block_is_at_least_what_it_allocated() -> None:
    with resources.PeakMemory(interval=0.01) as peak:
        block = bytearray(64 * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
    assert peak.mb >= 64
    del block
