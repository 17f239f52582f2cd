"""Metrics sinks: metrics.jsonl (strict JSON: non-finite values are the strings "nan", "inf",
"-inf") and TensorBoard event files."""

from __future__ import annotations

import json
import math
import os
from typing import Any, TextIO

import numpy as np

from jaxlab.cli import write_text_atomic


def _plain(value: Any) -> Any:
  if isinstance(value, (np.generic, np.ndarray)) or hasattr(value, "item"):
    return np.asarray(value).item()
  return value


class MetricsWriter:
  """Writes one JSON object per logged step (with a `step` key) and TensorBoard scalars.

  Only process 0 writes; other processes get a writer that does nothing. A resumed run passes
  `after_step` (the restored step): rows logged past it by the interrupted run are dropped, so
  the steps it redoes appear once.
  """

  def __init__(self, workdir: str, enabled: bool = True, after_step: int | None = None):
    self.enabled = enabled
    self._jsonl: TextIO | None = None
    self._tb = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      path = os.path.join(workdir, "metrics.jsonl")
      if after_step is not None and os.path.exists(path):
        _drop_rows_after(path, after_step)
      self._jsonl = open(path, "a")
      from tensorboardX import SummaryWriter  # imported here: only the writing process needs it

      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
    self._jsonl.write(json.dumps(json_safe(row), allow_nan=False) + "\n")
    self._jsonl.flush()
    for key, value in row.items():
      if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
        self._tb.add_scalar(key, value, int(step))

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


def _drop_rows_after(path: str, step: int) -> None:
  """Rewrites metrics.jsonl (atomically) without the rows of steps after `step`."""
  with open(path) as f:
    lines = f.readlines()
  kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
  if len(kept) != len(lines):
    write_text_atomic(path, "".join(kept))


def json_safe(tree: Any) -> Any:
  """`tree` with non-finite floats as the strings "nan", "inf" and "-inf", so files stay strict
  JSON (Python's json would write bare NaN, which other readers reject)."""
  if isinstance(tree, dict):
    return {k: json_safe(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [json_safe(v) for v in tree]
  if isinstance(tree, float) and not math.isfinite(tree):
    return str(tree)
  return tree
