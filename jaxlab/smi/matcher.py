"""The counting core shared by all runners: one Aho-Corasick automaton over every distinct
`" " + subject` and `" " + object`, per-document sets of matched cells, and count vectors that
turn into per-triple rows.

Counts live in one int64 vector of "cells": cell 0 counts documents, cells 1..P count documents
containing pattern p (a subject or object string with its leading space), and the remaining
cells count documents containing a distinct (subject, object) pair. Vectors from different
files or workers simply add up, which is what makes the count trivially parallel.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence

import ahocorasick
import numpy as np

from jaxlab.smi.triples import Triple

DOCUMENT_CELL = 0


@dataclasses.dataclass(frozen=True)
class PatternIndex:
  """Cell layout for a list of triples; small and picklable, so it can be shipped to workers.

  patterns[i] is counted in cell i + 1; pairs[j] = (subject cell, object cell) is counted in cell
  1 + len(patterns) + j; triple_cells[t] = (subject cell, object cell, pair cell) of triple t.
  """

  patterns: tuple[str, ...]
  pairs: tuple[tuple[int, int], ...]
  triple_cells: tuple[tuple[int, int, int], ...]

  @property
  def n_cells(self) -> int:
    return 1 + len(self.patterns) + len(self.pairs)


def build_index(triples: Sequence[Triple]) -> PatternIndex:
  """Assigns cells to distinct patterns (a string that is both a subject and an object gets one)
  and to distinct (subject, object) pairs (triples differing only in relation share one)."""
  pattern_cell: dict[str, int] = {}
  for t in triples:
    for name in (t.subj, t.obj):
      pattern_cell.setdefault(" " + name, 1 + len(pattern_cell))
  first_pair_cell = 1 + len(pattern_cell)
  pair_cell: dict[tuple[int, int], int] = {}
  triple_cells = []
  for t in triples:
    s, o = pattern_cell[" " + t.subj], pattern_cell[" " + t.obj]
    p = pair_cell.setdefault((s, o), first_pair_cell + len(pair_cell))
    triple_cells.append((s, o, p))
  return PatternIndex(tuple(pattern_cell), tuple(pair_cell), tuple(triple_cells))


class Matcher:
  """Finds, in one pass over a document, every cell (pattern or pair) that the document hits."""

  def __init__(self, index: PatternIndex):
    self.index = index
    self._automaton = ahocorasick.Automaton()
    for i, pattern in enumerate(index.patterns):
      self._automaton.add_word(pattern, 1 + i)
    self._has_patterns = bool(index.patterns)
    if self._has_patterns:
      self._automaton.make_automaton()
    # subject cell -> [(pair cell, object cell)], to test only pairs whose subject occurred.
    first_pair_cell = 1 + len(index.patterns)
    self._pairs_by_subject: dict[int, list[tuple[int, int]]] = {}
    for j, (s, o) in enumerate(index.pairs):
      self._pairs_by_subject.setdefault(s, []).append((first_pair_cell + j, o))

  def cells(self, document: str) -> list[int]:
    """Distinct pattern and pair cells present in `document` (overlapping matches count)."""
    if not self._has_patterns:
      return []
    present = {cell for _, cell in self._automaton.iter(document)}
    hits = list(present)
    for s in present:
      for pair, o in self._pairs_by_subject.get(s, ()):
        if o in present:
          hits.append(pair)
    return hits

  def count(
    self,
    documents: Iterable[str],
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
  ) -> np.ndarray:
    """The count vector of `documents`; `on_progress(n)` is told about every n new documents."""
    counts = [0] * self.index.n_cells  # list indexing is faster than numpy for scalar updates
    n_docs = 0
    for document in documents:
      for cell in self.cells(document):
        counts[cell] += 1
      n_docs += 1
      if on_progress is not None and n_docs % progress_every == 0:
        on_progress(progress_every)
    if on_progress is not None and n_docs % progress_every:
      on_progress(n_docs % progress_every)
    counts[DOCUMENT_CELL] = n_docs
    return np.asarray(counts, dtype=np.int64)


def triple_fields(triple: Triple) -> dict:
  """subj, rel, obj, and idx when the triple has one: the leading fields of an output row."""
  row = {"subj": triple.subj, "rel": triple.rel, "obj": triple.obj}
  if triple.idx is not None:
    row["idx"] = triple.idx
  return row


def rows_from_counts(
  triples: Sequence[Triple], index: PatternIndex, counts: np.ndarray
) -> list[dict]:
  """One output row per triple: its fields plus n_docs, n_subj, n_obj, n_both."""
  n_docs = int(counts[DOCUMENT_CELL])
  return [
    {
      **triple_fields(t),
      "n_docs": n_docs,
      "n_subj": int(counts[s]),
      "n_obj": int(counts[o]),
      "n_both": int(counts[p]),
    }
    for t, (s, o, p) in zip(triples, index.triple_cells)
  ]


def format_rows(rows: Iterable[dict]) -> str:
  """The JSONL text of the count output (every runner writes exactly these bytes)."""
  return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
