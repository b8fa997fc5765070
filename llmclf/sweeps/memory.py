"""Peak memory of the sweep process while one row runs."""

from __future__ import annotations

import os
import resource
import sys
import threading
from types import TracebackType

import torch

__all__ = ["PeakMemory"]

SAMPLE_SECONDS = 0.05


def _rss_bytes() -> int | None:
    """This process's resident memory now (Linux: /proc/self/statm), or None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.mib`` and ``peak.kind``.

    On CUDA: the most memory torch allocated on the device (``kind == "CUDA"``). Elsewhere: the
    largest resident set size of the process, sampled every 50 ms by a thread (``"RSS"``);
    where /proc is missing, the process's lifetime peak RSS (``"RSS (process peak)"``).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "CUDA" if device.type == "cuda" else "RSS"
        self.mib: float | None = None
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif _rss_bytes() is not None:
            self._peak = _rss_bytes() or 0
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        else:
            self.kind = "RSS (process peak)"
        return self

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._peak = max(self._peak, _rss_bytes() or 0)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.device.type == "cuda":
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes() or 0)
            self.mib = self._peak / 2**20
        else:
            scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
            self.mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
