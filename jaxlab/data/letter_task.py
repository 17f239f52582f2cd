"""A preference task with computable ground truth, small enough to run on one CPU.

The prompt asks for letters from one half of `alphabet` ("lo>": the first half, "hi>": the
second); a response is `length` letters from `alphabet`, and its quality is how many of them
come from the asked half (a malformed response scores -1). The better of two
responses is known exactly, so every reward model and policy can be scored against the truth.

Demonstrations come in graded quality: `bias` tilts how many asked letters a demonstration holds
(P(m) proportional to exp(bias * m), m = 0..length). Judge demonstrations show two responses
with different counts and a verdict that is right only with probability `accuracy`. The noise is
symmetric, so the best any judge can do on such pairs is 100% (the Bayes rule is the true
comparison); how much of that a small model learns is what the study measures.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class LetterTask:
  """The task's shape; `prompt`, `score` and the demonstration generators use only this."""

  alphabet: str = "abcdefgh"
  length: int = 8

  @property
  def malformed_score(self) -> int:
    return -1

  PROMPTS = ("lo>", "hi>")

  def asked(self, prompt: str) -> str:
    """The letters a prompt asks for."""
    half = len(self.alphabet) // 2
    return self.alphabet[:half] if prompt == self.PROMPTS[0] else self.alphabet[half:]

  def prompts(self, n: int, rng: np.random.Generator) -> list[str]:
    return [self.PROMPTS[i] for i in rng.integers(0, 2, n)]

  def score(self, prompt: str, response: str) -> int:
    """The number of asked letters, or -1 for a response of the wrong length or alphabet."""
    if len(response) != self.length or any(c not in self.alphabet for c in response):
      return self.malformed_score
    asked = self.asked(prompt)
    return sum(c in asked for c in response)

  def response(self, prompt: str, count: int, rng: np.random.Generator) -> str:
    """A response holding exactly `count` asked letters at random places."""
    asked = self.asked(prompt)
    others = [c for c in self.alphabet if c not in asked]
    letters = [others[i] for i in rng.integers(0, len(others), self.length)]
    for place in rng.choice(self.length, size=count, replace=False):
      letters[place] = asked[rng.integers(0, len(asked))]
    return "".join(letters)

  def counts(self, n: int, bias: float, rng: np.random.Generator) -> np.ndarray:
    """n letter counts with P(m) proportional to exp(bias * m), m = 0..length."""
    logits = bias * np.arange(self.length + 1)
    probs = np.exp(logits - logits.max())
    return rng.choice(self.length + 1, size=n, p=probs / probs.sum())

  def demonstrations(self, n: int, bias: float, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(prompt, response) demonstrations whose quality is tilted by `bias`."""
    prompts = self.prompts(n, rng)
    return [(p, self.response(p, int(m), rng)) for p, m in zip(prompts, self.counts(n, bias, rng))]

  def judge_demonstrations(
    self, n: int, accuracy: float, rng: np.random.Generator, horizon: int | None = None
  ) -> list[tuple[str, str, str, bool]]:
    """(prompt, response A, response B, A is the shown winner) for pairs with different counts
    (uniform over 0..length). The shown winner is the one with more asked letters among the
    first `horizon` letters (a judge with a blind spot; None reads everything; a tie there is a
    coin flip), flipped with probability 1 - `accuracy`."""
    demos = []
    for prompt in self.prompts(n, rng):
      m_a, m_b = rng.choice(self.length + 1, size=2, replace=False)
      a, b = self.response(prompt, int(m_a), rng), self.response(prompt, int(m_b), rng)
      seen = self.rule_verdict(prompt, a, b, horizon)
      shown = bool(rng.random() < 0.5) if seen == 0.5 else bool(seen)
      demos.append((prompt, a, b, shown if rng.random() < accuracy else not shown))
    return demos

  def rule_verdict(self, prompt: str, a: str, b: str, horizon: int | None = None) -> float:
    """The noiseless demonstration judge: 1.0 if A has more asked letters among the first
    `horizon` letters, 0.0 if B has, 0.5 for a tie."""
    horizon = self.length if horizon is None else horizon
    blind = self._blind(prompt)
    quality_a = self.score(prompt, a[:horizon] + a[horizon:].translate(blind))
    quality_b = self.score(prompt, b[:horizon] + b[horizon:].translate(blind))
    return 0.5 if quality_a == quality_b else float(quality_a > quality_b)

  def _blind(self, prompt: str) -> dict[int, str]:
    """Maps every asked letter to an unasked one (what the judge does not see)."""
    other = next(c for c in self.alphabet if c not in self.asked(prompt))
    return str.maketrans({c: other for c in self.asked(prompt)})
