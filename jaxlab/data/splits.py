"""Train/eval document sets: separate eval files, or a fixed held-out fraction of train."""

from __future__ import annotations

import grain
import ml_collections

from jaxlab.data.sources import build_source

SPLITS = ("train", "eval")
# Fixed, so the held-out eval set does not change with the training seed.
_HOLDOUT_SEED = 0x5EED


def split_documents(data_cfg: ml_collections.ConfigDict, split: str) -> grain.MapDataset:
  """Documents (text) of `split`.

  With `eval_files` set (file kinds only), train and eval read their own files.
  Otherwise a seed-independent pseudo-random `eval_fraction` of the train
  documents is eval and the rest is train, so the two never overlap.
  """
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")

  def source(patterns: str) -> grain.MapDataset:
    return grain.MapDataset.source(
      build_source(
        data_cfg.kind,
        patterns,
        text_field=data_cfg.text_field,
        synthetic_num_docs=data_cfg.synthetic_num_docs,
      )
    )

  if data_cfg.kind != "synthetic" and data_cfg.eval_files:
    return source(data_cfg.train_files if split == "train" else data_cfg.eval_files)

  documents = source(data_cfg.train_files)
  num_docs = len(documents)
  num_eval = holdout_size(num_docs, data_cfg.eval_fraction)
  first, count = (0, num_eval) if split == "eval" else (num_eval, num_docs - num_eval)
  return (
    grain.MapDataset.range(count).map(_PermutedIndex(first, num_docs)).map(documents.__getitem__)
  )


def holdout_size(num_docs: int, eval_fraction: float) -> int:
  """Eval documents held out of `num_docs` train documents; ValueError if none would remain."""
  if not 0.0 < eval_fraction < 1.0:
    raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
  num_eval = max(1, round(num_docs * eval_fraction))
  if num_eval >= num_docs:
    raise ValueError(f"cannot hold out {num_eval} eval documents from only {num_docs}")
  return num_eval


class _PermutedIndex:
  """i -> document at position `first + i` of a fixed permutation of all documents.

  A plain function of `i` (unlike a shuffled dataset, whose order changes per
  epoch) so later epochs keep the same train/eval partition.
  """

  def __init__(self, first: int, num_docs: int):
    self._first = first
    self._max_index = num_docs - 1

  def __call__(self, index: int) -> int:
    return grain.experimental.index_shuffle(
      self._first + index, max_index=self._max_index, seed=_HOLDOUT_SEED, rounds=4
    )
