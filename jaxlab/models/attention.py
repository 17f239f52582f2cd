"""Attention implementations behind one signature, selected by `model.attention_impl`: "xla" is
the jnp reference (`jaxlab.kernels.attention_reference.xla_attention`, whose docstring gives the
signature and masking), "pallas" the flash-attention kernels (`jaxlab.kernels.attention`), which
skip invisible tiles on their own.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from jaxlab.kernels.attention import flash_attention
from jaxlab.kernels.attention_reference import xla_attention

AttentionFn = Callable[..., jax.Array]


def pallas_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  query_block: int = 0,
  kv_heads_first: bool = False,
  **kwargs,
) -> jax.Array:
  """Flash-attention kernels by platform. They skip invisible tiles themselves, so
  `query_block` is not needed."""
  del query_block
  if kv_heads_first:
    k, v = k.swapaxes(1, 2), v.swapaxes(1, 2)
  return flash_attention(q, k, v, **kwargs)


ATTENTION_IMPLS: dict[str, AttentionFn] = {"xla": xla_attention, "pallas": pallas_attention}


def get_attention(name: str) -> AttentionFn:
  """Looks up an attention implementation by its config name."""
  if name not in ATTENTION_IMPLS:
    raise ValueError(f"unknown attention_impl {name!r}; choose from {sorted(ATTENTION_IMPLS)}")
  return ATTENTION_IMPLS[name]
