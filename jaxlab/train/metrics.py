"""Metrics sinks: metrics.jsonl (strict JSON: non-finite values are the strings "nan", "inf",
"-inf") and TensorBoard event files, in a local or a bucket workdir, and Weights & Biases when
`logging.wandb.enabled` (jaxlab.train.wandb_logging).

Objects in a bucket cannot be appended to, so there metrics.jsonl is kept in memory and the
whole object rewritten at most every `REMOTE_FLUSH_SECONDS` and at close (tensorboardX does
the same for its event files): a preempted run loses at most that much of its log, and a
resumed run redoes those steps anyway."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, TextIO

import numpy as np

from jaxlab import fileio
from jaxlab.train.wandb_config import WandbSettings
from jaxlab.train.wandb_logging import WandbSink

REMOTE_FLUSH_SECONDS = 30.0


def _plain(value: Any) -> Any:
  if isinstance(value, (np.generic, np.ndarray)) or hasattr(value, "item"):
    return np.asarray(value).item()
  return value


class MetricsWriter:
  """Writes one JSON object per logged step (with a `step` key) and TensorBoard scalars.

  Only process 0 writes; other processes get a writer that does nothing. A resumed run passes
  `after_step` (the restored step): rows logged past it by the interrupted run are dropped, so
  the steps it redoes appear once. With `wandb` enabled, each row also goes to that W&B run, and
  `close(summary)` sets its summary and finishes it.
  """

  def __init__(
    self,
    workdir: str,
    enabled: bool = True,
    after_step: int | None = None,
    wandb: WandbSettings | None = None,
  ):
    self.enabled = enabled
    self._path = os.path.join(workdir, "metrics.jsonl")
    self._remote = fileio.is_remote(workdir)
    self._jsonl: TextIO | None = None
    self._lines: list[str] = []  # a bucket workdir's metrics.jsonl, rewritten at each flush
    self._flushed_at = 0.0
    self._tb = None
    self._wandb: WandbSink | None = None
    if enabled:
      fileio.makedirs(workdir)
      lines = fileio.read_text(self._path).splitlines(True) if fileio.isfile(self._path) else []
      kept = _rows_up_to(lines, after_step)
      if self._remote:
        self._lines = kept
      else:
        if len(kept) != len(lines):
          fileio.write_text_atomic(self._path, "".join(kept))
        self._jsonl = open(self._path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close)
      from tensorboardX import SummaryWriter  # imported here: only the writing process needs it

      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      if wandb is not None and wandb.enabled:
        self._wandb = WandbSink(wandb, workdir)

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
    line = json.dumps(json_safe(row), allow_nan=False) + "\n"
    if self._remote:
      self._lines.append(line)
      if time.monotonic() - self._flushed_at >= REMOTE_FLUSH_SECONDS:
        self._flush_remote()
    else:
      self._jsonl.write(line)
      self._jsonl.flush()
    for key, value in row.items():
      if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
        self._tb.add_scalar(key, value, int(step))
    if self._wandb is not None:
      self._wandb.log(int(step), row)

  def _flush_remote(self) -> None:
    fileio.write_text_atomic(self._path, "".join(self._lines))
    self._flushed_at = time.monotonic()

  def close(self, summary: dict[str, Any] | None = None, exit_code: int = 0) -> None:
    """Closes the files; a W&B run gets `summary` as its summary and ends with `exit_code`."""
    if self.enabled:
      if self._remote:
        self._flush_remote()
      else:
        self._jsonl.close()
      self._tb.close()
      if self._wandb is not None:
        self._wandb.finish(summary, exit_code)


def _rows_up_to(lines: list[str], step: int | None) -> list[str]:
  """The non-blank metrics.jsonl lines of steps up to `step` (all of them if None)."""
  rows = [line for line in lines if line.strip()]
  return rows if step is None else [line for line in rows if json.loads(line)["step"] <= step]


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
