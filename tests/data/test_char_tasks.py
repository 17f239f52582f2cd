"""The generated-from-stdlib character task: deterministic, in-vocabulary, shifted targets."""

import numpy as np

from jaxlab.data import char_tasks


def test_windows_are_shifted_by_one_and_test_follows_train():
  train, test = char_tasks.load_char_task(seq_len=8, max_chars=2000, test_fraction=0.1)
  np.testing.assert_array_equal(train.inputs[:, 1:], train.targets[:, :-1])
  tokens = char_tasks.encode(char_tasks.stdlib_text())[:2000]
  num_windows = (len(tokens) - 1) // 8
  assert len(train.inputs) + len(test.inputs) == num_windows
  assert len(test.inputs) == round(0.1 * num_windows)
  np.testing.assert_array_equal(train.inputs[0], tokens[:8])
  np.testing.assert_array_equal(test.targets[-1], tokens[num_windows * 8 - 7 : num_windows * 8 + 1])


def test_encoding_normalizes_case_and_whitespace():
  decoded = "".join(char_tasks.ALPHABET[i] for i in char_tasks.encode("Hello,\n\n  World! {x}"))
  assert decoded == "hello, world x "
  assert char_tasks.encode(char_tasks.stdlib_text()).max() < len(char_tasks.ALPHABET)
