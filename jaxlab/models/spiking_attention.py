"""Spikformer's vanilla spiking self-attention (SSA) as a pure function of binary queries, keys
and values (no softmax). Layout: q, k, v [..., L, D] with any leading axes (time, batch, heads).

The XNOR attention used with the relative encodings lives beside its kernel, in
`jaxlab.kernels.xnor_attention_reference`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, scale: float) -> jax.Array:
  """Spikformer's vanilla SSA before its output neuron: (Q K^T) V * scale."""
  scores = jnp.einsum("...qd,...kd->...qk", q, k)
  return jnp.einsum("...qk,...kd->...qd", scores, v) * scale
