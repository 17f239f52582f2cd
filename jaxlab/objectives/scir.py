"""SCIR: self-consistent internal rewards (arXiv 2502.08922, reconstructed; see docs/scir.md).

One set of parameters holds two reward models of a pair (x, y1, y2):
- the implicit reward model (IRM): P_I = sigmoid(r(y1) - r(y2)) with
  r(y) = beta * (log pi(y|x) - log pi_label(y|x)), where pi_label is `frozen["label_reference"]`
  (the model one iteration back; see `SCIRSettings.irm_reference` for why not the current
  iteration's start);
- the generative judge (GRM): the model reads a judge prompt showing the pair in both orders and
  P_G = 0.5 * (P(first verdict | y1, y2) + P(second verdict | y2, y1)), each probability a
  softmax over the logits of the two verdict tokens at the prompt's last position.
The loss pushes the two to agree (symmetric KL), to be confident (entropy of their mean), and
runs DPO against `frozen["reference"]` (the iteration's starting model) on the pairs whose two
predictions pick the same winner. Both reward models are differentiable.

Besides the pair fields of `jaxlab.objectives.dpo`, a batch holds the judge prompts as [B, 2, J]
arrays `judge_inputs`, `judge_segment_ids`, `judge_positions` (left-padded, order (y1, y2)
first) and `pair_weight` [B] (0 for padding rows).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.objectives.base import Batch, LossOutput, PyTree
from jaxlab.objectives.dpo import (
  chosen_nll,
  dpo_terms,
  implicit_rewards,
  pair_logprobs,
  response_lengths,
)

IRM_REFERENCES = ("previous", "iteration_start")
_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class SCIRSettings:
  """The `scir` loss section. `irm_reference`: which model the implicit reward for labelling
  compares against. "previous" (the model one iteration back) gives informative rewards from
  the first step; "iteration_start" (the paper's wording) makes P_I = 0.5 for every pair when an
  iteration starts, so nothing is selected until the policy has moved."""

  beta: float = 0.1
  consistency_weight: float = 1.0
  confidence_weight: float = 0.1
  tau: float = 0.0  # selection margin: both |P - 0.5| >= tau
  nll_weight: float = 0.0  # per-token NLL of the chosen response, for every DPO-trained method
  irm_reference: str = "previous"

  def validate(self) -> None:
    if self.beta <= 0:
      raise ValueError(f"scir.beta must be > 0, got {self.beta}")
    if min(self.consistency_weight, self.confidence_weight, self.nll_weight) < 0:
      raise ValueError(
        "scir.consistency_weight, scir.confidence_weight and scir.nll_weight must be >= 0"
      )
    if not 0 <= self.tau < 0.5:
      raise ValueError(f"scir.tau must be in [0, 0.5), got {self.tau}")
    if self.irm_reference not in IRM_REFERENCES:
      raise ValueError(
        f"scir.irm_reference must be one of {', '.join(IRM_REFERENCES)}, got {self.irm_reference!r}"
      )


def judge_probability(
  model: nn.Module, params: PyTree, batch: Batch, verdict_ids: tuple[int, int]
) -> jax.Array:
  """P_G(y1 better) [B], averaged over both presentation orders. Only the last position of each
  judge prompt is projected, and only onto the two verdict tokens."""
  shape = batch["judge_inputs"].shape
  rows = [batch[k].reshape(-1, shape[-1]) for k in ("judge_inputs", "judge_segment_ids")]
  positions = batch["judge_positions"].reshape(-1, shape[-1])
  hidden, head = model.apply({"params": params}, *rows, positions, return_hidden=True)
  last = hidden[:, -1].astype(jnp.float32)
  logits = last @ head[:, jnp.asarray(verdict_ids)].astype(jnp.float32)  # [2B, 2]
  first_verdict = jax.nn.softmax(logits, axis=-1)[:, 0].reshape(-1, 2)
  return 0.5 * (first_verdict[:, 0] + (1.0 - first_verdict[:, 1]))


def bernoulli_symmetric_kl(p: jax.Array, q: jax.Array) -> jax.Array:
  """KL(B(p) || B(q)) + KL(B(q) || B(p)) = (p - q) * (logit p - logit q)."""
  p, q = jnp.clip(p, _EPS, 1 - _EPS), jnp.clip(q, _EPS, 1 - _EPS)
  return (p - q) * (jnp.log(p) - jnp.log1p(-p) - jnp.log(q) + jnp.log1p(-q))


def bernoulli_entropy(p: jax.Array) -> jax.Array:
  p = jnp.clip(p, _EPS, 1 - _EPS)
  return -p * jnp.log(p) - (1 - p) * jnp.log1p(-p)


def agreed_selection(p_implicit: jax.Array, p_judge: jax.Array, tau: float) -> jax.Array:
  """Pairs whose two predictions pick the same winner, each at least `tau` away from 0.5."""
  agree = (p_implicit - 0.5) * (p_judge - 0.5) > 0
  margin = jnp.minimum(jnp.abs(p_implicit - 0.5), jnp.abs(p_judge - 0.5))
  return agree & (margin >= tau)


@dataclasses.dataclass(frozen=True)
class RewardPredictions:
  """Both internal reward models' P(y1 better) and the policy's implicit DPO rewards."""

  p_implicit: jax.Array  # [B]
  p_judge: jax.Array  # [B]
  dpo_rewards: jax.Array  # [B, 2], against the iteration's starting model
  policy: jax.Array  # [B, 2] log pi of both responses


def reward_predictions(
  model: nn.Module,
  params: PyTree,
  frozen: PyTree,
  batch: Batch,
  settings: SCIRSettings,
  verdict_ids: tuple[int, int],
) -> RewardPredictions:
  """What SCIR's loss and the labelling of pairs both read; references are not differentiated."""
  policy = pair_logprobs(model, params, batch)
  reference = jax.lax.stop_gradient(pair_logprobs(model, frozen["reference"], batch))
  label_reference = reference
  if settings.irm_reference == "previous":
    label_reference = jax.lax.stop_gradient(pair_logprobs(model, frozen["label_reference"], batch))
  label_rewards = implicit_rewards(policy, label_reference, settings.beta)
  return RewardPredictions(
    p_implicit=jax.nn.sigmoid(label_rewards[:, 0] - label_rewards[:, 1]),
    p_judge=judge_probability(model, params, batch, verdict_ids),
    dpo_rewards=implicit_rewards(policy, reference, settings.beta),
    policy=policy,
  )


@dataclasses.dataclass(frozen=True)
class SCIRObjective:
  """L = (DPO + nll_weight * chosen NLL)(selected pairs) + consistency_weight * symKL(P_G, P_I)
  + confidence_weight * H((P_G + P_I) / 2). Every term is summed over the batch and divided by
  the number of pairs, so the DPO term counts unselected pairs as 0 and any split of the batch
  gives the same gradient."""

  model: nn.Module
  settings: SCIRSettings
  verdict_ids: tuple[int, int]

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
    s = self.settings
    pred = reward_predictions(self.model, params, frozen, batch, s, self.verdict_ids)
    weight = batch["pair_weight"].astype(jnp.float32)
    selected = agreed_selection(pred.p_implicit, pred.p_judge, s.tau).astype(jnp.float32) * weight
    first_wins = jax.lax.stop_gradient(pred.p_judge) > 0.5
    dpo, _, _ = dpo_terms(pred.dpo_rewards, first_wins)
    dpo = dpo + s.nll_weight * chosen_nll(pred.policy, response_lengths(batch), first_wins)
    consistency = bernoulli_symmetric_kl(pred.p_judge, pred.p_implicit)
    confidence = bernoulli_entropy(0.5 * (pred.p_judge + pred.p_implicit))
    loss_sum = (
      jnp.sum(selected * dpo)
      + s.consistency_weight * jnp.sum(weight * consistency)
      + s.confidence_weight * jnp.sum(weight * confidence)
    )
    agree = agreed_selection(pred.p_implicit, pred.p_judge, 0.0).astype(jnp.float32)
    metrics = {
      "agreement": jnp.sum(weight * agree),
      "selected": jnp.sum(selected),
      "dpo_loss": jnp.sum(selected * dpo),
      "consistency_loss": jnp.sum(weight * consistency),
      "confidence_loss": jnp.sum(weight * confidence),
      "p_implicit": jnp.sum(weight * pred.p_implicit),
      "p_judge": jnp.sum(weight * pred.p_judge),
    }
    return LossOutput(loss_sum, jnp.sum(weight), metrics, model_state)
