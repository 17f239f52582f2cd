"""Small corpora and batch decoding shared by the data tests."""

import json

import ml_collections
import numpy as np

from jaxlab.data.pipeline import default_data_config
from jaxlab.data.synthetic_text import MarkovTextGenerator
from jaxlab.data.tokenizers import ByteTokenizer


def corpus(num_docs: int) -> list[str]:
  generator = MarkovTextGenerator(seed=1)
  return [generator.document(i) for i in range(num_docs)]


def write_jsonl(path, texts, field="text") -> str:
  with open(path, "w") as f:
    for text in texts:
      f.write(json.dumps({field: text, "other": 1}) + "\n")
  return str(path)


def numbered_docs(count: int, start: int = 0) -> list[str]:
  """Distinct 12-byte documents: with seq_len 16 exactly one fits per packed row."""
  return [f"doc-{i:04d}-xyz" for i in range(start, start + count)]


def data_config(**overrides) -> ml_collections.ConfigDict:
  cfg = default_data_config()
  cfg.update(overrides)
  return cfg


def documents_in(batch: dict[str, np.ndarray], tokenizer) -> list[str]:
  """Texts of the whole (unsplit) documents in a packed batch, row by row."""
  texts = []
  for inputs, targets, segment_ids in zip(batch["inputs"], batch["targets"], batch["segment_ids"]):
    for segment in np.unique(segment_ids[segment_ids > 0]):
      mask = segment_ids == segment
      texts.append(tokenizer.decode(np.concatenate([inputs[mask], targets[mask][-1:]]).tolist()))
  return texts


def texts(batches) -> list[str]:
  """Documents of byte-tokenized batches, in row order."""
  return [doc for batch in batches for doc in documents_in(batch, ByteTokenizer())]


def take(iterator, count: int) -> list[dict[str, np.ndarray]]:
  return [next(iterator) for _ in range(count)]


def assert_batches_equal(left, right):
  assert len(left) == len(right)
  for a, b in zip(left, right):
    assert a.keys() == b.keys()
    for name in a:
      np.testing.assert_array_equal(a[name], b[name], err_msg=name)
      assert a[name].dtype == b[name].dtype
