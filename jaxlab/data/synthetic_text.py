"""Learnable synthetic English-like text from a fixed word-level Markov chain.

Each word has a few likely successors, so next-token entropy is far below
uniform and a small LM's loss falls within a few dozen steps: good for smoke
runs and benchmarks that must show learning without any dataset download.
"""

from __future__ import annotations

import numpy as np

_CONSONANTS = "bcdfghklmnprstvz"
_VOWELS = "aeiou"
# Relative probabilities of each word's successors, most likely first.
_SUCCESSOR_WEIGHTS = np.array([8.0, 4.0, 2.0, 1.0])


class MarkovTextGenerator:
  """Document `i` is a pure function of (seed, i); the chain is a function of seed."""

  def __init__(self, seed: int = 0, num_words: int = 256):
    rng = np.random.default_rng(seed)
    self._seed = seed
    self._words = _make_lexicon(rng, num_words)
    self._successors = np.stack(
      [rng.choice(num_words, size=len(_SUCCESSOR_WEIGHTS), replace=False) for _ in range(num_words)]
    )
    self._successor_cdf = np.cumsum(_SUCCESSOR_WEIGHTS / _SUCCESSOR_WEIGHTS.sum())
    zipf = 1.0 / np.arange(1, num_words + 1)
    self._start_cdf = np.cumsum(zipf / zipf.sum())

  def document(self, index: int) -> str:
    """A few sentences of 4-12 words each, capitalised and full-stopped."""
    rng = np.random.default_rng([self._seed, index])
    sentences = []
    for _ in range(int(rng.integers(1, 6))):
      length = int(rng.integers(4, 13))
      draws = rng.random(length)
      word = min(int(np.searchsorted(self._start_cdf, draws[0])), len(self._words) - 1)
      words = [word]
      for draw in draws[1:]:
        word = int(self._successors[word, np.searchsorted(self._successor_cdf, draw)])
        words.append(word)
      sentence = " ".join(self._words[w] for w in words)
      sentences.append(sentence[0].upper() + sentence[1:] + ".")
    return " ".join(sentences)


def _make_lexicon(rng: np.random.Generator, num_words: int) -> list[str]:
  """Distinct pronounceable words of 1-3 consonant-vowel syllables."""
  words: list[str] = []
  seen: set[str] = set()
  while len(words) < num_words:
    syllables = int(rng.integers(1, 4))
    word = "".join(
      rng.choice(list(_CONSONANTS)) + rng.choice(list(_VOWELS)) for _ in range(syllables)
    )
    if word not in seen:
      seen.add(word)
      words.append(word)
  return words
