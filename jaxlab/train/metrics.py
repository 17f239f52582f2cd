"""Metrics sinks: metrics.jsonl, TensorBoard event files, and a progress display."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

import numpy as np


def _plain(value: Any) -> Any:
  if isinstance(value, (np.generic, np.ndarray)) or hasattr(value, "item"):
    return np.asarray(value).item()
  return value


class MetricsWriter:
  """Writes one JSON object per logged step (with a `step` key) and TensorBoard scalars.

  Only process 0 writes; other processes get a writer that does nothing.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self._jsonl: TextIO | None = None
    self._tb = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      from tensorboardX import SummaryWriter  # imported here: only the writing process needs it
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    for key, value in row.items():
      if key != "step" and isinstance(value, (int, float)):
        self._tb.add_scalar(key, value, int(step))

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


class Progress:
  """A tqdm bar with ETA on an interactive terminal, plain log lines otherwise."""

  def __init__(self, total: int, initial: int = 0, stream: TextIO = sys.stderr,
               enabled: bool = True):
    self.total, self.enabled, self.stream = total, enabled, stream
    self._bar = None
    self._start, self._start_step = time.time(), initial
    if enabled and stream.isatty():
      from tqdm import tqdm
      self._bar = tqdm(total=total, initial=initial, file=stream, dynamic_ncols=True,
                       unit="step")

  def update(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    shown = {k: _plain(v) for k, v in metrics.items() if k in ("loss", "eval_loss", "tokens_per_s")}
    text = " ".join(f"{k}={v:.4g}" for k, v in shown.items())
    if self._bar is not None:
      self._bar.set_postfix_str(text, refresh=False)
      self._bar.update(step - self._bar.n)
      return
    elapsed = time.time() - self._start
    done = step - self._start_step
    eta = elapsed / done * (self.total - step) if done > 0 else float("nan")
    print(f"step {step}/{self.total} {text} eta={eta:.0f}s", file=self.stream, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
