"""Timing helpers shared by the benchmarks: warm-up, then the median of repeats.

`interleaved_medians` alternates the contenders in short rounds, so that a change in machine load
(the usual state of a shared CPU box) lands on all of them alike instead of on whichever ran
last; the ratio of their medians is then what the benchmark reports.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

Runner = Callable[[], object]  # one unit of work, blocking until it is done


def median_seconds(run_once: Runner, repeats: int, warmup: int = 2) -> float:
  """Median wall time of `run_once()`."""
  return interleaved_medians({"run": run_once}, repeats, warmup)["run"]


def interleaved_medians(
  runners: dict[str, Runner], repeats: int, warmup: int = 2, round_size: int = 2
) -> dict[str, float]:
  """Median wall time per runner, timed in alternating rounds of `round_size` calls each.

  Every runner is warmed up first; with several runners the first call of each round is not
  timed either, so that one contender's thread pools winding down do not bill the next one."""
  for run in runners.values():
    for _ in range(warmup):
      run()
  times: dict[str, list[float]] = {name: [] for name in runners}
  lead_in = len(runners) > 1
  while min(len(t) for t in times.values()) < repeats:
    for name, run in runners.items():
      if lead_in:
        run()
      for _ in range(round_size):
        start = time.perf_counter()
        run()
        times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t[:repeats]) for name, t in times.items()}


def markdown_table(rows: list[dict], columns: list[str]) -> str:
  """A markdown table of `rows` restricted to `columns` (floats with 4 significant digits)."""

  def fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)

  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
  return "\n".join(lines)
