import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.objectives.lm import weighted_cross_entropy


def test_weighted_cross_entropy_matches_log_softmax_and_its_gradient():
  rng = np.random.RandomState(0)
  logits = jnp.asarray(rng.randn(2, 5, 11) * 3, jnp.float32)
  targets = jnp.asarray(rng.randint(0, 11, (2, 5)))
  weights = jnp.asarray(rng.rand(2, 5), jnp.float32)
  loss_sum, weight_sum = weighted_cross_entropy(logits, targets, weights)
  logprobs = np.asarray(jax.nn.log_softmax(logits))
  picked = np.take_along_axis(logprobs, np.asarray(targets)[..., None], -1)[..., 0]
  np.testing.assert_allclose(loss_sum, -(picked * np.asarray(weights)).sum(), rtol=1e-6)
  np.testing.assert_allclose(weight_sum, np.asarray(weights).sum(), rtol=1e-6)
  grad = jax.grad(lambda z: weighted_cross_entropy(z, targets, weights)[0])(logits)
  expected = (np.exp(logprobs) - np.eye(11)[np.asarray(targets)]) * np.asarray(weights)[..., None]
  np.testing.assert_allclose(grad, expected, atol=1e-6)
