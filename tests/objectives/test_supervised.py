import jax
import numpy as np
import pytest

from jaxlab.objectives.supervised import Classification, Regression


def _identity(params, state, inputs, train):
  del params, train
  return inputs, state


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_classification_sums_match_numpy(smoothing):
  rng = np.random.RandomState(0)
  logits = rng.randn(5, 3, 4).astype(np.float32)  # 5 examples, 3 predictions each, 4 classes
  labels = rng.randint(0, 4, (5, 3)).astype(np.int32)
  weights = np.array([1, 1, 0, 1, 1], np.float32)
  out = Classification(_identity, smoothing)(
    {}, {}, {}, {"inputs": logits, "targets": labels, "weights": weights}, None, False
  )
  targets = np.eye(4)[labels] * (1 - smoothing) + smoothing / 4
  losses = -(targets * _log_softmax(logits)).sum(-1)
  np.testing.assert_allclose(out.loss_sum, (losses * weights[:, None]).sum(), rtol=1e-5)
  assert float(out.weight_sum) == 12.0  # 4 weighted examples x 3 predictions
  correct = (logits.argmax(-1) == labels) * weights[:, None]
  assert float(out.metrics["accuracy"]) == correct.sum()


def test_classification_gradient_is_softmax_minus_targets():
  logits = np.random.RandomState(1).randn(4, 3).astype(np.float32)
  labels = np.array([0, 2, 1, 1], np.int32)
  grad = jax.grad(
    lambda z: (
      Classification(_identity)({}, {}, {}, {"inputs": z, "targets": labels}, None, True).loss_sum
    )
  )(logits)
  expected = np.exp(_log_softmax(logits)) - np.eye(3)[labels]
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def test_regression_is_summed_squared_error_over_values():
  rng = np.random.RandomState(2)
  outputs, targets = rng.randn(6, 2).astype(np.float32), rng.randn(6, 2).astype(np.float32)
  out = Regression(_identity)({}, {}, {}, {"inputs": outputs, "targets": targets}, None, True)
  np.testing.assert_allclose(out.loss_sum, ((outputs - targets) ** 2).sum(), rtol=1e-5)
  assert float(out.weight_sum) == 12.0
