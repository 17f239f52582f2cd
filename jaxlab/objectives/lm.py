"""Token-level language-modelling loss with per-token weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def weighted_cross_entropy(logits: jax.Array, targets: jax.Array,
                           weights: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Returns (sum of weight * CE, sum of weights), both float32.

  Sums rather than a mean so that microbatches and data-parallel shards can be added up
  before the single division that makes the loss independent of how the batch was split.
  The target logit is picked with a one-hot comparison rather than a gather, so the backward
  pass is elementwise (softmax - one-hot) instead of a scatter, and a vocabulary-sharded logits
  array needs no gather across devices.
  """
  logits = logits.astype(jnp.float32)
  is_target = targets[..., None] == jnp.arange(logits.shape[-1], dtype=targets.dtype)
  target_logits = jnp.sum(jnp.where(is_target, logits, 0.0), axis=-1)
  losses = jax.nn.logsumexp(logits, axis=-1) - target_logits
  weights = weights.astype(jnp.float32)
  return jnp.sum(losses * weights), jnp.sum(weights)
