"""Throttled progress lines on stderr, so a long count shows it is alive and how fast it goes."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
  """Prints `label: N documents, R documents/s` at most every `every_s` seconds."""

  def __init__(self, label: str, every_s: float = 10.0, stream: TextIO | None = None):
    self.label = label
    self.every_s = every_s
    self._stream = stream
    self._start = self._last = time.monotonic()

  def _print(self, message: str) -> None:
    print(f"{self.label}: {message}", file=self._stream or sys.stderr, flush=True)

  def update(self, n_docs: int) -> None:
    """Reports the running total `n_docs` if `every_s` has passed since the last report."""
    now = time.monotonic()
    if now - self._last >= self.every_s:
      self._last = now
      self._print(f"{n_docs:,} documents, {n_docs / (now - self._start):,.0f} documents/s")

  def finish(self, n_docs: int) -> float:
    """Reports the final total and rate; returns the seconds elapsed since construction."""
    elapsed = time.monotonic() - self._start
    self._print(f"done, {n_docs:,} documents in {elapsed:.1f} s, "
                f"{n_docs / max(elapsed, 1e-9):,.0f} documents/s")
    return elapsed
