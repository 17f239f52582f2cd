"""Packs tokenized documents into fixed-length LM rows with per-document segments.

A document becomes [bos] + tokens + [eos]; its LM example is inputs = doc[:-1],
targets = doc[1:]. Examples longer than `seq_len` are cut into consecutive
chunks, then grain's first-fit packer fills rows. Every row carries
`segment_ids` (1, 2, ... per example, 0 on padding) so attention can be masked
to stay inside a document, and `positions` that restart at 0 per segment.
"""

from __future__ import annotations

from collections.abc import Sequence

import grain
import numpy as np

PACKED_FIELDS = ("inputs", "targets", "segment_ids", "positions", "loss_weights")


def lm_example(token_ids: Sequence[int], *, bos_id: int, eos_id: int) -> dict[str, np.ndarray]:
  """Next-token pair of one document framed by BOS and EOS."""
  document = np.asarray([bos_id, *token_ids, eos_id], dtype=np.int32)
  return {"inputs": document[:-1], "targets": document[1:]}


class SplitIntoChunks(grain.experimental.FlatMapTransform):
  """Cuts an LM example into consecutive pieces of at most `seq_len` tokens."""

  def __init__(self, seq_len: int):
    self.seq_len = seq_len

  def flat_map(self, example: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    length = len(example["inputs"])
    return [
      {key: value[start : start + self.seq_len] for key, value in example.items()}
      for start in range(0, length, self.seq_len)
    ]


def pack_lm_examples(
  examples: grain.IterDataset,
  *,
  seq_len: int,
  num_rows: int,
  pad_id: int,
  seed: int,
  shuffle_rows: bool,
) -> grain.IterDataset:
  """Rows of `PACKED_FIELDS`, each of length `seq_len`, from variable-length LM examples.

  `num_rows` examples' worth of rows are packed at a time (first fit) and,
  if `shuffle_rows`, emitted in a seed-dependent order.
  """
  chunks = grain.experimental.FlatMapIterDataset(examples, SplitIntoChunks(seq_len))
  packed = grain.experimental.FirstFitPackIterDataset(
    chunks,
    length_struct={"inputs": seq_len, "targets": seq_len},
    padding_struct={"inputs": pad_id, "targets": pad_id},
    num_packing_bins=num_rows,
    seed=seed,
    shuffle_bins=shuffle_rows,
  )
  return packed.map(_to_packed_row)


def _to_packed_row(row: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Renames grain's per-feature segment/position fields and adds loss weights."""
  segment_ids = row["inputs_segment_ids"]
  return {
    "inputs": row["inputs"],
    "targets": row["targets"],
    "segment_ids": segment_ids,
    "positions": row["inputs_positions"],
    "loss_weights": (segment_ids > 0).astype(np.float32),
  }
