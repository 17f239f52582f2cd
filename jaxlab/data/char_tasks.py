"""Next-character prediction on text that ships with Python: the reference manual topics in the
standard library's `pydoc_data.topics` (~460k characters of English prose and code, present
without docstrings too, e.g. under `python -OO`). No download.

Text is lowercased, characters outside ALPHABET become spaces and whitespace runs collapse to
one space. Windows of `seq_len + 1` characters (inputs and the targets shifted by one) tile the
text; the last `test_fraction` of windows is the test split, so test text follows train text.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

ALPHABET = " abcdefghijklmnopqrstuvwxyz.,:;'\"()_="
_OUTSIDE_ALPHABET = re.compile("[^" + re.escape(ALPHABET) + "]")


@dataclasses.dataclass(frozen=True)
class SequenceSplit:
  """inputs and targets [N, T] int32 token ids; targets[:, t] is the character after
  inputs[:, t]."""

  inputs: np.ndarray
  targets: np.ndarray


def stdlib_text() -> str:
  """The reference manual topics shipped in the standard library, in a fixed (sorted) order."""
  from pydoc_data.topics import topics

  return "".join(topics[name] for name in sorted(topics))


def encode(text: str) -> np.ndarray:
  """Token ids (indices into ALPHABET) of the normalized text."""
  normalized = re.sub(r"\s+", " ", _OUTSIDE_ALPHABET.sub(" ", text.lower()))
  lookup = {c: i for i, c in enumerate(ALPHABET)}
  return np.fromiter((lookup[c] for c in normalized), np.int32, len(normalized))


def load_char_task(
  seq_len: int = 32, max_chars: int = 100_000, test_fraction: float = 0.1
) -> tuple[SequenceSplit, SequenceSplit]:
  """(train, test) windows from the first `max_chars` normalized characters."""
  tokens = encode(stdlib_text())[:max_chars]
  num_windows = (len(tokens) - 1) // seq_len
  starts = np.arange(num_windows)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
  windows = tokens[starts]
  num_test = max(1, int(round(test_fraction * num_windows)))
  if num_test >= num_windows:
    raise ValueError(f"{num_windows} windows of {seq_len} characters leave no training data")

  def split(rows):
    return SequenceSplit(windows[rows, :-1], windows[rows, 1:])

  return split(slice(0, num_windows - num_test)), split(slice(num_windows - num_test, None))
