"""Shared command-line conventions: bad input ends in one line on stderr and exit status 2;
outputs are written atomically, so an interrupted command never leaves a partial file."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from typing import NoReturn, TextIO


def fail(message: str) -> NoReturn:
  """Reports bad user input the agreed way: one line on stderr, exit status 2."""
  print(f"error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
  sys.exit(2)


class OneLineParser(argparse.ArgumentParser):
  """argparse whose usage errors follow the one-line, exit-2 convention."""

  def error(self, message: str) -> NoReturn:
    fail(message)


@contextlib.contextmanager
def _open_atomic(path: str) -> Iterator[TextIO]:
  """A UTF-8 temporary file next to `path`, renamed onto it only if the block succeeds."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
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
