"""Shared command-line conventions: bad input ends in one line on stderr and exit status 2;
Ctrl-C ends in `interrupted` on stderr and exit status 130; outputs are written atomically, so an
interrupted command never leaves a partial file, with the permissions a plain open() would give
(0o666 less the umask, so colleagues sharing a cluster can read the results)."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import secrets
import signal
import sys
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn, TextIO

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


# Flags of the temporary file: what tempfile.mkstemp uses, minus its fixed 0o600 mode.
_TEMP_FLAGS = (
  os.O_WRONLY
  | os.O_CREAT
  | os.O_EXCL
  | getattr(os, "O_NOFOLLOW", 0)
  | getattr(os, "O_CLOEXEC", 0)
  | getattr(os, "O_BINARY", 0)
)


def _create_temporary(path: str) -> tuple[int, str]:
  """A new, unique file next to `path`, created with mode 0o666 so that the kernel applies the
  umask (and any default ACL of the directory) exactly as for open(path, "w"); no race, unlike
  reading the umask with os.umask."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  prefix = os.path.join(directory, "." + os.path.basename(path) + ".")
  for _ in range(100):
    tmp = prefix + secrets.token_hex(4)
    try:
      return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
    except FileExistsError:
      continue
  raise FileExistsError(f"no free temporary name next to {path}")


@contextlib.contextmanager
def _open_atomic(path: str) -> Iterator[TextIO]:
  """A UTF-8 temporary file next to `path`, renamed onto it only if the block succeeds."""
  fd, tmp = _create_temporary(path)
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      yield f
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` via a temporary file and a rename: never a partial file."""
  with _open_atomic(path) as f:
    f.write(text)


def write_jsonl_atomic(path: str, rows: Iterable[dict]) -> None:
  """Writes one JSON object per line (UTF-8, non-ASCII kept as is), atomically.

  Rows are streamed to the temporary file, so a large corpus never sits in memory as one string.
  """
  with _open_atomic(path) as f:
    f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


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
