"""Small corpora, batch decoding and IDX files shared by the data tests."""

import gzip
import json
import struct

import ml_collections
import numpy as np

from jaxlab.data.idx import IDX_FILES
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


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
  """The IDX encoding written out by hand from the format's definition, independent of the
  reader: magic (0, 0, type code, ndim), big-endian uint32 dimensions, big-endian values."""
  header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
  return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, code: int = 0x08) -> str:
  """`array` as an IDX file at `path`, gzipped when the name ends in .gz."""
  raw = idx_bytes(array, code)
  path.write_bytes(gzip.compress(raw) if str(path).endswith(".gz") else raw)
  return str(path)


def write_mnist_dir(directory, train: int = 6, test: int = 4, compress: bool = True) -> dict:
  """Random 28x28 uint8 images and labels 0-9 as the four MNIST-layout IDX files in
  `directory`; returns the arrays by (split, part)."""
  rng = np.random.RandomState(0)
  sizes = {"train": train, "test": test}
  arrays = {}
  for (split, part), name in IDX_FILES.items():
    shape = (sizes[split], 28, 28) if part == "images" else (sizes[split],)
    arrays[split, part] = rng.randint(0, 256 if part == "images" else 10, shape).astype(np.uint8)
    write_idx(directory / (name + (".gz" if compress else "")), arrays[split, part])
  return arrays
