"""Word-order classification on text that ships with Python (pydoc_data.topics, as in
jaxlab.data.char_tasks): is this window of words as written, or were two adjacent words swapped?

This is SentEval's bigram-shift probe (BShift, Conneau et al. 2018) on a small vocabulary. Every
window appears twice, as written (label 1) and with the words at positions i, i + 1 swapped
(label 0, i uniform), so both classes hold exactly the same multisets of tokens: a model that sees
only the multiset (no positional encoding, mean-pooled) is right on exactly one of each pair.
"""

from __future__ import annotations

import collections
import dataclasses
import re

import numpy as np

from jaxlab.data.char_tasks import stdlib_text


@dataclasses.dataclass(frozen=True)
class WordOrderSplit:
  """Token ids [N, L] int32 (0 = out of vocabulary) and labels [N] int32 (1 = as written);
  rows 2k (as written) and 2k + 1 (swapped) come from the same window."""

  tokens: np.ndarray
  labels: np.ndarray


def stdlib_words() -> list[str]:
  """The lowercased words ([a-z]+ runs) of the reference manual topics, in text order."""
  return re.findall(r"[a-z]+", stdlib_text().lower())


def word_ids(words: list[str], vocabulary: list[str]) -> np.ndarray:
  """Ids of `words`: 1 + index in `vocabulary`, 0 for every other word."""
  lookup = {word: i + 1 for i, word in enumerate(vocabulary)}
  return np.fromiter((lookup.get(w, 0) for w in words), np.int32, len(words))


def bigram_shift_pairs(windows: np.ndarray, seed: int) -> WordOrderSplit:
  """Each window [N, L] as written (label 1) followed by a copy with one adjacent pair swapped."""
  rng = np.random.default_rng(seed)
  num, length = windows.shape
  first = rng.integers(0, length - 1, num)
  swapped = windows.copy()
  rows = np.arange(num)
  swapped[rows, first], swapped[rows, first + 1] = windows[rows, first + 1], windows[rows, first]
  tokens = np.stack([windows, swapped], 1).reshape(2 * num, length)
  labels = np.tile(np.array([1, 0], np.int32), num)
  return WordOrderSplit(tokens, labels)


def load_word_order(
  length: int, vocab_size: int, test_fraction: float, seed: int
) -> tuple[WordOrderSplit, WordOrderSplit]:
  """(train, test) pairs from non-overlapping windows of `length` words; the test windows are the
  last `test_fraction` of the text. The vocabulary is the `vocab_size` most frequent words of the
  training part (ties broken by first appearance); swap positions are fixed by `seed`."""
  if length < 2 or vocab_size < 1 or not 0 < test_fraction < 1:
    raise ValueError(
      "word-order task needs length >= 2, vocab_size >= 1 and 0 < test_fraction < 1, got "
      f"length={length}, vocab_size={vocab_size}, test_fraction={test_fraction}"
    )
  words = stdlib_words()
  num_windows = len(words) // length
  num_test = int(round(test_fraction * num_windows))
  split_at = (num_windows - num_test) * length
  vocabulary = [w for w, _ in collections.Counter(words[:split_at]).most_common(vocab_size)]
  windows = word_ids(words[: num_windows * length], vocabulary).reshape(num_windows, length)
  return (
    bigram_shift_pairs(windows[: num_windows - num_test], seed),
    bigram_shift_pairs(windows[num_windows - num_test :], seed + 1),
  )


def best_accuracy(keys: np.ndarray, labels: np.ndarray) -> float:
  """The highest accuracy any classifier that sees only `keys` [N, ...] can reach on these
  examples: every distinct key gets its majority label.

  keys = the token ids bounds a model with any positional encoding; keys = the sorted ids (the
  multiset) bounds one without (exactly 0.5 on word-order pairs)."""
  groups = collections.defaultdict(collections.Counter)
  for key, label in zip(keys.reshape(len(keys), -1), labels):
    groups[key.tobytes()][int(label)] += 1
  return sum(max(counts.values()) for counts in groups.values()) / len(labels)
