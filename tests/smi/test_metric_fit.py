import math

import numpy as np
import pytest

from jaxlab.smi.fit import fit_records, group_mean_fit
from jaxlab.smi.metric import minmax, model_size_term, mutual_information, predictors, quantize, smi


def test_quantize_truncates_toward_zero():
  assert quantize(2**-1.3) == -1.2  # 5*log2 = -6.5 -> int() -> -6; floor would give -1.4
  assert quantize(2**1.3) == 1.2
  assert quantize(8) == 3.0 and quantize(1) == 0.0
  assert quantize(3 / 32) == -3.4  # 5*log2 = -17.07 -> -17


def test_mutual_information_and_minmax():
  assert mutual_information(8, 8, 16, 64) == pytest.approx(0.25)
  assert mutual_information(0, 5, 5, 64) == 0.0
  assert mutual_information(1, 32, 32, 64) < 0
  assert minmax([-3.4, -2.0, -2.6]) == pytest.approx([0.0, 1.0, 0.8 / 1.4])
  assert minmax([2.0, 2.0]) == [0.0, 0.0]


def test_smi_variants():
  assert model_size_term(7e9, "latest") == pytest.approx(32.70, abs=0.01)
  assert model_size_term(7e9, "v1") == pytest.approx(7.0)
  assert smi(0.5, 2**32, "latest") == pytest.approx(0.5 ** (33 / 32))
  assert smi(0.5, 2e9, "v1") == pytest.approx(0.5**1.5)
  with pytest.raises(ValueError, match="unknown SMI variant 'v9'"):
    smi(0.5, 7e9, "v9")
  with pytest.raises(ValueError, match="no positive P"):
    smi(0.5, 0, "v1")


def _record(n_both, n_subj, n_obj, acc, n_docs=64):
  return {
    "subj": "s",
    "rel": "r",
    "obj": "o",
    "n_docs": n_docs,
    "n_subj": n_subj,
    "n_obj": n_obj,
    "n_both": n_both,
    "acc": acc,
  }


# Kept, with MI and its quantization q worked out by hand (N = 64):
#   A: p_so=1/8, p_s=1/8, p_o=1/4:   MI = 1/8*log2(4) = 1/4,  q(MI) = -2.0;  q(N_so=8) = 3.0
#   B: p_so=1/32, p_s=p_o=1/16:      MI = 1/32*log2(8) = 3/32, 5*log2 = -17.08 -> -17,
#                                    q(MI) = -3.4 (floor would give -3.6);  q(2) = 1.0
#   F: p_so=p_s=p_o=1/16:            MI = 1/16*log2(16) = 1/4,  q(MI) = -2.0;  q(4) = 2.0
#   G: p_so=p_s=3/64, p_o=6/64:      MI = 3/64*log2(32/3) = 0.16008, 5*log2 = -13.22 -> -13,
#                                    q(MI) = -2.6 (not -2.8);  5*log2(3) = 7.92 -> q(3) = 1.4
# Dropped: C (MI = 0: object in every document), D (N_so = 0), E (MI < 0).
RECORDS = [
  _record(8, 8, 16, acc=0.9),  # A
  _record(2, 4, 4, acc=0.1),  # B
  _record(1, 1, 64, acc=0.3),  # C
  _record(0, 5, 7, acc=0.0),  # D
  _record(1, 32, 32, acc=0.2),  # E
  _record(4, 4, 4, acc=0.7),  # F
  _record(3, 3, 6, acc=0.5),  # G
]


def _ols(points):
  """Slope, intercept, r^2 of a line through (x, y) points, from the textbook sums."""
  n = len(points)
  mx = sum(x for x, _ in points) / n
  my = sum(y for _, y in points) / n
  sxx = sum((x - mx) ** 2 for x, _ in points)
  syy = sum((y - my) ** 2 for _, y in points)
  sxy = sum((x - mx) * (y - my) for x, y in points)
  a = sxy / sxx
  return a, my - a * mx, sxy**2 / (sxx * syy)


def test_predictors_drop_and_normalize_by_hand():
  kept, n_dropped, xs = predictors(RECORDS, 2**32, "latest")
  assert n_dropped == 3 and kept == [RECORDS[i] for i in (0, 1, 5, 6)]
  # MI: q = -2.0, -3.4, -2.0, -2.6 -> min-max over kept: 1, 0, 1, 0.8/1.4.
  assert xs["MI"] == pytest.approx([1.0, 0.0, 1.0, 4 / 7])
  # CO-OCCUR: q = 3.0, 1.0, 2.0, 1.4 -> 1, 0, 0.5, 0.2.
  assert xs["CO-OCCUR"] == pytest.approx([1.0, 0.0, 0.5, 0.2])
  assert xs["SMI"] == pytest.approx([1.0, 0.0, 1.0, (4 / 7) ** (1 + 1 / 32)])
  _, _, xs_v1 = predictors(RECORDS, 2e9, "v1")
  assert xs_v1["SMI"] == pytest.approx([1.0, 0.0, 1.0, (4 / 7) ** 1.5])


def test_fit_reproduces_hand_computed_example():
  result = fit_records(RECORDS, 2**32, "latest")
  assert (result["n_triples"], result["n_dropped"]) == (7, 3)
  # MI groups: x=0 -> [0.1]; x=4/7 -> [0.5]; x=1 -> [0.9, 0.7] (mean 0.8): 3 unweighted points.
  a, b, r2 = _ols([(0.0, 0.1), (4 / 7, 0.5), (1.0, 0.8)])
  mse = (
    (0.1 - b) ** 2
    + (0.5 - (a * 4 / 7 + b)) ** 2
    + ((0.9 - (a + b)) ** 2 + (0.7 - (a + b)) ** 2) / 2
  ) / 3
  mi = result["methods"]["MI"]
  assert mi["n_groups"] == 3
  assert (mi["slope"], mi["intercept"], mi["r2"], mi["mse"], mi["upper_bound"]) == pytest.approx(
    (a, b, r2, mse, a + b), abs=1e-12
  )
  # Worked through: sxx = 74/147, sxy = 0.7 * 74/147 -> a = 0.7, b = 0.1; the means lie on it,
  # so R^2 = 1, while the spread inside the x=1 group (0.9 vs 0.7) still shows in the MSE.
  assert (a, b, r2) == pytest.approx((0.7, 0.1, 1.0))
  assert mse == pytest.approx(0.01 / 3)
  # CO-OCCUR: four singleton groups at 0, 0.2, 0.5, 1.
  a, b, r2 = _ols([(0.0, 0.1), (0.2, 0.5), (0.5, 0.7), (1.0, 0.9)])
  co = result["methods"]["CO-OCCUR"]
  assert co["n_groups"] == 4
  assert (co["slope"], co["intercept"], co["r2"]) == pytest.approx((a, b, r2))
  mse = (
    (0.1 - b) ** 2 + (0.5 - (0.2 * a + b)) ** 2 + (0.7 - (0.5 * a + b)) ** 2 + (0.9 - (a + b)) ** 2
  ) / 4
  assert co["mse"] == pytest.approx(mse)
  smi_fit = result["methods"]["SMI"]
  a, b, r2 = _ols([(0.0, 0.1), ((4 / 7) ** (33 / 32), 0.5), (1.0, 0.8)])
  assert (smi_fit["slope"], smi_fit["intercept"], smi_fit["r2"]) == pytest.approx((a, b, r2))


def test_group_mean_fit_matches_polyfit_on_group_means():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 12, 500) / 11
  acc = np.clip(0.6 * x + 0.1 + rng.normal(0, 0.2, 500), 0, 1)
  fit = group_mean_fit(x, acc)
  gx = np.unique(x)
  gy = np.array([acc[x == v].mean() for v in gx])
  slope, intercept = np.polyfit(gx, gy, 1)
  assert fit["n_groups"] == len(gx) == 12
  assert (fit["slope"], fit["intercept"]) == pytest.approx((slope, intercept))
  assert fit["r2"] == pytest.approx(np.corrcoef(gx, gy)[0, 1] ** 2)
  # The per-triple R^2 is much lower than the group-mean R^2: the reason for grouping.
  assert np.corrcoef(x, acc)[0, 1] ** 2 < fit["r2"]
  assert math.isclose(fit["upper_bound"], slope + intercept)


def test_group_mean_fit_needs_two_groups():
  with pytest.raises(ValueError, match="at least 2 distinct predictor values, got 1"):
    group_mean_fit([0.5, 0.5], [0.1, 0.2])
