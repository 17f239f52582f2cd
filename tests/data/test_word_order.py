import numpy as np
import pytest

from jaxlab.data.word_order import (
  best_accuracy,
  bigram_shift_pairs,
  load_word_order,
  stdlib_words,
  word_ids,
)


def test_pairs_swap_one_adjacent_pair_and_keep_the_token_multiset():
  windows = np.arange(60, dtype=np.int32).reshape(10, 6)  # distinct ids: every swap shows
  split = bigram_shift_pairs(windows, seed=0)
  assert split.tokens.shape == (20, 6) and split.labels.tolist() == [1, 0] * 10
  original, swapped = split.tokens[0::2], split.tokens[1::2]
  np.testing.assert_array_equal(original, windows)
  np.testing.assert_array_equal(np.sort(original, 1), np.sort(swapped, 1))
  for row, changed in zip(swapped, original != swapped):
    (i, j) = np.flatnonzero(changed)
    assert j == i + 1 and row[i] == row[j] + 1  # ascending ids, so the swapped pair descends


def test_best_accuracy_groups_identical_keys():
  keys = np.array([[1, 2], [2, 1], [3, 3], [3, 3]])
  labels = np.array([1, 0, 1, 0])
  assert best_accuracy(keys, labels) == 0.75  # the pair (3, 3) cannot be told apart
  assert best_accuracy(np.sort(keys, 1), labels) == 0.5  # multisets: nothing can
  assert best_accuracy(np.array([[0], [0], [0]]), np.array([1, 1, 0])) == pytest.approx(2 / 3)


def test_stdlib_task_bounds_every_model_and_no_positions_is_exactly_chance():
  train, test = load_word_order(length=8, vocab_size=63, test_fraction=0.2, seed=0)
  assert train.tokens.shape == (12856, 8) and test.tokens.shape == (3214, 8)
  assert train.tokens.max() == 63 and (test.tokens == 0).any()  # id 0: out of vocabulary
  np.testing.assert_array_equal(np.sort(test.tokens[0::2], 1), np.sort(test.tokens[1::2], 1))
  assert best_accuracy(np.sort(test.tokens, 1), test.labels) == 0.5
  identical = (test.tokens[0::2] == test.tokens[1::2]).all(1).mean()
  best = best_accuracy(test.tokens, test.labels)
  # Identical pairs cap it at 1 - identical / 2; other collisions between windows cost a little.
  assert best <= 1 - identical / 2 and best == pytest.approx(0.8731, abs=1e-4)
  assert identical == pytest.approx(0.2533, abs=1e-4)


def test_vocabulary_ids_and_text():
  words = stdlib_words()
  assert len(words) > 60_000 and all(w.isalpha() and w.islower() for w in words[:1000])
  np.testing.assert_array_equal(word_ids(["the", "zzz", "of"], ["the", "of"]), [1, 0, 2])
  with pytest.raises(ValueError, match="length >= 2"):
    load_word_order(length=1, vocab_size=10, test_fraction=0.2, seed=0)
