"""R^2 of each predictor with bootstrap intervals, per model size and pooled over sizes.

The scaling study's statistics (docs/smi.md section 7): the paper's group-mean fit (fit.py) of
CBQA accuracy on CO-OCCUR, MI and SMI, plus the documents that truly state a fact (TRUE-COUNT)
as the reference a corpus statistic can reach at best here. Intervals resample facts with
replacement (a pooled resample keeps every size of each drawn fact); a resample keeps the full
sample's normalization, and R^2 does not depend on it except through SMI's power. Resampling
duplicates facts, which makes group means noisier, so resampled R^2 runs low and an interval can
end below the full-sample estimate; the share of resamples in which each statistic fits best is
the paired comparison that bias does not affect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxlab.smi.metric import METHODS, minmax, predictors, quantize

REFERENCE = "TRUE-COUNT"
PREDICTORS = (REFERENCE, *METHODS)


def study_predictors(
  records: Sequence[Mapping], params: float, variant: str
) -> tuple[list[Mapping], int, dict[str, list[float]]]:
  """fit.py's predictors of the records kept (MI > 0) plus TRUE-COUNT, quantized and min-max
  normalized like CO-OCCUR, from each record's `true_docs`."""
  kept, dropped, xs = predictors(records, params, variant)
  xs = {REFERENCE: minmax([quantize(r["true_docs"]) for r in kept]) if kept else [], **xs}
  return kept, dropped, xs


def _group_ids(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  values, ids = np.unique(x.ravel(), return_inverse=True)
  return values, ids.reshape(x.shape)


def _r2(values: np.ndarray, ids: np.ndarray, acc: np.ndarray, facts: np.ndarray) -> float:
  """R^2 of the group-mean line over the points of `facts` (columns of ids and acc)."""
  g, a = ids[:, facts].ravel(), acc[:, facts].ravel()
  count = np.bincount(g, minlength=len(values))
  total = np.bincount(g, weights=a, minlength=len(values))
  present = count > 0
  if present.sum() < 2:
    return math.nan
  dx = values[present] - values[present].mean()
  gy = total[present] / count[present]
  dy = gy - gy.mean()
  sxx, syy, sxy = dx @ dx, dy @ dy, dx @ dy
  return float(sxy * sxy / (sxx * syy)) if syy > 0 else 0.0


def bootstrap_r2(
  x: np.ndarray, acc: np.ndarray, *, resamples: int, seed: int
) -> tuple[float, np.ndarray]:
  """R^2 of the group-mean fit and its value on `resamples` bootstrap resamples of the facts.

  x, acc: (sizes, facts) arrays (one row for a single size); resampling draws facts, so the
  rows of a pooled fit stay paired. The same seed draws the same facts for every predictor, so
  predictors can be compared resample by resample. A resample with fewer than two groups is nan.
  """
  x, acc = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(acc, float))
  values, ids = _group_ids(x)
  n = x.shape[1]
  rng = np.random.default_rng(seed)
  draws = np.array([_r2(values, ids, acc, rng.integers(0, n, n)) for _ in range(resamples)])
  return _r2(values, ids, acc, np.arange(n)), draws


def summarize(
  estimates: Mapping[str, float], draws: Mapping[str, np.ndarray], level: float = 0.95
) -> dict[str, dict[str, float]]:
  """{predictor: {r2, low, high, best}}: the estimate, the percentile interval of its resamples,
  and the fraction of resamples in which it has the highest R^2 of the corpus statistics
  (TRUE-COUNT is a reference and does not compete)."""
  tail = 100 * (1 - level) / 2
  methods = [p for p in draws if p != REFERENCE]
  stacked = np.stack([np.nan_to_num(draws[m], nan=-np.inf) for m in methods])
  winner = np.argmax(stacked, axis=0)
  result = {}
  for predictor, estimate in estimates.items():
    low, high = np.nanpercentile(draws[predictor], [tail, 100 - tail])
    result[predictor] = {"r2": float(estimate), "low": float(low), "high": float(high)}
    if predictor in methods:
      result[predictor]["best"] = float(np.mean(winner == methods.index(predictor)))
  return result


def _fit_all(
  xs: Mapping[str, np.ndarray], acc: np.ndarray, resamples: int, seed: int
) -> dict[str, dict[str, float]]:
  fits = {p: bootstrap_r2(xs[p], acc, resamples=resamples, seed=seed) for p in PREDICTORS}
  return summarize({p: f[0] for p, f in fits.items()}, {p: f[1] for p, f in fits.items()})


def size_r2(
  records: Sequence[Mapping], params: float, variant: str, *, resamples: int, seed: int
) -> dict[str, Any]:
  """One size's facts -> {n_facts, n_dropped, r2: {predictor: {r2, low, high[, best]}}}."""
  kept, dropped, xs = study_predictors(records, params, variant)
  acc = np.array([r["acc"] for r in kept])
  arrays = {p: np.array(xs[p]) for p in PREDICTORS}
  return {"n_facts": len(kept), "n_dropped": dropped, "r2": _fit_all(arrays, acc, resamples, seed)}


def pooled_r2(
  records_by_size: Sequence[Sequence[Mapping]],
  params: Sequence[float],
  variant: str,
  *,
  resamples: int,
  seed: int,
) -> dict[str, dict[str, float]]:
  """One group-mean fit over every (size, fact) point: SMI's size term gives each size its own
  x, the size-free predictors give a fact the same x at every size. The sizes share their facts
  (the same corpus), and a fact dropped at one size (MI <= 0, which does not depend on size) is
  dropped at all."""
  per_size = [study_predictors(r, p, variant) for r, p in zip(records_by_size, params)]
  acc = np.array([[r["acc"] for r in kept] for kept, _, _ in per_size])
  arrays = {p: np.array([xs[p] for _, _, xs in per_size]) for p in PREDICTORS}
  return _fit_all(arrays, acc, resamples, seed)
