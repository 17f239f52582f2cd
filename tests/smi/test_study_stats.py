import numpy as np
import pytest

from jaxlab.smi.fit import group_mean_fit
from jaxlab.smi.metric import minmax, predictors, quantize
from jaxlab.smi.study_stats import (
  PREDICTORS,
  bootstrap_r2,
  pooled_r2,
  size_r2,
  study_predictors,
  summarize,
)


def _records(n=300, seed=0):
  rng = np.random.default_rng(seed)
  records = []
  for _ in range(n):
    true_docs = int(rng.integers(1, 64))
    n_both = true_docs + int(rng.integers(0, 16))
    n_subj, n_obj = n_both + int(rng.integers(0, 20)), n_both + int(rng.integers(0, 300))
    acc = float(np.clip(0.1 * np.log2(true_docs) + rng.normal(0, 0.1), 0, 1))
    records.append(
      {
        "n_docs": 3000,
        "n_subj": n_subj,
        "n_obj": n_obj,
        "n_both": n_both,
        "true_docs": true_docs,
        "acc": acc,
        "subj": "s",
        "rel": "r",
        "obj": "o",
      }
    )
  return records


def test_true_count_is_quantized_and_normalized_like_co_occurrence():
  records = _records()
  kept, dropped, xs = study_predictors(records, 1e6, "latest")
  _, _, paper = predictors(records, 1e6, "latest")
  assert {k: xs[k] for k in paper} == paper  # the paper's predictors are untouched
  assert xs["TRUE-COUNT"] == minmax([quantize(r["true_docs"]) for r in kept])
  assert list(xs) == list(PREDICTORS) and dropped == len(records) - len(kept)


def test_the_estimate_is_the_papers_group_mean_fit():
  rng = np.random.default_rng(1)
  x = rng.integers(0, 12, 200) / 11
  acc = np.clip(0.6 * x + rng.normal(0, 0.2, 200), 0, 1)
  estimate, draws = bootstrap_r2(x, acc, resamples=50, seed=0)
  assert estimate == pytest.approx(group_mean_fit(x, acc)["r2"])
  assert draws.shape == (50,) and np.all((0 <= draws) & (draws <= 1))
  assert np.std(draws) > 0.005  # resamples differ
  same, again = bootstrap_r2(x, acc, resamples=50, seed=0)
  assert same == estimate and np.array_equal(draws, again)  # seeded: paired across predictors


def test_a_perfect_line_has_a_degenerate_interval():
  x = np.arange(40) % 8 / 7
  estimate, draws = bootstrap_r2(x, 0.5 * x + 0.1, resamples=30, seed=0)
  assert estimate == pytest.approx(1) and np.allclose(draws, 1)


def test_pooled_points_are_every_size_of_each_fact():
  rng = np.random.default_rng(2)
  x = np.stack([rng.integers(0, 6, 100) / 5, rng.integers(0, 6, 100) / 5])
  acc = rng.random((2, 100))
  estimate, _ = bootstrap_r2(x, acc, resamples=5, seed=0)
  assert estimate == pytest.approx(group_mean_fit(x.ravel(), acc.ravel())["r2"])


def test_summary_counts_wins_among_the_corpus_statistics_only():
  draws = {
    "TRUE-COUNT": np.array([0.99, 0.99, 0.99, 0.99]),
    "CO-OCCUR": np.array([0.5, 0.6, 0.1, np.nan]),
    "MI": np.array([0.4, 0.7, 0.2, 0.3]),
    "SMI": np.array([0.3, 0.2, 0.3, 0.1]),
  }
  result = summarize({k: 0.5 for k in draws}, draws)
  assert "best" not in result["TRUE-COUNT"]
  assert [result[m]["best"] for m in ("CO-OCCUR", "MI", "SMI")] == [0.25, 0.5, 0.25]
  assert result["CO-OCCUR"]["low"] == pytest.approx(np.percentile([0.5, 0.6, 0.1], 2.5))


def test_size_and_pooled_fits_report_every_predictor():
  records = _records()
  one = size_r2(records, 1e6, "latest", resamples=100, seed=0)
  assert set(one["r2"]) == set(PREDICTORS) and one["n_facts"] + one["n_dropped"] == 300
  # accuracy follows the true count here, so the reference fits best
  assert one["r2"]["TRUE-COUNT"]["r2"] > max(one["r2"][m]["r2"] for m in ("MI", "SMI"))
  pooled = pooled_r2([records, records], [1e5, 1e7], "latest", resamples=100, seed=0)
  for predictor in ("TRUE-COUNT", "CO-OCCUR", "MI"):  # same x and accuracy at both sizes
    assert pooled[predictor]["r2"] == pytest.approx(one["r2"][predictor]["r2"])
  assert pooled["SMI"]["r2"] != pytest.approx(one["r2"]["SMI"]["r2"])  # the size term moves x
