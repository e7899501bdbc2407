"""A one-line progress bar with events per second, for `rcc replay` (on stderr)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


class ProgressBar:
    """Call with (done, total) as work advances; redraws at most every `every` seconds."""

    def __init__(self, label: str, stream: TextIO = sys.stderr, every: float = 0.2) -> None:
        self.label = label
        self.stream = stream
        self.every = every
        self.started = time.perf_counter()
        self._drawn = 0.0
        self._last = (0, 0)

    def __call__(self, done: int, total: int) -> None:
        self._last = (done, total)
        now = time.perf_counter()
        if now - self._drawn >= self.every:
            self._drawn = now
            self._draw(done, total, now)

    def finish(self) -> None:
        """Draw the final state and end the line."""
        done, total = self._last
        self._draw(done, max(total, done), time.perf_counter())
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self, done: int, total: int, now: float) -> None:
        share = done / total if total else 1.0
        filled = int(WIDTH * share)
        rate = done / max(now - self.started, 1e-9)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {share:6.1%}"
            f"  {done:,}/{total:,} events  {rate:,.0f} events/s"
        )
        self.stream.flush()
