"""IDX files, the format MNIST and Fashion-MNIST are distributed in (`train-images-idx3-ubyte.gz`
and friends; gzipped or not), read into numpy arrays.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order, big-endian.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from jaxlab import fileio

# IDX type code -> numpy dtype (big-endian where it matters).
IDX_DTYPES = {
  0x08: np.dtype(np.uint8),
  0x09: np.dtype(np.int8),
  0x0B: np.dtype(">i2"),
  0x0C: np.dtype(">i4"),
  0x0D: np.dtype(">f4"),
  0x0E: np.dtype(">f8"),
}
# The four files of a split directory, by (split, part); MNIST's and Fashion-MNIST's names.
IDX_FILES = {
  ("train", "images"): "train-images-idx3-ubyte",
  ("train", "labels"): "train-labels-idx1-ubyte",
  ("test", "images"): "t10k-images-idx3-ubyte",
  ("test", "labels"): "t10k-labels-idx1-ubyte",
}


class IdxFormatError(ValueError):
  """A file is not valid IDX, or a directory lacks one of the four files (one-line message)."""


def read_idx(path: str) -> np.ndarray:
  """The array stored in the IDX file at `path` (gzip-compressed when its name ends in .gz)."""
  with fileio.open_file(path, "rb") as f:
    raw = f.read()
  if path.endswith(".gz"):
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
      raise IdxFormatError(f"{path}: not a readable gzip file ({e})") from None
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
    raise IdxFormatError(f"{path}: not an IDX file (bad magic number)")
  dtype, ndim = IDX_DTYPES[raw[2]], raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise IdxFormatError(f"{path}: IDX header cut short")
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(raw) - header != expected:
    raise IdxFormatError(
      f"{path}: IDX shape {shape} needs {expected} bytes of data, found {len(raw) - header}"
    )
  return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def idx_paths(directory: str) -> dict[tuple[str, str], str]:
  """The paths of the four files in `directory` by (split, part), gzipped or not (gzipped
  preferred); raises IdxFormatError naming the first one missing."""
  paths = {}
  for key, name in IDX_FILES.items():
    found = [
      path
      for path in (os.path.join(directory, f"{name}.gz"), os.path.join(directory, name))
      if fileio.isfile(path)
    ]
    if not found:
      raise IdxFormatError(f"data.idx_dir {directory} has no {name}[.gz]")
    paths[key] = found[0]
  return paths


def load_idx_dir(directory: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
  """((train images, train labels), (test images, test labels)) from an MNIST-layout directory."""
  paths = idx_paths(directory)
  splits = []
  for split in ("train", "test"):
    images, labels = read_idx(paths[split, "images"]), read_idx(paths[split, "labels"])
    if len(images) != len(labels):
      raise IdxFormatError(
        f"data.idx_dir {directory}: {len(images)} {split} images but {len(labels)} labels"
      )
    splits.append((images, labels))
  return tuple(splits)
