"""Peak resident memory of one stretch of work, so a benchmark row reports its own peak.

``ru_maxrss`` is the process's peak since it started: in a benchmark that trains several models in one
process every row after the biggest would report the biggest. A sampling thread that reads the
current resident size (Linux ``/proc/self/statm``) records the peak of one ``with`` block instead.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from pathlib import Path
from types import ModuleType, TracebackType

STATM = Path("/proc/self/statm")


def current_rss_mb() -> float | None:
    try:
        resident_pages = int(STATM.read_text().split()[1])
    except (OSError, ValueError, IndexError):  # not Linux: no cheap way to read the current size
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def process_peak_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakMemory:
    """``with PeakMemory() as peak: ...`` then ``peak.mb``: the highest resident size seen in the block
    (sampled every ``interval`` seconds; short spikes between samples can be missed)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)

    def _sample(self) -> None:
        while True:
            size = current_rss_mb()
            if size is not None:
                self.peak = max(self.peak or 0.0, size)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        size = current_rss_mb()
        if size is not None:
            self.peak = max(self.peak or 0.0, size)

    @property
    def mb(self) -> float:
        """The block's sampled peak; the process's peak where the current size cannot be read."""
        return self.peak if self.peak is not None else process_peak_mb()


def _cuda() -> ModuleType | None:
    """torch.cuda when this process has imported torch and sees a GPU, else None. A run that never imported
    torch (the linear models) used no GPU, and importing it here would cost seconds for nothing."""
    torch = sys.modules.get("torch")
    return torch.cuda if torch is not None and torch.cuda.is_available() else None


def reset_gpu_peak() -> None:
    """Start a new GPU peak, so that each run of a benchmark reports its own and not the process's."""
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()


def gpu_peak_mb() -> float | None:
    """Peak GPU memory allocated since :func:`reset_gpu_peak`; None without a GPU."""
    cuda = _cuda()
    return cuda.max_memory_allocated() / 2**20 if cuda is not None else None
