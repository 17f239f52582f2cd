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
