"""Reference attention in plain jnp: the mask and `xla_attention`, which the flash-attention
kernels (`attention`) must match and fall back to.

Signature: q [B, T, H, D], k/v [B, S, K, D] (K divides H: grouped-query attention; with
`kv_heads_first` [B, K, S, D], the KV cache's layout, which decoding then reads without a
transpose), the absolute index of every query and key slot, and segment ids (0 = padding). A
query attends to a key when the key is not padding, both are in the same segment and the key's
index is <= the query's. Index-based causality covers packed training, prefill and single-token
decode alike.

Without a cache, query slot i is key slot i, so keys after a block of queries are never visible:
`query_block` > 0 then processes queries in blocks against their key prefix only, skipping the
invisible upper triangle (at 256 tokens, blocks of 64 make training-time attention about 3x
faster on CPU).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def attention_mask(
  q_index: jax.Array, kv_index: jax.Array, q_segment_ids: jax.Array, kv_segment_ids: jax.Array
) -> jax.Array:
  """Boolean [B, T, S] mask: causal by index, within one segment, never onto padding."""
  causal = kv_index[:, None, :] <= q_index[:, :, None]
  same_segment = q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]
  return causal & same_segment & (kv_segment_ids[:, None, :] != 0)


def xla_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  q_index: jax.Array,
  kv_index: jax.Array,
  q_segment_ids: jax.Array,
  kv_segment_ids: jax.Array,
  query_block: int = 0,
  kv_heads_first: bool = False,
) -> jax.Array:
  """Reference grouped-query attention in plain jnp (softmax in float32).

  `query_block` > 0 promises that query slot i is key slot i (training, no cache) and computes
  blocks of that many queries against their key prefix only; the result is the same.
  """
  length, key_axis = q.shape[1], 2 if kv_heads_first else 1
  if not 0 < query_block < length:
    return _dense_attention(
      q, k, v, q_index, kv_index, q_segment_ids, kv_segment_ids, kv_heads_first
    )
  if k.shape[key_axis] != length:
    raise ValueError(
      f"query_block needs as many keys as queries, got {k.shape[key_axis]} vs {length}"
    )
  outs = []
  for start in range(0, length, query_block):
    end = min(start + query_block, length)
    prefix = lambda x, end=end: jax.lax.slice_in_dim(x, 0, end, axis=key_axis)
    outs.append(
      _dense_attention(
        q[:, start:end],
        prefix(k),
        prefix(v),
        q_index[:, start:end],
        kv_index[:, :end],
        q_segment_ids[:, start:end],
        kv_segment_ids[:, :end],
        kv_heads_first,
      )
    )
  return jnp.concatenate(outs, axis=1)


def _dense_attention(q, k, v, q_index, kv_index, q_segment_ids, kv_segment_ids, kv_heads_first):
  """All queries against all keys. Heads go first ([B, K, G*T, D] queries against [B, K, S, D]
  keys), so both products are plain batched matmuls; the mask is an additive bias (its gradient
  needs no select), and rows with no visible key (padding queries) are zeroed at the output
  rather than in the probabilities."""
  batch, q_len, num_heads, head_dim = q.shape
  num_kv_heads = k.shape[1 if kv_heads_first else 2]
  groups = num_heads // num_kv_heads
  kv = "bksd" if kv_heads_first else "bskd"
  q = (q * head_dim**-0.5).reshape(batch, q_len, num_kv_heads, groups, head_dim)
  q = q.transpose(0, 2, 3, 1, 4).reshape(batch, num_kv_heads, groups * q_len, head_dim)
  scores = jnp.einsum(f"bkqd,{kv}->bkqs", q, k, preferred_element_type=jnp.float32)
  mask = attention_mask(q_index, kv_index, q_segment_ids, kv_segment_ids)
  scores = scores.reshape(batch, num_kv_heads, groups, q_len, -1)
  scores = scores + jnp.where(mask, 0.0, jnp.finfo(jnp.float32).min / 2)[:, None, None]
  probs = jax.nn.softmax(scores, axis=-1).reshape(batch, num_kv_heads, groups * q_len, -1)
  out = jnp.einsum(f"bkqs,{kv}->bkqd", probs.astype(v.dtype), v)
  out = out.reshape(batch, num_kv_heads, groups, q_len, head_dim).transpose(0, 3, 1, 2, 4)
  out = out.reshape(batch, q_len, num_heads, head_dim)
  return out * mask.any(-1)[:, :, None, None].astype(out.dtype)
