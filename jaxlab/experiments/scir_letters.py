"""The SCIR study on the synthetic letter task: the base and starting models trained on
demonstrations, and the held-out evaluation of every model against the known truth."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from jaxlab.config import ConfigError
from jaxlab.data.letter_task import LetterTask
from jaxlab.data.preferences import PairEncoder, render_judge_prompt
from jaxlab.eval.preferences import reward_model_summary, win_rate
from jaxlab.experiments.scir_rounds import Context, predict, sample, stage
from jaxlab.objectives.lm import LanguageModelObjective
from jaxlab.train.state import StartingWeights


def demo_arrays(ctx: Context, task: LetterTask, bias: float, rng: np.random.Generator):
  """LM rows of task demonstrations (loss on the response) mixed with judge demonstrations
  (loss on the verdict)."""
  st = ctx.settings.start
  n_judge = int(round(st.demos * st.judge_share))
  examples = task.demonstrations(st.demos - n_judge, bias, rng)
  verdicts = ctx.settings.judge.verdicts
  template = ctx.settings.judge_template()
  horizon = st.judge_horizon or None
  for prompt, a, b, a_wins in task.judge_demonstrations(n_judge, st.judge_accuracy, rng, horizon):
    examples.append((render_judge_prompt(template, prompt, a, b), verdicts[0 if a_wins else 1]))
  lm = PairEncoder(ctx.tokenizer, st.seq_len, st.seq_len, template)
  rows = [lm.response_rows(prompt, [response]) for prompt, response in examples]
  if any(r is None for r in rows):
    raise ConfigError(f"start.seq_len={st.seq_len} is too short for the demonstrations")
  return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


def starting_models(ctx: Context, seed_dir: str, task: LetterTask) -> tuple[Any, Any]:
  """(M_-1, M_0): the base model and the starting model."""
  st = ctx.settings.start
  rng = np.random.default_rng([ctx.seed, 1])
  objective = LanguageModelObjective(ctx.model)
  stage(f"seed {ctx.seed}: base model on demonstrations of uniform quality")
  base = ctx.train(
    os.path.join(seed_dir, "base"),
    objective,
    demo_arrays(ctx, task, st.base_bias, rng),
    steps=st.base_steps,
    batch_size=st.batch_size,
    lr=st.lr,
  )
  stage(f"seed {ctx.seed}: starting model on better demonstrations and judge demonstrations")
  start = ctx.train(
    os.path.join(seed_dir, "start"),
    objective,
    demo_arrays(ctx, task, st.start_bias, rng),
    steps=st.start_steps,
    batch_size=st.batch_size,
    lr=st.lr,
    start=StartingWeights(params=base),
  )
  return base, start


# ---------------------------------------------------------------------------------- evaluation


@dataclasses.dataclass
class EvalSet:
  """Held-out prompts (the policy is sampled on them) and held-out pairs with known winners
  (the reward models are scored on them); the same for every method and model of a seed."""

  prompts: list[str]
  pair_arrays: dict[str, np.ndarray]
  first_better: np.ndarray
  teacher_accuracy: float  # the noiseless demonstration judge's accuracy on these pairs
  start_scores: np.ndarray | None = None  # M_0's scores, the win-rate baseline


def eval_set(ctx: Context, task: LetterTask) -> EvalSet:
  rng = np.random.default_rng([ctx.seed, 2])
  n = ctx.settings.task.eval_pairs
  demos = task.judge_demonstrations(n, 1.0, rng)  # verdict always true: the held-out labels
  arrays, kept = ctx.encoder.encode([(p, a, b) for p, a, b, _ in demos])
  horizon = ctx.settings.start.judge_horizon or None
  rule = [task.rule_verdict(p, a, b, horizon) for p, a, b, _ in (demos[k] for k in kept)]
  first_better = np.array([demos[k][3] for k in kept])
  return EvalSet(
    prompts=task.prompts(ctx.settings.task.eval_prompts, rng),
    pair_arrays=arrays,
    first_better=first_better,
    teacher_accuracy=float(np.mean(np.where(first_better, rule, 1 - np.asarray(rule)))),
  )


def evaluate_model(ctx: Context, task, evals: EvalSet, params: Any, label_reference: Any) -> dict:
  """Policy score and win rate against M_0 on held-out prompts (samples drawn with the same
  random numbers for every model), and both reward models on held-out pairs."""
  samples = sample(ctx, params, evals.prompts, jax.random.PRNGKey(10_000 + ctx.seed))
  scores = np.array([[task.score(p, x) for x in row] for p, row in zip(evals.prompts, samples)])
  if evals.start_scores is None:
    evals.start_scores = scores
  p_implicit, p_judge = predict(ctx, params, label_reference, evals.pair_arrays)
  return {
    "score": float(scores.mean()),
    "malformed": float(np.mean(scores == task.malformed_score)),
    "win_rate": win_rate(scores, evals.start_scores),
    "teacher_accuracy": evals.teacher_accuracy,
    **reward_model_summary(p_implicit, p_judge, evals.first_better),
  }
