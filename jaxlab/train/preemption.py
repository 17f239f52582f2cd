"""SIGTERM/SIGINT become a "stop after this step" request, so the loop can checkpoint and exit."""

from __future__ import annotations

import logging
import signal
import types

logger = logging.getLogger(__name__)


class PreemptionGuard:
  """Context manager: while active, SIGTERM and SIGINT set `requested` instead of killing.

  A second SIGINT falls back to the default handler, so a user can still force-quit.
  """

  def __init__(self):
    self.requested = False
    self._previous = {}

  def _handle(self, signum: int, frame: types.FrameType | None) -> None:
    del frame
    if self.requested and signum == signal.SIGINT:
      signal.signal(signal.SIGINT, signal.default_int_handler)
      raise KeyboardInterrupt
    self.requested = True
    logger.warning(
      "received %s: saving a checkpoint after the current step", signal.Signals(signum).name
    )

  def __enter__(self) -> PreemptionGuard:
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
