"""Assembles per-host numpy batches into globally sharded jax.Arrays."""

from __future__ import annotations

import jax
import numpy as np


def to_global_batch(
  local_batch: dict[str, np.ndarray], sharding: jax.sharding.NamedSharding
) -> dict[str, jax.Array]:
  """Each host passes its own rows; the result spans all hosts' rows along axis 0."""
  return {
    name: jax.make_array_from_process_local_data(sharding, rows)
    for name, rows in local_batch.items()
  }
