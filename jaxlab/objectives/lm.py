"""Language-modelling objective: token cross-entropy with per-token weights, fused or not."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.kernels.linear_ce import fused_linear_cross_entropy
from jaxlab.objectives.base import Batch, LossOutput, PyTree


def weighted_cross_entropy(
  logits: jax.Array, targets: jax.Array, weights: jax.Array
) -> tuple[jax.Array, jax.Array]:
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


def token_loss_sums(model: nn.Module, params: PyTree, batch: Batch) -> tuple[jax.Array, jax.Array]:
  """(sum of weighted token losses, sum of weights) of a packed LM batch.

  With `model.cfg.loss_impl == "fused"` the output projection and the loss run together in
  vocabulary chunks, never materializing the [tokens, vocab] logits.
  """
  inputs = (batch["inputs"], batch["segment_ids"], batch["positions"])
  if model.cfg.loss_impl == "fused":
    hidden, head = model.apply({"params": params}, *inputs, return_hidden=True)
    loss_sum, weight_sum, _ = fused_linear_cross_entropy(
      hidden.reshape(-1, hidden.shape[-1]),
      head,
      batch["targets"].reshape(-1),
      batch["loss_weights"].reshape(-1).astype(jnp.float32),
    )
    return loss_sum, weight_sum
  logits, _ = model.apply({"params": params}, *inputs)
  return weighted_cross_entropy(logits, batch["targets"], batch["loss_weights"])


def token_logprobs(
  model: nn.Module, params: PyTree, sequences: Batch, prefix: str = ""
) -> jax.Array:
  """log p(target | inputs so far) at every position of [B, L] sequences (`{prefix}inputs`,
  `targets`, `segment_ids`, `positions`) -> [B, L] float32, differentiable. The fused path gives
  the same numbers without [tokens, vocab] logits."""
  inputs = tuple(sequences[prefix + k] for k in ("inputs", "segment_ids", "positions"))
  targets = sequences[prefix + "targets"]
  if model.cfg.loss_impl == "fused":
    hidden, head = model.apply({"params": params}, *inputs, return_hidden=True)
    _, _, logprobs = fused_linear_cross_entropy(
      hidden.reshape(-1, hidden.shape[-1]),
      head,
      targets.reshape(-1),
      jnp.zeros(targets.size, jnp.float32),
    )
    logprobs = logprobs.reshape(targets.shape)
  else:
    logits, _ = model.apply({"params": params}, *inputs)
    logits = logits.astype(jnp.float32)
    is_target = targets[..., None] == jnp.arange(logits.shape[-1], dtype=targets.dtype)
    target_logits = jnp.sum(jnp.where(is_target, logits, 0.0), axis=-1)
    logprobs = target_logits - jax.nn.logsumexp(logits, axis=-1)
  return logprobs


def sequence_logprobs(
  model: nn.Module, params: PyTree, sequences: Batch, prefix: str = ""
) -> jax.Array:
  """Per-row sums of the target tokens' log-probabilities, counting tokens whose
  `{prefix}loss_weights` is non-zero: log pi(response | prompt) of [B, L] sequences whose weights
  mark the response (see `token_logprobs`)."""
  logprobs = token_logprobs(model, params, sequences, prefix)
  weights = sequences[prefix + "loss_weights"]
  return jnp.sum(jnp.where(weights != 0, logprobs, 0.0), axis=-1)


@dataclasses.dataclass(frozen=True)
class LanguageModelObjective:
  """Weighted next-token cross-entropy of a Transformer; the weight sum counts tokens."""

  model: nn.Module

  def __call__(
    self,
    params: PyTree,
    model_state: PyTree,
    frozen: PyTree,
    batch: Batch,
    rng: jax.Array,
    train: bool,
  ) -> LossOutput:
    del frozen, rng, train
    loss_sum, weight_sum = token_loss_sums(self.model, params, batch)
    return LossOutput(loss_sum, weight_sum, {}, model_state)
