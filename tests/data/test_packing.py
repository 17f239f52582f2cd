"""Packing invariants on hand-made documents."""

import grain
import numpy as np

from jaxlab.data.packing import PACKED_FIELDS, lm_example, pack_lm_examples

SEQ_LEN = 16
BOS, EOS, PAD = 1, 2, 0


def make_documents(count: int, seed: int = 0) -> list[np.ndarray]:
  """Framed documents ([bos] + tokens + [eos]) of many lengths, some longer than SEQ_LEN."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(0, 3 * SEQ_LEN, size=count)
  return [np.array([BOS, *rng.integers(3, 100, size=n), EOS], np.int32) for n in lengths]


def pack(documents: list[np.ndarray], num_rows: int = 4, shuffle_rows: bool = False) -> list[dict]:
  examples = [lm_example(d[1:-1].tolist(), bos_id=BOS, eos_id=EOS) for d in documents]
  dataset = grain.MapDataset.source(examples).to_iter_dataset()
  return list(
    pack_lm_examples(
      dataset, seq_len=SEQ_LEN, num_rows=num_rows, pad_id=PAD, seed=0, shuffle_rows=shuffle_rows
    )
  )


def segments(row: dict) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  return [
    (row["inputs"][m], row["targets"][m], row["positions"][m])
    for m in (
      row["segment_ids"] == s for s in np.unique(row["segment_ids"][row["segment_ids"] > 0])
    )
  ]


def test_lm_example_shifts_framed_document():
  example = lm_example([7, 8, 9], bos_id=BOS, eos_id=EOS)
  assert example["inputs"].tolist() == [BOS, 7, 8, 9]
  assert example["targets"].tolist() == [7, 8, 9, EOS]
  assert example["inputs"].dtype == np.int32


def test_rows_have_fixed_shape_and_dtypes():
  for row in pack(make_documents(30)):
    assert set(row) == set(PACKED_FIELDS)
    assert all(row[name].shape == (SEQ_LEN,) for name in PACKED_FIELDS)
    assert all(row[name].dtype == np.int32 for name in PACKED_FIELDS if name != "loss_weights")
    assert row["loss_weights"].dtype == np.float32


def test_segments_are_contiguous_numbered_and_positions_restart():
  for row in pack(make_documents(30), shuffle_rows=True):
    segment_ids = row["segment_ids"]
    used = segment_ids[segment_ids > 0]
    # Segments 1, 2, ... appear in order as contiguous runs, then only padding.
    assert used.tolist() == sorted(used.tolist()) and set(used) == set(range(1, used.max() + 1))
    assert (segment_ids[len(used) :] == 0).all()
    for _, _, positions in segments(row):
      assert positions.tolist() == list(range(len(positions)))


def test_weights_zero_exactly_on_padding():
  for row in pack(make_documents(30)):
    padding = row["segment_ids"] == 0
    np.testing.assert_array_equal(row["loss_weights"], np.where(padding, 0.0, 1.0))
    assert (row["inputs"][padding] == PAD).all() and (row["targets"][padding] == PAD).all()


def test_nothing_lost_and_targets_shift_inputs_within_each_segment():
  documents = make_documents(40)
  # Expected: each document's LM pair cut into consecutive SEQ_LEN pieces.
  expected = sorted(
    tuple(d[start : start + SEQ_LEN + 1].tolist())
    for d in documents
    for start in range(0, len(d) - 1, SEQ_LEN)
  )
  packed = []
  for row in pack(documents, shuffle_rows=True):
    for inputs, targets, _ in segments(row):
      np.testing.assert_array_equal(inputs[1:], targets[:-1])
      packed.append(tuple(inputs.tolist() + targets[-1:].tolist()))
  assert sorted(packed) == expected


def test_long_document_is_split_into_consecutive_chunks():
  document = np.array([BOS, *range(3, 3 + 3 * SEQ_LEN), EOS], np.int32)
  rows = pack([document], num_rows=1)
  assert len(rows) == 4
  inputs = np.concatenate([row["inputs"][row["segment_ids"] > 0] for row in rows])
  targets = np.concatenate([row["targets"][row["segment_ids"] > 0] for row in rows])
  np.testing.assert_array_equal(inputs, document[:-1])
  np.testing.assert_array_equal(targets, document[1:])


def test_pad_id_seed_and_shuffling_reach_the_packer():
  examples = [lm_example(d[1:-1].tolist(), bos_id=BOS, eos_id=EOS) for d in make_documents(40)]

  def rows(pad_id=PAD, seed=0, shuffle_rows=False):
    dataset = grain.MapDataset.source(examples).to_iter_dataset()
    return list(
      pack_lm_examples(
        dataset, seq_len=SEQ_LEN, num_rows=8, pad_id=pad_id, seed=seed, shuffle_rows=shuffle_rows
      )
    )

  def order(**kwargs):
    return [(tuple(row["inputs"]), tuple(row["segment_ids"])) for row in rows(**kwargs)]

  padded = rows(pad_id=7)
  padding = np.stack([row["segment_ids"] == 0 for row in padded])
  assert padding.any()
  assert (np.stack([row["inputs"] for row in padded])[padding] == 7).all()
  assert (np.stack([row["targets"] for row in padded])[padding] == 7).all()
  in_order = order()
  assert order(seed=1) == in_order  # unshuffled, the seed does not matter
  shuffled = order(shuffle_rows=True)
  assert sorted(shuffled) == sorted(in_order) and shuffled != in_order
  assert order(shuffle_rows=True) == shuffled  # seeded
  assert order(shuffle_rows=True, seed=1) != shuffled
