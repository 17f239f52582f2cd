"""Padding helpers shared by the kernels: Pallas blocks must tile their arrays exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def pad_axis(x: jax.Array, axis: int, size: int, value: float | int = 0) -> jax.Array:
  """Pads `axis` of x at the end up to `size` with `value` (no-op when already that size)."""
  extra = size - x.shape[axis]
  if extra == 0:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, extra)
  return jnp.pad(x, widths, constant_values=value)


def fit_block(block: int, length: int, align: int) -> int:
  """The block size actually used: `block`, shrunk for short inputs to `length` rounded up to
  `align` (so a 200-long sequence with 512 blocks runs as one 256 block)."""
  return min(block, round_up(length, align))


def row_to_col(row: jax.Array) -> jax.Array:
  """[1, n] -> [n, 1] inside a TPU kernel, through an aligned (8, n) transpose."""
  return jnp.broadcast_to(row, (8, row.shape[1])).T[:, 0:1]


def col_to_row(col: jax.Array) -> jax.Array:
  """[n, 1] -> [1, n] inside a TPU kernel, through an aligned (n, 128) transpose."""
  return jnp.broadcast_to(col, (col.shape[0], 128)).T[0:1]
