"""SIGTERM/SIGINT become a "stop after this step" request, so the loop can checkpoint and exit."""

from __future__ import annotations

import logging
import signal
import types

logger = logging.getLogger(__name__)


class Preempted(Exception):
  """A study's stage stopped on SIGTERM/SIGINT after checkpointing: the study stops and resumes
  later (raised by the studies, caught where they report it)."""


class PreemptionGuard:
  """Context manager: while active, SIGTERM and SIGINT set `requested` instead of killing.

  Guards nest: the outermost one installs the handlers and an inner one shares its `requested`,
  so a signal that arrives during start-up (before the trainer enters its own guard) still stops
  the run cleanly. A second SIGINT falls back to the default handler, so a user can still
  force-quit.
  """

  _outermost: PreemptionGuard | None = None

  def __init__(self):
    self._requested = False
    self._previous = {}
    self._outer: PreemptionGuard | None = None

  @property
  def requested(self) -> bool:
    return self._outer.requested if self._outer is not None else self._requested

  def _handle(self, signum: int, frame: types.FrameType | None) -> None:
    del frame
    if self._requested and signum == signal.SIGINT:
      signal.signal(signal.SIGINT, signal.default_int_handler)
      raise KeyboardInterrupt
    self._requested = True
    logger.warning(
      "received %s: stopping after the current step (a checkpoint is saved once training has "
      "started)",
      signal.Signals(signum).name,
    )

  def __enter__(self) -> PreemptionGuard:
    if PreemptionGuard._outermost is not None:
      self._outer = PreemptionGuard._outermost
      return self
    PreemptionGuard._outermost = self
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    if self._outer is not None:
      return
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    PreemptionGuard._outermost = None
