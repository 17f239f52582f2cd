"""Forming pairs from samples and Self-Rewarding's best-vs-worst pairs from judge verdicts."""

from __future__ import annotations

import numpy as np

from jaxlab.data.preference_rounds import best_vs_worst, candidate_pairs


def test_candidate_pairs_are_distinct_and_capped():
  responses = [["a", "b", "a", "c"], ["x", "x", "x", "x"], ["p", "q", "r", "s"]]
  pairs = candidate_pairs(responses, 3, np.random.default_rng(0))
  by_prompt = {p: [(i, j) for q, i, j in pairs if q == p] for p in range(3)}
  assert by_prompt[1] == []  # identical samples give no pair
  assert len(by_prompt[0]) == 3 and len(by_prompt[2]) == 3
  for p, i, j in pairs:
    assert i < j and responses[p][i] != responses[p][j]
  everything = candidate_pairs(responses, 100, np.random.default_rng(0))
  assert len(everything) == 5 + 0 + 6  # a/b/a/c has 5 pairs of different texts


def test_best_vs_worst_by_mean_judged_win_probability():
  pairs = [(0, 0, 1), (0, 0, 2), (0, 1, 2), (1, 0, 1)]
  p_first = np.array([0.9, 0.6, 0.2, 0.5])
  # prompt 0: wins 0 -> mean(0.9, 0.6) = 0.75, 1 -> mean(0.1, 0.2) = 0.15, 2 -> mean(0.4, 0.8) = 0.6
  # prompt 1: a 0.5 / 0.5 tie gives no pair.
  assert best_vs_worst(pairs, p_first, 2) == [(0, 0, 1)]
