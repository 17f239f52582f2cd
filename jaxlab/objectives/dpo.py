"""Direct preference optimization on pairs of responses to one prompt.

A pair batch holds both responses as rows of [B, 2, L] arrays under the `pair_` prefix (inputs,
targets, segment_ids, positions, loss_weights marking the response tokens) and a preference
`label` [B] (1: the first response is better, 0: the second) with `label_weight` [B] (0: no
label, e.g. a tie or a padding row). The reference model is frozen state: `frozen["reference"]`.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.objectives.base import Batch, LossOutput, PyTree
from jaxlab.objectives.lm import sequence_logprobs

PAIR_FIELDS = ("inputs", "targets", "segment_ids", "positions", "loss_weights")


def pair_logprobs(model: nn.Module, params: PyTree, batch: Batch) -> jax.Array:
  """log pi(response | prompt) of both responses of every pair -> [B, 2] float32, in one model
  call over the 2B rows."""
  rows = {k: batch["pair_" + k].reshape(-1, batch["pair_" + k].shape[-1]) for k in PAIR_FIELDS}
  return sequence_logprobs(model, params, rows).reshape(-1, 2)


def response_lengths(batch: Batch) -> jax.Array:
  """Scored tokens (response and EOS) of both responses of every pair -> [B, 2] float32."""
  return jnp.sum(batch["pair_loss_weights"] != 0, axis=-1).astype(jnp.float32)


def chosen_nll(policy: jax.Array, lengths: jax.Array, first_wins: jax.Array) -> jax.Array:
  """The chosen response's negative log-likelihood per token [B]: the NLL term that keeps
  iterated DPO from pushing probability off well-formed responses (iterative RPO)."""
  per_token = -policy / jnp.maximum(lengths, 1.0)
  return jnp.where(first_wins, per_token[:, 0], per_token[:, 1])


def implicit_rewards(policy: jax.Array, reference: jax.Array, beta: float) -> jax.Array:
  """DPO's implicit reward beta * (log pi - log pi_ref), elementwise."""
  return beta * (policy - reference)


def dpo_terms(rewards: jax.Array, first_wins: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(loss [B], chosen reward [B], rejected reward [B]) from rewards [B, 2] and which response
  won; loss = -log sigmoid(chosen - rejected)."""
  chosen = jnp.where(first_wins, rewards[:, 0], rewards[:, 1])
  rejected = jnp.where(first_wins, rewards[:, 1], rewards[:, 0])
  return -jax.nn.log_sigmoid(chosen - rejected), chosen, rejected


def dpo_metric_sums(
  weight: jax.Array, chosen: jax.Array, rejected: jax.Array
) -> dict[str, jax.Array]:
  """Weighted sums of reward accuracy, chosen/rejected rewards and their margin."""
  margin = chosen - rejected
  return {
    "reward_accuracy": jnp.sum(weight * (margin > 0)),
    "chosen_reward": jnp.sum(weight * chosen),
    "rejected_reward": jnp.sum(weight * rejected),
    "margin": jnp.sum(weight * margin),
  }


@dataclasses.dataclass(frozen=True)
class DPOObjective:
  """DPO on labelled pairs against `frozen["reference"]`, plus `nll_weight` times the chosen
  response's per-token NLL; the weight sum counts labelled pairs, so the loss and metrics are
  means over them."""

  model: nn.Module
  beta: float = 0.1
  nll_weight: float = 0.0

  def __call__(
    self,
    params: PyTree,
    model_state: PyTree,
    frozen: PyTree,
    batch: Batch,
    rng: jax.Array,
    train: bool,
  ) -> LossOutput:
    del rng, train
    policy = pair_logprobs(self.model, params, batch)
    reference = jax.lax.stop_gradient(pair_logprobs(self.model, frozen["reference"], batch))
    rewards = implicit_rewards(policy, reference, self.beta)
    first_wins = batch["label"] > 0.5
    losses, chosen, rejected = dpo_terms(rewards, first_wins)
    nll = chosen_nll(policy, response_lengths(batch), first_wins)
    weight = batch["label_weight"].astype(jnp.float32)
    return LossOutput(
      jnp.sum(weight * (losses + self.nll_weight * nll)),
      jnp.sum(weight),
      {**dpo_metric_sums(weight, chosen, rejected), "chosen_nll": jnp.sum(weight * nll)},
      model_state,
    )
