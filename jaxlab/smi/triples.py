"""Knowledge triples and cloze templates: loading with file:line errors, filling `[S]`."""

from __future__ import annotations

import codecs
import dataclasses
import json
import reprlib
from collections.abc import Iterable, Iterator
from typing import Any

from jaxlab import fileio
from jaxlab.cli import decode_json

SUBJECT_SLOT = "[S]"

# Values echoed in error messages: one line (repr escapes newlines), at most ~80 characters.
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 80
_SHORT_REPR.maxlevel = 3


def short_repr(value: Any) -> str:
  """repr(value), shortened with `...` so that a huge or deeply nested value stays readable."""
  return _SHORT_REPR.repr(value)


def _has_lone_surrogate(text: str) -> bool:
  """True for text that is not valid Unicode (JSON's `\\ud800` escapes can produce it): it
  cannot be written as UTF-8, so it would fail later, far from the file that holds it."""
  try:
    text.encode("utf-8")
  except UnicodeEncodeError:
    return True
  return False


def decode_utf8(data: bytes) -> str:
  """`data` as text (a leading byte-order mark dropped); ValueError for bytes that are not UTF-8,
  with the 1-based line and column of the first bad byte in its message."""
  data = data.removeprefix(codecs.BOM_UTF8)
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    bad = e.start
    line_start = data.rfind(b"\n", 0, bad) + 1
    lineno = data.count(b"\n", 0, bad) + 1
    raise ValueError(
      f"{lineno}: binary data, not UTF-8 text "
      f"(byte 0x{data[bad]:02x} at column {bad - line_start + 1})"
    ) from None


def json_lines(lines: Iterable[bytes]) -> Iterator[tuple[int, Any]]:
  """(1-based line number, decoded row) for each non-blank line of JSON Lines; a line that is not
  UTF-8 or not JSON gives, instead of the row, the ValueError saying so (without the location).

  Lines end at b"\n" only (a "\r" before it is JSON whitespace): U+2028 and the other Unicode
  line breaks may appear raw inside JSON strings. A byte-order mark on the first line is dropped.
  """
  for lineno, line in enumerate(lines, start=1):
    if lineno == 1:
      line = line.removeprefix(codecs.BOM_UTF8)
    if not line.strip():
      continue
    try:
      text = line.decode("utf-8")
    except UnicodeDecodeError as e:
      error = f"binary data, not UTF-8 text (byte 0x{line[e.start]:02x} at column {e.start + 1})"
      yield lineno, ValueError(error)
      continue
    try:
      yield lineno, decode_json(text)
    except ValueError as e:
      yield lineno, ValueError(f"invalid JSON: {getattr(e, 'msg', e)}")


@dataclasses.dataclass(frozen=True)
class Triple:
  """One fact (subject, relation, object); `idx` is the dataset's own id when it has one."""

  subj: str
  rel: str
  obj: str
  idx: int | None = None


def _parse_triple(row: Any) -> Triple:
  """One decoded row -> Triple, or ValueError saying what is wrong with it."""
  if not isinstance(row, dict):
    raise ValueError(f"expected an object with subj, rel, obj, got {type(row).__name__}")
  for key in ("subj", "rel", "obj"):
    value = row.get(key)
    if not isinstance(value, str) or not value:
      raise ValueError(f"field {key!r} must be a non-empty string, got {short_repr(value)}")
    if _has_lone_surrogate(value):
      raise ValueError(f"field {key!r} holds a lone surrogate: {short_repr(value)}")
  idx = row.get("idx")
  if idx is not None and (not isinstance(idx, int) or isinstance(idx, bool)):
    raise ValueError(f"field 'idx' must be an integer, got {short_repr(idx)}")
  return Triple(row["subj"], row["rel"], row["obj"], idx)


def _read_json(path: str, data: bytes) -> Any:
  """A whole JSON document; ValueError naming the file (and line, where known) if it is not one."""
  try:
    text = decode_utf8(data)
  except ValueError as e:
    raise ValueError(f"{path}:{e}") from None
  try:
    return decode_json(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
  except ValueError as e:
    raise ValueError(f"{path}: invalid JSON: {e}") from None


def _rows(path: str, data: bytes) -> list[tuple[str, Any]]:
  """(location, decoded row) pairs: a JSON array (location `item i`) or JSONL (location `line n`).

  A JSONL row that is not valid JSON is returned as the exception, so the caller can skip or
  report it.
  """
  if data.removeprefix(codecs.BOM_UTF8).lstrip().startswith(b"["):
    items = _read_json(path, data)
    return [(f"item {i}", item) for i, item in enumerate(items)]
  return [(str(lineno), row) for lineno, row in json_lines(data.split(b"\n"))]


def load_triples(path: str, skip_malformed: bool = False) -> tuple[list[Triple], int]:
  """Reads triples from a JSON array or JSONL file of {subj, rel, obj[, idx]} objects.

  Returns (triples, number of malformed rows skipped). Without `skip_malformed` the first
  malformed row raises a one-line ValueError naming the file and line (or array item).
  """
  data = fileio.read_bytes(path)
  triples, skipped = [], 0
  for where, row in _rows(path, data):
    try:
      if isinstance(row, ValueError):
        raise row
      triples.append(_parse_triple(row))
    except ValueError as e:
      if not skip_malformed:
        sep = ": " if where.startswith("item") else ":"
        raise ValueError(f"{path}{sep}{where}: {e}") from None
      skipped += 1
  return triples, skipped


def load_templates(path: str) -> dict[str, list[str]]:
  """Reads {relation: [cloze template, ...]} from JSON; every template must contain `[S]`."""
  data = _read_json(path, fileio.read_bytes(path))
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected an object mapping relation -> list of templates")
  for rel, templates in data.items():
    where = f"{path}: relation {short_repr(rel)}"
    if not isinstance(templates, list) or not templates:
      raise ValueError(f"{where}: expected a non-empty list of templates")
    for template in templates:
      if not isinstance(template, str) or SUBJECT_SLOT not in template:
        raise ValueError(
          f"{where}: template {short_repr(template)} does not contain {SUBJECT_SLOT}"
        )
      if _has_lone_surrogate(rel) or _has_lone_surrogate(template):
        raise ValueError(f"{where}: template {short_repr(template)} holds a lone surrogate")
  return data


def fill_template(template: str, subject: str) -> str:
  """The cloze prompt: the template with every `[S]` replaced by the subject."""
  return template.replace(SUBJECT_SLOT, subject)
