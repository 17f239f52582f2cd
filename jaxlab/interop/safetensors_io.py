"""Hugging Face safetensors checkpoints through the `safetensors` package, one tensor at a time.

Reading lists every tensor's dtype and shape from the file headers and loads one tensor when it
is asked for, so an import never holds a whole checkpoint in memory. Writing builds one file
(shard) at a time from a `produce(spec)` callback. Sharded checkpoints are several files plus
`model.safetensors.index.json` (`weight_map: name -> file`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence

import ml_dtypes
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from jaxlab.cli import first_line

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Weight dtypes a LLaMA checkpoint is stored in.
DTYPES = {
  "F32": np.dtype(np.float32),
  "F16": np.dtype(np.float16),
  "BF16": np.dtype(ml_dtypes.bfloat16),
}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """One stored tensor: its `file`, `name` there, dtype name, shape and position in the file."""

  file: str
  name: str
  dtype: str
  shape: tuple[int, ...]
  offset: int  # rank in the file's header order, so reads can go file by file, in order


def read_header(path: str) -> dict[str, TensorInfo]:
  """The tensors of one safetensors file; ValueError (one line) for a malformed file or a tensor
  stored in a dtype other than F32, F16 and BF16."""
  try:
    with safe_open(path, framework="np") as f:
      entries = [(name, f.get_slice(name)) for name in f.keys()]
      tensors = {
        name: TensorInfo(path, name, part.get_dtype(), tuple(part.get_shape()), rank)
        for rank, (name, part) in enumerate(entries)
      }
  except (SafetensorError, OSError) as e:
    raise ValueError(f"{path}: not a readable safetensors file ({first_line(e)})") from None
  for info in tensors.values():
    if info.dtype not in DTYPES:
      raise ValueError(
        f"{path}: tensor {info.name!r} is stored as {info.dtype}; supported: {', '.join(DTYPES)}"
      )
  return tensors


def read_checkpoint(directory: str) -> dict[str, TensorInfo]:
  """Every tensor of a Hugging Face checkpoint directory: `model.safetensors`, or the shards that
  `model.safetensors.index.json` lists; ValueError (one line) when there is neither."""
  index_path = os.path.join(directory, INDEX_FILE)
  if os.path.isfile(index_path):
    return _read_sharded(directory, index_path)
  single = os.path.join(directory, SINGLE_FILE)
  if os.path.isfile(single):
    return read_header(single)
  if any(name.endswith(".bin") for name in os.listdir(directory)):
    raise ValueError(f"{directory} holds PyTorch .bin weights; only safetensors are supported")
  raise ValueError(f"{directory} has no {SINGLE_FILE} or {INDEX_FILE}")


def _read_sharded(directory: str, index_path: str) -> dict[str, TensorInfo]:
  try:
    with open(index_path, encoding="utf-8") as f:
      weight_map = json.load(f)["weight_map"]
    files = sorted(set(weight_map.values()))
  except (ValueError, KeyError, TypeError, AttributeError):
    raise ValueError(f"{index_path}: not a safetensors index (no weight_map)") from None
  tensors: dict[str, TensorInfo] = {}
  for file in files:
    path = os.path.join(directory, str(file))
    if not os.path.isfile(path):
      raise ValueError(f"{index_path} lists {file}, which is missing")
    tensors.update(read_header(path))
  missing = sorted(set(weight_map) - set(tensors))
  if missing:
    raise ValueError(f"{index_path}: tensor {missing[0]!r} is not in the file it names")
  return tensors


def load(info: TensorInfo) -> np.ndarray:
  """One tensor as a numpy array (the file is memory-mapped; only this tensor is read)."""
  with safe_open(info.file, framework="np") as f:
    return f.get_tensor(info.name)


@dataclasses.dataclass(frozen=True)
class TensorSpec:
  """A tensor to write: its name, dtype and shape (known before any data is produced)."""

  name: str
  dtype: np.dtype
  shape: tuple[int, ...]

  @property
  def nbytes(self) -> int:
    return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def write_file(
  path: str,
  specs: Sequence[TensorSpec],
  produce: Callable[[TensorSpec], np.ndarray],
  metadata: dict[str, str] | None = None,
) -> None:
  """Writes `specs` to one safetensors file, calling `produce(spec)` for each tensor's data (which
  must have the spec's shape and dtype); the file's tensors are in memory together while it is
  written, so callers bound a file's size (shards)."""
  tensors = {}
  for spec in specs:
    array = produce(spec)
    if array.shape != spec.shape or array.dtype != spec.dtype:
      raise ValueError(
        f"{spec.name}: produced {array.dtype}{list(array.shape)}, "
        f"expected {spec.dtype}{list(spec.shape)}"
      )
    tensors[spec.name] = np.ascontiguousarray(array)
  save_file(tensors, path, metadata=dict(metadata or {}))
