"""The data-source interface the trainer reads: host-local batches with a resumable position."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

Batch = dict[str, np.ndarray]


class DataSource(Protocol):
  """An endless iterator of this host's rows of each global batch.

  `get_state()` is a small JSON-able position saved in every checkpoint; `set_state()` on a
  source built from the same settings continues exactly from it, so resumed runs see the same
  batches as uninterrupted ones.
  """

  def __next__(self) -> Batch: ...

  def get_state(self) -> dict[str, Any]: ...

  def set_state(self, state: dict[str, Any]) -> None: ...

  def close(self) -> None: ...


@runtime_checkable
class PolicySource(Protocol):
  """A data source whose batches depend on the parameters being trained (on-policy rollouts):
  the trainer hands it the current train state instead of calling `next`. Its position
  (`get_state`) must make resumed runs continue as uninterrupted ones would, e.g. by deriving
  its sampling keys from the state's step."""

  def next_for(self, state: Any) -> Batch: ...

  def get_state(self) -> dict[str, Any]: ...

  def set_state(self, state: dict[str, Any]) -> None: ...

  def close(self) -> None: ...


class ArraySource:
  """Epoch-based batches from arrays held in memory (digits, vision, characters, spiking tasks).

  Every epoch visits the examples in an order drawn from (seed, epoch) and drops the remainder
  that does not fill a global batch; each host takes its contiguous block of every batch's rows.
  The state is (epoch, batch position within the epoch).
  """

  def __init__(
    self,
    arrays: Batch,
    global_batch: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
  ):
    sizes = {len(a) for a in arrays.values()}
    if len(sizes) != 1:
      raise ValueError(f"arrays differ in length: { {k: len(a) for k, a in arrays.items()} }")
    self.num_examples = sizes.pop()
    if global_batch < 1 or global_batch % process_count:
      raise ValueError(
        f"global batch {global_batch} is not a positive multiple of the {process_count} processes"
      )
    if global_batch > self.num_examples:
      raise ValueError(f"batch size {global_batch} exceeds the {self.num_examples} examples")
    self.arrays, self.global_batch, self.seed = arrays, global_batch, seed
    local = global_batch // process_count
    self._rows = slice(process_index * local, (process_index + 1) * local)
    self.batches_per_epoch = self.num_examples // global_batch
    self._epoch, self._position = 0, 0
    self._order = self._epoch_order(0)

  def _epoch_order(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

  def __iter__(self) -> Iterator[Batch]:
    return self

  def __next__(self) -> Batch:
    if self._position == self.batches_per_epoch:
      self._epoch, self._position = self._epoch + 1, 0
      self._order = self._epoch_order(self._epoch)
    start = self._position * self.global_batch
    indices = self._order[start : start + self.global_batch][self._rows]
    self._position += 1
    return {name: array[indices] for name, array in self.arrays.items()}

  def get_state(self) -> dict[str, Any]:
    return {"epoch": self._epoch, "position": self._position}

  def set_state(self, state: dict[str, Any]) -> None:
    self._epoch, self._position = int(state["epoch"]), int(state["position"])
    self._order = self._epoch_order(self._epoch)

  def close(self) -> None:
    pass


def padded_batches(
  arrays: Batch, batch_size: int, process_index: int = 0, process_count: int = 1
) -> Iterator[Batch]:
  """One pass over `arrays` in order, in fixed-size global batches (one compiled shape); the
  last is padded with copies of row 0 that carry `weights` 0, so they count for nothing."""
  num = len(next(iter(arrays.values())))
  local = batch_size // process_count
  rows = slice(process_index * local, (process_index + 1) * local)
  for start in range(0, num, batch_size):
    indices = np.arange(start, start + batch_size)
    weights = (indices < num).astype(np.float32)
    indices = np.where(indices < num, indices, 0)
    batch = {name: array[indices] for name, array in arrays.items()}
    batch["weights"] = weights
    yield {name: value[rows] for name, value in batch.items()}
