"""XNOR attention kernels (interpreted on CPU) against the reference XNOR attention with Gray
codes appended: outputs and gradients for q, k, v and the scale."""

import jax
import jax.numpy as jnp
import pytest

from jaxlab.kernels.xnor_attention import xnor_attention
from jaxlab.kernels.xnor_attention_reference import reference_xnor_attention
from jaxlab.models.positional import gray_position_codes, grid_coordinates
from tests.kernels.helpers import assert_close, cotangent, fast_jit

LENGTH, DIM = 100, 16  # ragged against 32-blocks


def _inputs(dtype, with_codes):
  keys = jax.random.split(jax.random.key(0), 3)
  q, k, v = [(jax.random.uniform(key, (2, 3, 2, LENGTH, DIM)) < 0.3).astype(dtype) for key in keys]
  codes = gray_position_codes(grid_coordinates((LENGTH,), False), 7) if with_codes else None
  return q, k, v, jnp.float32(0.05), codes


def _value_and_grads(attention, q, k, v, scale, codes):
  weight = cotangent(q.shape)

  def loss(q, k, v, scale):
    out = attention(q, k, v, scale, codes)
    return jnp.sum(out.astype(jnp.float32) * weight), out

  return fast_jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(q, k, v, scale)


@pytest.mark.parametrize(
  "target,dtype,with_codes",
  [
    ("tpu-interpret", jnp.float32, True),
    ("tpu-interpret", jnp.bfloat16, False),
    ("gpu-interpret", jnp.float32, True),
    ("gpu-interpret", jnp.bfloat16, False),
    ("auto", jnp.float32, True),
  ],
  ids=lambda p: getattr(p, "__name__", None) or str(p),
)
def test_matches_reference(target, dtype, with_codes):
  q, k, v, scale, codes = _inputs(dtype, with_codes)
  kernel = lambda *a: xnor_attention(*a, target=target, block_q=32, block_kv=32)
  (_, out), grads = _value_and_grads(kernel, q, k, v, scale, codes)
  upcast = [x.astype(jnp.float32) for x in (q, k, v)]
  (_, expected), expected_grads = _value_and_grads(reference_xnor_attention, *upcast, scale, codes)
  assert out.dtype == jnp.result_type(dtype, scale.dtype)  # as the model's: scale promotes
  assert_close(out, expected, dtype, "out")
  for name, got, want in zip(("dq", "dk", "dv", "dscale"), grads, expected_grads):
    assert_close(got, want, dtype, name)


def test_gray_bias_is_nb_minus_hamming():
  """The fused bias equals nb - Hamming(G(i), G(j)): with q = k = 0 and v = one-hot rows the
  output (before scale) is the bias matrix itself plus D."""
  length, bits = 12, 4
  codes = gray_position_codes(grid_coordinates((length,), False), bits)
  zeros = jnp.zeros((length, 3))
  out = xnor_attention(zeros, zeros, jnp.eye(length), 1.0, codes, target="auto")
  gray = jnp.arange(length) ^ (jnp.arange(length) >> 1)
  hamming = jax.lax.population_count(gray[:, None] ^ gray[None, :])
  assert (out == 3 + bits - hamming).all()
