"""Summary statistics over seeds that every study's report uses."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
  """Mean and sample standard deviation (0 for a single value); NaNs are left out."""
  values = [v for v in values if v is not None and not math.isnan(v)]
  if not values:
    return float("nan"), float("nan")
  return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def permutation_p_value(
  predictions: np.ndarray, labels: np.ndarray, num_permutations: int = 1000, seed: int = 0
) -> float:
  """One-sided p-value of a label-permutation test of accuracy: (1 + the number of random
  permutations of `labels` whose accuracy against `predictions` reaches the observed one) /
  (1 + num_permutations). Small when the predictions carry information about the labels; a
  classifier whose predictions ignore the input (a constant, say) gets p = 1."""
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  observed = np.mean(predictions == labels)
  rng = np.random.default_rng(seed)
  null = [np.mean(predictions == rng.permutation(labels)) for _ in range(num_permutations)]
  return float((1 + np.sum(np.asarray(null) >= observed - 1e-12)) / (1 + num_permutations))
