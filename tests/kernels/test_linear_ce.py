"""Fused linear + cross-entropy (TPU kernels interpreted, chunked XLA loop, reference) against
autodiff of a full-logits log-softmax: loss, weight sum, token log-probs and gradients."""

import functools

import jax
import jax.numpy as jnp
import pytest

from jaxlab.kernels.linear_ce import fused_linear_cross_entropy
from tests.kernels.helpers import assert_close, cotangent, fast_jit

TOKENS, DIM, VOCAB = 200, 64, 1000  # ragged against 128-token tiles and 256-column chunks


def _inputs(dtype):
  keys = jax.random.split(jax.random.key(0), 4)
  hidden = jax.random.normal(keys[0], (TOKENS, DIM)).astype(dtype)
  head = (jax.random.normal(keys[1], (DIM, VOCAB)) * 0.2).astype(dtype)
  targets = jax.random.randint(keys[2], (TOKENS,), 0, VOCAB)
  weights = jax.random.uniform(keys[3], (TOKENS,)).at[:10].set(0.0)  # some ignored tokens
  return hidden, head, targets, weights


def _autodiff_truth(hidden, head, targets, weights):
  logprobs = jax.nn.log_softmax(hidden @ head, axis=-1)
  token_logprobs = jnp.take_along_axis(logprobs, targets[:, None], axis=-1)[:, 0]
  return -jnp.sum(weights * token_logprobs), jnp.sum(weights), token_logprobs


def _value_and_grads(fn, hidden, head, targets, weights):
  mix = cotangent((TOKENS,))

  def objective(hidden, head, weights):
    loss, weight_sum, logprobs = fn(hidden, head, targets, weights)
    # Every output feeds the objective: the mean loss and a DPO-like use of the log-probs.
    return loss / weight_sum + 0.3 * jnp.sum(logprobs * mix), (loss, weight_sum, logprobs)

  return fast_jit(jax.value_and_grad(objective, argnums=(0, 1, 2), has_aux=True))(
    hidden, head, weights
  )


@functools.cache
def _expected(dtype):
  hidden, head, targets, weights = _inputs(dtype)
  upcast = (hidden.astype(jnp.float32), head.astype(jnp.float32), targets, weights)
  return _value_and_grads(_autodiff_truth, *upcast)


@pytest.mark.parametrize(
  "target,dtype",
  [
    ("tpu-interpret", jnp.float32),
    ("tpu-interpret", jnp.bfloat16),
    ("auto", jnp.float32),
    ("reference", jnp.bfloat16),
  ],
)
def test_matches_autodiff_of_full_logits(target, dtype):
  hidden, head, targets, weights = _inputs(dtype)
  fused = lambda *a: fused_linear_cross_entropy(*a, chunk_size=256, block_tokens=128, target=target)
  (_, outputs), grads = _value_and_grads(fused, hidden, head, targets, weights)
  (_, expected_outputs), expected_grads = _expected(dtype)
  for name, got, want in zip(
    ("loss_sum", "weight_sum", "token_logprobs"), outputs, expected_outputs
  ):
    assert_close(got, want, dtype, name)
  for name, got, want in zip(("dhidden", "dhead", "dweights"), grads, expected_grads):
    assert got.dtype == (dtype if name != "dweights" else jnp.float32)
    assert_close(got, want, dtype, name)
