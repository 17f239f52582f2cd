"""Tile math shared by the TPU and GPU flash-attention kernels, and the block-skipping plan.

A query attends to a key when the key is not padding (segment 0), both share a segment, and the
key's index is <= the query's. Scores and softmax statistics are float32; masked entries get
exactly zero probability (not a tiny one), so rows with no visible key produce zero output and
zero gradients, as in the reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)
NT_DIMS = (((1,), (1,)), ((), ()))  # contract the last dims: a @ b.T
_INT_MAX = jnp.iinfo(jnp.int32).max
_INT_MIN = jnp.iinfo(jnp.int32).min


def tile_mask(
  q_pos: jax.Array, q_seg: jax.Array, kv_pos: jax.Array, kv_seg: jax.Array
) -> jax.Array:
  """[bq, bk] visibility from query columns [bq, 1] and key rows [1, bk]."""
  return (kv_pos <= q_pos) & (q_seg == kv_seg) & (kv_seg != 0)


def masked_scores(q: jax.Array, k: jax.Array, mask: jax.Array, scale: float) -> jax.Array:
  """scale * q k^T in float32, MASK_VALUE where not visible."""
  s = jax.lax.dot_general(q, k, NT_DIMS, preferred_element_type=jnp.float32) * scale
  return jnp.where(mask, s, MASK_VALUE)


def online_softmax_step(
  s: jax.Array,
  mask: jax.Array,
  v: jax.Array,
  m_prev: jax.Array,
  l_prev: jax.Array,
  acc_prev: jax.Array,
):
  """One key block of the streaming softmax: running max m, denominator l [bq, 1] and
  unnormalized output acc [bq, D] updated with scores s [bq, bk] and values v [bk, D]."""
  m_next = jnp.maximum(m_prev, s.max(axis=-1, keepdims=True))
  p = jnp.where(mask, jnp.exp(s - m_next), 0.0)
  alpha = jnp.exp(m_prev - m_next)
  l_next = alpha * l_prev + p.sum(axis=-1, keepdims=True)
  pv = jnp.dot(p.astype(v.dtype), v, preferred_element_type=jnp.float32)
  return m_next, l_next, alpha * acc_prev + pv


def finish_softmax(m: jax.Array, l: jax.Array, acc: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(output, logsumexp) from the final statistics; rows that saw no key get 0 and lse 0."""
  seen = l > 0
  safe_l = jnp.where(seen, l, 1.0)
  return jnp.where(seen, acc / safe_l, 0.0), jnp.where(seen, m + jnp.log(safe_l), 0.0)


def probs_and_dscores(
  s: jax.Array,
  mask: jax.Array,
  lse: jax.Array,
  do: jax.Array,
  v: jax.Array,
  delta: jax.Array,
  scale: float,
):
  """Backward tile: probabilities p [bq, bk] from the saved lse [bq, 1], and dL/d(q k^T)
  = scale * p * (dO v^T - delta) with delta = rowsum(dO * O) [bq, 1]."""
  p = jnp.where(mask, jnp.exp(s - lse), 0.0)
  dp = jax.lax.dot_general(do, v, NT_DIMS, preferred_element_type=jnp.float32)
  return p, p * (dp - delta) * scale


def _block_reduce(x: jax.Array, block: int, fn) -> jax.Array:
  """[B, L] -> [B, L / block] reduction per block (L a multiple of block)."""
  return fn(x.reshape(x.shape[0], -1, block), axis=-1)


def block_pairs(
  q_pos: jax.Array,
  q_seg: jax.Array,
  kv_pos: jax.Array,
  kv_seg: jax.Array,
  block_q: int,
  block_kv: int,
) -> jax.Array:
  """[B, nq, nk] bool: may query block i see any key of key block j? Conservative (from
  per-block index and segment ranges), so skipping the False pairs never changes the result."""

  def ranges(pos, seg, block):
    real = seg != 0
    return (
      _block_reduce(jnp.where(real, pos, _INT_MAX), block, jnp.min),
      _block_reduce(jnp.where(real, pos, _INT_MIN), block, jnp.max),
      _block_reduce(jnp.where(real, seg, _INT_MAX), block, jnp.min),
      _block_reduce(jnp.where(real, seg, _INT_MIN), block, jnp.max),
    )

  _, q_pos_max, q_seg_min, q_seg_max = ranges(q_pos, q_seg, block_q)
  kv_pos_min, _, kv_seg_min, kv_seg_max = ranges(kv_pos, kv_seg, block_kv)
  causal = kv_pos_min[:, None, :] <= q_pos_max[:, :, None]
  overlap = (kv_seg_min[:, None, :] <= q_seg_max[:, :, None]) & (
    q_seg_min[:, :, None] <= kv_seg_max[:, None, :]
  )
  return causal & overlap


def needed_range(pairs: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Along the last axis of bool [..., n]: (first True, last True + 1), (0, 0) when none.
  Kernels visit the blocks of this range (a superset of the needed ones) and skip the rest."""
  n = pairs.shape[-1]
  any_ = pairs.any(axis=-1)
  first = jnp.argmax(pairs, axis=-1)
  last = n - jnp.argmax(pairs[..., ::-1], axis=-1)
  return (jnp.where(any_, first, 0).astype(jnp.int32), jnp.where(any_, last, 0).astype(jnp.int32))
