"""Batched autoregressive sampling with the KV cache: one jitted prefill + `while_loop` decode.

Used by CBQA evaluation, SCIR's self-rewarding rounds and tool-use evaluation. Prompts are
left-padded so every row's last prompt token sits in the same cache slot and all rows decode in
lockstep; padding has segment id 0 and is never
attended, and RoPE positions restart at 0 on each row's first real token, so a row's samples do
not depend on how much padding its batch needed. Everything runs on device: the loop stops as soon
as every row has emitted EOS. Temperature and top-p are traced, so sweeping them does not recompile.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.data.tokenizers import Tokenizer
from jaxlab.models.transformer import Transformer, TransformerConfig, init_cache


@flax.struct.dataclass
class SampleOutput:
  """What `sample` returns; entries past a row's EOS are `pad_id` / 0."""

  tokens: jax.Array  # [B, max_new_tokens] int32
  lengths: jax.Array  # [B] int32: generated tokens, EOS included
  logprobs: jax.Array  # [B, max_new_tokens] float32: log_softmax(raw logits) at each token


def padded_length(prompts: Iterable[Sequence[int]], multiple: int) -> int:
  """The longest prompt's length rounded up to `multiple`, so that batches of varying prompt
  lengths reuse a few compiled shapes."""
  longest = max((len(p) for p in prompts), default=1)
  return -(-longest // multiple) * multiple


def left_pad(
  prompts: Sequence[Sequence[int]], pad_id: int, length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Left-pads prompts to `length` (default: the longest) -> tokens [B, P] int32, mask [B, P]
  int32 (1 real, 0 pad). Left, so all rows end at the same slot and decode together."""
  if not prompts:
    raise ValueError("left_pad: no prompts")
  if any(len(p) == 0 for p in prompts):
    raise ValueError("left_pad: empty prompt (there is no last token to continue from)")
  longest = max(len(p) for p in prompts)
  length = longest if length is None else length
  if longest > length:
    raise ValueError(f"left_pad: a prompt has {longest} tokens, more than length={length}")
  tokens = np.full((len(prompts), length), pad_id, np.int32)
  mask = np.zeros((len(prompts), length), np.int32)
  for row, prompt in enumerate(prompts):
    tokens[row, length - len(prompt) :] = prompt
    mask[row, length - len(prompt) :] = 1
  return tokens, mask


def _draw(logits: jax.Array, rng: jax.Array, temperature: jax.Array, top_p: jax.Array) -> jax.Array:
  """Samples one token per row from float32 logits [B, V] at `temperature` (0: argmax), keeping
  only the smallest set of tokens whose tempered probability sums to >= top_p (top token always
  kept). `lax.cond` skips the vocabulary sort when top_p >= 1 and all sampling when greedy."""

  def full(scaled):
    return jax.random.categorical(rng, scaled)

  def nucleus(scaled):
    sorted_logits, order = jax.lax.top_k(scaled, scaled.shape[-1])
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    keep = (jnp.cumsum(probs, axis=-1) - probs) < top_p  # mass strictly before each token
    keep = keep.at[:, 0].set(True)
    choice = jax.random.categorical(rng, jnp.where(keep, sorted_logits, -jnp.inf))
    return jnp.take_along_axis(order, choice[:, None], axis=-1)[:, 0]

  def stochastic(logits):
    return jax.lax.cond(top_p < 1.0, nucleus, full, logits / temperature)

  def greedy(logits):
    return jnp.argmax(logits, axis=-1)

  return jax.lax.cond(temperature > 0.0, stochastic, greedy, logits).astype(jnp.int32)


def sample(
  params: Any,
  cfg: TransformerConfig,
  prompt_tokens: jax.Array,
  prompt_mask: jax.Array,
  rng: jax.Array,
  *,
  max_new_tokens: int,
  temperature: float | jax.Array = 1.0,
  top_p: float | jax.Array = 1.0,
  eos_id: int | None = None,
  pad_id: int = 0,
) -> SampleOutput:
  """Samples up to `max_new_tokens` continuations of left-padded prompts (see `left_pad`).

  `temperature` and `top_p` are scalars; `temperature` 0 is greedy. `logprobs` are under the
  untempered, unfiltered model distribution (what a policy-gradient ratio needs), whatever
  temperature/top_p drew the token. Compiles once per (cfg, prompt shape, max_new_tokens, eos_id,
  pad_id); temperature and top_p are always passed as float32 arrays, so any value, however
  given, reuses that compilation.
  """
  return _sample(
    params,
    cfg,
    prompt_tokens,
    prompt_mask,
    rng,
    jnp.asarray(temperature, jnp.float32),
    jnp.asarray(top_p, jnp.float32),
    max_new_tokens=max_new_tokens,
    eos_id=eos_id,
    pad_id=pad_id,
  )


@functools.partial(jax.jit, static_argnames=("cfg", "max_new_tokens", "eos_id", "pad_id"))
def _sample(
  params: Any,
  cfg: TransformerConfig,
  prompt_tokens: jax.Array,
  prompt_mask: jax.Array,
  rng: jax.Array,
  temperature: jax.Array,
  top_p: jax.Array,
  *,
  max_new_tokens: int,
  eos_id: int | None,
  pad_id: int,
) -> SampleOutput:
  """`sample`. All prompt tokens but the last are prefilled in one call whose logits are unused
  (so XLA never materializes [B, P, vocab] logits); each `while_loop` step then feeds one token
  (first the last prompt token) and draws the next from its logits."""
  if max_new_tokens < 1:
    raise ValueError(f"sample: max_new_tokens must be >= 1, got {max_new_tokens}")
  batch, prompt_len = prompt_tokens.shape
  model = Transformer(cfg)
  prompt_tokens = prompt_tokens.astype(jnp.int32)
  mask = prompt_mask.astype(jnp.int32)
  positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)

  cache = init_cache(cfg, batch, prompt_len + max_new_tokens - 1)
  if prompt_len > 1:  # the model cannot take a zero-length call
    _, cache = model.apply(
      {"params": params}, prompt_tokens[:, :-1], mask[:, :-1], positions[:, :-1], cache=cache
    )

  def cond(carry):
    step, _, _, _, _, done, _ = carry
    return (step < max_new_tokens) & ~jnp.all(done)

  def body(carry):
    step, last, tokens, logprobs, lengths, done, cache = carry
    logits, cache = model.apply(
      {"params": params},
      last[:, None],
      jnp.ones((batch, 1), jnp.int32),
      (positions[:, -1] + step)[:, None],
      cache=cache,
    )
    logits = logits[:, 0].astype(jnp.float32)
    token = _draw(logits, jax.random.fold_in(rng, step), temperature, top_p)
    logprob = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], axis=-1)[:, 0]
    token = jnp.where(done, pad_id, token)
    logprob = jnp.where(done, 0.0, logprob)
    tokens = jax.lax.dynamic_update_slice(tokens, token[:, None], (0, step))
    logprobs = jax.lax.dynamic_update_slice(logprobs, logprob[:, None], (0, step))
    lengths = lengths + (~done).astype(jnp.int32)
    if eos_id is not None:
      done = done | (token == eos_id)
    return step + 1, token, tokens, logprobs, lengths, done, cache

  init = (
    jnp.zeros((), jnp.int32),
    prompt_tokens[:, -1],
    jnp.full((batch, max_new_tokens), pad_id, jnp.int32),
    jnp.zeros((batch, max_new_tokens), jnp.float32),
    jnp.zeros((batch,), jnp.int32),
    jnp.zeros((batch,), bool),
    cache,
  )
  _, _, tokens, logprobs, lengths, _, _ = jax.lax.while_loop(cond, body, init)
  return SampleOutput(tokens=tokens, lengths=lengths, logprobs=logprobs)


def generate_text(
  params: Any,
  cfg: TransformerConfig,
  tokenizer: Tokenizer,
  prompts: Sequence[str],
  rng: jax.Array,
  *,
  max_new_tokens: int,
  pad_to_multiple: int = 32,
  **kwargs: Any,
) -> list[str]:
  """Continuations of text prompts (BOS prepended), decoded up to and without EOS.

  The padded prompt length is rounded up to `pad_to_multiple` so that varying prompt lengths
  reuse a few compiled shapes. `kwargs` (temperature, top_p) go to `sample`.
  """
  ids = [[tokenizer.bos_id] + tokenizer.encode(p) for p in prompts]
  tokens, mask = left_pad(ids, tokenizer.pad_id, padded_length(ids, pad_to_multiple))
  out = sample(
    params,
    cfg,
    tokens,
    mask,
    rng,
    max_new_tokens=max_new_tokens,
    eos_id=tokenizer.eos_id,
    pad_id=tokenizer.pad_id,
    **kwargs,
  )
  tokens, lengths = jax.device_get((out.tokens, out.lengths))
  return [tokenizer.decode(row[:n].tolist()) for row, n in zip(tokens, lengths)]
