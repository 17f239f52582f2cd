"""Token-level language-modelling loss with per-token weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def weighted_cross_entropy(logits: jax.Array, targets: jax.Array,
                           weights: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Returns (sum of weight * CE, sum of weights), both float32.

  Sums rather than a mean so that microbatches and data-parallel shards can be added up
  before the single division that makes the loss independent of how the batch was split.
  """
  logprobs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  target_logprobs = jnp.take_along_axis(logprobs, targets[..., None], axis=-1)[..., 0]
  weights = weights.astype(jnp.float32)
  return -jnp.sum(target_logprobs * weights), jnp.sum(weights)
