"""The synthetic preference task: exact scores, graded demonstrations, judge verdict noise."""

from __future__ import annotations

import numpy as np
import pytest

from jaxlab.data.letter_task import LetterTask

TASK = LetterTask()


def test_score_counts_the_asked_letters_and_rejects_malformed_responses():
  assert TASK.asked("lo>") == "abcd" and TASK.asked("hi>") == "efgh"
  assert TASK.score("lo>", "abceffgh") == 3
  assert TASK.score("hi>", "abceffgh") == 5
  assert TASK.score("lo>", "eeeeeeee") == 0
  assert TASK.score("lo>", "abc") == -1  # wrong length
  assert TASK.score("lo>", "abcdabcz") == -1  # outside the alphabet


def test_responses_hold_exactly_the_asked_count():
  rng = np.random.default_rng(0)
  for prompt in TASK.PROMPTS:
    for count in range(9):
      assert TASK.score(prompt, TASK.response(prompt, count, rng)) == count


def test_bias_tilts_the_demonstrations_quality():
  rng = np.random.default_rng(1)
  low = [TASK.score(p, r) for p, r in TASK.demonstrations(4000, -0.5, rng)]
  uniform = [TASK.score(p, r) for p, r in TASK.demonstrations(4000, 0.0, rng)]
  assert np.mean(low) < 2.0 < 3.5 < np.mean(uniform) < 4.5


@pytest.mark.parametrize("accuracy", [0.75, 1.0])
def test_judge_verdicts_are_right_with_the_given_probability(accuracy):
  demos = TASK.judge_demonstrations(4000, accuracy, np.random.default_rng(2))
  right = [(TASK.score(p, a) > TASK.score(p, b)) == a_wins for p, a, b, a_wins in demos]
  assert all(TASK.score(p, a) != TASK.score(p, b) for p, a, b, _ in demos)
  assert abs(np.mean(right) - accuracy) < 0.02


def test_the_demonstration_judge_reads_only_its_horizon():
  # Two asked letters each, but A's sit in the first four letters and B's after them.
  assert TASK.rule_verdict("lo>", "abeeeeee", "eeeeeeab", horizon=4) == 1.0
  assert TASK.rule_verdict("lo>", "abeeeeee", "eeeeeeab") == 0.5
  assert TASK.rule_verdict("hi>", "eeeeaaaa", "aaaaeaaa", horizon=4) == 1.0
  assert TASK.rule_verdict("hi>", "eeeeaaaa", "aaaaeaaa") == 1.0
  demos = TASK.judge_demonstrations(3000, 1.0, np.random.default_rng(3), horizon=4)
  seen = [TASK.rule_verdict(p, a, b, 4) for p, a, b, _ in demos]
  assert all(a_wins == bool(v) for (_, _, _, a_wins), v in zip(demos, seen) if v != 0.5)
  truth = [TASK.score(p, a) > TASK.score(p, b) for p, a, b, _ in demos]
  assert (
    0.8
    < np.mean([(v == 0.5) * 0.5 + (v != 0.5) * (bool(v) == t) for v, t in zip(seen, truth)])
    < 0.95
  )
