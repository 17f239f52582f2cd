"""Tests for jaxlab.sampling against a naive no-cache reference on a tiny random model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.data.tokenizers import ByteTokenizer
from jaxlab.models.transformer import Transformer, TransformerConfig
from jaxlab.sampling import generate_text, left_pad, sample

# init_std 0.2 spreads the logits (std ~1) so argmax is far from ties and sampling is non-trivial.
CFG = TransformerConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
                        init_std=0.2)
PROMPTS = [[5, 9, 13, 2, 40], [7], [11, 3, 60]]
NEW = 6


@pytest.fixture(scope="module")
def params():
  return Transformer(CFG).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]


def naive_logits(params, seq):
  """Last-position logits [V] of the full model run without a cache on one unpadded sequence."""
  logits, _ = Transformer(CFG).apply({"params": params}, jnp.asarray([seq], jnp.int32))
  return np.asarray(logits[0, -1], np.float64)


def naive_greedy(params, prompt, steps):
  seq, out = list(prompt), []
  for _ in range(steps):
    out.append(int(np.argmax(naive_logits(params, seq))))
    seq.append(out[-1])
  return out


def log_softmax(x):
  x = x - x.max()
  return x - np.log(np.exp(x).sum())


def run(params, prompts, length=None, **kwargs):
  tokens, mask = left_pad(prompts, pad_id=0, length=length)
  kwargs.setdefault("max_new_tokens", NEW)
  out = sample(params, CFG, tokens, mask, kwargs.pop("rng", jax.random.key(1)), **kwargs)
  return jax.tree.map(np.asarray, out)


def test_left_pad():
  tokens, mask = left_pad([[4, 5, 6], [7]], pad_id=0, length=4)
  np.testing.assert_array_equal(tokens, [[0, 4, 5, 6], [0, 0, 0, 7]])
  np.testing.assert_array_equal(mask, [[0, 1, 1, 1], [0, 0, 0, 1]])
  assert tokens.dtype == np.int32
  with pytest.raises(ValueError):
    left_pad([[1, 2, 3]], pad_id=0, length=2)
  with pytest.raises(ValueError):
    left_pad([[1], []], pad_id=0)


@pytest.mark.parametrize("length", [None, 8])
def test_greedy_matches_naive_reference_and_logprobs(params, length):
  out = run(params, PROMPTS, length=length, temperature=0.0)
  assert out.tokens.shape == (3, NEW) and out.tokens.dtype == np.int32
  assert out.logprobs.dtype == np.float32
  np.testing.assert_array_equal(out.lengths, [NEW] * 3)
  for row, prompt in enumerate(PROMPTS):
    expected = naive_greedy(params, prompt, NEW)
    np.testing.assert_array_equal(out.tokens[row], expected)
    ref = [log_softmax(naive_logits(params, prompt + expected[:i]))[t]
           for i, t in enumerate(expected)]
    np.testing.assert_allclose(out.logprobs[row], ref, atol=1e-4)


def test_tiny_top_p_is_greedy(params):
  greedy = run(params, PROMPTS, temperature=0.0)
  nucleus = run(params, PROMPTS, temperature=1.5, top_p=1e-6, rng=jax.random.key(7))
  np.testing.assert_array_equal(nucleus.tokens, greedy.tokens)
  np.testing.assert_allclose(nucleus.logprobs, greedy.logprobs, atol=1e-6)


def test_eos_stops_row_and_pads(params):
  greedy = run(params, PROMPTS, temperature=0.0)
  eos = int(greedy.tokens[0, 2])
  out = run(params, PROMPTS, temperature=0.0, eos_id=eos, pad_id=63)
  for row in range(len(PROMPTS)):
    hits = np.flatnonzero(greedy.tokens[row] == eos)
    n = int(hits[0]) + 1 if hits.size else NEW
    assert out.lengths[row] == n
    np.testing.assert_array_equal(out.tokens[row, :n], greedy.tokens[row, :n])
    np.testing.assert_array_equal(out.tokens[row, n:], 63)
    np.testing.assert_allclose(out.logprobs[row, :n], greedy.logprobs[row, :n], atol=1e-6)
    np.testing.assert_array_equal(out.logprobs[row, n:], 0.0)
  assert out.lengths[0] <= 3


def test_all_rows_eos_immediately(params):
  # A zero final-norm scale makes every logit 0: argmax is token 0 everywhere, uniform logprob.
  flat = dict(params, final_norm={"scale": jnp.zeros_like(params["final_norm"]["scale"])})
  out = run(flat, PROMPTS, temperature=0.0, eos_id=0, pad_id=5)
  np.testing.assert_array_equal(out.lengths, [1, 1, 1])
  np.testing.assert_array_equal(out.tokens[:, 0], 0)
  np.testing.assert_array_equal(out.tokens[:, 1:], 5)
  np.testing.assert_allclose(out.logprobs[:, 0], -np.log(CFG.vocab_size), rtol=1e-6)
  np.testing.assert_array_equal(out.logprobs[:, 1:], 0.0)


def test_rng_determinism_and_logprobs(params):
  prompts = PROMPTS * 3
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
  run(params, PROMPTS, temperature=0.5, top_p=0.8)
  before = sample._cache_size()
  for temperature, top_p in [(0.0, 1.0), (1.3, 0.3), (0.7, 1.0)]:
    run(params, PROMPTS, temperature=temperature, top_p=top_p)
  assert sample._cache_size() == before


def first_token_frequencies(params, prompt, rows, **kwargs):
  out = run(params, [prompt] * rows, max_new_tokens=1, rng=jax.random.key(11), **kwargs)
  return np.bincount(out.tokens[:, 0], minlength=CFG.vocab_size) / rows


def assert_frequencies_match(freq, probs, rows):
  sigma = np.sqrt(probs * (1 - probs) / rows)
  assert np.all(np.abs(freq - probs) <= 5 * sigma + 2e-3), np.abs(freq - probs).max()


def test_temperature_frequencies(params):
  prompt, rows, temperature = [5, 9, 13], 8192, 0.7
  probs = np.exp(log_softmax(naive_logits(params, prompt) / temperature))
  assert probs.max() < 0.5  # a non-degenerate distribution, so the test has teeth
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


def test_generate_text(params):
  cfg = TransformerConfig(vocab_size=ByteTokenizer.vocab_size, d_model=32, n_layers=1, n_heads=4,
                          n_kv_heads=2, d_ff=64)
  byte_params = Transformer(cfg).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
  texts = generate_text(byte_params, cfg, ByteTokenizer(), ["hi", "hello there"],
                        jax.random.key(0), max_new_tokens=4, temperature=0.0)
  assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
