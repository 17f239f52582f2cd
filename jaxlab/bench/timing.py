"""Timing helpers shared by the benchmarks: warm-up, then the median of repeats."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_seconds(run_once: Callable[[], object], repeats: int, warmup: int = 2) -> float:
  """Median wall time of `run_once()` (which must block until its work is done)."""
  for _ in range(warmup):
    run_once()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run_once()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
  """A markdown table of `rows` restricted to `columns` (floats with 4 significant digits)."""
  def fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
  return "\n".join(lines)
