"""SCIR's loss terms against NumPy, the judge's order averaging, selection, and the reference
trap (the implicit reward against the iteration's starting model is 0 when the iteration
starts)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.objectives.dpo import dpo_terms, pair_logprobs
from jaxlab.objectives.scir import (
  SCIRObjective,
  SCIRSettings,
  agreed_selection,
  bernoulli_entropy,
  bernoulli_symmetric_kl,
  judge_probability,
  reward_predictions,
)
from tests.objectives.preference_helpers import init_params, pair_batch, perturbed, tiny_model

VERDICTS = (ord("A") + 3, ord("B") + 3)  # byte-tokenizer ids of "A" and "B"


def test_bernoulli_terms_match_numpy():
  p, q = np.array([0.9, 0.2, 0.5, 0.7]), np.array([0.6, 0.3, 0.5, 0.1])
  kl = lambda a, b: a * np.log(a / b) + (1 - a) * np.log((1 - a) / (1 - b))  # noqa: E731
  np.testing.assert_allclose(bernoulli_symmetric_kl(p, q), kl(p, q) + kl(q, p), rtol=1e-5)
  entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
  np.testing.assert_allclose(bernoulli_entropy(p), entropy, rtol=1e-5)
  assert float(bernoulli_symmetric_kl(jnp.asarray(0.3), jnp.asarray(0.3))) == 0.0


def test_selection_needs_the_same_winner_and_the_margin():
  p_i = jnp.asarray([0.9, 0.9, 0.6, 0.5, 0.2])
  p_g = jnp.asarray([0.8, 0.3, 0.7, 0.9, 0.45])
  assert agreed_selection(p_i, p_g, 0.0).tolist() == [True, False, True, False, True]
  assert agreed_selection(p_i, p_g, 0.15).tolist() == [True, False, False, False, False]
  # "At least tau away": a margin of exactly tau (0.125, exact in binary) is selected.
  assert agreed_selection(jnp.asarray([0.75]), jnp.asarray([0.625]), 0.125).tolist() == [True]


def test_entropy_at_certainty_and_selection_at_an_undecided_judge():
  # Clipped away from 0 and 1, so certainty has entropy ~0 rather than 0 * log 0 = NaN.
  entropy = np.asarray(bernoulli_entropy(jnp.asarray([0.0, 1.0, 0.5])))
  assert np.all(np.isfinite(entropy)) and entropy[2] == pytest.approx(np.log(2))
  assert 0 < entropy[0] < 1e-4 and 0 < entropy[1] < 1e-4
  # The symmetric KL is clipped the same way: finite at certainty, on either side.
  half = jnp.asarray([0.5, 0.5, 0.5, 0.5])
  certain = jnp.asarray([0.0, 1.0, 0.0, 1.0])
  kl = np.concatenate(
    [bernoulli_symmetric_kl(certain, half), bernoulli_symmetric_kl(half, certain)]
  )
  assert np.all(np.isfinite(kl)) and np.all(kl > 5.0)  # 0.5 * logit(1 - eps) = 6.9
  # A judge at exactly 0.5 picks no winner, so the pair is not agreed on, at any margin.
  assert agreed_selection(jnp.asarray([0.7]), jnp.asarray([0.5]), 0.0).tolist() == [False]


def test_settings_validate():
  SCIRSettings().validate()
  edges = dict(beta=1e-3, consistency_weight=0.0, confidence_weight=0.0, nll_weight=0.0, tau=0.0)
  SCIRSettings(**edges).validate()
  SCIRSettings(tau=0.49, irm_reference="iteration_start").validate()
  weights = "scir.consistency_weight, scir.confidence_weight and scir.nll_weight must be >= 0"
  for bad, message in [
    (dict(beta=0.0), "scir.beta must be > 0, got 0.0"),
    (dict(consistency_weight=-0.1), weights),
    (dict(confidence_weight=-0.1), weights),
    (dict(nll_weight=-0.1), weights),
    (dict(tau=0.5), "scir.tau must be in [0, 0.5), got 0.5"),
    (dict(tau=-0.1), "scir.tau must be in [0, 0.5), got -0.1"),
    (
      dict(irm_reference="start"),
      "scir.irm_reference must be one of previous, iteration_start, got 'start'",
    ),
  ]:
    with pytest.raises(ValueError) as error:
      SCIRSettings(**bad).validate()
    assert str(error.value) == message


def test_judge_averages_both_orders():
  model = tiny_model()
  params, batch = perturbed(init_params(model), 3, 0.3), pair_batch()
  p = np.asarray(judge_probability(model, params, batch, VERDICTS))
  swapped = {k: v[:, ::-1] if k.startswith("judge_") else v for k, v in batch.items()}
  p_swapped = np.asarray(judge_probability(model, params, swapped, VERDICTS))
  np.testing.assert_allclose(p + p_swapped, 1.0, rtol=1e-6)  # no position bias survives

  # One order by hand: softmax over the two verdict logits at the last prompt position.
  logits, _ = model.apply(
    {"params": params},
    batch["judge_inputs"][:, 0],
    batch["judge_segment_ids"][:, 0],
    batch["judge_positions"][:, 0],
  )
  first = np.asarray(jax.nn.softmax(logits[:, -1][:, list(VERDICTS)], axis=-1))[:, 0]
  logits, _ = model.apply(
    {"params": params},
    batch["judge_inputs"][:, 1],
    batch["judge_segment_ids"][:, 1],
    batch["judge_positions"][:, 1],
  )
  second = np.asarray(jax.nn.softmax(logits[:, -1][:, list(VERDICTS)], axis=-1))[:, 0]
  np.testing.assert_allclose(p, 0.5 * (first + 1 - second), rtol=1e-5)


def test_the_reference_trap():
  """With the iteration's starting model as the implicit reward's reference, P_I is exactly 0.5
  for every pair when the iteration starts, so nothing is selected; the previous model as the
  labelling reference gives informative rewards from the first step."""
  model = tiny_model()
  current, previous = init_params(model, 0), init_params(model, 1)
  batch = pair_batch()
  frozen = {"reference": current, "label_reference": previous}
  trap = reward_predictions(
    model, current, frozen, batch, SCIRSettings(irm_reference="iteration_start"), VERDICTS
  )
  assert np.all(np.asarray(trap.p_implicit) == 0.5)
  assert not np.any(np.asarray(agreed_selection(trap.p_implicit, trap.p_judge, 0.0)))
  informed = reward_predictions(model, current, frozen, batch, SCIRSettings(), VERDICTS)
  assert np.all(np.abs(np.asarray(informed.p_implicit) - 0.5) > 1e-4)
  np.testing.assert_array_equal(informed.dpo_rewards, trap.dpo_rewards)  # DPO keeps M_t


@pytest.mark.parametrize("tau, weights", [(0.0, (1, 1, 1, 1)), (0.02, (1, 0, 1, 1))])
def test_loss_is_the_sum_of_its_terms(tau, weights):
  model = tiny_model()
  settings = SCIRSettings(
    beta=0.5, consistency_weight=0.7, confidence_weight=0.3, tau=tau, nll_weight=0.2
  )
  params, batch = perturbed(init_params(model, 0), 4, 0.2), pair_batch()
  w = np.asarray(weights, np.float32)
  batch = dict(batch, pair_weight=jnp.asarray(w))
  frozen = {"reference": init_params(model, 0), "label_reference": init_params(model, 1)}
  out = SCIRObjective(model, settings, VERDICTS)(params, {}, frozen, batch, None, True)
  assert out.model_state == {}
  pred = reward_predictions(model, params, frozen, batch, settings, VERDICTS)
  p_i, p_g = np.asarray(pred.p_implicit), np.asarray(pred.p_judge)
  # P_I = sigmoid of the implicit-reward difference against the label reference.
  delta = np.asarray(pair_logprobs(model, params, batch)) - np.asarray(
    pair_logprobs(model, frozen["label_reference"], batch)
  )
  want_p_i = 1 / (1 + np.exp(-0.5 * (delta[:, 0] - delta[:, 1])))
  np.testing.assert_allclose(p_i, want_p_i, rtol=1e-5)
  selected = ((p_i - 0.5) * (p_g - 0.5) > 0) & (np.minimum(abs(p_i - 0.5), abs(p_g - 0.5)) >= tau)
  dpo, _, _ = dpo_terms(pred.dpo_rewards, pred.p_judge > 0.5)
  lengths = np.asarray(batch["pair_loss_weights"] != 0).sum(-1)
  per_token_nll = -np.asarray(pred.policy) / lengths
  dpo = np.asarray(dpo) + 0.2 * np.where(p_g > 0.5, per_token_nll[:, 0], per_token_nll[:, 1])
  kl = np.asarray(bernoulli_symmetric_kl(p_g, p_i))
  entropy = np.asarray(bernoulli_entropy((p_g + p_i) / 2))
  sums = {
    "dpo_loss": np.sum(w * selected * np.asarray(dpo)),
    "consistency_loss": np.sum(w * kl),
    "confidence_loss": np.sum(w * entropy),
    "p_implicit": np.sum(w * p_i),
    "p_judge": np.sum(w * p_g),
    "selected": np.sum(w * selected),
    "agreement": np.sum(w * ((p_i - 0.5) * (p_g - 0.5) > 0)),
  }
  want = sums["dpo_loss"] + 0.7 * sums["consistency_loss"] + 0.3 * sums["confidence_loss"]
  assert float(out.weight_sum) == w.sum()
  assert float(out.loss_sum / out.weight_sum) == pytest.approx(want / w.sum(), rel=1e-5)
  assert sorted(out.metrics) == sorted(sums)
  for name, value in sums.items():
    assert float(out.metrics[name]) == pytest.approx(value, rel=1e-5, abs=1e-7), name


def test_both_reward_models_are_trained():
  """The consistency term alone moves the parameters through the judge and through the
  implicit reward: each path's gradient is non-zero."""
  model = tiny_model()
  params, batch = perturbed(init_params(model, 0), 5, 0.2), pair_batch()
  frozen = {"reference": params, "label_reference": init_params(model, 1)}
  settings = SCIRSettings(consistency_weight=1.0, confidence_weight=0.0)

  def term(params, which):
    pred = reward_predictions(model, params, frozen, batch, settings, VERDICTS)
    fixed = jax.lax.stop_gradient
    if which == "judge":
      return jnp.sum(bernoulli_symmetric_kl(pred.p_judge, fixed(pred.p_implicit)))
    return jnp.sum(bernoulli_symmetric_kl(fixed(pred.p_judge), pred.p_implicit))

  for which in ("judge", "implicit"):
    grads = jax.grad(term)(params, which)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)) > 0, which
