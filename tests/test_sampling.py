"""Tests for jaxlab.sampling against a naive no-cache reference on a tiny random model."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import sampling
from jaxlab.models.transformer import Transformer, TransformerConfig
from jaxlab.sampling import generate_text, left_pad, sample

# init_std 0.2 spreads the logits (std ~1) so argmax is far from ties and sampling is non-trivial.
CFG = TransformerConfig(
  vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, init_std=0.2
)
PROMPTS = [[5, 9, 13, 2, 40], [7], [11, 3, 60]]
NEW = 6


NAIVE_LEN = 16  # fixed so the reference compiles once


def init_params(cfg):
  init = jax.jit(lambda rng: Transformer(cfg).init(rng, jnp.zeros((1, 4), jnp.int32)))
  return nn.unbox(init(jax.random.key(0))["params"])


@pytest.fixture(scope="module")
def params():
  return init_params(CFG)


@jax.jit
def _full_model_logits(params, tokens, segment_ids):
  return Transformer(CFG).apply({"params": params}, tokens, segment_ids)[0]


def naive_logits(params, seq):
  """Last-position logits [V] of the full model run without a cache on one sequence.

  Right-padding to NAIVE_LEN (segment id 0) cannot affect earlier positions under causal
  attention; it only keeps one compiled shape."""
  tokens = np.zeros((1, NAIVE_LEN), np.int32)
  tokens[0, : len(seq)] = seq
  segment_ids = (np.arange(NAIVE_LEN) < len(seq))[None].astype(np.int32)
  logits = _full_model_logits(params, tokens, segment_ids)
  return np.asarray(logits[0, len(seq) - 1], np.float64)


def naive_greedy(params, prompt, steps):
  seq, out = list(prompt), []
  for _ in range(steps):
    out.append(int(np.argmax(naive_logits(params, seq))))
    seq.append(out[-1])
  return out


def log_softmax(x):
  x = x - x.max()
  return x - np.log(np.exp(x).sum())


def run(params, prompts, length=8, **kwargs):
  """Samples with the test defaults; most tests share the [3, 8] prompt shape (one compile)."""
  tokens, mask = left_pad(prompts, pad_id=0, length=length)
  kwargs.setdefault("max_new_tokens", NEW)
  out = sample(params, CFG, tokens, mask, kwargs.pop("rng", jax.random.key(1)), **kwargs)
  return jax.tree.map(np.asarray, out)


def test_left_pad():
  tokens, mask = left_pad([[4, 5, 6], [7]], pad_id=0)
  np.testing.assert_array_equal(tokens, [[4, 5, 6], [0, 0, 7]])
  tokens, mask = left_pad([[4, 5, 6], [7]], pad_id=9, length=4)
  np.testing.assert_array_equal(tokens, [[9, 4, 5, 6], [9, 9, 9, 7]])
  np.testing.assert_array_equal(mask, [[0, 1, 1, 1], [0, 0, 0, 1]])
  assert tokens.dtype == np.int32 and mask.dtype == np.int32
  with pytest.raises(ValueError):
    left_pad([[1, 2, 3]], pad_id=0, length=2)
  with pytest.raises(ValueError):
    left_pad([[1], []], pad_id=0)


def test_greedy_matches_naive_reference_and_logprobs(params):
  out = run(params, PROMPTS, temperature=0.0)  # rows carry 3, 7 and 5 pad slots
  assert out.tokens.shape == (3, NEW) and out.tokens.dtype == np.int32
  assert out.logprobs.dtype == np.float32 and out.lengths.dtype == np.int32
  np.testing.assert_array_equal(out.lengths, [NEW] * 3)
  for row, prompt in enumerate(PROMPTS):
    expected = naive_greedy(params, prompt, NEW)
    np.testing.assert_array_equal(out.tokens[row], expected)
    ref = [
      log_softmax(naive_logits(params, prompt + expected[:i]))[t] for i, t in enumerate(expected)
    ]
    np.testing.assert_allclose(out.logprobs[row], ref, atol=1e-4)


def test_single_token_prompts(params):
  # P = 1: nothing to prefill, the loop's first step feeds the only prompt token.
  out = run(params, [[7], [30]], length=None, temperature=0.0)
  for row, prompt in enumerate([[7], [30]]):
    np.testing.assert_array_equal(out.tokens[row], naive_greedy(params, prompt, NEW))


def test_tiny_top_p_is_greedy(params):
  greedy = run(params, PROMPTS, temperature=0.0)
  nucleus = run(params, PROMPTS, temperature=1.5, top_p=1e-6, rng=jax.random.key(7))
  np.testing.assert_array_equal(nucleus.tokens, greedy.tokens)
  np.testing.assert_allclose(nucleus.logprobs, greedy.logprobs, atol=1e-6)


def test_eos_stops_rows_and_pads(params):
  greedy = run(params, PROMPTS, temperature=0.0)
  eos, pad = int(greedy.tokens[0, 2]), 63
  out = run(params, PROMPTS, temperature=0.0, eos_id=eos, pad_id=pad)
  for row in range(len(PROMPTS)):
    hits = np.flatnonzero(greedy.tokens[row] == eos)
    n = int(hits[0]) + 1 if hits.size else NEW
    assert out.lengths[row] == n
    np.testing.assert_array_equal(out.tokens[row, :n], greedy.tokens[row, :n])
    np.testing.assert_array_equal(out.tokens[row, n:], pad)
    np.testing.assert_allclose(out.logprobs[row, :n], greedy.logprobs[row, :n], atol=1e-6)
    np.testing.assert_array_equal(out.logprobs[row, n:], 0.0)
  assert out.lengths[0] <= 3

  # Every row's greedy continuation is EOS at once: all stop after one token.
  prefix = PROMPTS[0] + greedy.tokens[0, :2].tolist()
  out = run(params, [prefix] * 3, temperature=0.0, eos_id=eos, pad_id=pad)
  np.testing.assert_array_equal(out.lengths, [1, 1, 1])
  np.testing.assert_array_equal(out.tokens[:, 0], eos)
  np.testing.assert_array_equal(out.tokens[:, 1:], pad)
  np.testing.assert_allclose(out.logprobs[:, 0], greedy.logprobs[0, 2], atol=1e-5)
  np.testing.assert_array_equal(out.logprobs[:, 1:], 0.0)


def test_rng_determinism_and_logprobs(params):
  prompts = PROMPTS
  a = run(params, prompts, rng=jax.random.key(3), temperature=1.0)
  b = run(params, prompts, rng=jax.random.key(3), temperature=1.0)
  c = run(params, prompts, rng=jax.random.key(4), temperature=1.0)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  assert (a.tokens != c.tokens).any()
  # Sampled logprobs are under the untempered model, even when drawn at another temperature.
  hot = run(params, prompts, rng=jax.random.key(5), temperature=2.0, top_p=0.9)
  for row, prompt in enumerate(prompts):
    seq = list(prompt)
    for t, lp in zip(hot.tokens[row], hot.logprobs[row]):
      np.testing.assert_allclose(lp, log_softmax(naive_logits(params, seq))[t], atol=1e-4)
      seq.append(int(t))


def test_temperature_and_top_p_do_not_recompile(params):
  run(params, PROMPTS)
  before = sampling._sample._cache_size()  # pylint: disable=protected-access
  for temperature, top_p in [(0.0, 1.0), (1.3, 0.3), (np.float32(0.7), jnp.asarray(1.0))]:
    run(params, PROMPTS, temperature=temperature, top_p=top_p)
  assert sampling._sample._cache_size() == before  # pylint: disable=protected-access


def first_token_frequencies(params, prompt, rows, **kwargs):
  out = run(params, [prompt] * rows, max_new_tokens=1, rng=jax.random.key(11), **kwargs)
  return np.bincount(out.tokens[:, 0], minlength=CFG.vocab_size) / rows


def assert_frequencies_match(freq, probs, rows):
  sigma = np.sqrt(probs * (1 - probs) / rows)
  assert np.all(np.abs(freq - probs) <= 5 * sigma + 2e-3), np.abs(freq - probs).max()


def test_temperature_frequencies(params):
  prompt, rows, temperature = [5, 9, 13], 8192, 0.7
  logits = naive_logits(params, prompt)
  probs = np.exp(log_softmax(logits / temperature))
  # Far enough from the untempered distribution that ignoring temperature would fail.
  assert np.abs(probs - np.exp(log_softmax(logits))).max() > 0.1
  freq = first_token_frequencies(params, prompt, rows, temperature=temperature)
  assert_frequencies_match(freq, probs, rows)


def test_top_p_frequencies(params):
  prompt, rows = [5, 9, 13], 8192
  probs = np.exp(log_softmax(naive_logits(params, prompt)))
  order = np.argsort(-probs)
  cumulative = np.cumsum(probs[order])
  top_p = (cumulative[2] + cumulative[3]) / 2  # the nucleus is exactly the top 4 tokens
  nucleus = np.zeros_like(probs)
  nucleus[order[:4]] = probs[order[:4]]
  freq = first_token_frequencies(params, prompt, rows, temperature=1.0, top_p=top_p)
  assert freq[order[4:]].sum() == 0
  assert_frequencies_match(freq, nucleus / nucleus.sum(), rows)


class CharTokenizer:
  """a-z -> 3..28 within the 64-token test vocabulary; any id may be chosen as EOS."""

  pad_id, bos_id = 0, 1

  def __init__(self, eos_id):
    self.eos_id = eos_id

  def encode(self, text):
    return [ord(c) - ord("a") + 3 for c in text]

  def decode(self, ids):
    return "".join(chr(i - 3 + ord("a")) for i in ids if i not in (0, 1, self.eos_id))


def test_generate_text(params):
  prompts = ["hi", "hello", "abc"]
  ids = [[1] + CharTokenizer(2).encode(p) for p in prompts]
  expected = [naive_greedy(params, prompt, NEW) for prompt in ids]
  eos = expected[2][2]  # so "abc" stops after its third generated token
  tokenizer = CharTokenizer(eos)
  texts = generate_text(
    params,
    CFG,
    tokenizer,
    prompts,
    jax.random.key(0),
    max_new_tokens=NEW,
    temperature=0.0,
    pad_to_multiple=8,
  )
  for text, tokens in zip(texts, expected):
    tokens = tokens[: tokens.index(eos)] if eos in tokens else tokens
    assert text == tokenizer.decode(tokens)
  assert len(texts[2]) <= 2
