"""Reference XNOR spiking attention in plain jnp, with the Gray-code positional term, which the
tiled kernels (`xnor_attention`) must match.

Layout: binary q, k, v [..., L, D] with any leading axes (time, batch, heads); no softmax. Kept
free of module state so that the fused kernel can replace `reference_xnor_attention`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def xnor_attention_scores(q: jax.Array, k: jax.Array) -> jax.Array:
  """Matching-bit counts of binary vectors [..., Lq, Lk]:
  A_qk = D - sum(q) - sum(k) + 2 q.k = D - Hamming(q, k)."""
  dim = q.shape[-1]
  matches = 2 * jnp.einsum("...qd,...kd->...qk", q, k)
  return dim - q.sum(-1)[..., :, None] - k.sum(-1)[..., None, :] + matches


def xnor_attention(
  q: jax.Array, k: jax.Array, v: jax.Array, scale: jax.Array | float, bias: jax.Array | None = None
) -> jax.Array:
  """XNOR attention before its output neuron: ((XNOR(Q, K) + bias) V) * scale.

  `bias` [Lq, Lk] is an additive relative-position term (the Log-PE Toeplitz matrix)."""
  scores = xnor_attention_scores(q, k)
  if bias is not None:
    scores = scores + bias
  return jnp.einsum("...qk,...kd->...qd", scores, v) * scale


def append_position_codes(x: jax.Array, codes: jax.Array) -> jax.Array:
  """Gray-PE: [x || codes] along features; codes [L, nb] are shared by all leading axes of x."""
  codes = jnp.broadcast_to(codes.astype(x.dtype), x.shape[:-1] + codes.shape[-1:])
  return jnp.concatenate([x, codes], axis=-1)


def reference_xnor_attention(
  q: jax.Array, k: jax.Array, v: jax.Array, scale: jax.Array | float, codes: jax.Array | None = None
) -> jax.Array:
  """XNOR attention with the Gray codes appended to q and k: the kernels' signature."""
  if codes is not None:
    q, k = append_position_codes(q, codes), append_position_codes(k, codes)
  return xnor_attention(q, k, v, scale)
