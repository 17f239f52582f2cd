"""Documents from corpus files, by extension: JSONL (.jsonl or .json, a `text` field per line),
plain text (.txt, a document per non-empty line) or Parquet (.parquet, a `text` column).
Malformed input raises a one-line ValueError naming file:line.

Files are read as bytes through `opener`, so a distributed runner can pass its own file system
(e.g. Beam's FileSystems.open for gs:// paths) and still get exactly the same documents.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import BinaryIO

from jaxlab import fileio

Opener = Callable[[str], BinaryIO]

JSONL_EXTENSIONS = (".jsonl", ".json")
TEXT_EXTENSIONS = (".txt",)
PARQUET_EXTENSIONS = (".parquet",)
EXTENSIONS = JSONL_EXTENSIONS + TEXT_EXTENSIONS + PARQUET_EXTENSIONS


def _open_local(path: str) -> BinaryIO:
  return fileio.open_file(path, "rb")


def check_extension(path: str) -> None:
  """Raises ValueError unless `path` has an extension this module can read."""
  if not path.endswith(EXTENSIONS):
    raise ValueError(f"{path}: unknown corpus file type; expected one of {', '.join(EXTENSIONS)}")


def _lines(path: str, f: BinaryIO) -> Iterator[tuple[int, str]]:
  """(line number, line) for non-empty lines, split on b"\\n" only, "\\r\\n" endings removed."""
  for lineno, raw in enumerate(f, start=1):
    raw = raw.rstrip(b"\n").rstrip(b"\r")
    if not raw:
      continue
    try:
      yield lineno, raw.decode("utf-8")
    except UnicodeDecodeError as e:
      raise ValueError(f"{path}:{lineno}: invalid UTF-8: {e.reason}") from None


def _jsonl_documents(path: str, f: BinaryIO) -> Iterator[str]:
  for lineno, line in _lines(path, f):
    if not line.strip():
      continue  # blank lines between JSON rows are not documents
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{lineno}: invalid JSON: {e.msg}") from None
    text = row.get("text") if isinstance(row, dict) else None
    if not isinstance(text, str):
      raise ValueError(f"{path}:{lineno}: expected an object with a string 'text' field")
    yield text


def _parquet_documents(path: str, f: BinaryIO) -> Iterator[str]:
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top  (optional dependency)

  try:
    parquet = pq.ParquetFile(f)
  except Exception as e:  # pylint: disable=broad-except  (pyarrow raises several types)
    raise ValueError(f"{path}: not a readable Parquet file: {str(e).splitlines()[0]}") from None
  if "text" not in parquet.schema_arrow.names:
    raise ValueError(f"{path}: Parquet file has no 'text' column")
  row = 0
  for batch in parquet.iter_batches(columns=["text"]):
    for text in batch.column(0).to_pylist():
      row += 1
      if not isinstance(text, str):
        raise ValueError(f"{path}:{row}: 'text' must be a string, got {text!r}")
      yield text


def iter_documents(path: str, opener: Opener = _open_local) -> Iterator[str]:
  """Yields the documents of one corpus file (Parquet errors give the row number as line)."""
  check_extension(path)
  with opener(path) as f:
    if path.endswith(PARQUET_EXTENSIONS):
      yield from _parquet_documents(path, f)
    elif path.endswith(TEXT_EXTENSIONS):
      for _, line in _lines(path, f):
        yield line
    else:
      yield from _jsonl_documents(path, f)
