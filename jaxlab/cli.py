"""Shared command-line conventions: bad input ends in one line on stderr and exit status 2;
Ctrl-C ends in `interrupted` on stderr and exit status 130 (outputs are written atomically by
jaxlab.fileio, so an interrupted command never leaves a partial file)."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

# Exit status of a command stopped by Ctrl-C: 128 + SIGINT, what shells report for it.
INTERRUPTED_EXIT_STATUS = 130


def fail(message: str) -> NoReturn:
  """Reports bad user input the agreed way: one line on stderr, exit status 2."""
  print(f"error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
  sys.exit(2)


def first_line(error: BaseException) -> str:
  """An exception's message cut to its first non-blank line (its type name if it has none), for
  one-line reports of library errors."""
  lines = str(error).strip().splitlines()
  return lines[0] if lines else type(error).__name__


class OneLineParser(argparse.ArgumentParser):
  """argparse whose usage errors follow the one-line, exit-2 convention."""

  def error(self, message: str) -> NoReturn:
    fail(message)


@contextlib.contextmanager
def exit_cleanly_on_interrupt() -> Iterator[None]:
  """For a program's main (as a decorator or a context manager): a KeyboardInterrupt (Ctrl-C)
  inside it ends the process with `interrupted` on one stderr line and exit status 130, instead
  of a traceback.

  Exit handlers (atexit: worker pools, shared semaphores) still run, but the interpreter's own
  teardown is skipped: after an interrupt inside native code (an XLA compilation, say) it can
  die of a segmentation fault. Atomic writers have already removed their temporary file as the
  interrupt passed through them. Further Ctrl-Cs are ignored while the process exits.
  """
  try:
    yield
  except KeyboardInterrupt:
    _exit_interrupted()


def _exit_interrupted() -> NoReturn:
  with contextlib.suppress(ValueError):  # signal.signal works in the main thread only
    signal.signal(signal.SIGINT, signal.SIG_IGN)
  print("interrupted", file=sys.stderr, flush=True)
  atexit._run_exitfuncs()  # what a normal exit runs first; the teardown that follows is skipped
  for stream in (sys.stdout, sys.stderr):
    with contextlib.suppress(Exception):
      stream.flush()
  os._exit(INTERRUPTED_EXIT_STATUS)


def decode_json(text: str) -> Any:
  """json.loads with every failure a ValueError whose message is one line: json.loads also raises
  RecursionError on deep nesting and a ValueError past Python's limit on digits in an integer."""
  try:
    return json.loads(text)
  except json.JSONDecodeError:
    raise
  except RecursionError:
    raise ValueError("nested too deeply") from None
  except ValueError as e:
    raise ValueError(str(e).split(":")[0]) from None
