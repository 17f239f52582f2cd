"""Shared command-line conventions: bad input ends in one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import NoReturn


def fail(message: str) -> NoReturn:
  """Reports bad user input the agreed way: one line on stderr, exit status 2."""
  print(f"error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
  sys.exit(2)


class OneLineParser(argparse.ArgumentParser):
  """argparse whose usage errors follow the one-line, exit-2 convention."""

  def error(self, message: str) -> NoReturn:
    fail(message)


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` via a temporary file and a rename: never a partial file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise
