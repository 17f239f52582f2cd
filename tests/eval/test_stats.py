import numpy as np
import pytest

from jaxlab.eval.stats import mean_std, permutation_p_value


def test_mean_std_leaves_out_missing_values():
  assert mean_std([1.0, None, 3.0, float("nan")]) == (2.0, pytest.approx(np.sqrt(2.0)))
  assert mean_std([4.0]) == (4.0, 0.0)


def test_permutation_p_value_of_perfect_and_constant_predictions():
  labels = np.tile(np.arange(2), 50)
  # No permutation of 50/50 labels matches every prediction (the chance is 1 / C(100, 50)).
  assert permutation_p_value(labels, labels, num_permutations=200) == pytest.approx(1 / 201)
  # Predictions that ignore the input score the same against every permutation: p = 1.
  assert permutation_p_value(np.zeros(100, int), labels, num_permutations=200) == 1.0


def test_permutation_p_value_is_roughly_uniform_for_uninformative_predictions():
  rng = np.random.default_rng(0)
  p_values = [
    permutation_p_value(rng.integers(0, 3, 90), rng.integers(0, 3, 90), 99, seed=s)
    for s in range(60)
  ]
  # Under the null, P(p <= 0.05) is about 0.05 (3 of 60), and p is spread over [0, 1].
  assert np.mean(np.asarray(p_values) <= 0.05) < 0.15
  assert 0.3 < np.mean(p_values) < 0.7


def test_a_modest_real_effect_is_significant():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 2, 400)
  predictions = np.where(rng.random(400) < 0.6, labels, 1 - labels)  # 60% correct
  assert permutation_p_value(predictions, labels) < 0.01
