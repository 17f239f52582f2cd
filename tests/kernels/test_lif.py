"""LIF kernels (interpreted on CPU) against the reference lif_multistep: spikes and surrogate
gradients for both surrogates."""

import jax
import jax.numpy as jnp
import pytest

from jaxlab.kernels.lif import lif_multistep
from jaxlab.kernels.lif_reference import Surrogate
from jaxlab.kernels.lif_reference import lif_multistep as reference_lif
from tests.kernels.helpers import assert_close, cotangent, fast_jit

SHAPE = (5, 3, 7, 50)  # T=5 steps; 1050 neurons: ragged against 8x128 TPU and 256 GPU tiles
NEURON = dict(tau=2.0, v_th=1.0, v_reset=-0.1)


def _spikes_and_grad(lif, x, surrogate):
  weight = cotangent(x.shape)

  def loss(x):
    spikes = lif(x, surrogate=surrogate, **NEURON)
    return jnp.sum(spikes.astype(jnp.float32) * weight), spikes

  return fast_jit(jax.value_and_grad(loss, has_aux=True))(x)


ARCTAN, SIGMOID = Surrogate("arctan", 2.0), Surrogate("sigmoid", 4.0)


@pytest.mark.parametrize(
  "target,surrogate,dtype",
  [
    ("tpu-interpret", ARCTAN, jnp.float32),
    ("tpu-interpret", SIGMOID, jnp.float32),
    ("tpu-interpret", ARCTAN, jnp.bfloat16),
    ("gpu-interpret", SIGMOID, jnp.float32),
    ("auto", ARCTAN, jnp.float32),
  ],
  ids=lambda p: getattr(p, "kind", None) or getattr(p, "__name__", None) or str(p),
)
def test_matches_reference_lif(target, surrogate, dtype):
  x = (jax.random.normal(jax.random.key(0), SHAPE) * 1.5 + 0.8).astype(dtype)
  kernel = lambda x, **kw: lif_multistep(x, **kw, target=target, block_rows=8, block_gpu=256)
  (_, spikes), grad = _spikes_and_grad(kernel, x, surrogate)
  # The kernels compute in float32, so the reference runs on the upcast input.
  (_, expected_spikes), expected_grad = _spikes_and_grad(
    reference_lif, x.astype(jnp.float32), surrogate
  )
  assert spikes.dtype == dtype and grad.dtype == dtype
  assert 0.05 < float(expected_spikes.mean()) < 0.5  # both firing and silent neurons
  assert (spikes.astype(jnp.float32) == expected_spikes).all()
  assert_close(grad, expected_grad, dtype, "dx")
