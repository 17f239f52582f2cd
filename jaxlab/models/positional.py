"""Positional encodings: rotary (RoPE) for the LLaMA-style LM; Gray-code and logarithmic relative
encodings for spiking Transformers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


def rope_tables(
  positions: jax.Array,
  head_dim: int,
  theta: float = 10000.0,
  llama3_scaling: tuple[float, float, float, int] | None = None,
) -> tuple[jax.Array, jax.Array]:
  """(cos, sin) [B, T, 1, head_dim / 2] in float32 for positions [B, T]: frequencies
  theta^(-2i/D), rescaled by `llama3_scale` when `llama3_scaling` is given. Computed once per
  forward and shared by every layer's queries and keys, since the transcendentals cost more than
  the rotation itself."""
  inv_freq = theta ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
  if llama3_scaling is not None:
    inv_freq = llama3_scale(inv_freq, *llama3_scaling)
  angles = positions.astype(jnp.float32)[:, :, None] * inv_freq[None, None, :]
  return jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]


def llama3_scale(
  inv_freq: jax.Array,
  factor: float,
  low_freq_factor: float,
  high_freq_factor: float,
  original_max_len: int,
) -> jax.Array:
  """Llama 3.1's context extension of RoPE frequencies: wavelengths 2 pi / f shorter than
  original_max_len / high_freq_factor keep their frequency, those longer than
  original_max_len / low_freq_factor are slowed down by `factor`, and the band between blends
  the two linearly in original_max_len / wavelength."""
  ratio = original_max_len * inv_freq / (2 * np.pi)  # original_max_len / wavelength
  blend = jnp.clip((ratio - low_freq_factor) / (high_freq_factor - low_freq_factor), 0.0, 1.0)
  return (1.0 - blend) * inv_freq / factor + blend * inv_freq


def rotate(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates x [B, T, H, D] by `rope_tables` angles (rotate-half layout, as in LLaMA), in float32,
  and casts the result back to x.dtype."""
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return rotated.astype(x.dtype)


# Gray-code and logarithmic relative positional encodings for spiking Transformers
# (arXiv 2501.16745; docs/spiking_rpe.md). Both stay binary-compatible: Gray codes are bits
# appended to the binary queries and keys, the Log-PE bias is a non-negative integer matrix.


def gray_code(n: ArrayLike) -> jax.Array:
  """Reflected binary Gray code G(n) = n XOR (n >> 1), elementwise on non-negative integers."""
  n = jnp.asarray(n)
  if not jnp.issubdtype(n.dtype, jnp.integer):
    raise TypeError(f"gray_code takes integers, got {n.dtype}")
  return n ^ (n >> 1)


def gray_code_bits(
  positions: ArrayLike, num_bits: int, dtype: jnp.dtype = jnp.float32
) -> jax.Array:
  """The `num_bits` lowest bits of G(position), most significant first: [...] -> [..., num_bits].

  Positions must be below 2**num_bits for the code to be unique."""
  codes = gray_code(positions)
  shifts = jnp.arange(num_bits - 1, -1, -1, dtype=codes.dtype)
  return ((codes[..., None] >> shifts) & 1).astype(dtype)


def gray_position_codes(coordinates: ArrayLike, num_bits: int) -> jax.Array:
  """Per-token Gray-PE bits: coordinates [L, A] (A=1: index, A=2: row, column) -> [L, A * nb].

  The codes of the axes are concatenated, [G(h) || G(w)] for a 2D grid."""
  coordinates = jnp.asarray(coordinates)
  bits = gray_code_bits(coordinates, num_bits)
  return bits.reshape(coordinates.shape[0], coordinates.shape[1] * num_bits)


def grid_coordinates(grid: tuple[int, ...], two_d: bool) -> np.ndarray:
  """Integer coordinates of the tokens of a row-major grid: [L, 1] raster index, or [L, 2]
  (row, column) when `two_d` (which needs a 2D grid)."""
  if two_d:
    if len(grid) != 2:
      raise ValueError(f"2D coordinates need a 2D grid, got {grid}")
    rows, cols = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    return np.stack([rows.ravel(), cols.ravel()], axis=-1)
  return np.arange(int(np.prod(grid)))[:, None]


def min_gray_bits(length: int) -> int:
  """Fewest bits that give every one of `length` positions its own code: ceil(log2 L)."""
  return max(1, (length - 1).bit_length())


def log_relative_bias(length: int) -> np.ndarray:
  """Log-PE bias R_ij = max(0, ceil(log2((L - 1) / (|i - j| + 1)))), a Toeplitz [L, L] matrix.

  Non-negative integers that fall with distance: L - 1 apart gets 0, neighbours the most."""
  index = np.arange(length)
  distance = np.abs(index[:, None] - index[None, :])
  with np.errstate(divide="ignore"):
    bias = np.ceil(np.log2((length - 1) / (distance + 1.0)))
  return np.maximum(bias, 0.0).astype(np.float32)
