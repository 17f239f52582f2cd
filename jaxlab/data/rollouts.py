"""On-policy tool-call rollouts for PPO: a `PolicySource` the trainer hands its current state.

Each call of `next_for(state)`:
1. takes the next `batch_size` prompts (an order drawn per epoch from (seed, epoch); the
   remainder that does not fill a batch is dropped);
2. samples one response per prompt from `state.params["actor"]` with the shared KV-cache sampler
   (`jaxlab.sampling.sample`; greedy at temperature 0), prompts left-padded to one fixed length
   so the sampler compiles once, with the key `fold_in(PRNGKey(seed), state.step)`;
3. decodes each response (up to EOS) and scores it against the prompt's gold call with
   TL-Training's error-category reward (`jaxlab.objectives.tl.call_category`);
4. lays prompt + response out as next-token rows of `seq_len` (right-padded, the response
   tokens marked by `response_mask`) and runs `jaxlab.objectives.ppo.experience` on them under
   `jax.jit`: old and reference log-probabilities, values, per-token rewards, GAE.
With `settings.updates_per_batch` = k > 1, each batch is served k times in a row (PPO epochs:
the experience stays the one computed at generation). The position is (epoch, batch position),
and every random draw comes from the seed and the state's step, so a run resumed from a
checkpoint sees exactly the batches an uninterrupted one would, except that a checkpoint taken
between two updates of one batch resumes with a fresh batch. `pop_metrics()` returns the
rollouts' means since its last call (mean reward, the share of each reward category, response
length, KL to the reference, the critic's explained variance), for a trainer hook to log.
Single-host: every batch is generated and read back on this process.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxlab.data.source import Batch
from jaxlab.data.tokenizers import Tokenizer
from jaxlab.data.tool_use import SFTExample
from jaxlab.models.transformer import Transformer
from jaxlab.models.value_head import ValueModel
from jaxlab.objectives import ppo
from jaxlab.objectives.tl import REWARDS, Category, call_category
from jaxlab.sampling import left_pad, sample


@dataclasses.dataclass(frozen=True)
class RolloutPrompt:
  """A prompt (the SFT context, ending in "Assistant: "), its gold call and declared tools."""

  prompt: str
  gold: str
  tools: Mapping[str, tuple[str, ...]]


def prompts_from_examples(
  examples: Sequence[SFTExample],
) -> tuple[list[RolloutPrompt], int]:
  """The rollout prompts of SFT examples whose target is a gold call that fits its declared tools
  (what the reward can score), and how many examples were left out."""
  prompts = []
  for example in examples:
    try:
      call_category(example.target, example.target, example.tools)
    except ValueError:
      continue
    prompts.append(RolloutPrompt(example.context, example.target, example.tools))
  return prompts, len(examples) - len(prompts)


@dataclasses.dataclass(frozen=True)
class Rollout:
  """One scored batch: the decoded responses and their reward categories (for inspection)."""

  texts: list[str]
  categories: list[Category]


class RolloutSource:
  """A `PolicySource` of PPO batches (see the module docstring); `ppo.batch_fields(seq_len,
  batch_size)` is its batch spec."""

  def __init__(
    self,
    prompts: Sequence[RolloutPrompt],
    tokenizer: Tokenizer,
    actor: Transformer,
    critic: ValueModel,
    settings: ppo.PPOSettings,
    *,
    batch_size: int,
    seq_len: int,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
  ):
    if batch_size < 1 or batch_size > len(prompts):
      raise ValueError(f"rollout batch size {batch_size} is not in 1..{len(prompts)} (prompts)")
    self.prompt_len = seq_len - max_new_tokens
    if self.prompt_len < 2:
      raise ValueError(f"max_new_tokens {max_new_tokens} leaves no room for a prompt in {seq_len}")
    if actor.cfg.max_seq_len < seq_len:
      raise ValueError(
        f"rollout seq_len {seq_len} exceeds model.max_seq_len {actor.cfg.max_seq_len}"
      )
    self.prompts, self.tokenizer = list(prompts), tokenizer
    self.actor, self.critic, self.settings = actor, critic, settings
    self.batch_size, self.seq_len, self.max_new_tokens = batch_size, seq_len, max_new_tokens
    self.temperature, self.top_p, self.seed = temperature, top_p, seed
    room = self.prompt_len - 1  # after BOS
    encoded = [tokenizer.encode(p.prompt) for p in self.prompts]
    self.cut = sum(len(ids) > room for ids in encoded)  # prompts cut from the left to fit
    self.prompt_ids = [
      [tokenizer.bos_id, *ids[len(ids) - min(len(ids), room) :]] for ids in encoded
    ]
    self.batches_per_epoch = len(self.prompts) // batch_size
    self._epoch, self._position = 0, 0
    self._order = self._epoch_order(0)
    self._experience = _experience_fn(actor.cfg, critic.cfg, settings)
    self._metrics: list[dict[str, float]] = []
    self.last: Rollout | None = None
    self._held: Batch | None = None  # the batch being reused, and how many updates it has left
    self._updates_left = 0

  def _epoch_order(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, epoch]).permutation(len(self.prompts))

  def _next_indices(self) -> np.ndarray:
    if self._position == self.batches_per_epoch:
      self._epoch, self._position = self._epoch + 1, 0
      self._order = self._epoch_order(self._epoch)
    start = self._position * self.batch_size
    self._position += 1
    return self._order[start : start + self.batch_size]

  def rows(
    self, indices: Sequence[int], generated: np.ndarray, lengths: np.ndarray
  ) -> dict[str, np.ndarray]:
    """Next-token rows of [BOS, prompt, response] (response = the first `lengths` generated
    tokens, EOS included when drawn), right-padded to `seq_len`, with `response_mask`."""
    b, length = len(indices), self.seq_len
    rows = {k: np.zeros((b, length), np.int32) for k in ppo.ROW_FIELDS}
    rows["inputs"][:] = rows["targets"][:] = self.tokenizer.pad_id
    mask = np.zeros((b, length), np.float32)
    for row, (i, tokens, n) in enumerate(zip(indices, generated, lengths)):
      sequence = [*self.prompt_ids[i], *tokens[:n].tolist()]
      count = len(sequence) - 1
      rows["inputs"][row, :count] = sequence[:-1]
      rows["targets"][row, :count] = sequence[1:]
      rows["segment_ids"][row, :count] = 1
      rows["positions"][row, :count] = np.arange(count)
      mask[row, len(self.prompt_ids[i]) - 1 : count] = 1.0
    rows["response_mask"] = mask
    return rows

  def next_for(self, state: Any) -> Batch:
    if self._held is not None and self._updates_left > 0:
      self._updates_left -= 1
      return self._held
    batch = self._generate(state)
    self._held, self._updates_left = batch, self.settings.updates_per_batch - 1
    return batch

  def _generate(self, state: Any) -> Batch:
    step = int(jax.device_get(state.step))
    indices = self._next_indices()
    tokens, prompt_mask = left_pad(
      [self.prompt_ids[i] for i in indices], self.tokenizer.pad_id, self.prompt_len
    )
    out = sample(
      state.params["actor"],
      self.actor.cfg,
      tokens,
      prompt_mask,
      jax.random.fold_in(jax.random.PRNGKey(self.seed), step),
      max_new_tokens=self.max_new_tokens,
      temperature=self.temperature,
      top_p=self.top_p,
      eos_id=self.tokenizer.eos_id,
      pad_id=self.tokenizer.pad_id,
    )
    generated, lengths = jax.device_get((out.tokens, out.lengths))
    texts = [self.tokenizer.decode(row[:n].tolist()) for row, n in zip(generated, lengths)]
    categories = [
      call_category(text, self.prompts[i].gold, self.prompts[i].tools)
      for i, text in zip(indices, texts)
    ]
    scores = np.array([REWARDS[c] for c in categories], np.float32)
    rows = self.rows(indices, generated, lengths)
    extra = jax.device_get(self._experience(state.params, state.frozen["reference"], rows, scores))
    batch = {**rows, **{k: np.asarray(v) for k, v in extra.items()}}
    self.last = Rollout(texts, categories)
    self._record(batch, scores, categories, lengths)
    return batch

  def _record(self, batch: Batch, scores: np.ndarray, categories, lengths: np.ndarray) -> None:
    mask = batch["response_mask"]
    kl = np.sum((batch["old_logprobs"] - batch["ref_logprobs"]) * mask, axis=-1)
    metrics = {
      "rollout_reward": float(np.mean(scores)),
      "rollout_kl": float(np.mean(kl)),
      "rollout_length": float(np.mean(lengths)),
      "rollout_explained_variance": ppo.explained_variance(
        batch["old_values"], batch["returns"], mask
      ),
    }
    for category in Category:
      share = np.mean([c is category for c in categories])
      metrics[f"rollout_share_{category.value}"] = float(share)
    self._metrics.append(metrics)

  def pop_metrics(self) -> dict[str, float]:
    """Each rollout metric's mean over the batches since the last call ({} if none)."""
    recorded, self._metrics = self._metrics, []
    if not recorded:
      return {}
    return {k: _mean_of_finite([m[k] for m in recorded]) for k in recorded[0]}

  def get_state(self) -> dict[str, Any]:
    return {"epoch": self._epoch, "position": self._position}

  def set_state(self, state: dict[str, Any]) -> None:
    self._epoch, self._position = int(state["epoch"]), int(state["position"])
    self._order = self._epoch_order(self._epoch)
    self._held, self._updates_left = None, 0

  def close(self) -> None:
    pass


@functools.cache
def _experience_fn(actor_cfg, critic_cfg, settings: ppo.PPOSettings):
  """`ppo.experience` jitted once per model shapes and settings (sources share the compilation)."""
  return jax.jit(
    functools.partial(ppo.experience, Transformer(actor_cfg), ValueModel(critic_cfg), settings)
  )


def _mean_of_finite(values: Sequence[float]) -> float:
  finite = [v for v in values if np.isfinite(v)]
  return float(np.mean(finite)) if finite else float("nan")
