"""DPO: the loss and its gradient against a direct NumPy computation, and the objective on a
model (sequence log-probabilities fused or not, the reference in frozen state)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.data.tokenizers import ByteTokenizer
from jaxlab.objectives.dpo import (
  DPOObjective,
  chosen_nll,
  dpo_metric_sums,
  dpo_terms,
  implicit_rewards,
  pair_logprobs,
)
from tests.objectives.preference_helpers import (
  PAIRS,
  init_params,
  pair_batch,
  perturbed,
  tiny_model,
)

BETA = 0.1
POLICY = np.array([[-12.0, -15.5], [-30.2, -29.0], [-7.0, -7.0], [-3.3, -9.9]])
REFERENCE = np.array([[-13.0, -14.0], [-31.0, -28.5], [-7.5, -6.0], [-3.0, -9.0]])
FIRST_WINS = np.array([True, False, True, False])
WEIGHT = np.array([1.0, 1.0, 1.0, 0.0])


def numpy_dpo(policy, reference, first_wins, weight, beta):
  """Mean loss over weighted pairs and its gradient w.r.t. the policy log-probabilities."""
  chosen = np.where(first_wins, 0, 1)
  rows = np.arange(len(policy))
  delta = policy - reference
  margin = beta * (delta[rows, chosen] - delta[rows, 1 - chosen])
  loss = np.log1p(np.exp(-margin))
  grad = np.zeros_like(policy)
  coef = -beta / (1 + np.exp(margin)) * weight / weight.sum()
  grad[rows, chosen] = coef
  grad[rows, 1 - chosen] = -coef
  return float((weight * loss).sum() / weight.sum()), grad


def test_dpo_loss_and_gradient_match_numpy():
  def mean_loss(policy):
    rewards = implicit_rewards(policy, jnp.asarray(REFERENCE), BETA)
    losses, _, _ = dpo_terms(rewards, jnp.asarray(FIRST_WINS))
    return jnp.sum(WEIGHT * losses) / jnp.sum(WEIGHT)

  loss, grad = jax.value_and_grad(mean_loss)(jnp.asarray(POLICY))
  want_loss, want_grad = numpy_dpo(POLICY, REFERENCE, FIRST_WINS, WEIGHT, BETA)
  np.testing.assert_allclose(float(loss), want_loss, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-5, atol=1e-8)
  assert np.all(want_grad[3] == 0)  # the unweighted pair contributes nothing


def test_chosen_and_rejected_follow_the_label():
  rewards = jnp.asarray([[1.0, 2.0], [1.0, 2.0]])
  _, chosen, rejected = dpo_terms(rewards, jnp.asarray([True, False]))
  assert chosen.tolist() == [1.0, 2.0] and rejected.tolist() == [2.0, 1.0]


def test_metric_sums_and_chosen_nll_by_hand():
  weight = jnp.asarray([1.0, 1.0, 1.0, 0.0])
  chosen, rejected = jnp.asarray([0.5, 1.0, 0.0, 2.0]), jnp.asarray([0.2, 1.0, 0.2, 0.0])
  sums = {k: float(v) for k, v in dpo_metric_sums(weight, chosen, rejected).items()}
  # Margins 0.3, 0, -0.2 (and 2.0 unweighted): only a positive margin is a win.
  assert sums["reward_accuracy"] == 1.0
  assert sums == pytest.approx(
    {"reward_accuracy": 1.0, "chosen_reward": 1.5, "rejected_reward": 1.4, "margin": 0.1}
  )
  # Per-token NLL of the chosen response; a one-token and an empty response divide by 1.
  policy = jnp.asarray([[-6.0, -3.0], [-2.0, -8.0], [-9.0, -4.0]])
  lengths = jnp.asarray([[3.0, 1.0], [0.0, 4.0], [3.0, 2.0]])
  nll = chosen_nll(policy, lengths, jnp.asarray([False, True, True]))
  assert nll.tolist() == [3.0, 2.0, 3.0]


def numpy_sequence_logprob(model, params, prompt, response):
  """log p(response + EOS | BOS + prompt) from full logits, one token at a time."""
  tok = ByteTokenizer()
  ids = [tok.bos_id] + tok.encode(prompt) + tok.encode(response) + [tok.eos_id]
  logits, _ = model.apply({"params": params}, jnp.asarray([ids[:-1]]))
  logp = np.asarray(jax.nn.log_softmax(logits[0].astype(jnp.float32)))
  start = 1 + len(tok.encode(prompt)) - 1
  return sum(logp[t, ids[t + 1]] for t in range(start, len(ids) - 1))


@pytest.mark.parametrize("loss_impl", ["xla", "fused"])
def test_pair_logprobs_sum_the_response_tokens(loss_impl):
  model = tiny_model(loss_impl)
  params = init_params(model)
  got = np.asarray(pair_logprobs(model, params, pair_batch()))
  want = [[numpy_sequence_logprob(model, params, p, r) for r in (a, b)] for p, a, b in PAIRS]
  np.testing.assert_allclose(got, want, rtol=2e-5)


def test_objective_against_its_reference():
  model = tiny_model()
  params, batch = init_params(model), pair_batch()
  batch = dict(batch, label=jnp.asarray([1.0, 0.0, 1.0, 1.0]), label_weight=jnp.ones(4))
  objective = DPOObjective(model, beta=BETA)
  model_state = {}
  same = objective(params, model_state, {"reference": params}, batch, None, True)
  assert same.model_state is model_state  # DPO leaves the model's mutable state as it is
  assert float(same.loss_sum / same.weight_sum) == pytest.approx(np.log(2), rel=1e-6)
  assert float(same.metrics["reward_accuracy"]) == 0.0  # a zero margin is not a win

  policy = perturbed(params, 1)
  out = objective(policy, {}, {"reference": params}, batch, None, True)
  want, _ = numpy_dpo(
    np.asarray(pair_logprobs(model, policy, batch)),
    np.asarray(pair_logprobs(model, params, batch)),
    np.asarray(batch["label"]) > 0.5,
    np.ones(4),
    BETA,
  )
  assert float(out.loss_sum / out.weight_sum) == pytest.approx(want, rel=1e-5)
  assert float(out.weight_sum) == 4.0
  margin = float(out.metrics["chosen_reward"] - out.metrics["rejected_reward"])
  assert margin == pytest.approx(float(out.metrics["margin"]), rel=1e-5, abs=1e-7)


def test_the_reference_gets_no_gradient():
  model = tiny_model()
  params, batch = init_params(model), pair_batch()
  batch = dict(batch, label=jnp.ones(4), label_weight=jnp.ones(4))
  objective = DPOObjective(model, beta=BETA)
  grads = jax.grad(
    lambda ref: objective(perturbed(params, 2), {}, {"reference": ref}, batch, None, True).loss_sum
  )(params)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))


def test_the_nll_term_adds_the_chosen_per_token_nll():
  model = tiny_model()
  params, batch = init_params(model), pair_batch()
  batch = dict(batch, label=jnp.asarray([1.0, 0.0, 1.0, 0.0]), label_weight=jnp.ones(4))
  policy = perturbed(params, 1)
  plain = DPOObjective(model, beta=BETA)(policy, {}, {"reference": params}, batch, None, True)
  with_nll = DPOObjective(model, beta=BETA, nll_weight=0.5)(
    policy, {}, {"reference": params}, batch, None, True
  )
  logps = np.asarray(pair_logprobs(model, policy, batch))
  chosen = [0, 1, 0, 1]
  # Response + EOS tokens of the chosen responses: "abcc", "bbbb", "bbba", "ddd".
  lengths = np.array([5, 5, 5, 4])
  nll = -logps[np.arange(4), chosen] / lengths
  want = float(plain.loss_sum) + 0.5 * nll.sum()
  assert float(with_nll.loss_sum) == pytest.approx(want, rel=1e-5)
  assert float(with_nll.metrics["chosen_nll"]) == pytest.approx(nll.sum(), rel=1e-5)
