"""PPO for an LM policy with a learned critic, as TL-Training's RL stage runs it (arXiv 2412.15495,
after DeepSpeed-Chat): per-token KL penalty plus a clipped sequence reward on the last response
token, GAE, clipped surrogate and clipped value loss, one update per rollout batch.

Parameters are `{"actor": LM params, "critic": ValueModel params}`; the frozen state holds the
reference policy, `frozen["reference"]` (a copy of the starting actor). All three start from the
SFT model (`jaxlab.models.value_head.critic_params` adds a zero value head to its backbone).

Where things are computed:
  `experience` (run by the rollout source, `jaxlab.data.rollouts`, after sampling, under
  `jax.jit`): with the rollout's parameters, the old log-probabilities of the response tokens,
  the reference's log-probabilities (from `frozen["reference"]`), the critic's values, the
  per-token rewards (`token_rewards`) and advantages / returns (`gae`). They enter the batch.
  `PPOObjective` (the train step): the current actor's log-probabilities and the current
  critic's values, and the losses below, over the batch's response tokens.

Rows are next-token rows of [B, L]: `inputs`, `targets`, `segment_ids`, `positions`, and
`response_mask` (1 where the target is a generated token, EOS included). Position t of every
per-token array refers to target t: its log-probability, the value of the state before it.

Per-token reward: r_t = -kl_coef * (log pi_old(t) - log pi_ref(t)) on every response token, plus
clip(R, -reward_clip, reward_clip) on the last, R the sequence's reward. GAE with `gamma` and
`lam`, the value after the last response token taken as 0; returns = advantages + values;
advantages are not whitened. Losses, token means over the batch's response tokens:
  policy: max(-A * ratio, -A * clip(ratio, 1 - clip_eps, 1 + clip_eps)), ratio = pi / pi_old;
  value: 0.5 * max((V - G)^2, (V_old + clip(V - V_old, -value_clip, value_clip) - G)^2).
Actor and critic have separate parameters, so their sum trains each with its own gradient; their
learning rates differ through `actor_critic_optimizer`. No entropy bonus.

With one update per rollout batch (`updates_per_batch=1`, the reference's setting), the update
is taken at the rollout's own parameters, so the ratio is 1 and nothing is clipped; the clips act
from the second update of a batch on (the rollout source serves each batch `updates_per_batch`
times, one trainer step each). With greedy rollouts
the per-token KL estimate log pi - log pi_ref is read at argmax tokens rather than samples, so it
can be negative (and the penalty then a bonus), as in the reference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.models.transformer import Transformer
from jaxlab.models.value_head import ValueModel
from jaxlab.objectives.base import Batch, LossOutput, PyTree
from jaxlab.objectives.lm import token_logprobs
from jaxlab.train.optimizer import AdamWSettings, build_optimizer

ROW_FIELDS = ("inputs", "targets", "segment_ids", "positions")
EXPERIENCE_FIELDS = ("old_logprobs", "ref_logprobs", "old_values", "advantages", "returns")


@dataclasses.dataclass(frozen=True)
class PPOSettings:
  """The `ppo` section: PPO's coefficients (TL-Training's reference values as defaults; the
  reference code hard-codes kl_coef 0.4 whatever its flag says, here it is this field)."""

  kl_coef: float = 0.4
  gamma: float = 1.0
  lam: float = 0.95
  clip_eps: float = 0.2
  value_clip: float = 0.2
  reward_clip: float = 5.0
  updates_per_batch: int = 1  # PPO epochs: train steps on each rollout batch (the reference: 1)

  def validate(self) -> None:
    """Raises ValueError (one line) for coefficients out of range."""
    if self.kl_coef < 0:
      raise ValueError(f"ppo.kl_coef must be >= 0, got {self.kl_coef}")
    for name in ("gamma", "lam"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"ppo.{name} must be in [0, 1], got {getattr(self, name)}")
    if self.updates_per_batch < 1:
      raise ValueError(f"ppo.updates_per_batch must be at least 1, got {self.updates_per_batch}")
    for name in ("clip_eps", "value_clip", "reward_clip"):
      if not getattr(self, name) > 0:
        raise ValueError(f"ppo.{name} must be positive, got {getattr(self, name)}")


def gae(
  rewards: jax.Array, values: jax.Array, mask: jax.Array, gamma: float, lam: float
) -> tuple[jax.Array, jax.Array]:
  """(advantages, returns) [B, T] by generalized advantage estimation over the positions `mask`
  marks (one contiguous run per row); rewards and values outside it count as 0, so the value
  after a row's last masked position is 0. Both outputs are 0 outside the mask."""
  mask = mask.astype(jnp.float32)
  rewards, values = rewards * mask, values * mask

  def back(carry, t):
    next_value, running = carry
    delta = rewards[:, t] + gamma * next_value - values[:, t]
    running = delta + gamma * lam * running
    return (values[:, t], running), running

  batch, length = rewards.shape
  zeros = jnp.zeros((batch,), jnp.float32)
  _, advantages = jax.lax.scan(back, (zeros, zeros), jnp.arange(length), reverse=True)
  advantages = advantages.T * mask
  return advantages, (advantages + values) * mask


def last_positions(mask: jax.Array) -> jax.Array:
  """One-hot [B, T] of each row's last masked position (all zero for an empty row)."""
  length = mask.shape[-1]
  last = length - 1 - jnp.argmax(mask[:, ::-1] != 0, axis=-1)
  any_masked = jnp.any(mask != 0, axis=-1)
  return jax.nn.one_hot(last, length, dtype=jnp.float32) * any_masked[:, None]


def token_rewards(
  scores: jax.Array,
  logprobs: jax.Array,
  ref_logprobs: jax.Array,
  mask: jax.Array,
  kl_coef: float,
  reward_clip: float,
) -> jax.Array:
  """[B, T] rewards: -kl_coef * (log pi - log pi_ref) on each masked token, plus the sequence
  reward `scores` [B] clipped to +-reward_clip on the last one."""
  mask = mask.astype(jnp.float32)
  kl = -kl_coef * (logprobs - ref_logprobs) * mask
  final = jnp.clip(scores.astype(jnp.float32), -reward_clip, reward_clip)
  return kl + last_positions(mask) * final[:, None]


def experience(
  actor: Transformer,
  critic: ValueModel,
  settings: PPOSettings,
  params: PyTree,
  reference: PyTree,
  rows: Batch,
  scores: jax.Array,
) -> dict[str, jax.Array]:
  """What a rollout batch carries besides its rows (EXPERIENCE_FIELDS, plus `rewards`), from the
  parameters that generated it and the reference; zero outside `rows["response_mask"]`."""
  mask = rows["response_mask"].astype(jnp.float32)
  old = token_logprobs(actor, params["actor"], rows) * mask
  ref = token_logprobs(actor, reference, rows) * mask
  values = critic.apply(
    {"params": params["critic"]}, rows["inputs"], rows["segment_ids"], rows["positions"]
  )
  values = values * mask
  rewards = token_rewards(scores, old, ref, mask, settings.kl_coef, settings.reward_clip)
  advantages, returns = gae(rewards, values, mask, settings.gamma, settings.lam)
  return {
    "old_logprobs": old,
    "ref_logprobs": ref,
    "old_values": values,
    "advantages": advantages,
    "returns": returns,
    "rewards": rewards,
  }


def ppo_token_terms(
  logprobs: jax.Array, values: jax.Array, batch: Batch, settings: PPOSettings
) -> dict[str, jax.Array]:
  """Per-token policy loss, value loss and indicators [B, T] (not yet masked)."""
  log_ratio = logprobs - batch["old_logprobs"]
  ratio = jnp.exp(log_ratio)
  advantages = batch["advantages"]
  eps = settings.clip_eps
  policy = jnp.maximum(-advantages * ratio, -advantages * jnp.clip(ratio, 1.0 - eps, 1.0 + eps))
  old_values, returns = batch["old_values"], batch["returns"]
  clipped = old_values + jnp.clip(values - old_values, -settings.value_clip, settings.value_clip)
  value = 0.5 * jnp.maximum(jnp.square(values - returns), jnp.square(clipped - returns))
  return {
    "policy_loss": policy,
    "value_loss": value,
    "clip_fraction": (jnp.abs(ratio - 1.0) > eps).astype(jnp.float32),
    "approx_kl": (ratio - 1.0) - log_ratio,
    "kl": logprobs - batch["ref_logprobs"],
  }


@dataclasses.dataclass(frozen=True)
class PPOObjective:
  """PPO's loss over a rollout batch (see the module docstring); the weight sum counts response
  tokens, so the loss and every metric are token means."""

  actor: Transformer
  critic: ValueModel
  settings: PPOSettings

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
    mask = batch["response_mask"].astype(jnp.float32)
    logprobs = token_logprobs(self.actor, params["actor"], batch)
    values = self.critic.apply(
      {"params": params["critic"]}, batch["inputs"], batch["segment_ids"], batch["positions"]
    )
    terms = ppo_token_terms(logprobs, values, batch, self.settings)
    sums = {name: jnp.sum(term * mask) for name, term in terms.items()}
    loss_sum = sums["policy_loss"] + sums["value_loss"]
    return LossOutput(loss_sum, jnp.sum(mask), sums, model_state)


def actor_critic_init(actor: Transformer, critic: ValueModel, seq_len: int):
  """The variable initializer of `{"actor", "critic"}` parameters (logically boxed)."""

  def init(rng: jax.Array) -> dict[str, Any]:
    actor_rng, critic_rng = jax.random.split(rng)
    tokens = jnp.zeros((1, seq_len), jnp.int32)
    return {
      "params": {
        "actor": actor.init(actor_rng, tokens)["params"],
        "critic": critic.init(critic_rng, tokens)["params"],
      }
    }

  return init


def reference_frozen(params: PyTree) -> dict[str, PyTree]:
  """The frozen state of a fresh PPO state: the reference is the starting actor."""
  return {"reference": params["actor"]}


def actor_critic_optimizer(
  opt: AdamWSettings, actor_lr: float, critic_lr: float, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """`opt` (AdamW, schedule, clipping) for each of "actor" and "critic" with its own peak rate;
  each clips its own gradient norm, as two separate optimizers would. Returns the actor's
  schedule (what the trainer logs)."""
  actor_tx, schedule = build_optimizer(dataclasses.replace(opt, lr=actor_lr), total_steps)
  critic_tx, _ = build_optimizer(dataclasses.replace(opt, lr=critic_lr), total_steps)
  tx = optax.multi_transform(
    {"actor": actor_tx, "critic": critic_tx}, {"actor": "actor", "critic": "critic"}
  )
  return tx, schedule


def explained_variance(values: Any, returns: Any, mask: Any) -> float:
  """1 - Var(G - V) / Var(G) over masked positions (NumPy inputs; NaN if Var(G) is 0)."""
  mask = np.asarray(mask) != 0
  values, returns = np.asarray(values)[mask], np.asarray(returns)[mask]
  variance = float(np.var(returns)) if returns.size else 0.0
  if variance == 0.0:
    return float("nan")
  return 1.0 - float(np.var(returns - values)) / variance


def batch_fields(seq_len: int, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """The batch spec of a rollout batch of `batch_size` rows of `seq_len`."""
  shape = (batch_size, seq_len)
  spec = {k: jax.ShapeDtypeStruct(shape, jnp.int32) for k in ROW_FIELDS}
  floats: Sequence[str] = ("response_mask", *EXPERIENCE_FIELDS, "rewards")
  spec.update({k: jax.ShapeDtypeStruct(shape, jnp.float32) for k in floats})
  return spec
