import numpy as np
import pytest

from jaxlab.data.source import ArraySource, padded_batches


def _arrays(n=10):
  return {"inputs": np.arange(n * 2, dtype=np.float32).reshape(n, 2), "targets": np.arange(n)}


def test_each_epoch_visits_distinct_examples_in_a_new_order():
  source = ArraySource(_arrays(), global_batch=4, seed=0)
  assert source.batches_per_epoch == 2  # 10 examples: the remainder of 2 is dropped
  epochs = [np.concatenate([next(source)["targets"] for _ in range(2)]) for _ in range(2)]
  for seen in epochs:
    assert len(set(seen.tolist())) == 8
  assert not np.array_equal(epochs[0], epochs[1])
  first = next(ArraySource(_arrays(), global_batch=4, seed=0))["targets"]
  np.testing.assert_array_equal(first, epochs[0][:4])  # fixed by the seed
  rows = next(ArraySource(_arrays(), 4, seed=0))
  np.testing.assert_array_equal(rows["inputs"][:, 0], 2 * rows["targets"])  # rows stay paired


def test_state_resumes_mid_epoch_exactly():
  straight = ArraySource(_arrays(), global_batch=4, seed=3)
  expected = [next(straight)["targets"] for _ in range(5)]
  first = ArraySource(_arrays(), global_batch=4, seed=3)
  for _ in range(3):
    next(first)
  state = first.get_state()
  assert state == {"epoch": 1, "position": 1}
  resumed = ArraySource(_arrays(), global_batch=4, seed=3)
  resumed.set_state(state)
  for batch in expected[3:]:
    np.testing.assert_array_equal(next(resumed)["targets"], batch)


def test_hosts_read_disjoint_blocks_that_make_up_the_global_batch():
  whole = next(ArraySource(_arrays(), global_batch=4, seed=1))["targets"]
  parts = [
    next(ArraySource(_arrays(), 4, seed=1, process_index=i, process_count=2))["targets"]
    for i in range(2)
  ]
  np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize(
  "batch,message",
  [(0, "not a positive multiple"), (3, "not a positive"), (12, "exceeds the 10 examples")],
)
def test_bad_batch_sizes(batch, message):
  with pytest.raises(ValueError, match=message):
    ArraySource(_arrays(), batch, seed=0, process_count=2 if batch == 3 else 1)


def test_padded_batches_cover_every_row_once_and_weigh_padding_zero():
  batches = list(padded_batches(_arrays(), batch_size=4))
  assert [len(b["targets"]) for b in batches] == [4, 4, 4]
  weights = np.concatenate([b["weights"] for b in batches])
  targets = np.concatenate([b["targets"] for b in batches])
  np.testing.assert_array_equal(targets[weights > 0], np.arange(10))
  assert weights.sum() == 10 and weights[-2:].sum() == 0
