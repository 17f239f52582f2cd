"""The PPO rollout source: rows and rewards of sampled responses, keys from the state's step, a
resumable prompt position, and a PPO trainer's frozen reference sharded like the actor. (A PPO
stage stopped and resumed inside the study is in tests/experiments/test_tl_training.py.)"""

from __future__ import annotations

import json
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxlab.data.rollouts import RolloutPrompt, RolloutSource, prompts_from_examples
from jaxlab.data.source import PolicySource
from jaxlab.data.tokenizers import ByteTokenizer
from jaxlab.data.tool_use import SFTExample
from jaxlab.models.transformer import Transformer, TransformerConfig
from jaxlab.models.value_head import ValueModel, critic_params
from jaxlab.objectives import ppo
from jaxlab.objectives.tl import REWARDS, call_category
from jaxlab.parallel.mesh import build_mesh, default_logical_rules
from jaxlab.train.optimizer import AdamWSettings
from jaxlab.train.state import StartingWeights
from jaxlab.train.trainer import Program, Trainer, TrainerSettings

TOOLS = {"get_a": ("x",), "get_b": ("x", "y")}
CFG = TransformerConfig(
  vocab_size=259,
  d_model=16,
  n_layers=1,
  n_heads=2,
  n_kv_heads=1,
  d_ff=32,
  max_seq_len=48,
  scan_layers=False,
)
SEQ_LEN, NEW = 40, 8
PROMPTS = [
  RolloutPrompt(f"User: {text}\nAssistant: ", gold, TOOLS)
  for text, gold in [
    ("a 1", 'get_a(x="1")'),
    ("b 2 3", 'get_b(x="2", y="3")'),
    ("a 4", 'get_a(x="4")'),
    ("b 5 6", 'get_b(x="5", y="6")'),
    ("a 7", 'get_a(x="7")'),
  ]
]


def _source(seed=0, temperature=1.0, settings=None):
  return RolloutSource(
    PROMPTS,
    ByteTokenizer(),
    Transformer(CFG),
    ValueModel(CFG),
    settings or ppo.PPOSettings(),
    batch_size=2,
    seq_len=SEQ_LEN,
    max_new_tokens=NEW,
    temperature=temperature,
    seed=seed,
  )


@pytest.fixture(scope="module")
def sft_params():
  variables = Transformer(CFG).init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))
  return nn.unbox(variables)["params"]


def _state(sft, step, actor=None):
  actor = sft if actor is None else actor
  return types.SimpleNamespace(
    step=jnp.asarray(step, jnp.int32),
    params={"actor": actor, "critic": critic_params(sft, CFG)},
    frozen={"reference": sft},
  )


def test_a_batch_holds_the_sampled_responses_and_their_rewards(sft_params):
  source = _source()
  assert isinstance(source, PolicySource)
  batch = source.next_for(_state(sft_params, 0))
  spec = ppo.batch_fields(SEQ_LEN, 2)
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
    k: (v.shape, v.dtype) for k, v in spec.items()
  }
  tok = ByteTokenizer()
  order = source._order[:2]
  for row, index in enumerate(order):
    prompt = [tok.bos_id, *tok.encode(PROMPTS[index].prompt)]
    response = batch["targets"][row][batch["response_mask"][row] == 1]
    # The row is [BOS, prompt, response] as next-token pairs; the mask covers the response only.
    n = len(prompt) + len(response) - 1
    np.testing.assert_array_equal(batch["inputs"][row, :n], [*prompt, *response][:-1])
    assert batch["segment_ids"][row].sum() == n and batch["positions"][row, n - 1] == n - 1
    assert 1 <= len(response) <= NEW
    text = tok.decode(response.tolist())
    assert text == source.last.texts[row]
    category = call_category(text, PROMPTS[index].gold, TOOLS)
    assert source.last.categories[row] == category
    # The actor is its reference: the rewards are the score alone, on the last token.
    rewards = batch["rewards"][row]
    assert rewards.sum() == pytest.approx(REWARDS[category], abs=1e-5)
    assert rewards[np.flatnonzero(batch["response_mask"][row])[-1]] == pytest.approx(
      REWARDS[category], abs=1e-5
    )
  metrics = source.pop_metrics()
  assert metrics["rollout_reward"] == pytest.approx(np.mean(batch["rewards"].sum(-1)), abs=1e-5)
  shares = [v for k, v in metrics.items() if k.startswith("rollout_share_")]
  assert len(shares) == 12 and sum(shares) == pytest.approx(1.0)
  assert source.pop_metrics() == {}


def test_samples_depend_on_the_step_and_the_position_resumes(sft_params):
  first = _source()
  batches = [first.next_for(_state(sft_params, step)) for step in range(3)]
  assert first.get_state() == {"epoch": 1, "position": 1}  # 2 batches per epoch of 5 prompts
  again = _source()
  again.next_for(_state(sft_params, 0))
  saved = json.loads(json.dumps(again.get_state()))
  resumed = _source()
  resumed.set_state(saved)
  for step in (1, 2):
    for key, value in resumed.next_for(_state(sft_params, step)).items():
      np.testing.assert_array_equal(value, batches[step][key])
  # The same prompts at another step draw other samples (temperature 1).
  replay = _source()
  replay.set_state(saved)
  other = replay.next_for(_state(sft_params, 7))
  assert not np.array_equal(other["inputs"], batches[1]["inputs"])


def test_each_batch_is_served_updates_per_batch_times(sft_params):
  source = _source(settings=ppo.PPOSettings(updates_per_batch=2))
  batches = [source.next_for(_state(sft_params, step)) for step in range(3)]
  assert batches[1] is batches[0] and batches[2] is not batches[0]
  assert source.get_state() == {"epoch": 0, "position": 2}
  assert len(source._metrics) == 2  # rollout metrics count generated batches only
  # Resuming between two updates of one batch starts a fresh batch.
  resumed = _source(settings=ppo.PPOSettings(updates_per_batch=2))
  resumed.set_state({"epoch": 0, "position": 1})
  fresh = resumed.next_for(_state(sft_params, 1))
  assert fresh is not batches[0] and resumed.get_state() == {"epoch": 0, "position": 2}


def test_kl_coef_reaches_the_rewards(sft_params):
  from tests.objectives.test_ppo import _perturbed

  actor = _perturbed(sft_params, 1, 0.3)
  rewards = [
    _source(temperature=0.0, settings=ppo.PPOSettings(kl_coef=c)).next_for(
      _state(sft_params, 0, actor)
    )["rewards"]
    for c in (0.4, 0.1)
  ]
  assert not np.allclose(rewards[0], rewards[1])


def test_prompts_from_examples_skip_calls_the_reward_cannot_score():
  examples = [
    SFTExample("c", 'get_a(x="1")', TOOLS, "t", 2),
    SFTExample("c", "not a call", TOOLS, "t", 4),
    SFTExample("c", 'get_c(x="1")', TOOLS, "t", 6),
  ]
  prompts, skipped = prompts_from_examples(examples)
  assert [p.gold for p in prompts] == ['get_a(x="1")'] and skipped == 2


def _ppo_trainer(workdir, sft, mesh, steps=4):
  """A PPO trainer on this file's rollout source (built, not run)."""
  actor, critic = Transformer(CFG), ValueModel(CFG)
  tx, schedule = ppo.actor_critic_optimizer(
    AdamWSettings(warmup_steps=1, weight_decay=0.01), 1e-2, 1e-2, steps
  )
  program = Program(
    ppo.PPOObjective(actor, critic, ppo.PPOSettings()),
    ppo.actor_critic_init(actor, critic, SEQ_LEN),
    tx,
    schedule,
    init_frozen=ppo.reference_frozen,
    start=StartingWeights({"actor": sft, "critic": critic_params(sft, CFG)}, {"reference": sft}),
  )
  source = _source(temperature=1.0)
  trainer = Trainer(
    TrainerSettings(steps=steps, log_every=1, checkpoint_every=100, async_checkpoints=False),
    program,
    source,
    ppo.batch_fields(SEQ_LEN, 2),
    mesh=mesh,
    rules=default_logical_rules(),
    workdir=str(workdir),
  )
  trainer.add_hook(lambda state, step: source.pop_metrics(), every=1)
  return trainer


def test_the_reference_is_sharded_like_the_actor(tmp_path, sft_params):
  mesh = build_mesh(ml_collections.ConfigDict(dict(data=1, fsdp=2, tensor=1)), jax.devices()[:2])
  shardings = _ppo_trainer(tmp_path, sft_params, mesh).state_sharding
  # FSDP-sharded like the actor it copies, not replicated.
  assert shardings.frozen["reference"] == shardings.params["actor"]
  assert any(not s.is_fully_replicated for s in jax.tree.leaves(shardings.frozen["reference"]))
