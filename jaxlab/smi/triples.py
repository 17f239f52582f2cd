"""Knowledge triples and cloze templates: loading with file:line errors, filling `[S]`."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

SUBJECT_SLOT = "[S]"


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
      raise ValueError(f"field {key!r} must be a non-empty string, got {value!r}")
  idx = row.get("idx")
  if idx is not None and (not isinstance(idx, int) or isinstance(idx, bool)):
    raise ValueError(f"field 'idx' must be an integer, got {idx!r}")
  return Triple(row["subj"], row["rel"], row["obj"], idx)


def _rows(path: str, text: str) -> list[tuple[str, Any]]:
  """(location, decoded row) pairs: a JSON array (location `item i`) or JSONL (location `line n`).

  A row that is not valid JSON is returned as the exception, so the caller can skip or report it.
  """
  if text.lstrip().startswith("["):
    try:
      items = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    return [(f"item {i}", item) for i, item in enumerate(items)]
  rows = []
  for lineno, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    try:
      rows.append((str(lineno), json.loads(line)))
    except json.JSONDecodeError as e:
      rows.append((str(lineno), ValueError(f"invalid JSON: {e.msg}")))
  return rows


def load_triples(path: str, skip_malformed: bool = False) -> tuple[list[Triple], int]:
  """Reads triples from a JSON array or JSONL file of {subj, rel, obj[, idx]} objects.

  Returns (triples, number of malformed rows skipped). Without `skip_malformed` the first
  malformed row raises a one-line ValueError naming the file and line (or array item).
  """
  with open(path, encoding="utf-8") as f:
    text = f.read()
  triples, skipped = [], 0
  for where, row in _rows(path, text):
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
  with open(path, encoding="utf-8") as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected an object mapping relation -> list of templates")
  for rel, templates in data.items():
    if not isinstance(templates, list) or not templates:
      raise ValueError(f"{path}: relation {rel!r}: expected a non-empty list of templates")
    for template in templates:
      if not isinstance(template, str) or SUBJECT_SLOT not in template:
        raise ValueError(
          f"{path}: relation {rel!r}: template {template!r} does not contain {SUBJECT_SLOT}"
        )
  return data


def fill_template(template: str, subject: str) -> str:
  """The cloze prompt: the template with every `[S]` replaced by the subject."""
  return template.replace(SUBJECT_SLOT, subject)
