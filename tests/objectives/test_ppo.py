"""PPO: GAE against a NumPy loop on hand numbers, the per-token rewards (kl_coef used), the losses
against a direct NumPy computation, and the objective on an actor and a critic."""

from __future__ import annotations

import dataclasses
import functools
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.models.transformer import Transformer, TransformerConfig
from jaxlab.models.value_head import ValueModel, critic_params
from jaxlab.objectives import ppo
from jaxlab.objectives.lm import token_logprobs
from jaxlab.train.optimizer import AdamWSettings

# Two rows of 6 positions: responses at 2..4 and 1..5.
REWARDS = np.array([[0.0, 0.0, 0.1, -0.2, 1.0, 0.0], [0.0, 0.3, 0.0, 0.0, 0.0, -1.5]], np.float32)
VALUES = np.array([[9.0, 9.0, 0.5, 0.4, 0.8, 9.0], [9.0, 0.2, -0.1, 0.0, 0.3, -0.6]], np.float32)
MASK = np.array([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]], np.float32)


def numpy_gae(rewards, values, mask, gamma, lam):
  """DeepSpeed-Chat's loop: from the last response token back, values past the end are 0."""
  advantages = np.zeros_like(rewards)
  for row in range(len(rewards)):
    positions = np.flatnonzero(mask[row])
    running = 0.0
    for t in reversed(positions):
      next_value = values[row, t + 1] if t + 1 in positions else 0.0
      delta = rewards[row, t] + gamma * next_value - values[row, t]
      running = delta + gamma * lam * running
      advantages[row, t] = running
  return advantages, (advantages + values) * mask


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0)])
def test_gae_matches_a_numpy_loop(gamma, lam):
  advantages, returns = ppo.gae(jnp.asarray(REWARDS), jnp.asarray(VALUES), MASK, gamma, lam)
  want_advantages, want_returns = numpy_gae(REWARDS, VALUES, MASK, gamma, lam)
  np.testing.assert_allclose(np.asarray(advantages), want_advantages, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(returns), want_returns, rtol=1e-6, atol=1e-6)


def test_gae_hand_numbers():
  # Row 0 by hand, gamma 1, lambda 0.95: deltas at t=4,3,2 are 1-0.8, -0.2+0.8-0.4, 0.1+0.4-0.5.
  advantages, returns = ppo.gae(jnp.asarray(REWARDS), jnp.asarray(VALUES), MASK, 1.0, 0.95)
  a4 = 1.0 - 0.8
  a3 = (-0.2 + 0.8 - 0.4) + 0.95 * a4
  a2 = (0.1 + 0.4 - 0.5) + 0.95 * a3
  np.testing.assert_allclose(np.asarray(advantages)[0], [0, 0, a2, a3, a4, 0], atol=1e-6)
  # With lambda = gamma = 1 the return is the sum of the rewards still to come.
  _, returns = ppo.gae(jnp.asarray(REWARDS), jnp.asarray(VALUES), MASK, 1.0, 1.0)
  np.testing.assert_allclose(np.asarray(returns)[0], [0, 0, 0.9, 0.8, 1.0, 0], atol=1e-6)
  np.testing.assert_allclose(np.asarray(returns)[1, 1], 0.3 - 1.5, atol=1e-6)


def test_token_rewards_put_the_clipped_score_on_the_last_token_and_use_kl_coef():
  logprobs = jnp.asarray([[0.0, -1.0, -0.5, -0.2], [0.0, -0.3, -0.3, 0.0]])
  reference = jnp.asarray([[0.0, -1.5, -0.5, -0.1], [0.0, -0.1, -0.4, 0.0]])
  mask = jnp.asarray([[0, 1, 1, 1], [0, 1, 1, 0]], jnp.float32)
  scores = jnp.asarray([7.0, -0.25])
  rewards = np.asarray(ppo.token_rewards(scores, logprobs, reference, mask, 0.4, 5.0))
  np.testing.assert_allclose(rewards[0], [0, -0.4 * 0.5, 0, -0.4 * -0.1 + 5.0], atol=1e-6)
  np.testing.assert_allclose(rewards[1], [0, -0.4 * -0.2, -0.4 * 0.1 - 0.25, 0], atol=1e-6)
  other = np.asarray(ppo.token_rewards(scores, logprobs, reference, mask, 0.1, 5.0))
  assert not np.allclose(rewards, other)
  np.testing.assert_allclose(other[0, 1], -0.1 * 0.5, atol=1e-6)
  # No response, no reward.
  empty = ppo.last_positions(jnp.zeros((1, 4)))
  assert float(jnp.sum(empty)) == 0.0


def test_policy_and_value_terms_match_numpy():
  rng = np.random.default_rng(0)
  shape = (3, 5)
  batch = {
    "old_logprobs": rng.normal(-1, 0.3, shape),
    "ref_logprobs": rng.normal(-1, 0.3, shape),
    "advantages": rng.normal(0, 1, shape),
    "old_values": rng.normal(0, 1, shape),
    "returns": rng.normal(0, 1, shape),
  }
  logprobs = batch["old_logprobs"] + rng.normal(0, 0.4, shape)
  values = batch["old_values"] + rng.normal(0, 0.5, shape)
  settings = ppo.PPOSettings(clip_eps=0.2, value_clip=0.2)
  terms = ppo.ppo_token_terms(jnp.asarray(logprobs), jnp.asarray(values), batch, settings)
  ratio = np.exp(logprobs - batch["old_logprobs"])
  adv = batch["advantages"]
  want_policy = np.maximum(-adv * ratio, -adv * np.clip(ratio, 0.8, 1.2))
  clipped = batch["old_values"] + np.clip(values - batch["old_values"], -0.2, 0.2)
  want_value = 0.5 * np.maximum((values - batch["returns"]) ** 2, (clipped - batch["returns"]) ** 2)
  np.testing.assert_allclose(np.asarray(terms["policy_loss"]), want_policy, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(terms["value_loss"]), want_value, rtol=1e-5)
  clipped_share = np.asarray(terms["clip_fraction"])
  np.testing.assert_array_equal(clipped_share, (np.abs(ratio - 1) > 0.2).astype(np.float32))
  assert 0 < clipped_share.mean() < 1  # the draw exercises both branches


# ---------------------------------------------------------------------------------- on a model

CFG = TransformerConfig(
  vocab_size=32,
  d_model=16,
  n_layers=1,
  n_heads=2,
  n_kv_heads=1,
  d_ff=32,
  max_seq_len=16,
  scan_layers=False,
)


def _rows():
  rng = np.random.default_rng(1)
  inputs = rng.integers(3, 32, (4, 8)).astype(np.int32)
  targets = np.concatenate([inputs[:, 1:], rng.integers(3, 32, (4, 1))], axis=1).astype(np.int32)
  mask = np.zeros((4, 8), np.float32)
  for row, (start, end) in enumerate([(3, 8), (2, 5), (4, 6), (1, 8)]):
    mask[row, start:end] = 1
  segment_ids = np.ones((4, 8), np.int32)
  segment_ids[1, 5:] = 0  # padding after a short response
  return {
    "inputs": inputs,
    "targets": targets,
    "segment_ids": segment_ids,
    "positions": np.tile(np.arange(8, dtype=np.int32), (4, 1)),
    "response_mask": mask,
  }


@functools.cache
def _params(seed=0):
  actor = Transformer(CFG)
  variables = jax.jit(actor.init)(jax.random.PRNGKey(seed), jnp.zeros((1, 8), jnp.int32))
  return actor, nn.unbox(variables)["params"]


@functools.partial(jax.jit, static_argnums=(1, 2))
def _perturbed(params, seed, scale=0.1):
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(
    tree, [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
  )


def _experience(actor, critic, settings):
  return jax.jit(functools.partial(ppo.experience, actor, critic, settings))


def test_experience_uses_kl_coef_and_the_reference():
  actor, sft = _params()
  critic = ValueModel(CFG)
  params = {"actor": _perturbed(sft, 1), "critic": critic_params(sft, CFG)}
  rows, scores = _rows(), jnp.asarray([1.0, -2.0, -0.25, 1.0])
  run = lambda settings: _experience(actor, critic, settings)(params, sft, rows, scores)
  base = run(ppo.PPOSettings(kl_coef=0.4))
  stronger = run(ppo.PPOSettings(kl_coef=0.8))
  mask = rows["response_mask"]
  kl = np.asarray(base["old_logprobs"] - base["ref_logprobs"])
  assert np.abs(kl * mask).max() > 1e-3  # the perturbed actor differs from its reference
  np.testing.assert_allclose(
    np.asarray(stronger["rewards"] - base["rewards"]), -0.4 * kl * mask, atol=1e-5
  )
  assert not np.allclose(np.asarray(stronger["advantages"]), np.asarray(base["advantages"]))
  # A fresh critic (zero head) values every state at 0: returns are the rewards still to come.
  assert float(jnp.abs(base["old_values"]).max()) == 0.0
  want, _ = numpy_gae(np.asarray(base["rewards"]), np.zeros((4, 8)), mask, 1.0, 0.95)
  np.testing.assert_allclose(np.asarray(base["advantages"]), want, atol=1e-5)
  # Old log-probabilities are the actor's own, on the response tokens only.
  own = np.asarray(jax.jit(functools.partial(token_logprobs, actor))(params["actor"], rows)) * mask
  np.testing.assert_allclose(np.asarray(base["old_logprobs"]), own, atol=1e-6)


def test_objective_is_the_token_mean_and_trains_each_model_with_its_own_loss():
  actor, sft = _params()
  critic = ValueModel(CFG)
  settings = ppo.PPOSettings()
  start = {"actor": sft, "critic": critic_params(_perturbed(sft, 3), CFG)}
  start["critic"]["value_head"]["kernel"] = 0.1 * jnp.ones((CFG.d_model, 1))
  rows, scores = _rows(), jnp.asarray([1.0, -2.0, -0.25, 1.0])
  batch = {**rows, **_experience(actor, critic, settings)(start, sft, rows, scores)}
  objective = ppo.PPOObjective(actor, critic, settings)
  params = {"actor": _perturbed(sft, 4, 0.3), "critic": _perturbed(start["critic"], 5, 0.3)}
  out = jax.jit(lambda p: objective(p, {}, {"reference": sft}, batch, None, True))(params)
  mask = rows["response_mask"]
  assert float(out.weight_sum) == mask.sum()

  def want_terms(params):
    logprobs = token_logprobs(actor, params["actor"], batch)
    values = critic.apply(
      {"params": params["critic"]}, batch["inputs"], batch["segment_ids"], batch["positions"]
    )
    return ppo.ppo_token_terms(logprobs, values, batch, settings)

  terms = jax.jit(want_terms)(params)
  want = float(jnp.sum((terms["policy_loss"] + terms["value_loss"]) * mask))
  assert float(out.loss_sum) == pytest.approx(want, rel=1e-5)
  assert 0 < float(out.metrics["clip_fraction"]) < mask.sum()  # perturbed enough to clip some

  # The policy loss moves only the actor and the value loss only the critic.
  def grads(name):
    return jax.grad(lambda p: objective(p, {}, {}, batch, None, True).metrics[name])(params)

  value, policy = jax.jit(lambda: (grads("value_loss"), grads("policy_loss")))()
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(value["actor"]))
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(value["critic"]))
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(policy["critic"]))
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(policy["actor"]))


def test_at_the_rollout_parameters_the_ratio_is_one_and_nothing_is_clipped():
  actor, sft = _params()
  critic = ValueModel(CFG)
  params = {"actor": _perturbed(sft, 6), "critic": critic_params(sft, CFG)}
  rows, scores = _rows(), jnp.asarray([1.0, -1.5, -0.25, -2.0])
  settings = ppo.PPOSettings()
  batch = {**rows, **_experience(actor, critic, settings)(params, sft, rows, scores)}
  objective = ppo.PPOObjective(actor, critic, settings)
  out = jax.jit(lambda p: objective(p, {}, {}, batch, None, True))(params)
  assert float(out.metrics["clip_fraction"]) == 0.0
  assert float(out.metrics["approx_kl"]) == pytest.approx(0.0, abs=1e-6)
  # The policy loss is then -sum(A) over the response tokens.
  want = -float(np.sum(np.asarray(batch["advantages"]) * rows["response_mask"]))
  assert float(out.metrics["policy_loss"]) == pytest.approx(want, rel=1e-5)


def test_actor_and_critic_get_their_own_learning_rates():
  opt = AdamWSettings(lr=1.0, warmup_steps=0, decay="constant", weight_decay=0.0, clip_norm=0.0)
  tx, schedule = ppo.actor_critic_optimizer(opt, actor_lr=1e-2, critic_lr=1e-4, total_steps=10)
  params = {"actor": {"w": jnp.ones(3)}, "critic": {"w": jnp.ones(3)}}
  grads = {"actor": {"w": jnp.ones(3)}, "critic": {"w": jnp.ones(3)}}
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam's first step moves every parameter by its learning rate.
  np.testing.assert_allclose(np.asarray(updates["actor"]["w"]), -1e-2, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(updates["critic"]["w"]), -1e-4, rtol=1e-4)
  assert float(schedule(0)) == pytest.approx(1e-2)
  assert isinstance(tx, optax.GradientTransformation)


def test_settings_validate():
  ppo.PPOSettings().validate()
  for bad, message in [
    (dict(kl_coef=-0.1), "ppo.kl_coef must be >= 0"),
    (dict(lam=1.5), "ppo.lam must be in [0, 1]"),
    (dict(clip_eps=0.0), "ppo.clip_eps must be positive"),
    (dict(updates_per_batch=0), "ppo.updates_per_batch must be at least 1"),
  ]:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
      dataclasses.replace(ppo.PPOSettings(), **bad).validate()


def test_explained_variance():
  returns = np.array([[1.0, 2.0, 3.0, 9.0]])
  mask = np.array([[1, 1, 1, 0]])
  assert ppo.explained_variance(returns, returns, mask) == 1.0
  assert ppo.explained_variance(np.zeros((1, 4)), returns, mask) == pytest.approx(0.0)
  assert np.isnan(ppo.explained_variance(returns, np.ones((1, 4)), mask))


def _left_padded(rows, pad):
  """`rows` with `pad` padding tokens in front (segment 0), positions still from 0."""
  out = {}
  for name, value in rows.items():
    value = np.asarray(value)
    out[name] = np.concatenate([np.zeros((len(value), pad), value.dtype), value], axis=1)
  return out


def test_a_left_padded_batch_gets_the_values_and_losses_of_the_unpadded_one():
  """The critic sees each row's segments and positions: padding in front changes nothing."""
  actor, sft = _params()
  critic = ValueModel(CFG)
  params = {"actor": _perturbed(sft, 1), "critic": critic_params(_perturbed(sft, 3), CFG)}
  params["critic"]["value_head"]["kernel"] = 0.1 * jnp.ones((CFG.d_model, 1))
  rows, scores = _rows(), jnp.asarray([1.0, -2.0, -0.25, 1.0])
  padded = _left_padded(rows, 3)
  settings = ppo.PPOSettings()
  plain = _experience(actor, critic, settings)(params, sft, rows, scores)
  shifted = _experience(actor, critic, settings)(params, sft, padded, scores)
  assert float(jnp.abs(plain["old_values"]).max()) > 1e-2  # the critic is not constant 0
  direct = critic.apply(
    {"params": params["critic"]}, rows["inputs"], rows["segment_ids"], rows["positions"]
  )
  np.testing.assert_allclose(plain["old_values"], direct * rows["response_mask"], atol=1e-6)
  for name in ("old_values", "old_logprobs", "advantages", "returns"):
    np.testing.assert_allclose(shifted[name][:, 3:], plain[name], atol=2e-5, err_msg=name)
  objective = ppo.PPOObjective(actor, critic, settings)
  moved = {"actor": _perturbed(sft, 4, 0.3), "critic": _perturbed(params["critic"], 5, 0.3)}
  model_state = {}
  outs = [
    jax.jit(lambda p, b: objective(p, model_state, {}, b, None, True))(moved, {**r, **e})
    for r, e in ((rows, plain), (padded, shifted))
  ]
  assert outs[0].model_state == {}  # PPO passes the (empty) mutable model state through
  for name in ("value_loss", "policy_loss"):
    assert float(outs[1].metrics[name]) == pytest.approx(float(outs[0].metrics[name]), rel=1e-4)


def test_last_positions_and_the_reward_clip_by_hand():
  mask = jnp.asarray(
    [[0, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]]
  )
  last = np.asarray(ppo.last_positions(mask))
  assert last.dtype == np.float32
  assert last.tolist() == [
    [0, 0, 0, 1, 0, 0],
    [1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 1],
  ]
  # Scores beyond +-reward_clip are clipped on both sides.
  zeros = jnp.zeros((4, 6))
  rewards = ppo.token_rewards(jnp.asarray([-7.0, 9.0, 3.0, -2.0]), zeros, zeros, mask, 0.4, 5.0)
  assert np.asarray(rewards).sum(axis=1).tolist() == [-5.0, 5.0, 0.0, -2.0]


def test_kl_metrics_by_hand():
  batch = {
    "old_logprobs": jnp.asarray([[-1.0, -2.0]]),
    "ref_logprobs": jnp.asarray([[-1.5, -1.0]]),
    "advantages": jnp.zeros((1, 2)),
    "old_values": jnp.zeros((1, 2)),
    "returns": jnp.zeros((1, 2)),
  }
  logprobs = jnp.asarray([[-0.5, -2.0]])
  terms = ppo.ppo_token_terms(logprobs, jnp.zeros((1, 2)), batch, ppo.PPOSettings())
  ratio = np.exp([0.5, 0.0])
  np.testing.assert_allclose(terms["approx_kl"], [(ratio - 1) - [0.5, 0.0]], rtol=1e-6)
  np.testing.assert_allclose(terms["kl"], [[1.0, -1.0]])
  assert np.asarray(terms["clip_fraction"]).tolist() == [[1.0, 0.0]]  # ratio e^0.5 > 1.2


def test_settings_accept_their_boundaries():
  for edge in (dict(kl_coef=0.0), dict(gamma=0.0, lam=0.0), dict(gamma=1.0, lam=1.0)):
    dataclasses.replace(ppo.PPOSettings(), **edge).validate()


def test_explained_variance_counts_only_masked_positions():
  returns = np.array([[1.0, 2.0, 3.0, 9.0]])
  values = np.array([[1.0, 2.0, 3.0, 0.0]])  # wrong only where the mask is 0
  assert ppo.explained_variance(values, returns, np.array([[1, 1, 1, 0]])) == 1.0
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # no mean of an empty slice
    assert np.isnan(ppo.explained_variance(values, returns, np.zeros((1, 4))))


def test_initializer_reference_and_batch_spec():
  actor, critic = Transformer(CFG), ValueModel(CFG)
  key = jax.random.PRNGKey(7)
  variables = nn.unbox(jax.jit(ppo.actor_critic_init(actor, critic, 8))(key))
  actor_key, critic_key = jax.random.split(key)
  tokens = jnp.zeros((1, 8), jnp.int32)
  want = {
    "actor": nn.unbox(actor.init(actor_key, tokens))["params"],
    "critic": nn.unbox(critic.init(critic_key, tokens))["params"],
  }
  assert list(variables) == ["params"]
  assert jax.tree.structure(variables["params"]) == jax.tree.structure(want)
  for got, expected in zip(jax.tree.leaves(variables["params"]), jax.tree.leaves(want)):
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)
  assert ppo.reference_frozen({"actor": "A", "critic": "C"}) == {"reference": "A"}
  spec = ppo.batch_fields(seq_len=5, batch_size=3)
  ints = ("inputs", "targets", "segment_ids", "positions")
  floats = ("response_mask", *ppo.EXPERIENCE_FIELDS, "rewards")
  assert sorted(spec) == sorted(ints + floats)
  assert all(spec[k] == jax.ShapeDtypeStruct((3, 5), jnp.int32) for k in ints)
  assert all(spec[k] == jax.ShapeDtypeStruct((3, 5), jnp.float32) for k in floats)
