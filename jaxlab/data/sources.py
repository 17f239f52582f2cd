"""Random-access document sources: each `source[i]` is one document's text.

File sources are indexed once at construction (byte offsets of every
non-blank line, or ArrayRecord's own index) so any document is one seek away,
which is what grain needs for global shuffling and per-host sharding.
"""

from __future__ import annotations

import abc
import json
import re
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import grain
import numpy as np

from jaxlab import fileio
from jaxlab.cli import decode_json
from jaxlab.data.synthetic_text import MarkovTextGenerator

SOURCE_KINDS = ("synthetic", "jsonl", "text", "array_record")


def split_globs(patterns: str) -> list[str]:
  """The non-blank globs of a comma-separated list (data.train_files, data.eval_files)."""
  return [p.strip() for p in patterns.split(",") if p.strip()]


def resolve_globs(patterns: str) -> list[str]:
  """Files matched by comma-separated globs, sorted within each glob (directories skipped)."""
  globs = split_globs(patterns)
  if not globs:
    raise ValueError("no file globs given")
  paths = []
  for pattern in globs:
    matched = fileio.glob(pattern)
    files = [path for path in matched if not fileio.isdir(path)]
    if not files:
      only_dirs = " (only directories)" if matched else ""
      raise ValueError(f"glob {pattern!r} matches no files{only_dirs}")
    paths.extend(files)
  return paths


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(text: str) -> str:
  """`text` with lone surrogates (which JSON's \\ud800 escapes can produce) replaced by U+FFFD,
  as undecodable bytes are in text files: every document encodes as UTF-8."""
  return _LONE_SURROGATE.sub("\ufffd", text)


def nonblank_lines(f: BinaryIO) -> Iterator[tuple[int, int, bytes]]:
  """(1-based line number, byte offset, line) of each non-blank line of a binary file: the
  documents of text and JSON Lines files."""
  offset = 0
  for line_number, line in enumerate(f, start=1):
    if line.strip():
      yield line_number, offset, line
    offset += len(line)


def decode_line(line: bytes, where: str) -> str:
  """`line` as text; ValueError naming `where` (file:line) for bytes that are not UTF-8 text (a
  NUL byte counts as binary too, though it is valid UTF-8)."""
  bad = line.find(b"\0")
  if bad < 0:
    try:
      return line.decode("utf-8")
    except UnicodeDecodeError as e:
      bad = e.start
  raise ValueError(
    f"{where}: binary data, not UTF-8 text (byte 0x{line[bad]:02x} at column {bad + 1})"
  )


def parse_jsonl_record(line: bytes, where: str, text_field: str) -> str:
  """The text of one JSON Lines record; one-line ValueError naming `where` (file:line) for a
  line that is not UTF-8, not JSON, or not an object with a string `text_field`."""
  # Without a byte-order mark (json.loads(bytes) allows one) or the line end: a line cut short
  # is then an unterminated string, not a control character in one.
  text = decode_line(line, where).removeprefix("\ufeff").rstrip("\r\n")
  try:
    row = decode_json(text)
  except json.JSONDecodeError as e:
    at = "" if e.msg.endswith(" at") else " at"
    raise ValueError(f"{where}: malformed JSON ({e.msg}{at} column {e.colno})") from None
  except ValueError as e:
    raise ValueError(f"{where}: malformed JSON ({e})") from None
  if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
    raise ValueError(f"{where}: no string field {text_field!r}")
  return _encodable(row[text_field])


class _LineIndex:
  """Byte spans and 1-based line numbers of the non-blank lines of one file."""

  def __init__(self, path: str):
    self._path = path
    starts, ends, line_numbers = [], [], []
    with fileio.open_file(path, "rb") as f:
      for line_number, offset, line in nonblank_lines(f):
        starts.append(offset)
        ends.append(offset + len(line))
        line_numbers.append(line_number)
    self._starts = np.asarray(starts, dtype=np.int64)
    self._ends = np.asarray(ends, dtype=np.int64)
    self._line_numbers = np.asarray(line_numbers, dtype=np.int64)

  def __len__(self) -> int:
    return len(self._starts)

  def line_number(self, index: int) -> int:
    return int(self._line_numbers[index])

  def __getitem__(self, index: int) -> bytes:
    with fileio.open_file(self._path, "rb") as f:
      f.seek(int(self._starts[index]))
      return f.read(int(self._ends[index] - self._starts[index]))


class _MultiFileSource(abc.ABC):
  """Concatenates per-file random-access readers into one global index."""

  def __init__(self, paths: Sequence[str], files: Sequence[Sequence[bytes]]):
    self._paths = list(paths)
    self._files = list(files)
    self._ends = np.cumsum([len(f) for f in self._files], dtype=np.int64)

  def __len__(self) -> int:
    return int(self._ends[-1])

  def __getitem__(self, index: int) -> str:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f"document {index} out of range for {len(self)} documents")
    file_index = int(np.searchsorted(self._ends, index, side="right"))
    local_index = index - (int(self._ends[file_index - 1]) if file_index else 0)
    return self._document(self._paths[file_index], self._files[file_index], local_index)

  @abc.abstractmethod
  def _document(self, path: str, file, local_index: int) -> str:
    """Text of record `local_index` of `file` (read from `path`)."""


class TextSource(_MultiFileSource):
  """Plain text files, one document per non-blank line."""

  def __init__(self, patterns: str):
    paths = resolve_globs(patterns)
    super().__init__(paths, [_LineIndex(p) for p in paths])

  def _document(self, path: str, file: _LineIndex, local_index: int) -> str:
    return file[local_index].decode("utf-8", errors="replace").rstrip("\r\n")


class JsonlSource(_MultiFileSource):
  """JSON Lines files, one document per non-blank line, text in `text_field`."""

  def __init__(self, patterns: str, text_field: str = "text"):
    paths = resolve_globs(patterns)
    super().__init__(paths, [_LineIndex(p) for p in paths])
    self._text_field = text_field

  def _document(self, path: str, file: _LineIndex, local_index: int) -> str:
    where = f"{path}:{file.line_number(local_index)}"
    return parse_jsonl_record(file[local_index], where, self._text_field)


class ArrayRecordSource(_MultiFileSource):
  """ArrayRecord files whose records are UTF-8 text or JSON objects with `text_field`."""

  def __init__(self, patterns: str, text_field: str = "text"):
    paths = resolve_globs(patterns)
    super().__init__(paths, [grain.sources.ArrayRecordDataSource(p) for p in paths])
    self._text_field = text_field

  def _document(self, path: str, file, local_index: int) -> str:
    text = file[local_index].decode("utf-8", errors="replace")
    if not text.lstrip().startswith("{"):
      return text
    try:
      row = decode_json(text)
    except json.JSONDecodeError:
      return text  # Plain text that happens to start with "{".
    except ValueError as e:
      raise ValueError(f"{path} record {local_index}: JSON object cannot be read ({e})") from None
    if not isinstance(row, dict) or not isinstance(row.get(self._text_field), str):
      raise ValueError(
        f"{path} record {local_index}: JSON object has no string field {self._text_field!r}"
      )
    return _encodable(row[self._text_field])


class SyntheticSource:
  """`num_docs` learnable Markov-chain documents, identical for a given seed."""

  def __init__(self, num_docs: int, seed: int = 0):
    if num_docs <= 0:
      raise ValueError(f"synthetic source needs num_docs > 0, got {num_docs}")
    self._num_docs = num_docs
    self._generator = MarkovTextGenerator(seed)

  def __len__(self) -> int:
    return self._num_docs

  def __getitem__(self, index: int) -> str:
    index = int(index)
    if not 0 <= index < self._num_docs:
      raise IndexError(f"document {index} out of range for {self._num_docs} documents")
    return self._generator.document(index)


def build_source(
  kind: str, patterns: str, *, text_field: str = "text", synthetic_num_docs: int = 0
) -> grain.sources.RandomAccessDataSource:
  """The document source for a data config's `kind` (patterns ignored for synthetic)."""
  if kind == "synthetic":
    return SyntheticSource(synthetic_num_docs)
  if kind == "jsonl":
    return JsonlSource(patterns, text_field)
  if kind == "text":
    return TextSource(patterns)
  if kind == "array_record":
    return ArrayRecordSource(patterns, text_field)
  raise ValueError(f"unknown data kind {kind!r}; expected one of {', '.join(SOURCE_KINDS)}")
