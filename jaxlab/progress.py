"""One progress display for every long loop (training, counting, evaluation): a tqdm bar on a
terminal, throttled plain lines with rate and ETA in logs, where a bar would be noise."""

from __future__ import annotations

import datetime
import sys
import time
from typing import Any, TextIO

_SHOWN_METRICS = ("loss", "eval_loss", "tokens_per_s")


class Progress:
  """Progress of a loop towards `total` units (None when unknown), fed the running count.

  On a TTY `stream` (default: sys.stderr at construction), a tqdm bar with headline metrics as
  postfix; otherwise `{label}: {unit} {done}/{total} k=v ... {rate} {unit}s/s eta=...` at most
  every `every_s` seconds, always when done == total, and a final total and rate on close().
  """

  def __init__(
    self,
    total: int | None,
    *,
    label: str = "",
    unit: str = "step",
    initial: int = 0,
    every_s: float = 10.0,
    stream: TextIO | None = None,
    enabled: bool = True,
  ):
    self.total, self.label, self.unit, self.every_s = total, label, unit, every_s
    self.enabled, self.stream = enabled, stream or sys.stderr
    self._initial = self._done = initial
    self._metrics: dict[str, float] = {}
    self._start = self._last = time.monotonic()
    self._bar = None
    if enabled and self.stream.isatty():
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top  (only terminals need it)

      self._bar = tqdm(
        total=total,
        initial=initial,
        desc=label or None,
        unit=unit,
        file=self.stream,
        dynamic_ncols=True,
      )

  def update(self, done: int, metrics: dict[str, Any] | None = None) -> None:
    """Reports the running count `done`; loss, eval_loss, tokens_per_s and *_accuracy in
    `metrics` replace the values shown beside it."""
    if not self.enabled:
      return
    self._done = done
    if metrics:
      self._metrics.update(
        {k: float(v) for k, v in metrics.items() if k in _SHOWN_METRICS or k.endswith("_accuracy")}
      )
    if self._bar is not None:
      if metrics:
        self._bar.set_postfix_str(self._metrics_text(), refresh=False)
      self._bar.update(done - self._bar.n)
      return
    now = time.monotonic()
    if now - self._last < self.every_s and done != self.total:
      return
    self._last = now
    rate = self._rate(now)
    parts = [f"{self.unit} {done:,}" + ("" if self.total is None else f"/{self.total:,}")]
    if self._metrics:
      parts.append(self._metrics_text())
    parts.append(f"{rate:,.1f} {self.unit}s/s")
    if self.total is not None:
      eta = (self.total - done) / rate if rate > 0 else None
      parts.append(f"eta={'?' if eta is None else datetime.timedelta(seconds=round(eta))}")
    self._print(" ".join(parts))

  def close(self) -> float:
    """Ends the display (plain mode: a final line with total and rate); returns seconds elapsed."""
    now = time.monotonic()
    elapsed = now - self._start
    if self._bar is not None:
      self._bar.close()
    elif self.enabled:
      self._print(
        f"done, {self._done:,} {self.unit}s in {elapsed:.1f} s, "
        f"{self._rate(now):,.1f} {self.unit}s/s"
      )
    return elapsed

  def _rate(self, now: float) -> float:
    return (self._done - self._initial) / max(now - self._start, 1e-9)

  def _metrics_text(self) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in self._metrics.items())

  def _print(self, message: str) -> None:
    print(f"{self.label}: {message}" if self.label else message, file=self.stream, flush=True)
